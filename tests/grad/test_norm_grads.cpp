// Batch norm, affine, scale and dropout on the CPU path: finite-difference gradient checks in double
// (tests/util/gradcheck.h: overwrite and accumulate modes, channel-slice views) over odd sizes, single pixels and
// the one-value-per-channel batch, with and without the fused ReLU and residual, in training and inference; plus
// the semantics the gradient check cannot see: running-statistics updates, TensorFlow's N=H=W=1 behaviour, the
// dropout keep fraction and mask reuse in backward.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/philox.h"
#include "kernels/cpu/norm.h"
#include "layers/affine.h"
#include "layers/batchnorm.h"
#include "layers/dropout.h"
#include "tests/util/gradcheck.h"
#include "tests/util/tolerances.h"

using namespace climseg;
using namespace climseg::test;

namespace {
const Shape kShapes[] = {{2, 5, 7, 3}, {1, 1, 1, 1}, {3, 4, 2, 16}, {1, 7, 5, 33}, {1, 1, 1, 5}, {4, 1, 1, 6},
                         {1, 3, 1, 2}};

void require_pass(const GradCheckResult& r) {
  INFO(r.str());
  REQUIRE(r.ok);
  REQUIRE(r.checked > 0);
}

Tensor host(Shape s, DType t = DType::f64) { return Tensor::zeros(s, t, Device::cpu); }

void fill(const Tensor& t, uint64_t stream, double lo, double hi) {
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set_flat(i, lo + (hi - lo) * philox_uniform(77, stream, static_cast<uint64_t>(i)));
}

// BatchNorm2d with running statistics bound by the test (the gradient checker binds parameters only), as the Net
// binds them: what inference mode needs.
class BnWithState : public BatchNorm2d {
 public:
  BnWithState(BatchNormConfig cfg, int64_t C) : BatchNorm2d(cfg) {
    rm_ = host({1, 1, 1, C});
    rv_ = host({1, 1, 1, C});
    fill(rm_, 1, -0.5, 0.5);
    fill(rv_, 2, 0.3, 1.7);
  }
  Tensor rm_, rv_;

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override {
    ForwardArgs b = a;
    b.state = {rm_, rv_};
    BatchNorm2d::forward_cpu(ctx, b);
  }
};

struct Run {
  Tensor y, saved;
};

// One forward of a layer on given host tensors (contiguous), with saved and workspace buffers from memory_needs.
Run forward(Layer& l, const std::vector<Tensor>& x, const std::vector<Tensor>& params, bool training,
            const std::vector<Tensor>& state = {}, uint64_t step = 0) {
  ExecContext ctx(Device::cpu);
  std::vector<Shape> in;
  for (auto& t : x) in.push_back(t.shape());
  const DType dt = x[0].dtype();
  MemoryNeeds m = l.memory_needs(in, dt);
  Run r;
  r.y = host(l.output_shape(in), dt);
  if (m.saved_bytes) r.saved = host({1, 1, 1, static_cast<int64_t>(m.saved_bytes)}, DType::u8);
  ForwardArgs fa;
  fa.x = x;
  fa.y = r.y;
  fa.params = params;
  fa.saved = r.saved;
  if (m.fwd_workspace) fa.workspace = host({1, 1, 1, static_cast<int64_t>(m.fwd_workspace)}, DType::u8);
  fa.training = training;
  fa.state = state;
  fa.step = step;
  l.forward(ctx, fa);
  return r;
}
}  // namespace

// ---- batch norm ----------------------------------------------------------------------------------------------

TEST_CASE("batchnorm gradient, training, plain / relu / residual / relu+residual", "[grad][batchnorm]") {
  for (Shape s : kShapes) {
    for (int variant = 0; variant < 4; ++variant) {
      BatchNormConfig cfg;
      cfg.relu = variant & 1;
      cfg.residual = variant & 2;
      INFO("shape " << s.str() << " relu " << cfg.relu << " residual " << cfg.residual);
      BatchNorm2d l(cfg);
      std::vector<Shape> in{s};
      if (cfg.residual) in.push_back(s);
      require_pass(check_gradients(l, in, {}));
    }
  }
}

