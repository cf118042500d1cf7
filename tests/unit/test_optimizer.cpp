// train/optimizer and train/schedule on the CPU:
// - every optimizer kind (sgd with and without momentum, nesterov, weight decay; adam, adam + L2, adamw, lamb;
//   LARC clip and scale around adam and sgd; global-norm clipping) against an independent fp64 reference written
//   here as plain loops, for 5 steps with a changing lr and a grad_scale, on three tensors with padding gaps;
// - padding never read (NaN in the gradient padding) nor written; inf/NaN gradients refuse the step and leave
//   every buffer bit-identical; the state()/load_state() round trip continues bit-identically; fp16/bf16 storage
//   emulation; results independent of the thread count; hand-computed clip and LARC steps;
// - schedules at hand-computed steps for every kind, with and without warmup; validate() errors.
#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "train/optimizer.h"
#include "engine/philox.h"
#include "engine/profiler.h"
#include "train/schedule.h"
#include "tests/util/compare.h"
#include "tests/util/tolerances.h"

using namespace climseg;
using namespace climseg::test;
using Catch::Contains;

namespace {

// Three tensors with padding between and after them, as in a Net's aligned flat buffer.
const std::vector<ParamRange> kRanges = {{0, 10}, {16, 7}, {32, 23}};
constexpr int64_t kN = 64;
constexpr double kModelPad = 777.0;  // model padding: must never change
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

int tensor_of(const std::vector<ParamRange>& R, int64_t i) {
  for (size_t t = 0; t < R.size(); ++t)
    if (i >= R[t].offset && i < R[t].offset + R[t].numel) return static_cast<int>(t);
  return -1;
}

double uniform(uint64_t seed, uint64_t sub, int64_t i) { return 2.0 * philox_uniform(seed, sub, i) - 1.0; }

// Model values U(-1, 1), tensor 1 starting at zero (LARC's and LAMB's zero-norm branches on the first step),
// kModelPad in the padding. Values are fp32-representable so the f32 and f64 runs start alike.
Tensor make_model(DType dt, uint64_t seed) {
  Tensor t = Tensor::empty({1, 1, 1, kN}, dt);
  for (int64_t i = 0; i < kN; ++i) {
    const int k = tensor_of(kRanges, i);
    t.set_flat(i, k < 0 ? kModelPad : k == 1 ? 0.0 : uniform(seed, 0, i));
  }
  return t;
}

// Gradients of step `step`: U(-1, 1) times a per-tensor scale (1, 1e-3, 0.03: LARC's clip is active on some
// tensors and not on others, never near its switch point local_lr = lr) times `mult`; NaN in the padding, which the
// optimizer must never read.
std::vector<double> make_grads(uint64_t seed, int step, double mult = 1.0) {
  const double scale[3] = {1.0, 1e-3, 0.03};
  std::vector<double> g(kN, kNaN);
  for (int64_t i = 0; i < kN; ++i) {
    const int k = tensor_of(kRanges, i);
    if (k >= 0) g[i] = static_cast<double>(static_cast<float>(uniform(seed, 1 + step, i) * scale[k])) * mult;
  }
  return g;
}

void fill(const Tensor& t, const std::vector<double>& v) {
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, v[i]);
}

std::vector<double> values(const Tensor& t) {
  Tensor h = t.device() == Device::cpu ? t : t.to(Device::cpu);
  std::vector<double> v(h.numel());
  for (int64_t i = 0; i < h.numel(); ++i) v[i] = h.get_flat(i);
  return v;
}

Tensor as_tensor(const std::vector<double>& v) {
  Tensor t = Tensor::empty({1, 1, 1, static_cast<int64_t>(v.size())}, DType::f64);
  fill(t, v);
  return t;
}

