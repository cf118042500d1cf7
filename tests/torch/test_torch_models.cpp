// DeepLabv3+ and DeepCAM exported by climseg (export_pytorch) load into independent PyTorch definitions of the same
// networks (tests/torch/models/: the 2018 DeepLabv3+ with climseg's module paths, DeepCAM with the MLPerf
// reference's) with load_state_dict(strict=True) and give the same logits; the export imports back
// (import_pytorch) into an inference net.
//
// Both sides compute in float64 on the same fp32-representable weights and input, so the comparison can use the
// PyTorch fp64 row instead of an fp32 budget: any difference in structure, padding, concatenation order or layout
// mapping shows up as an O(1) error, far above it.

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
#include "tests/util/python.h"
#include "tests/util/tolerances.h"

using namespace climseg;
namespace fs = std::filesystem;

namespace {

// Rounds every value of a host tensor to fp32 (what an fp32 export keeps).
void round_to_f32(const Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, static_cast<double>(static_cast<float>(t.get_flat(i))));
}

}  // namespace

TEST_CASE("exported DeepLabv3+ and DeepCAM give PyTorch's logits; the export imports back", "[torch][models]") {
  for (const std::string name : {"deeplabv3plus", "deepcam"}) {
    INFO(name);
    ModelConfig m = ModelConfig::defaults(name);
    m.width = 1.0 / 16;
    const fs::path dir = fs::temp_directory_path() / ("climseg_torch_models_" + std::to_string(getpid()));
    fs::create_directories(dir);
    const std::string weights = (dir / "weights.safetensors").string();

    // Training forward (batch statistics). Momentum 1 makes the running statistics those of this batch, so the
    // inference run below normalises realistically (random running statistics blow a deep net up).
    ModelConfig mt = m;
    mt.bn_momentum = 1.0;
    Net train;
    ModelGraph gt = build_model(train, mt, 2, 32, 48);
    train.compile(NetOptions{.device = Device::cpu, .dtype = DType::f64, .training = true});
    train.init_params(17);
    // Batch-norm gamma/beta and the affine away from their 1/0 defaults.
    for (const Net::Param& p : train.params())
      if (p.spec.layout == ParamLayout::vector || p.spec.layout == ParamLayout::vector_c11)
        for (int64_t i = 0; i < p.value.numel(); ++i)
          p.value.set_flat(i, p.value.get_flat(i) + 0.2 * (philox_uniform(5, 1, p.offset + i) - 0.5));
    round_to_f32(train.param_buffer());
    Tensor x = train.input_tensor(gt.input);
    for (int64_t i = 0; i < x.numel(); ++i) x.set_flat(i, static_cast<float>(philox_uniform(7, 1, i)));
    ExecContext ctx;
    train.forward(ctx);
    Tensor ours_train = train.output().clone();
    if (train.state_buffer().defined()) round_to_f32(train.state_buffer());
    export_pytorch(train, weights);

    // Inference with the running statistics, in a net that imports the export.
    Net infer;
    ModelGraph gi = build_model(infer, m, 2, 32, 48);
    infer.compile(NetOptions{.device = Device::cpu, .dtype = DType::f64, .training = false});
    import_pytorch(infer, weights);
    infer.input_tensor(gi.input).copy_from(x);
    infer.forward(ctx);
    Tensor ours_eval = infer.output().clone();

    test::npy_write((dir / "x.npy").string(), x.cast(DType::f32));
    for (bool mode_train : {false, true}) {
      INFO("batch norm with " << (mode_train ? "batch statistics (training forward)" : "running statistics"));
      {
        std::ofstream f(dir / "call.json");
        f << "{\"model\": \"" << name << "\", \"width\": " << m.width
          << ", \"norm\": \"batchnorm\", \"train\": " << (mode_train ? "true" : "false") << "}\n";
      }
      std::string out;
      const int rc = test::run_command(
          std::string("/usr/bin/python3 ") + CLIMSEG_SOURCE_DIR + "/tests/torch/models/run_exported.py " + dir.string(),
          out);
      INFO(out);
      REQUIRE(rc == 0);
      Tensor theirs = test::npy_read((dir / "y.npy").string());
      const Tensor& ours = mode_train ? ours_train : ours_eval;
      REQUIRE(theirs.shape() == ours.shape());
      CS_REQUIRE_CLOSE(ours, theirs, test::tol::torch_f64_network.atol, test::tol::torch_f64_network.rtol);
    }
    fs::remove_all(dir);
  }
}
