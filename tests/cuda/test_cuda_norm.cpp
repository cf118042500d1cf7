// CUDA vs CPU parity of batch norm (training and inference, fused residual/ReLU, running statistics), affine, scale
// and dropout: outputs, input and parameter gradients, running statistics, in fp32, fp16 and bf16, contiguous and
// channel-slice views, overwrite and accumulate, unwanted gradients; plus determinism of the batch-norm reductions
// (two runs bit-identical) and the dropout mask: bit-identical with the CPU's, the same in backward, keep
// fraction ~ 1 - p. The reference is the CPU path in fp32 on the values the device sees (inputs rounded to the
// tested dtype first), compared by the shared harness tests/util/cuda_parity.h. Tolerance rows
// (tests/util/tolerances.h): the "GEMM and reductions" rows for batch norm and the affine parameter gradients (fp32
// sums in another order; 16-bit results rounded once), the elementwise rows for affine/scale/dropout data paths
// (the same single fp32 operation per element, rounded once).
//
// Needs a CUDA device: tests/util/cuda_main.cpp exits 77 (skipped) without one.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/layer.h"
#include "engine/philox.h"
#include "engine/tensor.h"
#include "kernels/cpu/norm.h"
#include "kernels/cuda/dropout.h"
#include "layers/affine.h"
#include "layers/batchnorm.h"
#include "layers/dropout.h"
#include "tests/util/compare.h"
#include "tests/util/cuda_parity.h"
#include "tests/util/device_operand.h"

using namespace climseg;
using test::CudaKind;
using test::random_host;
using test::Variant;

namespace {

Tensor dev_bytes(size_t n, ExecContext& gpu) {
  return n ? Tensor::zeros({1, 1, 1, static_cast<int64_t>(n)}, DType::u8, Device::cuda, &gpu) : Tensor();
}

// tests/util/cuda_parity.h with this file's data: inputs U(-1.5, 2.5), parameters U(param_lo, param_hi), prior dx
// as small as dy; data paths compared with the `data` rows, parameter gradients (reductions) with the reduction rows.
void check_parity(Layer& layer, const std::vector<Shape>& in, CudaKind data, const Variant& v,
                  double param_lo = -1.0, double param_hi = 1.0) {
  ExecContext cpu, gpu(Device::cuda, 0);
  test::ParityOptions o;
  o.data = data;
  o.params = CudaKind::reduction;
  o.x_lo = -1.5;
  o.x_hi = 2.5;
  o.he_params = false;
  o.param_lo = param_lo;
  o.param_hi = param_hi;
  o.dx_init_per_pixel = true;
  test::check_parity(cpu, gpu, layer, in, o, v);
}

std::vector<Variant> variants(bool with_inference) {
  std::vector<Variant> vs;
  for (DType dt : {DType::f32, DType::f16, DType::bf16})
    for (bool strided : {false, true})
      for (GradMode m : {GradMode::overwrite, GradMode::accumulate})
        for (bool training : {true, false}) {
          if (!training && !with_inference) continue;
          vs.push_back({dt, strided, m, false, training});
        }
  vs.push_back({DType::f32, true, GradMode::overwrite, true, true});
  vs.push_back({DType::f16, false, GradMode::accumulate, true, false});
  for (Variant& v : vs) v.planned_ws = true;  // the layers' memory_needs, as in a Net
  return vs;
}

}  // namespace

TEST_CASE("batchnorm: CUDA matches the CPU path", "[cuda][parity][batchnorm]") {
  // DeepLabv3+/ResNet channel counts at a reduced size, odd sizes, and N=H=W=1 (TensorFlow's variance-0 case).
  const Shape shape = GENERATE(Shape{2, 24, 36, 64}, Shape{3, 5, 7, 19}, Shape{1, 1, 1, 8}, Shape{2, 1, 1, 40},
                               Shape{2, 20, 26, 256});
  const int variant = GENERATE(0, 1, 2, 3);
  BatchNormConfig cfg;
  cfg.relu = variant & 1;
  cfg.residual = variant & 2;
  cfg.eps = 1e-3;
  cfg.momentum = 0.1;
  BatchNorm2d l(cfg);
  std::vector<Shape> in{shape};
  if (cfg.residual) in.push_back(shape);
  for (const Variant& v : variants(true)) check_parity(l, in, CudaKind::reduction, v, 0.5, 1.5);
}

