// CUDA vs CPU parity of the pooling and resize layers (max pool, average pool, global average pool, bilinear
// resize in all three coordinate modes): outputs and input gradients in fp32, fp16 and bf16, with contiguous and
// channel-slice (strided) views, overwrite and accumulate modes, unwanted gradients, inputs full of ties (max-pool
// tie breaking must match), and bitwise run-to-run determinism of the gather-form backward passes. The reference
// is the CPU path in fp32 on the values the device sees (inputs rounded to the tested dtype first).
// Tolerances (tests/util/tolerances.h): max pool selects and adds in the CPU's order -> the elementwise rows; the
// average pools and resize use the "GEMM and reductions" rows (they are the CPU's fp32 operations in the CPU's
// order and expected bit-identical, but that is not yet confirmed on a GPU).
// Shapes are the real networks' (ResNet root and shortcut pools, Tiramisu transition down, DeepLabv3+ ASPP
// image-level branch and decoder upsampling), scaled down to N=2, 24x36.
//
// Needs a CUDA device: tests/util/cuda_main.cpp exits 77 (skipped) without one.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/layer.h"
#include "engine/philox.h"
#include "engine/tensor.h"
#include "layers/pool.h"
#include "layers/resize.h"
#include "tests/util/compare.h"
#include "tests/util/device_operand.h"
#include "tests/util/tolerances.h"

using namespace climseg;
using test::DevOperand;
using test::require_outside_untouched;
using test::rounded;
using test::to_device;
using climseg::test::Tolerance;
namespace tol = climseg::test::tol;

namespace {

enum class Kind { select, reduce };

const Tolerance& tolerance(DType dt, Kind k) {
  switch (dt) {
    case DType::f32: return k == Kind::select ? tol::cuda_f32_exact : tol::cuda_f32_gemm;
    case DType::f16: return k == Kind::select ? tol::cuda_f16_eltwise : tol::cuda_f16_gemm;
    case DType::bf16: return k == Kind::select ? tol::cuda_bf16_eltwise : tol::cuda_bf16_gemm;
    default: CS_THROW("no CUDA tolerance for ", dtype_name(dt));
  }
}

// fp32 host tensor, U(-scale, scale) from Philox; with `ties`, values from {-1, -0.5, 0, 0.5, 1} only.
Tensor random_host(Shape s, uint64_t seed, double scale, bool ties = false) {
  Tensor t = Tensor::empty(s, DType::f32, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) {
    double u = 2.0 * philox_uniform(seed, 0, static_cast<uint64_t>(i)) - 1.0;
    t.set_flat(i, ties ? std::round(2.0 * u) / 2.0 : scale * u);
  }
  return t;
}

Tensor bytes(size_t n, Device dev) {
  if (n == 0) return Tensor();
  return Tensor::zeros(Shape{1, 1, 1, static_cast<int64_t>(n)}, DType::u8, dev);
}

struct Variant {
  DType dt;
  bool strided;
  GradMode mode;
  bool drop_dx;
  bool ties;
};

std::string describe(const Variant& v) {
  return std::string(dtype_name(v.dt)) + (v.strided ? " strided" : " contiguous") +
         (v.mode == GradMode::accumulate ? " accumulate" : " overwrite") + (v.drop_dx ? " dx-unwanted" : "") +
         (v.ties ? " ties" : "");
}

std::vector<Variant> variants(bool with_ties) {
  std::vector<Variant> vs;
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (bool strided : {false, true})
      for (GradMode m : {GradMode::overwrite, GradMode::accumulate}) vs.push_back({dt, strided, m, false, false});
    vs.push_back({dt, true, GradMode::overwrite, true, false});
    if (with_ties) vs.push_back({dt, true, GradMode::accumulate, false, true});
  }
  return vs;
}

