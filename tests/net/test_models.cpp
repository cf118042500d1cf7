// The three networks (models/): parameter and FLOP counts at 768x1152 against the reference numbers
// (reference-systems.md 2.4), the memory plan's zero-copy concatenations, input-size validation, every option
// building and running, and finite differences through each whole network in double on the CPU.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>

#include "engine/net.h"
#include "engine/philox.h"
#include "models/model.h"
#include "models/plan.h"
#include "tests/util/tolerances.h"

using namespace climseg;

namespace {

PlanOptions full_size() {
  PlanOptions o;
  o.batch = 2;
  o.height = 768;
  o.width = 1152;
  o.dtype = DType::f16;
  o.device = Device::cuda;
  return o;
}

void fill(Net& net, const ModelGraph& g, uint64_t seed, int64_t classes) {
  Tensor x = net.input_tensor(g.input);
  for (int64_t i = 0; i < x.numel(); ++i) x.set_flat(i, philox_uniform(seed, 1, i));  // normalised: [0, 1)
  if (g.labels >= 0) {
    Tensor l = net.input_tensor(g.labels);
    for (int64_t i = 0; i < l.numel(); ++i)
      l.set_flat(i, std::floor(static_cast<double>(classes) * philox_uniform(seed, 2, i)));
  }
}

// A small version of each model that still has every kind of layer.
ModelConfig small(const std::string& name) {
  ModelConfig m = ModelConfig::defaults(name);
  if (name == "tiramisu") {
    m.growth = 4;
    m.stem_channels = 8;
    m.kernel = 3;
    m.blocks = {1, 2, 1};
  } else {
    m.width = 1.0 / 16;
  }
  return m;
}

}  // namespace

TEST_CASE("plan at 768x1152: parameters and training FLOP of the reference networks", "[net][models]") {
  struct Ref {
    const char* model;
    int64_t params;
    double tflop;
  };
  // reference-systems.md 2.4: DeepLabv3+ 43,714,787 (43,718,883 with the 2018 code's unused final batch norm),
  // Tiramisu 7,504,835 (batch norm off), DeepCAM 56,454,720; 13.02, 4.19, 1.97 TFLOP per training sample.
  const Ref refs[] = {{"deeplabv3plus", 43714787, 13.02}, {"tiramisu", 7504835, 4.19}, {"deepcam", 56454720, 1.97}};
  for (const Ref& r : refs) {
    ModelPlan p = plan_model(ModelConfig::defaults(r.model), full_size());
    INFO(r.model << ": " << p.trainable_params << " parameters, " << p.train_tflop_per_sample << " TFLOP/sample");
    CHECK(p.trainable_params == r.params);
    CHECK(std::fabs(p.train_tflop_per_sample - r.tflop) <= 0.01 * r.tflop);
    // The planner never needs more than no reuse, nor less than the lower bound.
    CHECK(p.memory.arena_bytes >= p.memory.lower_bound);
    CHECK(p.memory.arena_bytes < p.memory.no_reuse_bytes);
    CHECK(p.concat_inputs_copied == 0);
  }
  // The 2018 production DeepLabv3+ ran without --use_batchnorm: BN became "multiply by 0.5" (no parameters).
  ModelConfig half = ModelConfig::defaults("deeplabv3plus");
  half.norm = NormMode::half;
  ModelPlan ph = plan_model(half, full_size());
  CHECK(ph.trainable_params == 43714787 - 45536);  // every BN's gamma and beta: as many as its running statistics
  CHECK(ph.state_elements == 0);
}

TEST_CASE("Tiramisu's concatenations and transition-up inputs copy nothing", "[net][models]") {
  ModelPlan p = plan_model(ModelConfig::defaults("tiramisu"), full_size());
  // 15 dense layers on the down path and 10 on the up path each append to their block's buffer (a concat of the
  // previous buffer and the new maps), and 4 concats join transition up and skip: every input is written in place.
  CHECK(p.concat_inputs_copied == 0);
  CHECK(p.concat_inputs_aliased == 2 * (15 + 10) + 2 * 4);
  CHECK(p.views == 4);  // the transitions up read the new maps in place
}

TEST_CASE("input sizes: valid multiples, clear errors otherwise", "[net][models]") {
  for (const std::string& name : model_names()) {
    ModelConfig m = ModelConfig::defaults(name);
    for (auto hw : {std::pair<int64_t, int64_t>{768, 1152}, {384, 576}, {192, 288}, {96, 144}, {64, 96}})
      CHECK_NOTHROW(check_input_size(m, hw.first, hw.second));
  }
  // 48x72 works for DeepLabv3+ (multiple of 8) but not for the others (72 / 16 is not whole).
  CHECK_NOTHROW(check_input_size(ModelConfig::defaults("deeplabv3plus"), 48, 72));
  CHECK_THROWS_WITH(check_input_size(ModelConfig::defaults("tiramisu"), 48, 72),
                    Catch::Contains("width 72 is not divisible by 16") && Catch::Contains("try 64 or 80"));
  CHECK_THROWS_WITH(check_input_size(ModelConfig::defaults("deepcam"), 100, 64),
                    Catch::Contains("height 100 is not divisible by 16"));
  CHECK_THROWS_WITH(ModelConfig::defaults("unet"),
                    Catch::Contains("unknown model 'unet'") && Catch::Contains("deeplabv3plus tiramisu deepcam"));
  Net net;
  CHECK_THROWS_WITH(build_model(net, ModelConfig::defaults("deepcam"), 1, 48, 72),
                    Catch::Contains("deepcam") && Catch::Contains("width 72"));
}