Tensor state_of(const Optimizer& opt, const std::string& name) {
  for (const auto& s : opt.state())
    if (s.name == name) return s.tensor;
  FAIL("no state tensor " << name);
  return {};
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

double lr_at(int s) { return 0.01 * (1.0 + 0.25 * s); }

// ---- the independent fp64 reference ---------------------------------------------------------------------------

struct Ref {
  std::vector<double> w, m, v;  // full buffers, padding included (never touched)
  int64_t t = 0;
};

Ref make_ref(const Tensor& model) {
  Ref r;
  r.w = values(model);
  r.m.assign(r.w.size(), 0.0);
  r.v.assign(r.w.size(), 0.0);
  return r;
}

double norm_over(const std::vector<double>& x, const ParamRange& r) {
  double s = 0;
  for (int64_t i = r.offset; i < r.offset + r.numel; ++i) s += x[i] * x[i];
  return std::sqrt(s);
}

// One step of the textbook formulas; returns the global norm of grad_scale * g.
double ref_step(const OptimizerConfig& c, Ref& st, const std::vector<double>& graw, double lr, double gs) {
  std::vector<double> g(graw.size(), 0.0);
  double ss = 0;
  for (const auto& r : kRanges)
    for (int64_t i = r.offset; i < r.offset + r.numel; ++i) {
      g[i] = gs * graw[i];
      ss += g[i] * g[i];
    }
  const double norm = std::sqrt(ss);
  const double clip = (c.max_grad_norm > 0 && norm > c.max_grad_norm) ? c.max_grad_norm / norm : 1.0;
  for (const auto& r : kRanges) {
    for (int64_t i = r.offset; i < r.offset + r.numel; ++i) g[i] *= clip;
    if (c.larc != LarcMode::off) {
      const double wn = norm_over(st.w, r), gn = norm_over(g, r);
      const double local = (wn > 0 && gn > 0) ? c.larc_eta * wn / gn : c.larc_eps;
      const double f = c.larc == LarcMode::clip ? std::min(local, lr) / lr : local;
      for (int64_t i = r.offset; i < r.offset + r.numel; ++i) g[i] *= f;
    }
  }
  st.t += 1;
  const double t = static_cast<double>(st.t);
  const double bc1 = 1 - std::pow(c.beta1, t), bc2 = 1 - std::pow(c.beta2, t);
  for (const auto& r : kRanges) {
    std::vector<double> u(r.numel);
    for (int64_t k = 0; k < r.numel; ++k) {
      const int64_t i = r.offset + k;
      double& w = st.w[i];
      double& m = st.m[i];
      double& v = st.v[i];
      double gi = g[i];
      switch (c.kind) {
        case OptimizerKind::sgd: {
          double d = gi + c.weight_decay * w;
          if (c.momentum != 0) {
            m = st.t == 1 ? d : c.momentum * m + d;
            d = c.nesterov ? d + c.momentum * m : m;
          }
          w -= lr * d;
          break;
        }
        case OptimizerKind::adam:
        case OptimizerKind::adamw: {
          if (c.kind == OptimizerKind::adamw) {
            w *= 1 - lr * c.weight_decay;
          } else {
            gi += c.weight_decay * w;
          }
          m = c.beta1 * m + (1 - c.beta1) * gi;
          v = c.beta2 * v + (1 - c.beta2) * gi * gi;
          w -= lr * (m / bc1) / (std::sqrt(v / bc2) + c.eps);
          break;
        }
        case OptimizerKind::lamb: {
          m = c.beta1 * m + (1 - c.beta1) * gi;
          v = c.beta2 * v + (1 - c.beta2) * gi * gi;
          u[k] = (m / bc1) / (std::sqrt(v / bc2) + c.eps) + c.weight_decay * w;
          break;
        }
      }
    }
    if (c.kind == OptimizerKind::lamb) {
      double un = 0;
      for (double x : u) un += x * x;
      un = std::sqrt(un);
      const double wn = norm_over(st.w, r);
      const double ratio = (wn > 0 && un > 0) ? wn / un : 1.0;
      for (int64_t k = 0; k < r.numel; ++k) st.w[r.offset + k] -= lr * ratio * u[k];
    }
  }
  return norm;
}

struct Case {
  const char* name;
  OptimizerConfig cfg;
};

std::vector<Case> all_cases() {
  auto mk = [](OptimizerKind k) {
    OptimizerConfig c;
    c.kind = k;
    return c;
  };
  std::vector<Case> cases;
  cases.push_back({"sgd momentum", mk(OptimizerKind::sgd)});
  cases.push_back({"sgd plain", mk(OptimizerKind::sgd)});
  cases.back().cfg.momentum = 0;
  cases.push_back({"sgd nesterov", mk(OptimizerKind::sgd)});
  cases.back().cfg.nesterov = true;
  cases.push_back({"sgd weight decay", mk(OptimizerKind::sgd)});
  cases.back().cfg.weight_decay = 0.01;
  cases.push_back({"adam", mk(OptimizerKind::adam)});
  cases.push_back({"adam weight decay", mk(OptimizerKind::adam)});
  cases.back().cfg.weight_decay = 0.01;
  cases.push_back({"adamw", mk(OptimizerKind::adamw)});
  cases.back().cfg.weight_decay = 0.05;
  cases.push_back({"adamw max_grad_norm", mk(OptimizerKind::adamw)});
  cases.back().cfg.weight_decay = 0.05;
  cases.back().cfg.max_grad_norm = 0.5;
  cases.push_back({"lamb (DeepCAM: eps 1e-6, wd 0.01, clip 1)", mk(OptimizerKind::lamb)});
  cases.back().cfg.eps = 1e-6;
  cases.back().cfg.weight_decay = 0.01;
  cases.back().cfg.max_grad_norm = 1.0;
  cases.push_back({"lamb no decay", mk(OptimizerKind::lamb)});
  cases.push_back({"adam + larc clip", mk(OptimizerKind::adam)});
  cases.back().cfg.larc = LarcMode::clip;
  cases.push_back({"adam + larc scale", mk(OptimizerKind::adam)});
  cases.back().cfg.larc = LarcMode::scale;
  cases.push_back({"sgd + larc clip", mk(OptimizerKind::sgd)});
  cases.back().cfg.larc = LarcMode::clip;
  cases.back().cfg.weight_decay = 1e-3;
  cases.push_back({"lamb + larc scale + clip", mk(OptimizerKind::lamb)});
  cases.back().cfg.larc = LarcMode::scale;
  cases.back().cfg.max_grad_norm = 0.5;
  cases.back().cfg.weight_decay = 0.01;
  return cases;
}

// Runs `steps` steps of cfg on a fresh model of dtype dt (grads x2 with grad_scale 0.5) and the reference alongside.
void run_against_reference(const Case& cs, DType dt, const Tolerance& tol) {
  INFO(cs.name << " in " << dtype_name(dt));
  ExecContext ctx;
  Tensor model = make_model(dt, 3), grads = Tensor::empty({1, 1, 1, kN}, dt);
  Optimizer opt(cs.cfg, model, grads, kRanges, dt, ctx);
  Ref ref = make_ref(model);
  for (int s = 0; s < 5; ++s) {
    const std::vector<double> g = make_grads(11, s, 2.0);
    fill(grads, g);
    const StepResult r = opt.step(ctx, lr_at(s), 0.5);
    const double ref_norm = ref_step(cs.cfg, ref, g, lr_at(s), 0.5);
    REQUIRE(r.applied);
    REQUIRE(r.grad_norm == Approx(ref_norm).epsilon(1e-12));
  }
  REQUIRE(opt.steps() == 5);
  CS_REQUIRE_CLOSE(state_of(opt, "master"), as_tensor(ref.w), tol.atol, tol.rtol);
  if (cs.cfg.kind != OptimizerKind::sgd) {
    CS_REQUIRE_CLOSE(state_of(opt, "exp_avg"), as_tensor(ref.m), tol.atol, tol.rtol);
    CS_REQUIRE_CLOSE(state_of(opt, "exp_avg_sq"), as_tensor(ref.v), tol.atol, tol.rtol);
    REQUIRE(opt.state().size() == 3);
  } else if (cs.cfg.momentum != 0) {
    CS_REQUIRE_CLOSE(state_of(opt, "momentum"), as_tensor(ref.m), tol.atol, tol.rtol);
    REQUIRE(opt.state().size() == 2);
  } else {
    REQUIRE(opt.state().size() == 1);
  }
  // The model copy is the master in the ranges, the padding untouched.
  const Tensor master = state_of(opt, "master");
  for (int64_t i = 0; i < kN; ++i) {
    if (tensor_of(kRanges, i) >= 0) {
      REQUIRE(model.get_flat(i) == master.get_flat(i));
    } else {
      REQUIRE(model.get_flat(i) == kModelPad);
      REQUIRE(master.get_flat(i) == kModelPad);
    }
  }
  // And the weights moved: a reference of the wrong optimizer would not match (guards against a vacuous pass).
  const Tensor initial = make_model(DType::f64, 3);
  double moved = 0;
  for (int64_t i = 0; i < kN; ++i) moved = std::max(moved, std::abs(master.get_flat(i) - initial.get_flat(i)));
  REQUIRE(moved > 1e-4);
}

OptimizerConfig adam_larc_clip() {
  OptimizerConfig c;
  c.kind = OptimizerKind::adam;
  c.larc = LarcMode::clip;
  c.max_grad_norm = 0.5;
  c.weight_decay = 0.01;
  return c;
}

}  // namespace

