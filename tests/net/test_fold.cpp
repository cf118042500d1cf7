// Inference folding (Net::fold_batchnorm, docs/inference.md): the three networks, small, with random weights and
// non-trivial batch-norm statistics, give the same logits and masks with the per-channel maps folded into their
// convolutions as without; the plan that lets the maps run in place changes nothing; the loaded parameters stay
// untouched; a training net refuses to fold.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "engine/net.h"
#include "engine/philox.h"
#include "models/model.h"
#include "tests/util/tolerances.h"

using namespace climseg;

namespace {

ModelConfig small(const std::string& name, NormMode norm) {
  ModelConfig m = ModelConfig::defaults(name);
  m.norm = norm;
  if (name == "tiramisu") {
    m.growth = 8;
    m.stem_channels = 16;
    m.kernel = 3;
    m.blocks = {1, 2, 1};
  } else {
    m.width = 0.125;
  }
  return m;
}

double u(uint64_t stream, uint64_t i) { return philox_uniform(99, stream, i); }

// Random, non-trivial values for the parameters folding touches: batch-norm gamma in [0.5, 1.5), beta in
// [-0.5, 0.5); convolution biases in [-0.1, 0.1); affine parameters in [0.5, 1.5) and [-0.5, 0.5). Deterministic
// per parameter name, so two nets get the same values.
void randomise(Net& net) {
  auto stream_of = [](const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return h;
  };
  auto fill = [&](const Net::Param& p, double lo, double hi) {
    Tensor h = Tensor::empty(p.spec.shape, p.value.dtype());
    for (int64_t i = 0; i < h.numel(); ++i)
      h.set_flat(i, lo + (hi - lo) * u(stream_of(p.name), static_cast<uint64_t>(i)));
    p.value.copy_from(h);
  };
  auto ends = [](const std::string& s, const char* suffix) {
    const std::string t(suffix);
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
  };
  for (const Net::Param& p : net.params()) {
    const std::string type = net.layer(p.node).type();
    if (type == "batchnorm2d") {
      if (ends(p.name, ".gamma")) fill(p, 0.5, 1.5);
      if (ends(p.name, ".beta")) fill(p, -0.5, 0.5);
    } else if (type == "affine") {
      if (p.spec.name == "weights" || p.spec.name == "scale") fill(p, 0.5, 1.5);
      else fill(p, -0.5, 0.5);
    } else if (ends(p.name, ".bias")) {
      fill(p, -0.1, 0.1);
    }
  }
}

// Running statistics that keep activations O(1) (as trained ones do), then perturbed so that folding has work to
// do: one training-mode forward with momentum 1 sets them to the batch's statistics; then the mean moves by up to
// 0.5 standard deviations and the variance by a factor in [0.5, 2).
void calibrate_statistics(Net& net, ModelConfig m, DType dt, void (*fill_input)(Net&, const ModelGraph&)) {
  if (net.state().empty()) return;
  m.bn_momentum = 1.0;
  Net train;
  ModelGraph g = build_model(train, m, 2, 32, 48);
  train.compile(NetOptions{.device = Device::cpu, .dtype = dt});
  train.init_params(5);
  randomise(train);
  fill_input(train, g);
  ExecContext ctx(Device::cpu);
  train.forward(ctx);
  // Batch norms are the only layers with state: (running_mean, running_var) pairs.
  REQUIRE(train.state().size() == net.state().size());
  for (size_t i = 0; i + 1 < net.state().size(); i += 2) {
    const Tensor mean = train.state()[i].value.to(Device::cpu), var = train.state()[i + 1].value.to(Device::cpu);
    Tensor hm = Tensor::empty(mean.shape(), mean.dtype()), hv = Tensor::empty(var.shape(), var.dtype());
    for (int64_t c = 0; c < mean.numel(); ++c) {
      const double sd = std::sqrt(var.get_flat(c));
      hm.set_flat(c, mean.get_flat(c) + (u(1000 + i, static_cast<uint64_t>(c)) - 0.5) * sd);
      hv.set_flat(c, var.get_flat(c) * (0.5 + 1.5 * u(1001 + i, static_cast<uint64_t>(c))));
    }
    net.state()[i].value.copy_from(hm);
    net.state()[i + 1].value.copy_from(hv);
  }
}

void fill_input(Net& net, const ModelGraph& g) {
  Tensor x = net.input_tensor(g.input);
  for (int64_t i = 0; i < x.numel(); ++i) x.set_flat(i, philox_uniform(7, 1, static_cast<uint64_t>(i)));
}

struct Built {
  Net net;
  ModelGraph g;
};

void build(Built& b, const ModelConfig& m, bool fold_plan, DType dt = DType::f32) {
  b.g = build_model(b.net, m, 2, 32, 48);
  b.net.compile(NetOptions{.device = Device::cpu, .dtype = dt, .training = false, .fold = fold_plan});
  b.net.init_params(5);
  randomise(b.net);
  calibrate_statistics(b.net, m, dt, fill_input);
  fill_input(b.net, b.g);
}

Tensor run(Net& net) {
  ExecContext ctx(Device::cpu);
  net.forward(ctx);
  return net.output().to(Device::cpu);
}

// Norm-wise comparison (docs/tolerances.md, row "cpu fp32 folded inference") and the argmax masks, which must agree
// wherever the two largest logits are further apart than twice the tolerance.
void check_logits(const Tensor& got, const Tensor& ref, const test::Tolerance& r) {
  REQUIRE(got.shape() == ref.shape());
  const int64_t K = ref.shape().c, P = ref.shape().pixels();
  double big = 0, worst = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) big = std::max(big, std::abs(ref.get_flat(i)));
  for (int64_t i = 0; i < ref.numel(); ++i) worst = std::max(worst, std::abs(got.get_flat(i) - ref.get_flat(i)));
  const double budget = r.atol + r.rtol * big;
  INFO(dtype_name(ref.dtype()) << " largest logit difference " << worst << " (" << (worst / std::max(big, 1e-300)) << " of the largest logit "
                                   << big << "), budget " << budget);
  CHECK(big > 0);
  CHECK(worst <= budget);
  int64_t differ = 0, ties = 0;
  for (int64_t p = 0; p < P; ++p) {
    int64_t ag = 0, ar = 0;
    for (int64_t k = 1; k < K; ++k) {
      if (got.get_flat(p * K + k) > got.get_flat(p * K + ag)) ag = k;
      if (ref.get_flat(p * K + k) > ref.get_flat(p * K + ar)) ar = k;
    }
    double second = -INFINITY;
    for (int64_t k = 0; k < K; ++k)
      if (k != ar) second = std::max(second, ref.get_flat(p * K + k));
    const bool tie = ref.get_flat(p * K + ar) - second <= 2 * budget;
    ties += tie ? 1 : 0;
    differ += (ag != ar && !tie) ? 1 : 0;
  }
  INFO(ties << " near-ties of " << P << " pixels");
  CHECK(differ == 0);
}

}  // namespace

