#include "tests/util/torch_oracle.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/util/npy.h"
#include "tests/util/python.h"

namespace climseg::test {

namespace fs = std::filesystem;

namespace {
constexpr const char* kPython = kPython3;

Tensor as_f64(const Tensor& t) {
  Tensor h = t.device() == Device::cpu ? t : t.to(Device::cpu);
  if (!dtype_is_float(h.dtype())) return h.is_contiguous() ? h : h.clone();
  return h.dtype() == DType::f64 ? (h.is_contiguous() ? h : h.clone()) : h.cast(DType::f64);
}
}  // namespace

bool torch_available() { return python_can_import("torch, numpy"); }

TorchResult torch_run(const TorchCall& call) {
  CS_CHECK(torch_available(), "torch_run: ", kPython, " cannot import torch (install python3-torch)");
  char tmpl[] = "/tmp/climseg-torch-XXXXXX";
  CS_CHECK(mkdtemp(tmpl) != nullptr, "torch_run: mkdtemp failed");
  const fs::path dir(tmpl);
  struct Cleanup {
    fs::path d;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } cleanup{dir};

  nlohmann::json j;
  j["op"] = call.op;
  j["attrs"] = call.attrs;
  j["n_inputs"] = call.inputs.size();
  j["n_params"] = call.params.size();
  j["has_dy"] = call.dy.defined();
  j["state"] = nlohmann::json::array();
  for (size_t i = 0; i < call.inputs.size(); ++i)
    npy_write((dir / ("x" + std::to_string(i) + ".npy")).string(), as_f64(call.inputs[i]));
  for (size_t i = 0; i < call.params.size(); ++i)
    npy_write((dir / ("p" + std::to_string(i) + ".npy")).string(), as_f64(call.params[i]));
  if (call.dy.defined()) npy_write((dir / "dy.npy").string(), as_f64(call.dy));
  for (const auto& [name, t] : call.state) {
    j["state"].push_back(name);
    npy_write((dir / ("s_" + name + ".npy")).string(), as_f64(t));
  }
  {
    std::ofstream f(dir / "call.json");
    f << j.dump(2);
  }
  const std::string script = std::string(CLIMSEG_SOURCE_DIR) + "/tests/torch/oracle.py";
  std::string out;
  int rc = run_command(std::string(kPython) + " " + script + " " + dir.string(), out);
  CS_CHECK(rc == 0 && fs::exists(dir / "done"), "PyTorch oracle for op '", call.op, "' failed (exit ", rc, "):\n",
           out);

  TorchResult r;
  r.y = npy_read((dir / "y.npy").string());
  for (size_t i = 0; i < call.inputs.size(); ++i) {
    fs::path p = dir / ("dx" + std::to_string(i) + ".npy");
    r.dx.push_back(fs::exists(p) ? npy_read(p.string()) : Tensor());
  }
  for (size_t i = 0; i < call.params.size(); ++i) {
    fs::path p = dir / ("dp" + std::to_string(i) + ".npy");
    r.dparams.push_back(fs::exists(p) ? npy_read(p.string()) : Tensor());
  }
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.rfind("so_", 0) == 0) r.state[name.substr(3, name.size() - 7)] = npy_read(e.path().string());
  }
  return r;
}

std::string run_python_script(const std::string& script, const std::vector<std::string>& args) {
  CS_CHECK(torch_available(), "run_python_script: ", kPython, " cannot import torch (install python3-torch)");
  auto quote = [](const std::string& a) {  // single-quoted for sh: ' becomes '\''
    std::string q = "'";
    for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  std::string cmd = std::string(kPython) + " " + quote(std::string(CLIMSEG_SOURCE_DIR) + "/" + script);
  for (const std::string& a : args) cmd += " " + quote(a);
  std::string out;
  const int rc = run_command(cmd, out);
  CS_CHECK(rc == 0, script, " failed (exit ", rc, "):\n", out);
  return out;
}

}  // namespace climseg::test