// ---- optimizers against the reference -------------------------------------------------------------------------

TEST_CASE("every optimizer matches the fp64 reference over 5 steps, padding untouched", "[optimizer]") {
  for (const Case& cs : all_cases()) run_against_reference(cs, DType::f64, tol::optimizer_f64_reference);
}

TEST_CASE("every optimizer in fp32 stays within fp32 rounding of the fp64 reference", "[optimizer]") {
  for (const Case& cs : all_cases()) run_against_reference(cs, DType::f32, tol::cpu_f32_vs_f64);
}

TEST_CASE("grad_scale: 4x the gradients with grad_scale 1/4 gives bit-identical steps", "[optimizer]") {
  for (OptimizerKind k : {OptimizerKind::sgd, OptimizerKind::adam, OptimizerKind::lamb}) {
    OptimizerConfig c = adam_larc_clip();
    c.kind = k;
    INFO(optimizer_kind_name(k));
    ExecContext ctx;
    Tensor m1 = make_model(DType::f32, 5), g1 = Tensor::empty({1, 1, 1, kN}, DType::f32);
    Tensor m4 = make_model(DType::f32, 5), g4 = Tensor::empty({1, 1, 1, kN}, DType::f32);
    Optimizer o1(c, m1, g1, kRanges, DType::f32, ctx), o4(c, m4, g4, kRanges, DType::f32, ctx);
    for (int s = 0; s < 3; ++s) {
      fill(g1, make_grads(7, s));
      fill(g4, make_grads(7, s, 4.0));
      const StepResult r1 = o1.step(ctx, lr_at(s), 1.0), r4 = o4.step(ctx, lr_at(s), 0.25);
      REQUIRE(r1.grad_norm == r4.grad_norm);
    }
    REQUIRE(same_bits(m1, m4));
    for (size_t j = 0; j < o1.state().size(); ++j) REQUIRE(same_bits(o1.state()[j].tensor, o4.state()[j].tensor));
    // A grad_scale that is not a power of two still scales: 3x the gradients with 1/3 is close, not equal.
    Tensor m3 = make_model(DType::f32, 5), g3 = Tensor::empty({1, 1, 1, kN}, DType::f32);
    Optimizer o3(c, m3, g3, kRanges, DType::f32, ctx);
    for (int s = 0; s < 3; ++s) {
      fill(g3, make_grads(7, s, 3.0));
      o3.step(ctx, lr_at(s), 1.0 / 3.0);
    }
    CS_REQUIRE_CLOSE(m3, m1, tol::cpu_f32_vs_f64.atol, tol::cpu_f32_vs_f64.rtol);
  }
}

