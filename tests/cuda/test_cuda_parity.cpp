// CUDA vs CPU parity of the layers with CUDA paths (relu, add, conv1x1 with and without bias, concat): outputs,
// input gradients and parameter gradients, in fp32, fp16 and bf16, with contiguous and channel-slice (strided)
// views, overwrite and accumulate modes, and gradients that are not wanted. The reference is the CPU path in fp32
// on the same values the device sees (inputs rounded to the tested dtype first), compared by the shared harness
// tests/util/cuda_parity.h. Tolerances: tests/util/tolerances.h.
// Shapes are the real networks' (DeepLabv3+ ASPP/decoder, Tiramisu dense blocks), scaled down to N=2, 24x36.
//
// Needs a CUDA device: tests/util/cuda_main.cpp exits 77 (skipped) without one. Uses engine APIs only.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/layer.h"
#include "engine/philox.h"
#include "engine/tensor.h"
#include "layers/add.h"
#include "layers/concat.h"
#include "layers/pointwise_conv.h"
#include "layers/relu.h"
#include "layers/slice.h"
#include "tests/util/compare.h"
#include "tests/util/cuda_parity.h"
#include "tests/util/device_operand.h"

using namespace climseg;
using test::CudaKind;
using test::random_host;
using test::Variant;

namespace {

// tests/util/cuda_parity.h with inputs U(-1, 1) and He-scaled weights; the layers take ctx.workspace().
void check_parity(ExecContext& cpu, ExecContext& gpu, Layer& layer, const std::vector<Shape>& in, CudaKind kind,
                  const Variant& v) {
  test::ParityOptions o;
  o.data = o.params = kind;
  o.seed = 1000;
  test::check_parity(cpu, gpu, layer, in, o, v);
}

std::vector<Variant> variants() {
  std::vector<Variant> vs;
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (bool strided : {false, true})
      for (GradMode m : {GradMode::overwrite, GradMode::accumulate}) vs.push_back({dt, strided, m, false});
    vs.push_back({dt, true, GradMode::overwrite, true});  // dx[0] not wanted
  }
  return vs;
}

constexpr int64_t N = 2, H = 24, W = 36;

}  // namespace

TEST_CASE("relu: CUDA matches the CPU path", "[cuda][parity][relu]") {
  const int64_t C = GENERATE(3, 48, 304);
  const Shape s = C == 3 ? Shape{N, 7, 5, 3} : Shape{N, H, W, C};
  ExecContext cpu, gpu(Device::cuda, 0);
  Relu layer;
  for (const Variant& v : variants()) check_parity(cpu, gpu, layer, {s}, CudaKind::eltwise, v);
}

TEST_CASE("add: CUDA matches the CPU path", "[cuda][parity][add]") {
  const int64_t C = GENERATE(3, 64, 256);
  const Shape s = C == 3 ? Shape{N, 7, 5, 3} : Shape{N, H, W, C};
  ExecContext cpu, gpu(Device::cuda, 0);
  Add layer;
  for (const Variant& v : variants()) check_parity(cpu, gpu, layer, {s, s}, CudaKind::eltwise, v);
}

TEST_CASE("concat: CUDA matches the CPU path", "[cuda][parity][concat]") {
  using Channels = std::vector<int64_t>;
  const Channels cs = GENERATE(Channels{3, 5}, Channels{16, 48}, Channels{48, 256, 16}, Channels{256, 48});
  std::vector<Shape> in;
  for (int64_t c : cs) in.push_back(cs[0] == 3 ? Shape{N, 7, 5, c} : Shape{N, H, W, c});
  ExecContext cpu, gpu(Device::cuda, 0);
  Concat layer;
  for (const Variant& v : variants()) check_parity(cpu, gpu, layer, in, CudaKind::eltwise, v);
}

TEST_CASE("slice: CUDA matches the CPU path", "[cuda][parity][slice]") {
  // Standalone (no Net), so forward copies the channel range and backward writes dy into it, zeroing the channels
  // outside it in overwrite mode and leaving them in accumulate mode.
  struct SliceCase {
    int64_t c, offset, channels;
  };
  const SliceCase sc =
      GENERATE(SliceCase{5, 1, 3}, SliceCase{64, 0, 32}, SliceCase{304, 48, 256}, SliceCase{96, 64, 32});
  const Shape s = sc.c == 5 ? Shape{N, 7, 5, 5} : Shape{N, H, W, sc.c};
  ExecContext cpu, gpu(Device::cuda, 0);
  ChannelSlice layer(sc.offset, sc.channels);
  for (const Variant& v : variants()) check_parity(cpu, gpu, layer, {s}, CudaKind::eltwise, v);
}

