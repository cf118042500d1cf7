// Finite-difference gradient checks in double of every layer's CPU path (tests/util/gradcheck.h), on several
// shapes including odd sizes and single pixels, with accumulate mode and channel-slice (strided) views.
#include <catch2/catch.hpp>

#include <cmath>

#include "layers/add.h"
#include "layers/concat.h"
#include "layers/slice.h"
#include "layers/pointwise_conv.h"
#include "layers/relu.h"
#include "tests/util/gradcheck.h"

using namespace climseg;
using namespace climseg::test;

namespace {
const Shape kShapes[] = {{2, 5, 7, 3}, {1, 1, 1, 1}, {3, 4, 2, 16}, {1, 7, 5, 33}};

void require_pass(const GradCheckResult& r) {
  INFO(r.str());
  REQUIRE(r.ok);
  REQUIRE(r.checked > 0);
}
}  // namespace

TEST_CASE("relu gradient", "[grad]") {
  GradCheckOptions o;
  o.kink = 0.0;
  o.kink_range = 1e-3;  // skip inputs within 1e-3 of the kink at 0 (step is 1e-5)
  for (Shape s : kShapes) {
    Relu l;
    require_pass(check_gradients(l, {s}, o));
  }
}

TEST_CASE("relu propagates NaN like torch.relu, and passes no gradient through it", "[grad]") {
  Relu l;
  ExecContext ctx;
  Tensor x = Tensor::zeros(Shape{1, 1, 1, 3}, DType::f32, Device::cpu);
  x.set_flat(0, std::nan(""));
  x.set_flat(1, -1.0);
  x.set_flat(2, 2.0);
  ForwardArgs fa;
  fa.x = {x};
  fa.y = Tensor::zeros(x.shape(), DType::f32, Device::cpu);
  l.forward(ctx, fa);
  REQUIRE(std::isnan(fa.y.get_flat(0)));
  REQUIRE(fa.y.get_flat(1) == 0.0);
  REQUIRE(fa.y.get_flat(2) == 2.0);
}

TEST_CASE("add gradient", "[grad]") {
  for (Shape s : kShapes) {
    Add l;
    require_pass(check_gradients(l, {s, s}, {}));
  }
}

TEST_CASE("conv1x1 gradient, with and without bias", "[grad]") {
  for (Shape s : kShapes) {
    for (int64_t k : {1, 3, 17}) {
      for (bool bias : {true, false}) {
        PointwiseConv l(k, bias);
        require_pass(check_gradients(l, {s}, {}));
      }
    }
  }
}

TEST_CASE("concat gradient", "[grad]") {
  Concat c2;
  require_pass(check_gradients(c2, {{2, 3, 5, 4}, {2, 3, 5, 7}}, {}));
  Concat c3;
  require_pass(check_gradients(c3, {{1, 4, 3, 1}, {1, 4, 3, 16}, {1, 4, 3, 2}}, {}));
  Concat c1;
  require_pass(check_gradients(c1, {{1, 2, 2, 5}}, {}));
}

TEST_CASE("channel slice gradient (zeroes the other channels in overwrite mode)", "[grad]") {
  ChannelSlice head(0, 3), mid(2, 4), tail(5, 2), all(0, 7);
  for (ChannelSlice* l : {&head, &mid, &tail, &all}) require_pass(check_gradients(*l, {{2, 3, 5, 7}}, {}));
  ChannelSlice bad(4, 4);
  CHECK_THROWS_WITH(bad.output_shape({{1, 2, 2, 7}}), Catch::Contains("channels [4, 8) of an input with 7"));
}

// A layer with a deliberately wrong backward: the checker must catch it.
namespace {
class BrokenRelu : public Relu {
 protected:
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override {
    Relu::backward_cpu(ctx, a);
    double* dx = a.dx[0].data_as<double>();  // contiguous in the derivative pass
    dx[0] += 0.01;                           // off by 0.01 in one element
  }
};
class ForgetsBiasGrad : public PointwiseConv {
 public:
  ForgetsBiasGrad() : PointwiseConv(4, true) {}

 protected:
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override {
    PointwiseConv::backward_cpu(ctx, a);
    a.grads[1].zero();  // "forgets" the bias gradient
  }
};
class IgnoresAccumulate : public Add {
 protected:
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override {
    BackwardArgs b = a;
    b.dx_mode.assign(a.dx_mode.size(), GradMode::overwrite);
    Add::backward_cpu(ctx, b);
  }
};
}  // namespace

TEST_CASE("the gradient checker fails on deliberately broken backward passes", "[grad][checker]") {
  GradCheckOptions o;
  o.kink_range = 1e-3;
  o.max_elements = 1000;  // check every element so the single wrong one is seen
  o.check_modes = false;
  o.check_strided = false;
  {
    BrokenRelu l;
    Shape s{1, 2, 2, 3};
    Relu plain;  // the same check passes on the correct layer
    REQUIRE(check_gradients(plain, {s}, o).ok);
    GradCheckResult r = check_gradients(l, {s}, o);
    INFO(r.str());
    REQUIRE_FALSE(r.ok);
    REQUIRE_THAT(r.failures.front(), Catch::Contains("input 0[0]"));
  }
  {
    ForgetsBiasGrad l;
    GradCheckResult r = check_gradients(l, {{1, 3, 3, 5}}, o);
    INFO(r.str());
    REQUIRE_FALSE(r.ok);
    REQUIRE_THAT(r.failures.front(), Catch::Contains("bias"));
  }
  {
    IgnoresAccumulate l;
    GradCheckOptions m;
    m.check_strided = false;
    GradCheckResult r = check_gradients(l, {{1, 2, 3, 4}, {1, 2, 3, 4}}, m);
    INFO(r.str());
    REQUIRE_FALSE(r.ok);
    REQUIRE_THAT(r.failures.front(), Catch::Contains("accumulate mode"));
  }
}
