// `climseg predict` end to end: samples written by h5py, weights saved by climseg (native, with the model in the
// metadata, and as a PyTorch export), the command run as a user runs it; its logits must equal an in-process
// forward of the same network on the same normalised data, its mask their argmax, and its PNG a picture of the
// field's size. Bad input fails with a clear message and leaves no output file.
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/net.h"
#include "engine/philox.h"
#include "engine/weights.h"
#include "io/hdf5_sample.h"
#include "models/model.h"
#include "tests/util/npy.h"
#include "tests/util/python.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
namespace fs = std::filesystem;

namespace {

const std::string kScript = std::string(CLIMSEG_SOURCE_DIR) + "/tests/py/h5py_interop.py";

int cli(const std::string& args, std::string& out) {
  out.clear();
  return test::run_command(std::string(CLIMSEG_CLI) + " " + args, out);
}

// Width and height of a PNG from its IHDR chunk (bytes 16..23, big-endian).
std::pair<uint32_t, uint32_t> png_size(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  unsigned char b[24] = {0};
  f.read(reinterpret_cast<char*>(b), 24);
  REQUIRE(f.gcount() == 24);
  REQUIRE(std::memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0);
  auto be = [&](int o) {
    return (uint32_t(b[o]) << 24) | (uint32_t(b[o + 1]) << 16) | (uint32_t(b[o + 2]) << 8) | b[o + 3];
  };
  return {be(16), be(20)};
}

}  // namespace