TEST_CASE("batchnorm gradient with bound running statistics, training and inference", "[grad][batchnorm]") {
  for (Shape s : kShapes) {
    for (bool training : {true, false}) {
      for (int variant = 0; variant < 4; ++variant) {
        BatchNormConfig cfg;
        cfg.relu = variant & 1;
        cfg.residual = variant & 2;
        cfg.eps = 1e-3;  // TF's value, for variety
        INFO("shape " << s.str() << " training " << training << " relu " << cfg.relu << " residual "
                      << cfg.residual);
        BnWithState l(cfg, s.c);
        std::vector<Shape> in{s};
        if (cfg.residual) in.push_back(s);
        GradCheckOptions o;
        o.training = training;
        require_pass(check_gradients(l, in, o));
      }
    }
  }
}

TEST_CASE("batchnorm forward: normalised output, running statistics (PyTorch semantics)", "[batchnorm]") {
  const Shape s{3, 4, 5, 6};
  const int64_t M = s.pixels();
  Tensor x = host(s), gamma = host({1, 1, 1, 6}), beta = host({1, 1, 1, 6});
  fill(x, 10, -2.0, 3.0);
  fill(gamma, 11, 0.5, 1.5);
  fill(beta, 12, -1.0, 1.0);
  Tensor rm = host({1, 1, 1, 6}), rv = host({1, 1, 1, 6});
  fill(rm, 13, -0.5, 0.5);
  fill(rv, 14, 0.5, 1.5);
  Tensor rm0 = rm.clone(), rv0 = rv.clone();
  BatchNormConfig cfg;
  cfg.momentum = 0.3;
  cfg.eps = 1e-3;
  BatchNorm2d l(cfg);
  Run r = forward(l, {x}, {gamma, beta}, true, {rm, rv});
  for (int64_t c = 0; c < 6; ++c) {
    double sum = 0, sq = 0;
    for (int64_t p = 0; p < M; ++p) sum += x.get_flat(p * 6 + c);
    double mean = sum / M;
    for (int64_t p = 0; p < M; ++p) sq += (x.get_flat(p * 6 + c) - mean) * (x.get_flat(p * 6 + c) - mean);
    double var = sq / M;
    for (int64_t p = 0; p < M; p += 7) {
      double want = (x.get_flat(p * 6 + c) - mean) / std::sqrt(var + 1e-3) * gamma.get_flat(c) + beta.get_flat(c);
      REQUIRE(std::fabs(r.y.get_flat(p * 6 + c) - want) < 1e-12);
    }
    REQUIRE(std::fabs(rm.get_flat(c) - (0.7 * rm0.get_flat(c) + 0.3 * mean)) < 1e-12);
    REQUIRE(std::fabs(rv.get_flat(c) - (0.7 * rv0.get_flat(c) + 0.3 * sq / (M - 1))) < 1e-12);
  }
  // Inference with the updated statistics: y = (x - rm) / sqrt(rv + eps) * gamma + beta; nothing is updated.
  Tensor rm1 = rm.clone(), rv1 = rv.clone();
  Run ri = forward(l, {x}, {gamma, beta}, false, {rm, rv});
  for (int64_t i = 0; i < x.numel(); i += 5) {
    int64_t c = i % 6;
    double want = (x.get_flat(i) - rm1.get_flat(c)) / std::sqrt(rv1.get_flat(c) + 1e-3) * gamma.get_flat(c) +
                  beta.get_flat(c);
    REQUIRE(std::fabs(ri.y.get_flat(i) - want) < 1e-12);
  }
  for (int64_t c = 0; c < 6; ++c) REQUIRE((rm.get_flat(c) == rm1.get_flat(c) && rv.get_flat(c) == rv1.get_flat(c)));
}

