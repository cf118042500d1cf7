// CUDA vs CPU parity of the pooling and resize layers (max pool, average pool, global average pool, bilinear
// resize in all three coordinate modes): outputs and input gradients in fp32, fp16 and bf16, with contiguous and
// channel-slice (strided) views, overwrite and accumulate modes, unwanted gradients, inputs full of ties (max-pool
// tie breaking must match), and bitwise run-to-run determinism of the gather-form backward passes. The reference
// is the CPU path in fp32 on the values the device sees (inputs rounded to the tested dtype first), compared by the
// shared harness tests/util/cuda_parity.h.
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
#include "tests/util/cuda_parity.h"
#include "tests/util/device_operand.h"

using namespace climseg;
using test::CudaKind;
using test::random_host;
using test::Variant;

namespace {

std::vector<Variant> variants(bool with_ties) {
  std::vector<Variant> vs;
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (bool strided : {false, true})
      for (GradMode m : {GradMode::overwrite, GradMode::accumulate}) vs.push_back({dt, strided, m});
    vs.push_back({dt, true, GradMode::overwrite, true});
    if (with_ties) {
      Variant t{dt, true, GradMode::accumulate};
      t.ties = true;
      vs.push_back(t);
    }
  }
  for (Variant& v : vs) v.planned_ws = true;  // the layers' memory_needs, as in a Net
  return vs;
}

// tests/util/cuda_parity.h, plus: the saved state (max-pool argmax) is the CPU's, and a second CUDA backward gives
// bitwise the same dx (determinism of the gather-form backward passes).
void check_parity(ExecContext& cpu, ExecContext& gpu, Layer& layer, Shape in, CudaKind kind, const Variant& v) {
  test::ParityOptions o;
  o.data = o.params = kind;
  o.compare_saved = true;
  o.repeat_backward = true;
  test::check_parity(cpu, gpu, layer, {in}, o, v);
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
    for (const Variant& v : variants(true)) check_parity(cpu, gpu, layer, pc.in, CudaKind::eltwise, v);
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
      for (const Variant& v : variants(false)) check_parity(cpu, gpu, layer, pc.in, CudaKind::reduction, v);
    }
  }
}

TEST_CASE("global average pool: CUDA matches the CPU path", "[cuda][parity][pool]") {
  ExecContext cpu, gpu(Device::cuda, 0);
  // ASPP image-level branch (2048 channels in the ResNet-101 backbone; 256 here), a big image (many chunks), odd.
  for (Shape s : {Shape{N, H, W, 256}, Shape{N, 96, 144, 32}, Shape{N, 7, 5, 3}, Shape{1, 1, 1, 5}}) {
    GlobalAvgPool layer;
    for (const Variant& v : variants(false)) check_parity(cpu, gpu, layer, s, CudaKind::reduction, v);
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
      for (const Variant& v : variants(false)) check_parity(cpu, gpu, layer, rc.in, CudaKind::reduction, v);
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