TEST_CASE("an inf or NaN gradient refuses the step and changes nothing", "[optimizer]") {
  for (DType dt : {DType::f32, DType::f64}) {
    for (OptimizerKind k : {OptimizerKind::sgd, OptimizerKind::adam, OptimizerKind::adamw, OptimizerKind::lamb}) {
      for (double bad : {kInf, -kInf, kNaN}) {
        OptimizerConfig c = adam_larc_clip();
        c.kind = k;
        INFO(optimizer_kind_name(k) << " " << dtype_name(dt) << " bad value " << bad);
        ExecContext ctx;
        Tensor model = make_model(dt, 9), grads = Tensor::empty({1, 1, 1, kN}, dt);
        Optimizer opt(c, model, grads, kRanges, dt, ctx);
        for (int s = 0; s < 2; ++s) {
          fill(grads, make_grads(13, s));
          REQUIRE(opt.step(ctx, 0.01).applied);
        }
        std::vector<double> g = make_grads(13, 2);
        g[kRanges[1].offset + 3] = bad;
        fill(grads, g);
        const Tensor model_before = model.clone(), grads_before = grads.clone();
        std::vector<Tensor> state_before;
        for (const auto& s : opt.state()) state_before.push_back(s.tensor.clone());
        const StepResult r = opt.step(ctx, 0.01, 0.5);
        REQUIRE_FALSE(r.applied);
        REQUIRE_FALSE(std::isfinite(r.grad_norm));
        if (std::isnan(bad)) REQUIRE(std::isnan(r.grad_norm));
        if (std::isinf(bad)) REQUIRE(r.grad_norm == kInf);
        REQUIRE(opt.steps() == 2);
        REQUIRE(same_bits(model, model_before));
        REQUIRE(same_bits(grads, grads_before));
        for (size_t j = 0; j < state_before.size(); ++j) REQUIRE(same_bits(opt.state()[j].tensor, state_before[j]));
        // The next clean step is applied as step 3.
        fill(grads, make_grads(13, 3));
        REQUIRE(opt.step(ctx, 0.01).applied);
        REQUIRE(opt.steps() == 3);
      }
    }
  }
}

TEST_CASE("a finite gradient that overflows after grad_scale refuses the step", "[optimizer]") {
  ExecContext ctx;
  Tensor model = make_model(DType::f32, 9), grads = Tensor::empty({1, 1, 1, kN}, DType::f32);
  OptimizerConfig c;
  Optimizer opt(c, model, grads, kRanges, DType::f32, ctx);
  std::vector<double> g = make_grads(13, 0);
  g[kRanges[2].offset] = 1e30;
  fill(grads, g);
  const Tensor before = model.clone();
  REQUIRE_FALSE(opt.step(ctx, 0.01, 1e10).applied);  // 1e40 is inf in fp32
  REQUIRE(same_bits(model, before));
  REQUIRE(opt.step(ctx, 0.01, 1.0).applied);  // 1e30 itself is finite
}

TEST_CASE("state() and load_state(): stopping and resuming continues bit-identically (fp32)", "[optimizer]") {
  std::vector<OptimizerConfig> cfgs;
  for (const Case& cs : all_cases()) cfgs.push_back(cs.cfg);
  for (const OptimizerConfig& c : cfgs) {
    INFO(optimizer_kind_name(c.kind) << " larc " << larc_mode_name(c.larc) << " momentum " << c.momentum);
    ExecContext ctx;
    // Uninterrupted: 6 steps.
    Tensor ma = make_model(DType::f32, 21), ga = Tensor::empty({1, 1, 1, kN}, DType::f32);
    Optimizer a(c, ma, ga, kRanges, DType::f32, ctx);
    for (int s = 0; s < 6; ++s) {
      fill(ga, make_grads(23, s));
      a.step(ctx, lr_at(s));
    }
    // Interrupted after 3: the state copied out, a new optimizer on a model buffer holding other values.
    Tensor mb = make_model(DType::f32, 21), gb = Tensor::empty({1, 1, 1, kN}, DType::f32);
    Optimizer b(c, mb, gb, kRanges, DType::f32, ctx);
    for (int s = 0; s < 3; ++s) {
      fill(gb, make_grads(23, s));
      b.step(ctx, lr_at(s));
    }
    std::vector<Optimizer::StateTensor> saved;
    for (const auto& s : b.state()) saved.push_back({s.name, s.tensor.clone()});
    const int64_t saved_steps = b.steps();
    Tensor mc = make_model(DType::f32, 99), gc = Tensor::empty({1, 1, 1, kN}, DType::f32);
    Optimizer resumed(c, mc, gc, kRanges, DType::f32, ctx);
    for (const auto& s : saved) resumed.load_state(s.name, s.tensor, ctx);
    resumed.set_steps(saved_steps);
    for (int64_t i = 0; i < kN; ++i)  // load_state("master") refreshed the model copy (padding aside)
      if (tensor_of(kRanges, i) >= 0) REQUIRE(mc.get_flat(i) == mb.get_flat(i));
    for (int s = 3; s < 6; ++s) {
      fill(gc, make_grads(23, s));
      resumed.step(ctx, lr_at(s));
    }
    REQUIRE(resumed.steps() == a.steps());
    for (size_t j = 0; j < a.state().size(); ++j) {
      INFO(a.state()[j].name);
      REQUIRE(same_bits(resumed.state()[j].tensor, a.state()[j].tensor));
    }
    for (int64_t i = 0; i < kN; ++i)
      if (tensor_of(kRanges, i) >= 0) REQUIRE(mc.get_flat(i) == ma.get_flat(i));
  }
}

