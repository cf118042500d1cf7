// Weights exchanged with PyTorch through safetensors files, both ways (tests/torch/weights_check.py, whose TinyNet
// is the twin of tests/util/weights_net.h):
// - export_pytorch, then PyTorch's load_state_dict(strict=True) and forward: the same outputs as ours;
// - PyTorch writes a random state_dict, import_pytorch reads it: the same outputs, and exporting again gives back
//   PyTorch's values bit for bit.
// Both nets run in inference mode, so the batch-norm running statistics take part.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>

#include "engine/safetensors.h"
#include "engine/weights.h"
#include "tests/util/compare.h"
#include "tests/util/npy.h"
#include "tests/util/tolerances.h"
#include "tests/util/torch_oracle.h"
#include "tests/util/weights_net.h"

using namespace climseg;
using namespace climseg::test;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path dir;
  TempDir() {
    char t[] = "/tmp/climseg-torch-weights-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    dir = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

// The tiny net in fp32 for inference, and an input U(-1, 1).
Tensor forward(Net& net, const Tensor& x) {
  ExecContext ctx;
  net.input_tensor(0).copy_from(x);
  net.forward(ctx);
  return net.output().clone();
}

Tensor random_input(const Shape& s) {
  Tensor x = Tensor::empty(s, DType::f32, Device::cpu);
  for (int64_t i = 0; i < x.numel(); ++i) x.set_flat(i, 2.0 * philox_uniform(17, 0, i) - 1.0);
  return x;
}

}  // namespace

TEST_CASE("export_pytorch: PyTorch loads the file strictly and computes our outputs", "[torch][weights]") {
  TempDir tmp;
  Net net;
  build_tiny_net(net);
  net.compile({.device = Device::cpu, .dtype = DType::f32, .training = false});
  randomize_weights(net, 21);
  const std::string w = tmp / "tiny.pt.safetensors";
  export_pytorch(net, w, {{"model", "tiny"}});
  const Tensor x = random_input(net.input_tensor(0).shape());
  npy_write(tmp / "x.npy", x);
  run_python_script("tests/torch/weights_check.py", {"load", w, tmp / "x.npy", tmp / "y.npy"});
  const Tensor y_torch = npy_read(tmp / "y.npy");
  const Tensor y = forward(net, x);
  REQUIRE(y_torch.shape() == y.shape());
  const auto& t = tol::torch_f32_net;
  CS_REQUIRE_CLOSE(y, y_torch, t.atol, t.rtol);
}

TEST_CASE("import_pytorch: a state_dict written by PyTorch gives PyTorch's outputs", "[torch][weights]") {
  TempDir tmp;
  Net net;
  build_tiny_net(net);
  net.compile({.device = Device::cpu, .dtype = DType::f32, .training = false});
  net.init_params(5);
  const Tensor x = random_input(net.input_tensor(0).shape());
  npy_write(tmp / "x.npy", x);
  const std::string w = tmp / "from_torch.safetensors";
  run_python_script("tests/torch/weights_check.py", {"save", w, tmp / "x.npy", tmp / "y.npy"});
  import_pytorch(net, w);
  const Tensor y_torch = npy_read(tmp / "y.npy");
  const Tensor y = forward(net, x);
  REQUIRE(y_torch.shape() == y.shape());
  const auto& t = tol::torch_f32_net;
  CS_REQUIRE_CLOSE(y, y_torch, t.atol, t.rtol);

  // Exporting what was imported gives back PyTorch's tensors bit for bit (num_batches_tracked aside: PyTorch wrote
  // 7, climseg writes 0).
  const std::string again = tmp / "again.safetensors";
  export_pytorch(net, again);
  SafetensorsReader a(w), b(again);
  REQUIRE(a.entries().size() == b.entries().size());
  for (const auto& e : a.entries()) {
    INFO(e.name);
    const auto* f = b.find(e.name);
    REQUIRE(f != nullptr);
    REQUIRE(f->shape == e.shape);
    REQUIRE(f->dtype == e.dtype);
    if (e.name.ends_with("num_batches_tracked")) continue;
    const Tensor ta = a.read(e), tb = b.read(*f);
    REQUIRE(std::memcmp(ta.data(), tb.data(), ta.nbytes()) == 0);
  }
}
