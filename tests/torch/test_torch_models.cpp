// A DeepLabv3+ exported by climseg (export_pytorch) loads into an independent PyTorch definition of the same
// network (tests/torch/models/deeplabv3plus.py) with load_state_dict(strict=True) and gives the same logits.
//
// Both sides compute in float64 on the same fp32-representable weights and input, so the comparison can use the
// PyTorch fp64 row instead of an fp32 budget: any difference in structure, padding, concatenation order or layout
// mapping shows up as an O(1) error, far above it.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "engine/net.h"
#include "engine/philox.h"
#include "engine/weights.h"
#include "models/model.h"
#include "tests/util/compare.h"
#include "tests/util/npy.h"
#include "tests/util/tolerances.h"

using namespace climseg;
namespace fs = std::filesystem;

namespace {

int run(const std::string& cmd, std::string& out) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Rounds every value of a host tensor to fp32 (what an fp32 export keeps).
void round_to_f32(const Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, static_cast<double>(static_cast<float>(t.get_flat(i))));
}

}  // namespace

TEST_CASE("an exported DeepLabv3+ gives PyTorch's logits", "[torch][models]") {
  for (bool train : {false, true}) {
    INFO("batch-norm " << (train ? "batch statistics (training forward)" : "running statistics (inference)"));
    ModelConfig m = ModelConfig::defaults("deeplabv3plus");
    m.width = 1.0 / 16;
    Net net;
    ModelGraph g = build_model(net, m, 2, 32, 48);
    net.compile(NetOptions{.device = Device::cpu, .dtype = DType::f64, .training = train});
    net.init_params(17);
    // Non-trivial values everywhere: batch-norm gamma/beta and running statistics away from their 1/0 defaults.
    for (const Net::Param& p : net.params())
      if (p.spec.layout == ParamLayout::vector)
        for (int64_t i = 0; i < p.value.numel(); ++i)
          p.value.set_flat(i, p.value.get_flat(i) + 0.2 * (philox_uniform(5, 1, p.offset + i) - 0.5));
    for (const Net::Param& s : net.state()) {
      const bool var = s.name.size() > 4 && s.name.compare(s.name.size() - 4, 4, "_var") == 0;
      for (int64_t i = 0; i < s.value.numel(); ++i)
        s.value.set_flat(i, var ? 0.5 + philox_uniform(5, 2, s.offset + i) : philox_uniform(5, 3, s.offset + i) - 0.5);
    }
    round_to_f32(net.param_buffer());
    if (net.state_buffer().defined()) round_to_f32(net.state_buffer());
    Tensor x = net.input_tensor(g.input);
    for (int64_t i = 0; i < x.numel(); ++i) x.set_flat(i, static_cast<float>(philox_uniform(7, 1, i)));
    ExecContext ctx;
    net.set_step(0);
    // Export before the forward: a training forward moves the running statistics.
    const fs::path dir = fs::temp_directory_path() / ("climseg_torch_models_" + std::to_string(getpid()));
    fs::create_directories(dir);
    export_pytorch(net, (dir / "weights.safetensors").string());
    net.forward(ctx);
    Tensor ours = net.output().clone();

    test::npy_write((dir / "x.npy").string(), x.cast(DType::f32));
    {
      std::ofstream f(dir / "call.json");
      f << "{\"model\": \"deeplabv3plus\", \"width\": " << m.width
        << ", \"norm\": \"batchnorm\", \"train\": " << (train ? "true" : "false") << "}\n";
    }
    std::string out;
    const int rc = run(
        std::string("/usr/bin/python3 ") + CLIMSEG_SOURCE_DIR + "/tests/torch/models/run_exported.py " + dir.string(),
        out);
    INFO(out);
    REQUIRE(rc == 0);
    Tensor theirs = test::npy_read((dir / "y.npy").string());
    REQUIRE(theirs.shape() == ours.shape());
    // Logits are O(1): the PyTorch fp64 row's relative budget applies per element, floored by its atol.
    CS_REQUIRE_CLOSE(ours, theirs, test::tol::torch_f64_network.atol, test::tol::torch_f64_network.rtol);
    fs::remove_all(dir);
  }
}
