// Weights files with nets on CUDA (engine/weights.h): saving from a device net gives the same file as from the
// same net on the CPU, a file loads into a device net bit-exactly, and an fp32 file loads into an fp16 device net
// rounded to nearest even. No forward pass: this checks the host <-> device paths of save and load only.
//
// Needs a CUDA device: tests/util/cuda_main.cpp exits 77 (skipped) without one.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/weights.h"
#include "tests/util/weights_net.h"

using namespace climseg;
using namespace climseg::test;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path dir;
  TempDir() {
    char t[] = "/tmp/climseg-cuda-weights-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    dir = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void compile(Net& net, Device d, DType dt) { net.compile({.device = d, .dtype = dt, .training = false}); }

}  // namespace

TEST_CASE("weights files from and into nets on CUDA", "[cuda][weights]") {
  TempDir tmp;
  Net cpu, gpu;
  build_tiny_net(cpu);
  build_tiny_net(gpu);
  compile(cpu, Device::cpu, DType::f32);
  compile(gpu, Device::cuda, DType::f32);
  randomize_weights(cpu, 31);
  randomize_weights(gpu, 31);  // the same values, written through host -> device copies

  // The same file from either device, in both conventions.
  save_weights(cpu, tmp / "cpu.safetensors");
  save_weights(gpu, tmp / "gpu.safetensors");
  REQUIRE(slurp(tmp / "cpu.safetensors") == slurp(tmp / "gpu.safetensors"));
  export_pytorch(cpu, tmp / "cpu.pt.safetensors");
  export_pytorch(gpu, tmp / "gpu.pt.safetensors");
  REQUIRE(slurp(tmp / "cpu.pt.safetensors") == slurp(tmp / "gpu.pt.safetensors"));

  // Into a fresh device net: bit-exact.
  for (const char* file : {"cpu.safetensors", "cpu.pt.safetensors"}) {
    INFO(file);
    Net g;
    build_tiny_net(g);
    compile(g, Device::cuda, DType::f32);
    g.init_params(9);
    if (std::string(file).find(".pt.") != std::string::npos)
      import_pytorch(g, tmp / file);
    else
      load_weights(g, tmp / file);
    for (const auto& [la, lb] : {std::pair{&cpu.params(), &g.params()}, std::pair{&cpu.state(), &g.state()}})
      for (size_t i = 0; i < la->size(); ++i) {
        INFO((*la)[i].name);
        const Tensor a = (*la)[i].value, b = (*lb)[i].value.to(Device::cpu);
        REQUIRE(std::memcmp(a.data(), b.data(), a.nbytes()) == 0);
      }
  }

  // An fp32 file into an fp16 device net: parameters rounded to fp16, statistics stay fp32.
  Net h;
  build_tiny_net(h);
  compile(h, Device::cuda, DType::f16);
  load_weights(h, tmp / "cpu.safetensors");
  for (size_t i = 0; i < cpu.params().size(); ++i) {
    INFO(cpu.params()[i].name);
    const Tensor a = cpu.params()[i].value, b = h.params()[i].value.to(Device::cpu);
    REQUIRE(b.dtype() == DType::f16);
    for (int64_t j = 0; j < a.numel(); ++j)
      REQUIRE(b.data_as<Half>()[j].bits == float_to_half(a.data_as<float>()[j]).bits);
  }
  for (size_t i = 0; i < cpu.state().size(); ++i) {
    const Tensor a = cpu.state()[i].value, b = h.state()[i].value.to(Device::cpu);
    REQUIRE(b.dtype() == DType::f32);
    REQUIRE(std::memcmp(a.data(), b.data(), a.nbytes()) == 0);
  }
}
