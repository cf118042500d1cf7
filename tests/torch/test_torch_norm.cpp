// Batch norm, affine, scale and dropout against PyTorch in double: forward, input and parameter gradients, and the
// running-statistics update (F.batch_norm, training and inference, several momenta and eps, fused residual/ReLU).
// Not covered by torch: one value per channel in training (PyTorch raises; climseg takes TensorFlow's behaviour,
// tested in tests/grad/test_norm_grads.cpp) and dropout masks bit for bit (different RNG): dropout is compared with
// torch's formula on climseg's own mask, and torch's keep fraction with climseg's.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "engine/philox.h"
#include "kernels/cpu/norm.h"
#include "layers/affine.h"
#include "layers/batchnorm.h"
#include "layers/dropout.h"
#include "tests/util/compare.h"
#include "tests/util/tolerances.h"
#include "tests/util/torch_oracle.h"

using namespace climseg;
using namespace climseg::test;

namespace {

Tensor random(Shape s, uint64_t stream, double lo = -1.0, double hi = 1.0) {
  Tensor t = Tensor::empty(s, DType::f64, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, lo + (hi - lo) * philox_uniform(23, stream, i));
  return t;
}

Tensor zeros(Shape s, DType t = DType::f64) { return Tensor::zeros(s, t, Device::cpu); }
Tensor bytes(size_t n) { return n ? zeros({1, 1, 1, static_cast<int64_t>(n)}, DType::u8) : Tensor(); }

struct Ours {
  Tensor y;
  std::vector<Tensor> dx, grads;
};

// Forward and backward of `layer` on the CPU in double with the given inputs, params, state and dy.
Ours run_ours(Layer& layer, const std::vector<Tensor>& x, const std::vector<Tensor>& params,
              const std::vector<Tensor>& state, const Tensor& dy, bool training, uint64_t step = 0) {
  ExecContext ctx;
  std::vector<Shape> in;
  for (const Tensor& t : x) in.push_back(t.shape());
  MemoryNeeds m = layer.memory_needs(in, DType::f64);
  Ours o;
  Tensor saved = bytes(m.saved_bytes);
  ForwardArgs fa;
  fa.x = x;
  fa.y = o.y = zeros(layer.output_shape(in));
  fa.params = params;
  fa.state = state;
  fa.saved = saved;
  fa.workspace = bytes(m.fwd_workspace);
  fa.training = training;
  fa.step = step;
  layer.forward(ctx, fa);
  BackwardArgs ba;
  ba.x = x;
  ba.y = o.y;
  ba.dy = dy;
  for (const Shape& s : in) o.dx.push_back(zeros(s));
  ba.dx = o.dx;
  ba.dx_mode.assign(in.size(), GradMode::overwrite);
  ba.params = params;
  for (const Tensor& p : params) o.grads.push_back(zeros(p.shape()));
  ba.grads = o.grads;
  ba.saved = saved;
  ba.workspace = bytes(m.bwd_workspace);
  layer.backward(ctx, ba);
  return o;
}

void require_same(const Ours& o, const TorchResult& r) {
  const auto& t = tol::torch_f64;
  CS_REQUIRE_CLOSE(o.y, r.y, t.atol, t.rtol);
  for (size_t i = 0; i < o.dx.size(); ++i) CS_REQUIRE_CLOSE(o.dx[i], r.dx[i], t.atol, t.rtol);
  for (size_t i = 0; i < o.grads.size(); ++i)
    CS_REQUIRE_CLOSE(o.grads[i], r.dparams[i].reshape(o.grads[i].shape()), t.atol, t.rtol);
}

}  // namespace