TEST_CASE("load_state refuses unknown names and mismatched tensors, naming them", "[optimizer]") {
  ExecContext ctx;
  Tensor model = make_model(DType::f32, 1), grads = Tensor::zeros({1, 1, 1, kN}, DType::f32, Device::cpu);
  OptimizerConfig c;
  c.kind = OptimizerKind::sgd;
  Optimizer opt(c, model, grads, kRanges, DType::f32, ctx);
  REQUIRE(opt.state().size() == 2);
  REQUIRE(opt.state()[1].name == "momentum");
  const Tensor ok = Tensor::zeros({1, 1, 1, kN}, DType::f32, Device::cpu);
  REQUIRE_THROWS_WITH(opt.load_state("exp_avg", ok, ctx),
                      Contains("unknown state tensor 'exp_avg'") && Contains("master, momentum"));
  REQUIRE_THROWS_WITH(opt.load_state("momentum", Tensor::zeros({1, 1, 1, kN - 1}, DType::f32, Device::cpu), ctx),
                      Contains("'momentum' is fp32 (1,1,1,63), expected fp32 (1,1,1,64)"));
  REQUIRE_THROWS_WITH(opt.load_state("master", Tensor::zeros({1, 1, 1, kN}, DType::f64, Device::cpu), ctx),
                      Contains("'master' is fp64"));
  REQUIRE_NOTHROW(opt.load_state("momentum", ok, ctx));
  REQUIRE_THROWS_WITH(opt.set_steps(-1), Contains("negative"));
}

TEST_CASE("fp16 and bf16 storage emulation: the model copy is the master rounded to 16 bits", "[optimizer]") {
  for (DType st : {DType::f16, DType::bf16}) {
    INFO(dtype_name(st));
    ExecContext ctx;
    Tensor model = make_model(DType::f32, 31), grads = Tensor::empty({1, 1, 1, kN}, DType::f32);
    model.set_flat(kRanges[2].offset + 4, st == DType::f16 ? 65530.0 : 3.4e38);  // rounds to inf in storage
    OptimizerConfig c;
    Optimizer opt(c, model, grads, kRanges, st, ctx);
    for (int s = 0; s < 3; ++s) {
      fill(grads, make_grads(37, s));
      REQUIRE(opt.step(ctx, 1e-3).applied);
    }
    const Tensor master = state_of(opt, "master");
    int rounded = 0;
    for (int64_t i = 0; i < kN; ++i) {
      if (tensor_of(kRanges, i) < 0) {
        REQUIRE(model.get_flat(i) == kModelPad);
        continue;
      }
      const float w = master.data_as<float>()[i];
      const float want = st == DType::f16 ? half_to_float(float_to_half(w)) : bf16_to_float(float_to_bf16(w));
      REQUIRE(float_bits(model.data_as<float>()[i]) == float_bits(want));
      rounded += model.data_as<float>()[i] != w;
    }
    REQUIRE(rounded > 20);  // the master keeps fp32 precision; the copy does not
    REQUIRE(std::isinf(model.get_flat(kRanges[2].offset + 4)));
    REQUIRE(std::isfinite(master.get_flat(kRanges[2].offset + 4)));
  }
}

TEST_CASE("results do not depend on the number of threads", "[optimizer]") {
  // One large tensor (well above the parallel threshold) and two small ones.
  const std::vector<ParamRange> R = {{0, 100003}, {100032, 5}, {100096, 300001}};
  const int64_t n = 400128;
  auto run = [&](int threads, OptimizerKind k) {
    omp_set_num_threads(threads);
    ExecContext ctx;
    Tensor model = Tensor::empty({1, 1, 1, n}, DType::f32), grads = Tensor::empty({1, 1, 1, n}, DType::f32);
    for (int64_t i = 0; i < n; ++i) {
      model.data_as<float>()[i] = static_cast<float>(uniform(41, 0, i));
      grads.data_as<float>()[i] = static_cast<float>(uniform(41, 1, i));
    }
    OptimizerConfig c = adam_larc_clip();
    c.kind = k;
    Optimizer opt(c, model, grads, R, DType::f32, ctx);
    StepResult r = opt.step(ctx, 0.01);
    r = opt.step(ctx, 0.01);
    return std::pair<Tensor, double>{model, r.grad_norm};
  };
  const int saved = omp_get_max_threads();
  for (OptimizerKind k : {OptimizerKind::adam, OptimizerKind::lamb}) {
    auto [m1, n1] = run(1, k);
    auto [m3, n3] = run(3, k);
    REQUIRE(n1 == n3);
    REQUIRE(same_bits(m1, m3));
  }
  omp_set_num_threads(saved);
}