TEST_CASE("conv1x1: CUDA matches the CPU path", "[cuda][parity][conv1x1]") {
  struct ConvCase {
    int64_t c, k;
    bool bias;
  };
  // DeepLabv3+: ASPP 1x1 (256 -> 256), decoder low-level projection (256 -> 48), head (304 -> 256 with the 48
  // concatenated channels; 256 -> classes=3). Tiramisu: transition/bottleneck 1x1 (48 -> 48, 64 -> 256, 16 -> 48).
  const ConvCase cc =
      GENERATE(ConvCase{3, 3, true}, ConvCase{16, 48, true}, ConvCase{48, 48, false}, ConvCase{64, 256, false},
               ConvCase{256, 3, true}, ConvCase{256, 48, true}, ConvCase{304, 256, true}, ConvCase{304, 256, false});
  const Shape s = cc.c == 3 ? Shape{N, 7, 5, 3} : Shape{N, H, W, cc.c};
  INFO("C=" << cc.c << " K=" << cc.k << (cc.bias ? " bias" : " no bias"));
  ExecContext cpu, gpu(Device::cuda, 0);
  PointwiseConv layer(cc.k, cc.bias);
  for (const Variant& v : variants()) check_parity(cpu, gpu, layer, {s}, CudaKind::reduction, v);
}

// ---- in-place and zero-copy cases: the aliasing the Net sets up -----------------------------------------------

TEST_CASE("relu runs in place on CUDA (y = x, dx = dy)", "[cuda][parity][relu]") {
  ExecContext gpu(Device::cuda, 0);
  const Shape s{N, H, W, 48};
  Tensor x = random_host(s, 1, 1.0);
  Tensor ref = Tensor::empty(s, DType::f32);
  for (int64_t i = 0; i < x.numel(); ++i) ref.set_flat(i, std::max(0.0, x.get_flat(i)));
  Tensor buf = x.to(Device::cuda);
  Relu layer;
  ForwardArgs f;
  f.x = {buf};
  f.y = buf;
  layer.forward(gpu, f);
  Tensor dy = random_host(s, 2, 1.0);
  Tensor dref = Tensor::empty(s, DType::f32);
  for (int64_t i = 0; i < dy.numel(); ++i) dref.set_flat(i, ref.get_flat(i) > 0 ? dy.get_flat(i) : 0.0);
  Tensor gbuf = dy.to(Device::cuda);
  BackwardArgs b;
  b.x = {Tensor()};
  b.dx = {gbuf};
  b.dx_mode = {GradMode::overwrite};
  b.y = buf;
  b.dy = gbuf;
  layer.backward(gpu, b);
  gpu.synchronize();
  CS_REQUIRE_CLOSE(buf, ref, 0.0, 0.0);
  CS_REQUIRE_CLOSE(gbuf, dref, 0.0, 0.0);
}

TEST_CASE("add backward on CUDA with dx0 sharing dy's memory (in place) leaves dy intact for dx1",
          "[cuda][parity][add]") {
  ExecContext gpu(Device::cuda, 0);
  const Shape s{N, H, W, 64};
  Tensor dy = random_host(s, 3, 1.0);
  Tensor dyd = dy.to(Device::cuda);
  Tensor dx1 = Tensor::zeros(s, DType::f32, Device::cuda, &gpu);
  Add layer;
  BackwardArgs b;
  b.x = {Tensor(), Tensor()};
  b.dy = dyd;
  b.dx = {dyd, dx1};  // dx0 in place of dy
  b.dx_mode = {GradMode::overwrite, GradMode::overwrite};
  layer.backward(gpu, b);
  gpu.synchronize();
  CS_REQUIRE_CLOSE(dx1, dy, 0.0, 0.0);
  CS_REQUIRE_CLOSE(dyd, dy, 0.0, 0.0);
}

TEST_CASE("concat on CUDA copies nothing where inputs are slices of the output", "[cuda][parity][concat]") {
  ExecContext gpu(Device::cuda, 0);
  const Shape ys{N, H, W, 64};
  Tensor host = random_host(ys, 4, 1.0);
  Tensor y = host.to(Device::cuda);
  Tensor a = y.channel_slice(0, 16), b = Tensor::empty(Shape{N, H, W, 48}, DType::f32, Device::cuda);
  Tensor bsrc = random_host(Shape{N, H, W, 48}, 5, 1.0);
  b.copy_from(bsrc);
  Concat layer;
  ForwardArgs f;
  f.x = {a, b};  // a is y's own slice (zero-copy), b is copied
  f.y = y;
  layer.forward(gpu, f);
  gpu.synchronize();
  CS_REQUIRE_CLOSE(y.channel_slice(0, 16), host.channel_slice(0, 16), 0.0, 0.0);
  CS_REQUIRE_CLOSE(y.channel_slice(16, 48), bsrc, 0.0, 0.0);

  // Backward: dx0 is dy's slice (nothing to do in overwrite mode), dx1 a separate tensor.
  Tensor dyh = random_host(ys, 6, 1.0);
  Tensor dy = dyh.to(Device::cuda);
  Tensor dx1 = Tensor::zeros(Shape{N, H, W, 48}, DType::f32, Device::cuda, &gpu);
  BackwardArgs bw;
  bw.x = {a, b};
  bw.dy = dy;
  bw.dx = {dy.channel_slice(0, 16), dx1};
  bw.dx_mode = {GradMode::overwrite, GradMode::overwrite};
  layer.backward(gpu, bw);
  gpu.synchronize();
  CS_REQUIRE_CLOSE(dy, dyh, 0.0, 0.0);
  CS_REQUIRE_CLOSE(dx1, dyh.channel_slice(16, 48), 0.0, 0.0);
}