TEST_CASE("batchnorm matches F.batch_norm: training and inference, running statistics", "[torch][batchnorm]") {
  // Each oracle call starts a Python process (~2 s), so the configurations are a covering list rather than the
  // full product: every shape, momentum (PyTorch's 0.1, TF-slim's 0.0003, 1 = replace), eps (1e-5, TF's 1e-3),
  // mode and fused variant appears, training and inference both with and without the fusions.
  struct Case {
    Shape s;
    double momentum, eps;
    bool training, relu, residual;
  };
  const Case cases[] = {
      {{2, 5, 7, 3}, 0.1, 1e-5, true, false, false},     {{2, 5, 7, 3}, 0.0003, 1e-3, true, true, false},
      {{3, 4, 2, 16}, 0.1, 1e-5, true, true, true},      {{1, 7, 5, 33}, 1.0, 1e-5, true, false, true},
      {{4, 1, 1, 6}, 0.1, 1e-3, true, true, true},       {{1, 1, 2, 3}, 0.0003, 1e-3, true, false, false},
      {{2, 5, 7, 3}, 0.1, 1e-5, false, false, false},    {{3, 4, 2, 16}, 0.0003, 1e-3, false, true, true},
      {{1, 7, 5, 33}, 1.0, 1e-5, false, true, false},    {{4, 1, 1, 6}, 0.1, 1e-5, false, false, true},
  };
  uint64_t stream = 0;
  for (const Case& k : cases) {
    const Shape s = k.s;
    BatchNormConfig cfg;
    cfg.momentum = k.momentum;
    cfg.eps = k.eps;
    cfg.relu = k.relu;
    cfg.residual = k.residual;
    INFO("shape " << s.str() << " momentum " << k.momentum << " eps " << k.eps << " training " << k.training
                  << " relu " << k.relu << " residual " << k.residual);
    BatchNorm2d l(cfg);
    const Shape pc{1, 1, 1, s.c};
    // Inputs with a nonzero mean and a spread other than 1, so the statistics matter.
    std::vector<Tensor> x{random(s, ++stream, -1.5, 2.5)};
    if (cfg.residual) x.push_back(random(s, ++stream));
    std::vector<Tensor> params{random(pc, ++stream, 0.5, 1.5), random(pc, ++stream)};
    Tensor rm = random(pc, ++stream, -0.5, 0.5), rv = random(pc, ++stream, 0.5, 1.5);
    Tensor dy = random(s, ++stream);

    TorchCall call;
    call.op = "batchnorm";
    call.attrs = {{"training", k.training}, {"momentum", k.momentum}, {"eps", k.eps}, {"relu", k.relu},
                  {"residual", k.residual}};
    call.inputs = x;
    call.params = params;
    call.dy = dy;
    call.state = {{"running_mean", rm.clone()}, {"running_var", rv.clone()}};
    TorchResult r = torch_run(call);

    Ours o = run_ours(l, x, params, {rm, rv}, dy, k.training);  // updates rm, rv in training
    require_same(o, r);
    const auto& t = tol::torch_f64;
    CS_REQUIRE_CLOSE(rm, r.state.at("running_mean"), t.atol, t.rtol);
    CS_REQUIRE_CLOSE(rv, r.state.at("running_var"), t.atol, t.rtol);
  }
}

TEST_CASE("affine and scale match PyTorch", "[torch][affine]") {
  uint64_t stream = 100;
  for (Shape s : {Shape{2, 5, 7, 3}, Shape{1, 1, 1, 8}}) {
    Affine a;
    const Shape pc{1, 1, 1, s.c};
    std::vector<Tensor> x{random(s, ++stream)};
    std::vector<Tensor> params{random(pc, ++stream, 0.5, 1.5), random(pc, ++stream)};
    Tensor dy = random(s, ++stream);
    TorchCall call;
    call.op = "affine";
    call.inputs = x;
    call.params = params;
    call.dy = dy;
    require_same(run_ours(a, x, params, {}, dy, true), torch_run(call));

    Scale sc(0.5);
    TorchCall cs;
    cs.op = "affine";
    cs.attrs = {{"alpha", 0.5}};
    cs.inputs = x;
    cs.dy = dy;
    require_same(run_ours(sc, x, {}, {}, dy, true), torch_run(cs));
  }
}

TEST_CASE("dropout: torch's formula on climseg's mask, and torch's keep fraction", "[torch][dropout]") {
  const Shape s{2, 16, 24, 32};  // 24576 elements
  Tensor x = random(s, 200, 0.5, 1.5);  // nonzero, so y == 0 marks a dropped element
  Tensor dy = random(s, 201);
  for (double p : {0.1, 0.75}) {
    INFO("p " << p);
    Dropout l(p, 31337);
    const uint64_t step = 9;
    Ours o = run_ours(l, {x}, {}, {}, dy, true, step);
    Tensor mask = zeros(s);
    int64_t kept = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      bool k = cpu::dropout_keep(31337, step, static_cast<uint64_t>(i), static_cast<float>(p));
      mask.set_flat(i, k ? 1.0 : 0.0);
      kept += k;
    }
    TorchCall call;
    call.op = "dropout";
    call.attrs = {{"mode", "mask"}, {"p", p}};
    call.inputs = {x};
    call.dy = dy;
    call.state = {{"mask", mask}};
    TorchResult r = torch_run(call);
    // 1 / (1 - p) is rounded to fp32 in climseg (so both devices multiply by the same number): ~6e-8 relative.
    CS_REQUIRE_CLOSE(o.y, r.y, 0.0, 1e-7);
    CS_REQUIRE_CLOSE(o.dx[0], r.dx[0], 0.0, 1e-7);

    TorchCall tc;
    tc.op = "dropout";
    tc.attrs = {{"mode", "torch"}, {"p", p}};
    tc.inputs = {x};
    TorchResult tr = torch_run(tc);
    int64_t torch_kept = 0;
    for (int64_t i = 0; i < x.numel(); ++i) torch_kept += tr.y.get_flat(i) != 0.0;
    // Both keep fractions within 5 binomial standard deviations of 1 - p (and so of each other).
    const double n = static_cast<double>(x.numel()), sd = std::sqrt(p * (1.0 - p) / n);
    REQUIRE(std::fabs(static_cast<double>(kept) / n - (1.0 - p)) < 5.0 * sd);
    REQUIRE(std::fabs(static_cast<double>(torch_kept) / n - (1.0 - p)) < 5.0 * sd);
  }
}
