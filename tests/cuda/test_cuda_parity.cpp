// CUDA vs CPU parity of the layers with CUDA paths (relu, add, conv1x1 with and without bias, concat): outputs,
// input gradients and parameter gradients, in fp32, fp16 and bf16, with contiguous and channel-slice (strided)
// views, overwrite and accumulate modes, and gradients that are not wanted. The reference is the CPU path in fp32
// on the same values the device sees (inputs rounded to the tested dtype first). Tolerances:
// tests/util/tolerances.h.
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
#include "tests/util/device_operand.h"
#include "tests/util/tolerances.h"

using namespace climseg;
using climseg::test::Tolerance;
using test::DevOperand;
using test::random_host;
using test::require_outside_untouched;
using test::rounded;
using test::to_device;
namespace tol = climseg::test::tol;

namespace {

enum class Kind { eltwise, gemm };

const Tolerance& tolerance(DType dt, Kind k) {
  switch (dt) {
    case DType::f32:
      return k == Kind::eltwise ? tol::cuda_f32_exact : tol::cuda_f32_gemm;
    case DType::f16:
      return k == Kind::eltwise ? tol::cuda_f16_eltwise : tol::cuda_f16_gemm;
    case DType::bf16:
      return k == Kind::eltwise ? tol::cuda_bf16_eltwise : tol::cuda_bf16_gemm;
    default:
      CS_THROW("no CUDA tolerance for ", dtype_name(dt));
  }
}

struct Variant {
  DType dt;
  bool strided;
  GradMode mode;
  bool drop_dx0;  // dx[0] undefined: gradient not wanted
};

std::string describe(const Variant& v) {
  return std::string(dtype_name(v.dt)) + (v.strided ? " strided" : " contiguous") +
         (v.mode == GradMode::accumulate ? " accumulate" : " overwrite") + (v.drop_dx0 ? " dx0-unwanted" : "");
}

// Runs layer forward and backward on the CPU (fp32, contiguous) and on CUDA (v.dt, v.strided) and compares.
void check_parity(ExecContext& cpu, ExecContext& gpu, Layer& layer, const std::vector<Shape>& in, Kind kind,
                  const Variant& v) {
  INFO(layer.type() << " " << describe(v));
  const Tolerance& t = tolerance(v.dt, kind);
  INFO("tolerance row: " << t.name);
  uint64_t seed = 1000;
  const size_t nin = in.size();

  // ---- operands (rounded to dt) ----
  std::vector<Tensor> x_ref;
  for (size_t i = 0; i < nin; ++i) x_ref.push_back(rounded(random_host(in[i], seed++, 1.0), v.dt));
  const Shape out = layer.output_shape(in);
  const std::vector<ParamSpec> specs = layer.param_specs(in);
  std::vector<Tensor> p_ref, p_dev;
  for (const ParamSpec& s : specs) {
    double scale = s.name == "bias" ? 0.5 : std::sqrt(6.0 / static_cast<double>(s.fan_in));  // He variance
    p_ref.push_back(rounded(random_host(s.shape, seed++, scale), v.dt));
    p_dev.push_back(p_ref.back().cast(v.dt).to(Device::cuda));
  }

  // ---- forward ----
  ForwardArgs fc;
  fc.x = x_ref;
  fc.y = Tensor::empty(out, DType::f32, Device::cpu);
  fc.params = p_ref;
  layer.forward(cpu, fc);

  std::vector<DevOperand> xd;
  for (size_t i = 0; i < nin; ++i) xd.push_back(to_device(x_ref[i], v.dt, v.strided, seed++));
  const uint64_t yseed = seed++;
  DevOperand yd = to_device(random_host(out, yseed, 4.0), v.dt, v.strided, seed++);  // garbage to overwrite
  ForwardArgs fg;
  for (const DevOperand& d : xd) fg.x.push_back(d.view);
  fg.y = yd.view;
  fg.params = p_dev;
  layer.forward(gpu, fg);
  gpu.synchronize();
  {
    INFO("forward output");
    CS_REQUIRE_CLOSE(yd.view, fc.y, t.atol, t.rtol);
  }
  require_outside_untouched(yd, "y");
  for (size_t i = 0; i < nin; ++i) {
    INFO("input " << i << " is read only");
    CS_REQUIRE_CLOSE(xd[i].view, x_ref[i], 0.0, 0.0);
    require_outside_untouched(xd[i], "x");
  }

  // ---- backward ----
  const double gscale = 1.0 / std::sqrt(static_cast<double>(out.pixels()));  // keeps sums over pixels O(1)
  Tensor dy_ref = rounded(random_host(out, seed++, gscale), v.dt);
  DevOperand dyd = to_device(dy_ref, v.dt, v.strided, seed++);
  BackwardArgs bc, bg;
  bc.x = x_ref;
  bc.y = fc.y;
  bc.dy = dy_ref;
  bg.x = fg.x;
  bg.y = yd.view;
  bg.dy = dyd.view;
  std::vector<DevOperand> dxd(nin);
  for (size_t i = 0; i < nin; ++i) {
    // Mixed modes across inputs: even inputs take v.mode, odd ones the other.
    GradMode m = (i % 2 == 0) == (v.mode == GradMode::accumulate) ? GradMode::accumulate : GradMode::overwrite;
    bc.dx_mode.push_back(m);
    bg.dx_mode.push_back(m);
    if (i == 0 && v.drop_dx0) {
      bc.dx.emplace_back();
      bg.dx.emplace_back();
      continue;
    }
    // Prior contents: accumulate adds to them, overwrite must ignore them.
    Tensor init = rounded(random_host(in[i], seed++, 0.5), v.dt);
    bc.dx.push_back(init.clone());
    dxd[i] = to_device(init, v.dt, v.strided, seed++);
    bg.dx.push_back(dxd[i].view);
  }
  bc.params = p_ref;
  bg.params = p_dev;
  bc.param_mode = bg.param_mode = v.mode;
  for (size_t j = 0; j < specs.size(); ++j) {
    Tensor init = rounded(random_host(specs[j].shape, seed++, 0.5), v.dt);
    bc.grads.push_back(init.clone());
    bg.grads.push_back(init.cast(v.dt).to(Device::cuda));
  }
  layer.backward(cpu, bc);
  layer.backward(gpu, bg);
  gpu.synchronize();
  for (size_t i = 0; i < nin; ++i) {
    if (!bc.dx[i].defined()) continue;
    INFO("input gradient " << i << (bc.dx_mode[i] == GradMode::accumulate ? " (accumulate)" : " (overwrite)"));
    CS_REQUIRE_CLOSE(bg.dx[i], bc.dx[i], t.atol, t.rtol);
    require_outside_untouched(dxd[i], "dx");
  }
  for (size_t j = 0; j < specs.size(); ++j) {
    INFO("parameter gradient " << specs[j].name);
    CS_REQUIRE_CLOSE(bg.grads[j], bc.grads[j], t.atol, t.rtol);
  }
  {
    INFO("dy is read only");
    CS_REQUIRE_CLOSE(dyd.view, dy_ref, 0.0, 0.0);
    require_outside_untouched(dyd, "dy");
  }
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
  for (const Variant& v : variants()) check_parity(cpu, gpu, layer, {s}, Kind::eltwise, v);
}

TEST_CASE("add: CUDA matches the CPU path", "[cuda][parity][add]") {
  const int64_t C = GENERATE(3, 64, 256);
  const Shape s = C == 3 ? Shape{N, 7, 5, 3} : Shape{N, H, W, C};
  ExecContext cpu, gpu(Device::cuda, 0);
  Add layer;
  for (const Variant& v : variants()) check_parity(cpu, gpu, layer, {s, s}, Kind::eltwise, v);
}

TEST_CASE("concat: CUDA matches the CPU path", "[cuda][parity][concat]") {
  using Channels = std::vector<int64_t>;
  const Channels cs = GENERATE(Channels{3, 5}, Channels{16, 48}, Channels{48, 256, 16}, Channels{256, 48});
  std::vector<Shape> in;
  for (int64_t c : cs) in.push_back(cs[0] == 3 ? Shape{N, 7, 5, c} : Shape{N, H, W, c});
  ExecContext cpu, gpu(Device::cuda, 0);
  Concat layer;
  for (const Variant& v : variants()) check_parity(cpu, gpu, layer, in, Kind::eltwise, v);
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
  for (const Variant& v : variants()) check_parity(cpu, gpu, layer, {s}, Kind::eltwise, v);
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
  for (const Variant& v : variants()) check_parity(cpu, gpu, layer, {s}, Kind::gemm, v);
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