TEST_CASE("every model option builds, runs forward and backward (fp32, CPU) and gives finite values", "[net][models]") {
  struct Variant {
    std::string model;
    NormMode norm;
    DecoderMode decoder;
  };
  const Variant variants[] = {{"deeplabv3plus", NormMode::batchnorm, DecoderMode::deconv1x},
                              {"deeplabv3plus", NormMode::half, DecoderMode::deconv1x},
                              {"deeplabv3plus", NormMode::none, DecoderMode::deconv},
                              {"deeplabv3plus", NormMode::batchnorm, DecoderMode::bilinear},
                              {"tiramisu", NormMode::none, DecoderMode::deconv1x},
                              {"tiramisu", NormMode::batchnorm, DecoderMode::deconv1x},
                              {"deepcam", NormMode::batchnorm, DecoderMode::deconv1x}};
  for (const Variant& v : variants) {
    for (bool training : {true, false}) {
      ModelConfig m = small(v.model);
      m.norm = v.norm;
      m.decoder = v.decoder;
      INFO(v.model << " norm " << norm_name(v.norm) << " decoder " << decoder_name(v.decoder) << " training "
                   << training);
      Net net;
      ModelGraph g = build_model(net, m, 2, 32, 48);
      if (training) add_loss(net, g, SoftmaxXentConfig{});
      net.compile(NetOptions{.device = Device::cpu, .dtype = DType::f32, .training = training});
      net.init_params(11);
      fill(net, g, 5, m.num_classes);
      ExecContext ctx;
      net.forward(ctx);
      Tensor out = net.output();
      for (int64_t i = 0; i < out.numel(); ++i) REQUIRE(std::isfinite(out.get_flat(i)));
      if (!training) {
        REQUIRE(out.shape() == (Shape{2, 32, 48, 3}));
        continue;
      }
      net.output_grad().set_flat(0, 1.0);
      net.backward(ctx);
      double norm2 = 0;
      for (const Net::Param& p : net.params())
        for (int64_t i = 0; i < p.grad.numel(); ++i) {
          const double gv = p.grad.get_flat(i);
          REQUIRE(std::isfinite(gv));
          norm2 += gv * gv;
        }
      REQUIRE(norm2 > 0);
    }
  }
}

TEST_CASE("finite differences through each whole network (fp64, CPU)", "[net][models][grad]") {
  for (const std::string& name : model_names()) {
    ModelConfig m = small(name);
    m.norm = NormMode::batchnorm;  // the most involved path (batch statistics couple the whole batch)
    m.dropout = 0.2;
    Net net;
    ModelGraph g = build_model(net, m, 2, 32, 32);
    add_loss(net, g, SoftmaxXentConfig{});
    net.compile(NetOptions{.device = Device::cpu, .dtype = DType::f64});
    net.init_params(21);
    fill(net, g, 9, m.num_classes);
    ExecContext ctx;
    auto loss = [&] {
      net.set_step(3);  // the same dropout masks for every evaluation
      net.forward(ctx);
      return net.output().get_flat(0);
    };
    loss();
    net.output_grad().set_flat(0, 1.0);
    net.backward(ctx);
    Tensor grads = net.grad_buffer().clone();
    // A few elements of a few parameter tensors spread over the depth: first conv, every 7th tensor, the last.
    const auto& ps = net.params();
    int checked = 0;
    std::vector<size_t> which;
    for (size_t t = 0; t < ps.size(); t += 7) which.push_back(t);
    if (which.back() != ps.size() - 1) which.push_back(ps.size() - 1);
    for (size_t t : which) {
      const Net::Param& p = ps[t];
      for (int64_t j : {int64_t{0}, p.spec.shape.numel() / 2, p.spec.shape.numel() - 1}) {
        const int64_t i = p.offset + j;
        const double v = net.param_buffer().get_flat(i), h = 1e-6;
        net.param_buffer().set_flat(i, v + h);
        const double lp = loss();
        net.param_buffer().set_flat(i, v - h);
        const double lm = loss();
        net.param_buffer().set_flat(i, v);
        const double numeric = (lp - lm) / (2 * h), analytic = grads.get_flat(i);
        INFO(name << ": " << p.name << "[" << j << "] analytic " << analytic << " numeric " << numeric);
        CHECK(std::fabs(analytic - numeric) <=
              test::tol::gradcheck_f64.rtol * std::max({1.0, std::fabs(analytic), std::fabs(numeric)}));
        ++checked;
      }
    }
    INFO(name);
    CHECK(checked >= 9);
  }
}