TEST_CASE("fold_batchnorm: folded logits match the unfolded ones for every model and norm", "[net][fold]") {
  struct Case {
    const char* model;
    NormMode norm;
    int min_maps;  // the chains the network must have (a model change that loses them should be noticed)
  };
  const Case cases[] = {{"deeplabv3plus", NormMode::batchnorm, 30}, {"deeplabv3plus", NormMode::half, 30},
                        {"deeplabv3plus", NormMode::none, 20},      {"tiramisu", NormMode::batchnorm, 8},
                        {"tiramisu", NormMode::none, 8},            {"deepcam", NormMode::batchnorm, 60},
                        {"deepcam", NormMode::none, 10}};
  for (const Case& c : cases) {
    const ModelConfig m = small(c.model, c.norm);
    DYNAMIC_SECTION(c.model << " norm " << norm_name(c.norm)) {
      // fp64 first: folding is exact up to rounding, so a much tighter bound catches small mistakes.
      {
        Built d;
        build(d, m, true, DType::f64);
        const Tensor ref = run(d.net);
        d.net.fold_batchnorm();
        check_logits(run(d.net), ref, test::tol::cpu_folded_f64);
      }
      Built a;
      build(a, m, true);
      INFO(a.net.stats().fold_chains << " chains, " << a.net.stats().fold_maps << " maps");
      CHECK(a.net.stats().fold_maps >= c.min_maps);
      const Tensor unfolded = run(a.net);

      // The in-place plan is only a plan: a net compiled without it gives the same logits.
      Built b;
      build(b, m, false);
      CHECK(b.net.stats().fold_chains == 0);
      check_logits(unfolded, run(b.net), test::tol::cpu_folded_f32);

      const Tensor params_before = a.net.param_buffer().to(Device::cpu);
      const bool has_state = a.net.state_buffer().defined();
      const Tensor state_before = has_state ? a.net.state_buffer().to(Device::cpu) : Tensor();
      const int skipped = a.net.fold_batchnorm();
      CHECK(skipped == a.net.stats().fold_maps);
      CHECK(a.net.folded());
      const Tensor folded = run(a.net);
      check_logits(folded, unfolded, test::tol::cpu_folded_f32);
      // The loaded values are untouched (saving weights writes the originals).
      const Tensor params_after = a.net.param_buffer().to(Device::cpu);
      const Tensor state_after = has_state ? a.net.state_buffer().to(Device::cpu) : Tensor();
      int64_t changed = 0;
      for (int64_t i = 0; i < params_after.numel(); ++i)
        changed += params_after.get_flat(i) != params_before.get_flat(i) ? 1 : 0;
      for (int64_t i = 0; has_state && i < state_after.numel(); ++i)
        changed += state_after.get_flat(i) != state_before.get_flat(i) ? 1 : 0;
      CHECK(changed == 0);
      // Unfolding runs the original nodes again: bit for bit the first result.
      a.net.unfold();
      const Tensor again = run(a.net);
      int64_t diff = 0;
      for (int64_t i = 0; i < again.numel(); ++i) diff += again.get_flat(i) != unfolded.get_flat(i) ? 1 : 0;
      CHECK(diff == 0);
    }
  }
}

TEST_CASE("fold_batchnorm: refused for a training net; init_params drops the fold", "[net][fold]") {
  {
    Net net;
    build_model(net, small("deepcam", NormMode::batchnorm), 2, 32, 48);
    net.compile(NetOptions{.device = Device::cpu, .dtype = DType::f32});
    net.init_params(1);
    CHECK(net.stats().fold_chains == 0);
    CHECK_THROWS_WITH(net.fold_batchnorm(), Catch::Contains("inference"));
  }
  Built a;
  build(a, small("deepcam", NormMode::batchnorm), true);
  CHECK(a.net.fold_batchnorm() > 0);
  a.net.init_params(5);
  CHECK_FALSE(a.net.folded());
}