TEST_CASE("global-norm clipping by hand: g = (3, 4) with max_grad_norm 1", "[optimizer]") {
  ExecContext ctx;
  const std::vector<ParamRange> R = {{0, 2}, {4, 1}};
  Tensor model = Tensor::zeros({1, 1, 1, 6}, DType::f64, Device::cpu),
         grads = Tensor::zeros({1, 1, 1, 6}, DType::f64, Device::cpu);
  OptimizerConfig c;
  c.kind = OptimizerKind::sgd;
  c.momentum = 0;
  c.max_grad_norm = 1.0;
  Optimizer opt(c, model, grads, R, DType::f64, ctx);
  grads.set_flat(0, 3.0);
  grads.set_flat(1, 4.0);
  StepResult r = opt.step(ctx, 1.0);
  REQUIRE(r.grad_norm == 5.0);  // before clipping
  REQUIRE(model.get_flat(0) == Approx(-0.6).epsilon(1e-15));
  REQUIRE(model.get_flat(1) == Approx(-0.8).epsilon(1e-15));
  REQUIRE(model.get_flat(4) == 0.0);
  // Below the threshold nothing is scaled.
  grads.set_flat(0, 0.3);
  grads.set_flat(1, 0.4);
  r = opt.step(ctx, 1.0);
  REQUIRE(r.grad_norm == Approx(0.5).epsilon(1e-15));
  REQUIRE(model.get_flat(0) == Approx(-0.9).epsilon(1e-15));
  REQUIRE(model.get_flat(1) == Approx(-1.2).epsilon(1e-15));
}

TEST_CASE("LARC by hand: local_lr = eta ||w|| / ||g||, eps_L for zero norms, clip and scale", "[optimizer]") {
  // Tensor 0: w = (3, 4), g = (0, 2): local_lr = 0.002 * 5 / 2 = 0.005. Tensor 1: w = 0, g = 1: local_lr = 1/16000.
  const std::vector<ParamRange> R = {{0, 2}, {2, 1}};
  for (LarcMode mode : {LarcMode::clip, LarcMode::scale}) {
    for (double lr : {0.01, 0.001}) {
      INFO(larc_mode_name(mode) << " lr " << lr);
      ExecContext ctx;
      Tensor model = Tensor::zeros({1, 1, 1, 3}, DType::f64, Device::cpu);
      Tensor grads = Tensor::zeros({1, 1, 1, 3}, DType::f64, Device::cpu);
      model.set_flat(0, 3.0);
      model.set_flat(1, 4.0);
      grads.set_flat(1, 2.0);
      grads.set_flat(2, 1.0);
      OptimizerConfig c;
      c.kind = OptimizerKind::sgd;
      c.momentum = 0;
      c.larc = mode;
      Optimizer opt(c, model, grads, R, DType::f64, ctx);
      REQUIRE(opt.step(ctx, lr).applied);
      const double f0 = mode == LarcMode::scale ? 0.005 : std::min(0.005, lr) / lr;
      const double f1 = mode == LarcMode::scale ? 1.0 / 16000 : std::min(1.0 / 16000, lr) / lr;
      REQUIRE(model.get_flat(0) == 3.0);
      REQUIRE(model.get_flat(1) == Approx(4.0 - lr * f0 * 2.0).epsilon(1e-15));
      REQUIRE(model.get_flat(2) == Approx(-lr * f1).epsilon(1e-15));
    }
  }
}

TEST_CASE("the optimizer step is one profiled scope in the optimizer category", "[optimizer]") {
  ExecContext ctx;
  Profiler prof(Device::cpu);
  ctx.profiler = &prof;
  Tensor model = make_model(DType::f32, 1), grads = Tensor::zeros({1, 1, 1, kN}, DType::f32, Device::cpu);
  Optimizer opt(OptimizerConfig{}, model, grads, kRanges, DType::f32, ctx);
  prof.begin_step(nullptr);
  opt.step(ctx, 0.01);
  prof.end_step(nullptr);
  const ProfReport r = prof.report();
  REQUIRE(r.rows[static_cast<int>(ProfCategory::optimizer)].kernels == 1);
  const auto names = prof.by_name();
  REQUIRE(names.size() == 1);
  REQUIRE(names[0].name == "adam");
}