TEST_CASE("batchnorm, one value per channel (N=H=W=1): TensorFlow's behaviour", "[batchnorm]") {
  // Variance 0: the output is beta (relu(beta + residual) when fused), the input gradient is 0, the running
  // variance moves towards 0 with the unbiased correction taken as 1 (PyTorch raises here, so no torch oracle).
  for (DType dt : {DType::f64, DType::f32}) {
    const Shape s{1, 1, 1, 4};
    Tensor x = host(s, dt), gamma = host({1, 1, 1, 4}, dt), beta = host({1, 1, 1, 4}, dt);
    fill(x, 20, -3.0, 3.0);
    fill(gamma, 21, 0.5, 1.5);
    fill(beta, 22, -1.0, 1.0);
    Tensor rm = host({1, 1, 1, 4}, dt), rv = host({1, 1, 1, 4}, dt);
    for (int64_t c = 0; c < 4; ++c) rv.set_flat(c, 1.0);
    BatchNormConfig cfg;
    cfg.eps = 1e-3;
    BatchNorm2d l(cfg);
    Run r = forward(l, {x}, {gamma, beta}, true, {rm, rv});
    for (int64_t c = 0; c < 4; ++c) {
      REQUIRE(r.y.get_flat(c) == beta.get_flat(c));
      REQUIRE(std::isfinite(rv.get_flat(c)));
      REQUIRE(std::fabs(rm.get_flat(c) - 0.1 * x.get_flat(c)) < 1e-6);
      REQUIRE(std::fabs(rv.get_flat(c) - 0.9) < 1e-6);
    }
    // Backward: dx = 0, dbeta = dy, dgamma = 0.
    ExecContext ctx(Device::cpu);
    Tensor dy = host(s, dt), dx = host(s, dt), dg = host({1, 1, 1, 4}, dt), db = host({1, 1, 1, 4}, dt);
    fill(dy, 23, -1.0, 1.0);
    BackwardArgs ba;
    ba.x = {x};
    ba.y = r.y;
    ba.dy = dy;
    ba.dx = {dx};
    ba.dx_mode = {GradMode::overwrite};
    ba.params = {gamma, beta};
    ba.grads = {dg, db};
    ba.saved = r.saved;
    l.backward(ctx, ba);
    for (int64_t c = 0; c < 4; ++c) {
      REQUIRE(dx.get_flat(c) == 0.0);
      REQUIRE(dg.get_flat(c) == 0.0);
      REQUIRE(db.get_flat(c) == dy.get_flat(c));
    }
  }
}

TEST_CASE("batchnorm contract errors", "[batchnorm]") {
  BatchNorm2d l;
  const Shape s{2, 3, 3, 4};
  Tensor x = host(s), g = host({1, 1, 1, 4}), b = host({1, 1, 1, 4});
  // Inference without running statistics is an error, not a silent use of batch statistics.
  REQUIRE_THROWS_WITH(forward(l, {x}, {g, b}, false), Catch::Contains("running statistics"));
  // State of the wrong dtype (fp32 state for an fp64 layer) or shape.
  REQUIRE_THROWS(forward(l, {x}, {g, b}, true, {host({1, 1, 1, 4}, DType::f32), host({1, 1, 1, 4}, DType::f32)}));
  REQUIRE_THROWS(forward(l, {x}, {g, b}, true, {host({1, 1, 1, 3}), host({1, 1, 1, 3})}));
  REQUIRE_THROWS(BatchNorm2d(BatchNormConfig{0.1, 0.0}));
  BatchNormConfig rc;
  rc.residual = true;
  BatchNorm2d lr(rc);
  REQUIRE(lr.num_inputs() == 2);
  REQUIRE_THROWS_WITH(lr.output_shape({s, Shape{2, 3, 3, 5}}), Catch::Contains("residual"));
  REQUIRE(l.state_specs({s}).size() == 2);
  REQUIRE(l.state_specs({s})[1].init == Init::ones);
}

// ---- affine and scale ------------------------------------------------------------------------------------------

TEST_CASE("affine gradient", "[grad][affine]") {
  for (Shape s : kShapes) {
    Affine l;
    require_pass(check_gradients(l, {s}, {}));
  }
}

TEST_CASE("scale gradient (the 2018 multiply-by-0.5)", "[grad][affine]") {
  for (Shape s : kShapes) {
    Scale l(0.5);
    require_pass(check_gradients(l, {s}, {}));
    Scale l2(-1.75);
    require_pass(check_gradients(l2, {s}, {}));
  }
  Scale half(0.5);
  Tensor x = host({1, 2, 3, 4});
  fill(x, 30, -1, 1);
  Run r = forward(half, {x}, {}, true);
  for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(r.y.get_flat(i) == 0.5 * x.get_flat(i));
}

// ---- dropout -----------------------------------------------------------------------------------------------------

TEST_CASE("dropout gradient, training (fixed mask) and inference (identity)", "[grad][dropout]") {
  for (Shape s : kShapes) {
    for (double p : {0.0, 0.3, 0.9}) {
      for (bool training : {true, false}) {
        Dropout l(p, 42);
        GradCheckOptions o;
        o.training = training;
        require_pass(check_gradients(l, {s}, o));
      }
    }
  }
}

