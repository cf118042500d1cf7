// CUDA vs CPU parity of batch norm (training and inference, fused residual/ReLU, running statistics), affine, scale
// and dropout: outputs, input and parameter gradients, running statistics, in fp32, fp16 and bf16, contiguous and
// channel-slice views, overwrite and accumulate, unwanted gradients; plus determinism of the batch-norm reductions
// (two runs bit-identical) and the dropout mask: bit-identical with the CPU's, the same in backward, keep
// fraction ~ 1 - p. The reference is the CPU path in fp32 on the values the device sees (inputs rounded to the
// tested dtype first). Tolerance rows (tests/util/tolerances.h): the "GEMM and reductions" rows for batch norm and
// the affine parameter gradients (fp32 sums in another order; 16-bit results rounded once), the elementwise rows for
// affine/scale/dropout data paths (the same single fp32 operation per element, rounded once).
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
#include "kernels/cuda/norm.h"
#include "layers/affine.h"
#include "layers/batchnorm.h"
#include "layers/dropout.h"
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

enum class Kind { eltwise, reduction };

const Tolerance& tolerance(DType dt, Kind k) {
  switch (dt) {
    case DType::f32: return k == Kind::eltwise ? tol::cuda_f32_exact : tol::cuda_f32_gemm;
    case DType::f16: return k == Kind::eltwise ? tol::cuda_f16_eltwise : tol::cuda_f16_gemm;
    case DType::bf16: return k == Kind::eltwise ? tol::cuda_bf16_eltwise : tol::cuda_bf16_gemm;
    default: CS_THROW("no CUDA tolerance for ", dtype_name(dt));
  }
}