// Forward and backward on the CPU (fp32, contiguous) and on CUDA (v.dt, v.strided); compares y and dx, checks
// that inputs and dy are read only and nothing outside the slices is written, and that a second CUDA backward
// gives bitwise the same dx (determinism).
void check_parity(ExecContext& cpu, ExecContext& gpu, Layer& layer, Shape in, Kind kind, const Variant& v) {
  INFO(layer.type() << " " << in.str() << " " << describe(v));
  const Tolerance& t = tolerance(v.dt, kind);
  INFO("tolerance row: " << t.name);
  uint64_t seed = 2000;
  const Shape out = layer.output_shape({in});
  const MemoryNeeds mem = layer.memory_needs({in}, v.dt);
  Tensor x_ref = rounded(random_host(in, seed++, 1.0, v.ties), v.dt);

  ForwardArgs fc;
  fc.x = {x_ref};
  fc.y = Tensor::empty(out, DType::f32, Device::cpu);
  fc.saved = bytes(mem.saved_bytes, Device::cpu);
  fc.workspace = bytes(mem.fwd_workspace, Device::cpu);
  layer.forward(cpu, fc);

  DevOperand xd = to_device(x_ref, v.dt, v.strided, seed++);
  const uint64_t yseed = seed++;
  DevOperand yd = to_device(random_host(out, yseed, 4.0), v.dt, v.strided, seed++);  // garbage to overwrite
  ForwardArgs fg;
  fg.x = {xd.view};
  fg.y = yd.view;
  fg.saved = bytes(mem.saved_bytes, Device::cuda);
  fg.workspace = bytes(mem.fwd_workspace, Device::cuda);
  layer.forward(gpu, fg);
  gpu.synchronize();
  {
    INFO("forward output");
    CS_REQUIRE_CLOSE(yd.view, fc.y, t.atol, t.rtol);
  }
  if (mem.saved_bytes) {
    INFO("saved state (max-pool argmax) is the CPU's");
    CS_REQUIRE_CLOSE(fg.saved, fc.saved, 0.0, 0.0);
  }
  require_outside_untouched(yd, "y");
  {
    INFO("x is read only");
    CS_REQUIRE_CLOSE(xd.view, x_ref, 0.0, 0.0);
    require_outside_untouched(xd, "x");
  }

  const double gscale = 1.0 / std::sqrt(static_cast<double>(out.pixels()));
  Tensor dy_ref = rounded(random_host(out, seed++, gscale), v.dt);
  DevOperand dyd = to_device(dy_ref, v.dt, v.strided, seed++);
  BackwardArgs bc, bg;
  bc.x = {x_ref};
  bc.y = fc.y;
  bc.dy = dy_ref;
  bc.saved = fc.saved;
  bc.workspace = bytes(mem.bwd_workspace, Device::cpu);
  bg.x = {xd.view};
  bg.y = yd.view;
  bg.dy = dyd.view;
  bg.saved = fg.saved;
  bg.workspace = bytes(mem.bwd_workspace, Device::cuda);
  bc.dx_mode = bg.dx_mode = {v.mode};
  Tensor init = rounded(random_host(in, seed++, 0.5), v.dt);
  DevOperand dxd;
  if (v.drop_dx) {
    bc.dx = {Tensor()};
    bg.dx = {Tensor()};
  } else {
    bc.dx = {init.clone()};
    dxd = to_device(init, v.dt, v.strided, seed++);
    bg.dx = {dxd.view};
  }
  layer.backward(cpu, bc);
  layer.backward(gpu, bg);
  gpu.synchronize();
  if (!v.drop_dx) {
    INFO("input gradient" << (v.mode == GradMode::accumulate ? " (accumulate)" : " (overwrite)"));
    CS_REQUIRE_CLOSE(bg.dx[0], bc.dx[0], t.atol, t.rtol);
    require_outside_untouched(dxd, "dx");
    // Determinism: the same backward again (overwrite into a fresh buffer) gives the same bits.
    if (v.mode == GradMode::overwrite) {
      Tensor first = bg.dx[0].to(Device::cpu);
      BackwardArgs again = bg;
      again.dx = {Tensor::zeros(in, v.dt, Device::cuda, &gpu)};
      layer.backward(gpu, again);
      gpu.synchronize();
      INFO("second CUDA backward is bitwise identical");
      CS_REQUIRE_CLOSE(again.dx[0], first, 0.0, 0.0);
    }
  }
  {
    INFO("dy is read only");
    CS_REQUIRE_CLOSE(dyd.view, dy_ref, 0.0, 0.0);
    require_outside_untouched(dyd, "dy");
  }
}

constexpr int64_t N = 2, H = 24, W = 36;

struct PoolCase {
  PoolConfig cfg;
  Shape in;
  const char* what;
};