TEST_CASE("dropout statistics, mask reuse in backward, step and seed", "[dropout]") {
  const Shape s{2, 32, 48, 24};
  Tensor x = host(s, DType::f32);
  for (int64_t i = 0; i < x.numel(); ++i) x.set_flat(i, 1.0 + (i % 7));  // nonzero: zeros in y are drops
  for (double p : {0.1, 0.5, 0.8}) {
    Dropout l(p, 1234);
    Run r = forward(l, {x}, {}, true, {}, 5);
    const float scale = cpu::dropout_scale(p);
    int64_t kept = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      double y = r.y.get_flat(i);
      bool keep = cpu::dropout_keep(1234, 5, static_cast<uint64_t>(i), static_cast<float>(p));
      REQUIRE((y != 0.0) == keep);
      if (keep) {
        ++kept;
        REQUIRE(y == static_cast<double>(static_cast<float>(x.get_flat(i)) * scale));
      }
    }
    // Keep fraction ~ 1 - p: binomial standard deviation sqrt(p (1-p) / n) ~ 2e-3 for n = 73728; 5 sigma.
    const double n = static_cast<double>(x.numel());
    const double frac = static_cast<double>(kept) / n;
    REQUIRE(std::fabs(frac - (1.0 - p)) < 5.0 * std::sqrt(p * (1.0 - p) / n));
    // Backward uses the same mask: dx != 0 exactly where y != 0, dx = dy * scale there.
    ExecContext ctx(Device::cpu);
    Tensor dy = host(s, DType::f32), dx = host(s, DType::f32);
    fill(dy, 40, 0.5, 1.5);
    BackwardArgs ba;
    ba.x = {Tensor()};
    ba.dy = dy;
    ba.dx = {dx};
    ba.dx_mode = {GradMode::overwrite};
    ba.saved = r.saved;
    l.backward(ctx, ba);
    for (int64_t i = 0; i < x.numel(); ++i) {
      REQUIRE((dx.get_flat(i) != 0.0) == (r.y.get_flat(i) != 0.0));
      if (r.y.get_flat(i) != 0.0)
        REQUIRE(dx.get_flat(i) == static_cast<double>(static_cast<float>(dy.get_flat(i)) * scale));
    }
    // Same (seed, step): same mask; another step or seed: another mask.
    Run again = forward(l, {x}, {}, true, {}, 5);
    Run next = forward(l, {x}, {}, true, {}, 6);
    Dropout other(p, 999);
    Run oseed = forward(other, {x}, {}, true, {}, 5);
    int64_t same = 0, diff_step = 0, diff_seed = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      same += again.y.get_flat(i) == r.y.get_flat(i);
      diff_step += (next.y.get_flat(i) != 0.0) != (r.y.get_flat(i) != 0.0);
      diff_seed += (oseed.y.get_flat(i) != 0.0) != (r.y.get_flat(i) != 0.0);
    }
    REQUIRE(same == x.numel());
    REQUIRE(diff_step > x.numel() / 20);
    REQUIRE(diff_seed > x.numel() / 20);
  }
  // Inference: identity (also in backward), whatever p.
  Dropout l(0.5, 7);
  Run ri = forward(l, {x}, {}, false, {}, 3);
  for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(ri.y.get_flat(i) == x.get_flat(i));
  REQUIRE_THROWS(Dropout(1.0));
  REQUIRE_THROWS(Dropout(-0.1));
}

TEST_CASE("dropout on a channel slice uses the slice's logical indices", "[dropout]") {
  // The mask depends on the logical NHWC index of the view, so a slice of a concat buffer gets the same mask as a
  // contiguous tensor of the same shape.
  const Shape s{2, 3, 5, 7};
  Tensor x = host(s, DType::f32);
  fill(x, 50, 0.5, 1.5);
  Tensor wide = host({2, 3, 5, 12}, DType::f32);
  Tensor xs = wide.channel_slice(2, 7);
  xs.copy_from(x);
  Dropout l(0.4, 11);
  Run a = forward(l, {x}, {}, true, {}, 1);
  Run b = forward(l, {xs}, {}, true, {}, 1);
  for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(a.y.get_flat(i) == b.y.get_flat(i));
}