Tensor random_host(Shape s, uint64_t seed, double lo, double hi) {
  Tensor t = Tensor::empty(s, DType::f32, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set_flat(i, lo + (hi - lo) * philox_uniform(seed, 0, static_cast<uint64_t>(i)));
  return t;
}
Tensor host_bytes(size_t n) {
  return n ? Tensor::zeros({1, 1, 1, static_cast<int64_t>(n)}, DType::u8, Device::cpu) : Tensor();
}
Tensor dev_bytes(size_t n, ExecContext& gpu) {
  return n ? Tensor::zeros({1, 1, 1, static_cast<int64_t>(n)}, DType::u8, Device::cuda, &gpu) : Tensor();
}

struct Variant {
  DType dt;
  bool strided;
  GradMode mode;
  bool drop_dx0;
  bool training;
};
std::string describe(const Variant& v) {
  return std::string(dtype_name(v.dt)) + (v.strided ? " strided" : " contiguous") +
         (v.mode == GradMode::accumulate ? " accumulate" : " overwrite") + (v.drop_dx0 ? " dx0-unwanted" : "") +
         (v.training ? " training" : " inference");
}

// Forward and backward on the CPU (fp32, contiguous) and on CUDA (v.dt, v.strided); compares y, dx, parameter
// gradients and the state after forward. data_kind: tolerance of y and dx; param gradients are reductions.
void check_parity(Layer& layer, const std::vector<Shape>& in, Kind data_kind, const Variant& v,
                  double param_lo = -1.0, double param_hi = 1.0) {
  ExecContext cpu, gpu(Device::cuda, 0);
  INFO(layer.type() << " " << describe(v) << " input " << in[0].str());
  const Tolerance& td = tolerance(v.dt, data_kind);
  const Tolerance& tr = tolerance(v.dt, Kind::reduction);
  INFO("tolerance rows: " << td.name << " / " << tr.name);
  uint64_t seed = 2000;
  const size_t nin = in.size();
  const Shape out = layer.output_shape(in);
  const MemoryNeeds mc = layer.memory_needs(in, DType::f32), mg = layer.memory_needs(in, v.dt);

  std::vector<Tensor> x_ref;
  for (size_t i = 0; i < nin; ++i) x_ref.push_back(rounded(random_host(in[i], seed++, -1.5, 2.5), v.dt));
  std::vector<Tensor> p_ref, p_dev;
  for (const ParamSpec& s : layer.param_specs(in)) {
    p_ref.push_back(rounded(random_host(s.shape, seed++, param_lo, param_hi), v.dt));
    p_dev.push_back(p_ref.back().cast(v.dt).to(Device::cuda));
  }
  std::vector<Tensor> st_ref, st_dev;  // fp32 state (stat_dtype of fp32/fp16/bf16)
  for (const ParamSpec& s : layer.state_specs(in)) {
    const bool var = s.init == Init::ones;
    st_ref.push_back(random_host(s.shape, seed++, var ? 0.5 : -0.5, var ? 1.5 : 0.5));
    st_dev.push_back(st_ref.back().to(Device::cuda));
  }

  // ---- forward ----
  Tensor saved_c = host_bytes(mc.saved_bytes);
  ForwardArgs fc;
  fc.x = x_ref;
  fc.y = Tensor::empty(out, DType::f32, Device::cpu);
  fc.params = p_ref;
  fc.state = st_ref;
  fc.saved = saved_c;
  fc.workspace = host_bytes(mc.fwd_workspace);
  fc.training = v.training;
  fc.step = 17;
  layer.forward(cpu, fc);

  std::vector<DevOperand> xd;
  for (size_t i = 0; i < nin; ++i) xd.push_back(to_device(x_ref[i], v.dt, v.strided, seed++));
  const uint64_t yseed = seed++;  // garbage for forward to overwrite
  DevOperand yd = to_device(random_host(out, yseed, -4.0, 4.0), v.dt, v.strided, seed++);
  Tensor saved_g = dev_bytes(mg.saved_bytes, gpu);
  ForwardArgs fg;
  for (const DevOperand& d : xd) fg.x.push_back(d.view);
  fg.y = yd.view;
  fg.params = p_dev;
  fg.state = st_dev;
  fg.saved = saved_g;
  fg.workspace = dev_bytes(mg.fwd_workspace, gpu);
  fg.training = v.training;
  fg.step = 17;
  layer.forward(gpu, fg);
  gpu.synchronize();
  {
    INFO("forward output");
    CS_REQUIRE_CLOSE(yd.view, fc.y, td.atol, td.rtol);
  }
  require_outside_untouched(yd, "y");
  for (size_t i = 0; i < st_ref.size(); ++i) {
    INFO("state " << i << " after forward");
    CS_REQUIRE_CLOSE(st_dev[i], st_ref[i], tol::cuda_f32_gemm.atol, tol::cuda_f32_gemm.rtol);
  }
  for (size_t i = 0; i < nin; ++i) {
    INFO("input " << i << " is read only");
    CS_REQUIRE_CLOSE(xd[i].view, x_ref[i], 0.0, 0.0);
    require_outside_untouched(xd[i], "x");
  }

  // ---- backward ----
  const double gscale = 1.0 / std::sqrt(static_cast<double>(out.pixels()));
  Tensor dy_ref = rounded(random_host(out, seed++, -gscale, gscale), v.dt);
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
    GradMode m = (i % 2 == 0) == (v.mode == GradMode::accumulate) ? GradMode::accumulate : GradMode::overwrite;
    bc.dx_mode.push_back(m);
    bg.dx_mode.push_back(m);
    if (i == 0 && v.drop_dx0) {
      bc.dx.emplace_back();
      bg.dx.emplace_back();
      continue;
    }
    Tensor init = rounded(random_host(in[i], seed++, -0.5 * gscale, 0.5 * gscale), v.dt);
    bc.dx.push_back(init.clone());
    dxd[i] = to_device(init, v.dt, v.strided, seed++);
    bg.dx.push_back(dxd[i].view);
  }
  bc.params = p_ref;
  bg.params = p_dev;
  bc.param_mode = bg.param_mode = v.mode;
  for (const Tensor& p : p_ref) {
    Tensor init = rounded(random_host(p.shape(), seed++, -0.5, 0.5), v.dt);
    bc.grads.push_back(init.clone());
    bg.grads.push_back(init.cast(v.dt).to(Device::cuda));
  }
  bc.saved = saved_c;
  bg.saved = saved_g;
  bc.workspace = host_bytes(mc.bwd_workspace);
  bg.workspace = dev_bytes(mg.bwd_workspace, gpu);
  layer.backward(cpu, bc);
  layer.backward(gpu, bg);
  gpu.synchronize();
  for (size_t i = 0; i < nin; ++i) {
    if (!bc.dx[i].defined()) continue;
    INFO("input gradient " << i);
    CS_REQUIRE_CLOSE(bg.dx[i], bc.dx[i], td.atol, td.rtol);
    require_outside_untouched(dxd[i], "dx");
  }
  for (size_t j = 0; j < p_ref.size(); ++j) {
    INFO("parameter gradient " << j);
    CS_REQUIRE_CLOSE(bg.grads[j], bc.grads[j], tr.atol, tr.rtol);
  }
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
  for (const Variant& v : variants(true)) check_parity(l, in, Kind::reduction, v, 0.5, 1.5);
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
  for (const Variant& v : variants(false)) check_parity(a, {shape}, Kind::eltwise, v, 0.5, 1.5);
  Scale s(0.5);
  for (const Variant& v : variants(false)) check_parity(s, {shape}, Kind::eltwise, v);
}

TEST_CASE("dropout: CUDA matches the CPU path (the same mask)", "[cuda][parity][dropout]") {
  const Shape shape = GENERATE(Shape{2, 24, 36, 64}, Shape{3, 5, 7, 19}, Shape{1, 1, 1, 3});
  const double p = GENERATE(0.0, 0.1, 0.5);
  Dropout d(p, 4242);
  for (const Variant& v : variants(true)) check_parity(d, {shape}, Kind::eltwise, v);
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