TEST_CASE("optimizer configuration and construction errors name the problem", "[optimizer]") {
  auto bad = [](auto edit) {
    OptimizerConfig c;
    edit(c);
    return c;
  };
  REQUIRE_NOTHROW(OptimizerConfig{}.validate());
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.momentum = 1.0; }).validate(), Contains("--momentum must be in [0, 1)"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.nesterov = true; }).validate(), Contains("--nesterov applies to sgd"));
  REQUIRE_THROWS_WITH(bad([](auto& c) {
                        c.kind = OptimizerKind::sgd;
                        c.nesterov = true;
                        c.momentum = 0;
                      }).validate(),
                      Contains("--nesterov needs a momentum > 0"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.beta1 = -0.1; }).validate(), Contains("--beta1 must be in [0, 1)"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.beta2 = 1.0; }).validate(), Contains("--beta2 must be in [0, 1)"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.eps = 0; }).validate(), Contains("--eps must be a positive number"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.weight_decay = -1; }).validate(), Contains("--weight-decay must be >= 0"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.max_grad_norm = kNaN; }).validate(), Contains("--max-grad-norm"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.larc_eta = 0; }).validate(), Contains("--larc-eta"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.larc_eps = -1; }).validate(), Contains("--larc-eps"));

  REQUIRE(parse_optimizer_kind("adamw") == OptimizerKind::adamw);
  REQUIRE(std::string(optimizer_kind_name(OptimizerKind::lamb)) == "lamb");
  REQUIRE_THROWS_WITH(parse_optimizer_kind("rmsprop"), Contains("choices: sgd, adam, adamw, lamb"));
  REQUIRE(parse_larc_mode("scale") == LarcMode::scale);
  REQUIRE_THROWS_WITH(parse_larc_mode("on"), Contains("choices: off, clip, scale"));

  ExecContext ctx;
  Tensor m32 = Tensor::zeros({1, 1, 1, kN}, DType::f32, Device::cpu);
  Tensor g32 = Tensor::zeros({1, 1, 1, kN}, DType::f32, Device::cpu);
  Tensor m64 = Tensor::zeros({1, 1, 1, kN}, DType::f64, Device::cpu);
  REQUIRE_THROWS_WITH(Optimizer(OptimizerConfig{}, m64, g32, kRanges, DType::f64, ctx), Contains("differ"));
  REQUIRE_THROWS_WITH(Optimizer(OptimizerConfig{}, m32, g32, kRanges, DType::f64, ctx),
                      Contains("storage fp64 with a fp32 model buffer"));
  REQUIRE_THROWS_WITH(Optimizer(OptimizerConfig{}, m32, g32, {{0, 10}, {5, 10}}, DType::f32, ctx),
                      Contains("range 1 at 5 overlaps"));
  REQUIRE_THROWS_WITH(Optimizer(OptimizerConfig{}, m32, g32, {{60, 10}}, DType::f32, ctx),
                      Contains("outside the buffer of 64 elements"));
  OptimizerConfig invalid;
  invalid.beta2 = 2;
  REQUIRE_THROWS_WITH(Optimizer(invalid, m32, g32, kRanges, DType::f32, ctx), Contains("--beta2"));
  Optimizer opt(OptimizerConfig{}, m32, g32, kRanges, DType::bf16, ctx);
  REQUIRE(opt.master_dtype() == DType::f32);
  REQUIRE_THROWS_WITH(opt.step(ctx, -1.0), Contains("learning rate"));
  REQUIRE_THROWS_WITH(opt.step(ctx, 0.1, 0.0), Contains("grad_scale"));
}

// ---- schedules ----------------------------------------------------------------------------------------------------

namespace {
ScheduleConfig sched(ScheduleKind k, double base) {
  ScheduleConfig c;
  c.kind = k;
  c.base_lr = base;
  return c;
}
}  // namespace

TEST_CASE("schedules: hand-computed values of every kind", "[schedule]") {
  const double eps = 1e-14;
  ScheduleConfig c = sched(ScheduleKind::constant, 0.1);
  c.validate();
  REQUIRE(schedule_lr(c, 0) == 0.1);
  REQUIRE(schedule_lr(c, 100000) == 0.1);

  c = sched(ScheduleKind::multistep, 0.1);
  c.milestones = {3, 5};
  c.decay_rate = 0.1;
  c.validate();
  REQUIRE(schedule_lr(c, 0) == 0.1);
  REQUIRE(schedule_lr(c, 2) == 0.1);
  REQUIRE(schedule_lr(c, 3) == Approx(0.01).epsilon(eps));
  REQUIRE(schedule_lr(c, 4) == Approx(0.01).epsilon(eps));
  REQUIRE(schedule_lr(c, 5) == Approx(0.001).epsilon(eps));
  REQUIRE(schedule_lr(c, 1000) == Approx(0.001).epsilon(eps));

  c = sched(ScheduleKind::cosine, 1.0);
  c.t_max = 4;
  c.eta_min = 0.1;
  c.validate();
  REQUIRE(schedule_lr(c, 0) == 1.0);
  REQUIRE(schedule_lr(c, 1) == Approx(0.1 + 0.45 * (1 + std::sqrt(0.5))).epsilon(eps));  // 0.86819805...
  REQUIRE(schedule_lr(c, 2) == Approx(0.55).epsilon(eps));
  REQUIRE(schedule_lr(c, 4) == Approx(0.1).epsilon(eps));
  REQUIRE(schedule_lr(c, 6) == Approx(0.55).epsilon(eps));  // periodic past t_max, as PyTorch
  REQUIRE(schedule_lr(c, 8) == Approx(1.0).epsilon(eps));

  c = sched(ScheduleKind::poly, 1.0);
  c.t_max = 4;
  c.power = 2.0;
  c.validate();
  REQUIRE(schedule_lr(c, 0) == 1.0);
  REQUIRE(schedule_lr(c, 1) == Approx(0.5625).epsilon(eps));
  REQUIRE(schedule_lr(c, 2) == Approx(0.25).epsilon(eps));
  REQUIRE(schedule_lr(c, 3) == Approx(0.0625).epsilon(eps));
  REQUIRE(schedule_lr(c, 4) == 0.0);
  REQUIRE(schedule_lr(c, 10) == 0.0);
  c.power = 1.0;
  REQUIRE(schedule_lr(c, 1) == Approx(0.75).epsilon(eps));
}