std::vector<PoolCase> pool_cases() {
  return {
      {PoolConfig::tf_same(3, 2), {N, H, W, 64}, "ResNet root 3x3/2 SAME"},
      {PoolConfig::explicit_pad(3, 2, 1), {N, H, W, 64}, "ResNet v1 root 3x3/2 pad 1"},
      {PoolConfig::explicit_pad(2, 2), {N, H, W, 48}, "Tiramisu transition down 2x2/2"},
      {PoolConfig::explicit_pad(1, 2), {N, H, W, 256}, "ResNet v2 shortcut 1x1/2"},
      {PoolConfig::tf_same(3, 2), {N, 7, 5, 3}, "odd sizes, 3 channels"},
      {PoolConfig::explicit_pad(2, 3), {N, 9, 11, 5}, "stride > kernel"},
      {PoolConfig::explicit_pad(3, 2, 1), {1, 1, 1, 33}, "1x1 input"},
  };
}

}  // namespace

TEST_CASE("maxpool2d: CUDA matches the CPU path (ties included)", "[cuda][parity][pool]") {
  ExecContext cpu, gpu(Device::cuda, 0);
  for (const PoolCase& pc : pool_cases()) {
    INFO(pc.what);
    MaxPool2d layer(pc.cfg);
    for (const Variant& v : variants(true)) check_parity(cpu, gpu, layer, pc.in, Kind::select, v);
  }
}

TEST_CASE("avgpool2d: CUDA matches the CPU path", "[cuda][parity][pool]") {
  ExecContext cpu, gpu(Device::cuda, 0);
  for (const PoolCase& pc : pool_cases()) {
    for (bool cip : {true, false}) {
      INFO(pc.what << (cip ? " count_include_pad" : " valid count"));
      PoolConfig c = pc.cfg;
      c.count_include_pad = cip;
      AvgPool2d layer(c);
      for (const Variant& v : variants(false)) check_parity(cpu, gpu, layer, pc.in, Kind::reduce, v);
    }
  }
}

TEST_CASE("global average pool: CUDA matches the CPU path", "[cuda][parity][pool]") {
  ExecContext cpu, gpu(Device::cuda, 0);
  // ASPP image-level branch (2048 channels in the ResNet-101 backbone; 256 here), a big image (many chunks), odd.
  for (Shape s : {Shape{N, H, W, 256}, Shape{N, 96, 144, 32}, Shape{N, 7, 5, 3}, Shape{1, 1, 1, 5}}) {
    GlobalAvgPool layer;
    for (const Variant& v : variants(false)) check_parity(cpu, gpu, layer, s, Kind::reduce, v);
  }
}

TEST_CASE("bilinear resize: CUDA matches the CPU path in every coordinate mode", "[cuda][parity][resize]") {
  ExecContext cpu, gpu(Device::cuda, 0);
  struct RCase {
    Shape in;
    int64_t oh, ow;
    const char* what;
  };
  const RCase cases[] = {
      {{N, 1, 1, 256}, H, W, "ASPP image-level branch: 1x1 -> 24x36"},
      {{N, 6, 9, 256}, H, W, "decoder x4"},
      {{N, 3, 5, 48}, H, 40, "x8"},
      {{N, H, W, 19}, 7, 11, "downsampling, odd channels"},
      {{1, 5, 7, 3}, 12, 9, "non-integer factors"},
      {{N, 5, 4, 8}, 1, 1, "output 1x1"},
  };
  for (ResizeMode m : {ResizeMode::align_corners, ResizeMode::half_pixel, ResizeMode::tf_legacy}) {
    for (const RCase& rc : cases) {
      INFO(rc.what << " mode " << static_cast<int>(m));
      BilinearResize layer(ResizeConfig::to_size(rc.oh, rc.ow, m));
      for (const Variant& v : variants(false)) check_parity(cpu, gpu, layer, rc.in, Kind::reduce, v);
    }
  }
}

TEST_CASE("pool and resize layers outside a Net: missing saved state is an error, missing workspace is not",
          "[cuda][pool]") {
  ExecContext gpu(Device::cuda, 0);
  Tensor x = random_host({1, 6, 6, 4}, 1, 1.0).to(Device::cuda);
  MaxPool2d mp(PoolConfig::explicit_pad(2, 2));
  ForwardArgs f;
  f.x = {x};
  f.y = Tensor::empty({1, 3, 3, 4}, DType::f32, Device::cuda);
  REQUIRE_THROWS_WITH(mp.forward(gpu, f), Catch::Contains("saved state"));
  GlobalAvgPool gp;
  ForwardArgs g;
  g.x = {x};
  g.y = Tensor::empty({1, 1, 1, 4}, DType::f32, Device::cuda);
  REQUIRE_NOTHROW(gp.forward(gpu, g));  // ctx.workspace()
  gpu.synchronize();
}