TEST_CASE("climseg predict: logits equal an in-process forward, mask their argmax, PNG written", "[py][predict]") {
  test::TempDir t;
  const int64_t H = 64, W = 96;
  for (const char* d : {"a", "b"}) {
    fs::create_directories(t.path() / d);
    test::python_run(kScript + " write-sample " + t.file(d) + " deepcam " + std::to_string(H) + " " +
                     std::to_string(W) + " float32 uint8 " + (std::string(d) == "a" ? "1" : "2"));
  }
  test::python_run(kScript + " write-stats " + t.file("stats.h5") + " -300 300");

  // A small DeepCAM whose batch-norm running statistics are those of the data (one training forward with momentum
  // 1 sets them to the batch statistics), so activations stay O(1) through the depth as in a trained network.
  ModelConfig m = ModelConfig::defaults("deepcam");
  m.width = 1.0 / 16;
  const io::Stats stats = io::read_stats(t.file("stats.h5"));
  auto load_inputs = [&](Net& net, Net::Id input) {
    Tensor x = net.input_tensor(input);
    for (int n = 0; n < 2; ++n) {
      io::Sample s = io::read_sample(t.file(n == 0 ? "a/sample.h5" : "b/sample.h5"));
      io::normalize(s.data, stats);
      std::memcpy(static_cast<char*>(x.data()) + n * s.data.numel() * 4, s.data.data(), s.data.numel() * 4);
    }
  };
  ExecContext ctx;
  {
    ModelConfig mt = m;
    mt.bn_momentum = 1.0;
    Net train;
    ModelGraph gt = build_model(train, mt, 2, H, W);
    train.compile(NetOptions{.device = Device::cpu, .dtype = DType::f32, .training = true});
    train.init_params(3);
    load_inputs(train, gt.input);
    train.forward(ctx);
    save_weights(train, t.file("w.safetensors"), model_metadata(m));
    export_pytorch(train, t.file("pt.safetensors"));
  }
  // The same forward in process.
  Net net;
  ModelGraph g = build_model(net, m, 2, H, W);
  net.compile(NetOptions{.device = Device::cpu, .dtype = DType::f32, .training = false});
  load_weights(net, t.file("w.safetensors"));
  REQUIRE(net.fold_batchnorm() > 0);  // as predict does by default (docs/inference.md)
  load_inputs(net, g.input);
  net.forward(ctx);
  Tensor ref = net.output().clone();
  double big = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) big = std::max(big, std::fabs(ref.get_flat(i)));
  INFO("largest logit " << big);
  REQUIRE(big < 100);  // a sane network, so the comparisons below mean something

  std::string out;
  const std::string inputs = " --input " + t.file("a/sample.h5") + " " + t.file("b/sample.h5");
  SECTION("native weights: the model comes from the file's metadata") {
    int rc = cli("predict --weights " + t.file("w.safetensors") + inputs + " --batch 2 --output " + t.file("p.h5") +
                     " --png " + t.file("p.png") + " --png-sample 1 --png-channel TMQ",
                 out);
    INFO(out);
    REQUIRE(rc == 0);
    CHECK_THAT(out, Catch::Contains("model from") && Catch::Contains("deepcam"));
    CHECK_THAT(out, Catch::Contains("IoU against the file's labels"));
    fs::create_directories(t.path() / "dump");
    test::python_run(kScript + " dump-prediction " + t.file("p.h5") + " " + t.file("dump"));
    Tensor logits = test::npy_read(t.file("dump/logits.npy"));
    Tensor mask = test::npy_read(t.file("dump/mask.npy"));
    REQUIRE(logits.shape() == (Shape{2, H, W, 3}));
    // The same code on the same data in the same order: bit-identical.
    for (int64_t i = 0; i < ref.numel(); ++i) REQUIRE(logits.get_flat(i) == ref.get_flat(i));
    for (int64_t p = 0; p < 2 * H * W; ++p) {
      int best = 0;
      for (int k = 1; k < 3; ++k)
        if (ref.get_flat(p * 3 + k) > ref.get_flat(p * 3 + best)) best = k;
      REQUIRE(mask.get_flat(p) == best);
    }
    CHECK(png_size(t.file("p.png")) == std::pair<uint32_t, uint32_t>(W, H));
  }
  SECTION("PyTorch export: the model from the options") {
    int rc = cli("predict --model deepcam --width-multiplier 0.0625 --weights " + t.file("pt.safetensors") + inputs +
                     " --output " + t.file("q.h5"),
                 out);
    INFO(out);
    REQUIRE(rc == 0);
    CHECK_THAT(out, Catch::Contains("PyTorch names"));
    fs::create_directories(t.path() / "dump2");
    test::python_run(kScript + " dump-prediction " + t.file("q.h5") + " " + t.file("dump2"));
    Tensor logits = test::npy_read(t.file("dump2/logits.npy"));
    REQUIRE(logits.shape() == (Shape{2, H, W, 3}));
    // Batch 1 here (the default) against batch 2 in process: inference batch norm is per sample, but GEMM
    // blocking may differ with the batch, so compare within fp32 rounding of the convolution sums.
    double worst = 0;
    for (int64_t i = 0; i < ref.numel(); ++i)
      worst = std::max(worst, std::fabs(logits.get_flat(i) - ref.get_flat(i)) / (1.0 + std::fabs(ref.get_flat(i))));
    CHECK(worst <= 1e-4);  // the cpu fp32 vs fp64 row's rtol; typically 0 or a few ulps
  }
  SECTION("weights of another network: a clear error and no output file") {
    int rc = cli(
        "predict --model deeplabv3plus --weights " + t.file("w.safetensors") + inputs + " --output " + t.file("bad.h5"),
        out);
    INFO(out);
    CHECK(rc != 0);
    CHECK_THAT(out, Catch::Contains("w.safetensors") && Catch::Contains("missing"));
    CHECK_FALSE(fs::exists(t.file("bad.h5")));
  }
  SECTION("an input size the model cannot take, and a missing stats file") {
    fs::create_directories(t.path() / "c");
    test::python_run(kScript + " write-sample " + t.file("c") + " deepcam 48 72 float32 uint8 3");
    int rc = cli("predict --weights " + t.file("w.safetensors") + " --input " + t.file("c/sample.h5") + " --output " +
                     t.file("c.h5"),
                 out);
    CHECK(rc != 0);
    CHECK_THAT(out, Catch::Contains("width 72 is not divisible by 16"));
    CHECK_FALSE(fs::exists(t.file("c.h5")));
    test::TempDir lonely;
    fs::copy_file(t.file("a/sample.h5"), lonely.file("s.h5"));
    rc = cli("predict --weights " + t.file("w.safetensors") + " --input " + lonely.file("s.h5") + " --output " +
                 lonely.file("o.h5"),
             out);
    CHECK(rc != 0);
    CHECK_THAT(out, Catch::Contains("no stats.h5 found") && Catch::Contains("--stats"));
  }
}