TEST_CASE("batchnorm: CUDA reductions are deterministic", "[cuda][batchnorm][determinism]") {
  ExecContext gpu(Device::cuda, 0);
  const Shape s{4, 33, 47, 96};
  BatchNormConfig cfg;
  cfg.relu = true;
  BatchNorm2d l(cfg);
  const MemoryNeeds m = l.memory_needs({s}, DType::f32);
  Tensor x = random_host(s, 5, -1.0, 3.0).to(Device::cuda);
  Tensor dy = random_host(s, 6, -0.01, 0.01).to(Device::cuda);
  Tensor g = random_host({1, 1, 1, 96}, 7, 0.5, 1.5).to(Device::cuda);
  Tensor b = random_host({1, 1, 1, 96}, 8, -1.0, 1.0).to(Device::cuda);
  std::vector<Tensor> results;
  for (int run = 0; run < 2; ++run) {
    Tensor rm = Tensor::zeros({1, 1, 1, 96}, DType::f32, Device::cuda, &gpu);
    Tensor rv = Tensor::zeros({1, 1, 1, 96}, DType::f32, Device::cuda, &gpu);
    Tensor y = Tensor::zeros(s, DType::f32, Device::cuda, &gpu);
    Tensor dx = Tensor::zeros(s, DType::f32, Device::cuda, &gpu);
    Tensor dg = Tensor::zeros({1, 1, 1, 96}, DType::f32, Device::cuda, &gpu);
    Tensor db = Tensor::zeros({1, 1, 1, 96}, DType::f32, Device::cuda, &gpu);
    Tensor saved = dev_bytes(m.saved_bytes, gpu);
    ForwardArgs fa;
    fa.x = {x};
    fa.y = y;
    fa.params = {g, b};
    fa.state = {rm, rv};
    fa.saved = saved;
    fa.workspace = dev_bytes(m.fwd_workspace, gpu);
    l.forward(gpu, fa);
    BackwardArgs ba;
    ba.x = {x};
    ba.y = y;
    ba.dy = dy;
    ba.dx = {dx};
    ba.dx_mode = {GradMode::overwrite};
    ba.params = {g, b};
    ba.grads = {dg, db};
    ba.saved = saved;
    ba.workspace = dev_bytes(m.bwd_workspace, gpu);
    l.backward(gpu, ba);
    gpu.synchronize();
    for (const Tensor& t : {y, dx, dg, db, rm, rv}) results.push_back(t.to(Device::cpu));
  }
  for (size_t i = 0; i < 6; ++i) CS_REQUIRE_CLOSE(results[i], results[6 + i], 0.0, 0.0);
}

TEST_CASE("affine and scale: CUDA matches the CPU path", "[cuda][parity][affine]") {
  const Shape shape = GENERATE(Shape{2, 24, 36, 64}, Shape{3, 5, 7, 19}, Shape{1, 1, 1, 256});
  Affine a;
  for (const Variant& v : variants(false)) check_parity(a, {shape}, CudaKind::eltwise, v, 0.5, 1.5);
  Scale s(0.5);
  for (const Variant& v : variants(false)) check_parity(s, {shape}, CudaKind::eltwise, v);
}

TEST_CASE("dropout: CUDA matches the CPU path (the same mask)", "[cuda][parity][dropout]") {
  const Shape shape = GENERATE(Shape{2, 24, 36, 64}, Shape{3, 5, 7, 19}, Shape{1, 1, 1, 3});
  const double p = GENERATE(0.0, 0.1, 0.5);
  Dropout d(p, 4242);
  for (const Variant& v : variants(true)) check_parity(d, {shape}, CudaKind::eltwise, v);
}

TEST_CASE("dropout: CUDA mask bit-identical with the CPU mask, keep fraction ~ 1 - p", "[cuda][dropout]") {
  ExecContext gpu(Device::cuda, 0);
  const Shape s{2, 96, 144, 32};  // 884736 elements
  for (double p : {0.1, 0.5, 0.9}) {
    for (uint64_t step : {0ull, 1ull, 123456789ull}) {
      Tensor mask = Tensor::zeros(s, DType::u8, Device::cuda, &gpu);
      cuda::dropout_mask(gpu, p, 99, step, mask);
      gpu.synchronize();
      Tensor h = mask.to(Device::cpu);
      const uint8_t* m = h.data_as<uint8_t>();
      int64_t kept = 0, mismatches = 0;
      for (int64_t i = 0; i < h.numel(); ++i) {
        bool want = cpu::dropout_keep(99, step, static_cast<uint64_t>(i), static_cast<float>(p));
        mismatches += (m[i] != 0) != want;
        kept += m[i] != 0;
      }
      INFO("p " << p << " step " << step);
      REQUIRE(mismatches == 0);
      const double n = static_cast<double>(h.numel());
      REQUIRE(std::fabs(static_cast<double>(kept) / n - (1.0 - p)) < 5.0 * std::sqrt(p * (1.0 - p) / n));
    }
  }
}