TEST_CASE("schedules: linear warmup (DeepCAM formula), then the main schedule from its step 0", "[schedule]") {
  const double eps = 1e-14;
  // Factor 1: from 0 to base over W = 4 steps; multistep milestone 3 counts from the end of warmup.
  ScheduleConfig c = sched(ScheduleKind::multistep, 0.1);
  c.warmup_steps = 4;
  c.milestones = {3};
  c.validate();
  REQUIRE(schedule_lr(c, 0) == 0.0);
  REQUIRE(schedule_lr(c, 1) == Approx(0.025).epsilon(eps));
  REQUIRE(schedule_lr(c, 2) == Approx(0.05).epsilon(eps));
  REQUIRE(schedule_lr(c, 3) == Approx(0.075).epsilon(eps));
  REQUIRE(schedule_lr(c, 4) == 0.1);
  REQUIRE(schedule_lr(c, 6) == 0.1);
  REQUIRE(schedule_lr(c, 7) == Approx(0.01).epsilon(eps));
  // Factor 2: from base to 2 * base, and the main schedule runs from the peak 2 * base.
  c.warmup_factor = 2.0;
  c.validate();
  REQUIRE(schedule_lr(c, 0) == 0.1);
  REQUIRE(schedule_lr(c, 2) == Approx(0.15).epsilon(eps));
  REQUIRE(schedule_lr(c, 4) == Approx(0.2).epsilon(eps));
  REQUIRE(schedule_lr(c, 7) == Approx(0.02).epsilon(eps));
  // Cosine after a warmup of 2: s = 1 is half of base; cosine step j = s - 2.
  ScheduleConfig k = sched(ScheduleKind::cosine, 1.0);
  k.warmup_steps = 2;
  k.t_max = 4;
  k.eta_min = 0.1;
  k.validate();
  REQUIRE(schedule_lr(k, 1) == 0.5);
  REQUIRE(schedule_lr(k, 2) == 1.0);
  REQUIRE(schedule_lr(k, 4) == Approx(0.55).epsilon(eps));
  REQUIRE(schedule_lr(k, 6) == Approx(0.1).epsilon(eps));
  // Poly after warmup; constant after warmup.
  ScheduleConfig p = sched(ScheduleKind::poly, 1.0);
  p.warmup_steps = 10;
  p.t_max = 4;
  p.validate();
  REQUIRE(schedule_lr(p, 5) == 0.5);
  REQUIRE(schedule_lr(p, 11) == Approx(0.75).epsilon(eps));
  REQUIRE(schedule_lr(p, 14) == 0.0);
  ScheduleConfig q = sched(ScheduleKind::constant, 0.4);
  q.warmup_steps = 8;
  q.warmup_factor = 3.0;
  REQUIRE(schedule_lr(q, 4) == Approx(0.8).epsilon(eps));
  REQUIRE(schedule_lr(q, 8) == Approx(1.2).epsilon(eps));
  REQUIRE(schedule_lr(q, 80) == Approx(1.2).epsilon(eps));
  REQUIRE_THROWS_WITH(schedule_lr(q, -1), Contains("negative"));
}

TEST_CASE("schedule configuration errors name the field", "[schedule]") {
  auto bad = [](ScheduleKind k, auto edit) {
    ScheduleConfig c;
    c.kind = k;
    if (k == ScheduleKind::cosine || k == ScheduleKind::poly) c.t_max = 10;
    edit(c);
    return c;
  };
  using K = ScheduleKind;
  REQUIRE_NOTHROW(bad(K::cosine, [](auto&) {}).validate());
  REQUIRE_THROWS_WITH(bad(K::constant, [](auto& c) { c.base_lr = 0; }).validate(), Contains("--lr must be"));
  REQUIRE_THROWS_WITH(bad(K::multistep,
                          [](auto& c) {
                            c.milestones = {5, 5};
                          })
                          .validate(),
                      Contains("--milestones must be increasing, got 5 then 5"));
  REQUIRE_THROWS_WITH(bad(K::multistep,
                          [](auto& c) {
                            c.milestones = {0, 5};
                          })
                          .validate(),
                      Contains("--milestones must be positive"));
  REQUIRE_THROWS_WITH(bad(K::multistep, [](auto& c) { c.decay_rate = 1.5; }).validate(),
                      Contains("--decay-rate must be in (0, 1]"));
  REQUIRE_THROWS_WITH(bad(K::cosine, [](auto& c) { c.milestones = {5}; }).validate(),
                      Contains("--milestones applies to the multistep schedule, not cosine"));
  REQUIRE_THROWS_WITH(bad(K::multistep, [](auto& c) { c.t_max = 5; }).validate(),
                      Contains("--t-max applies to the cosine and poly schedules, not multistep"));
  REQUIRE_THROWS_WITH(bad(K::cosine, [](auto& c) { c.t_max = 0; }).validate(), Contains("--t-max must be a positive"));
  REQUIRE_THROWS_WITH(bad(K::poly, [](auto& c) { c.t_max = -3; }).validate(), Contains("--t-max must be a positive"));
  REQUIRE_THROWS_WITH(bad(K::cosine, [](auto& c) { c.eta_min = -1; }).validate(), Contains("--eta-min"));
  REQUIRE_THROWS_WITH(bad(K::poly, [](auto& c) { c.power = 0; }).validate(), Contains("--power"));
  REQUIRE_THROWS_WITH(bad(K::constant, [](auto& c) { c.warmup_steps = -1; }).validate(), Contains("--warmup-steps"));
  REQUIRE_THROWS_WITH(bad(K::constant, [](auto& c) { c.warmup_factor = 0.5; }).validate(),
                      Contains("--warmup-factor must be >= 1"));

  REQUIRE(parse_schedule_kind("poly") == ScheduleKind::poly);
  REQUIRE(std::string(schedule_kind_name(ScheduleKind::multistep)) == "multistep");
  REQUIRE_THROWS_WITH(parse_schedule_kind("step"), Contains("choices: constant, multistep, cosine, poly"));
}
