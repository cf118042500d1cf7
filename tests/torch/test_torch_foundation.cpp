// The foundation layers (relu, add, conv1x1, concat) against PyTorch, forward and backward, in double.
#include <catch2/catch.hpp>

#include <memory>

#include "engine/philox.h"
#include "layers/add.h"
#include "layers/concat.h"
#include "layers/pointwise_conv.h"
#include "layers/relu.h"
#include "tests/util/compare.h"
#include "tests/util/tolerances.h"
#include "tests/util/torch_oracle.h"

using namespace climseg;
using namespace climseg::test;

namespace {

Tensor random(Shape s, uint64_t stream, double scale = 1.0) {
  Tensor t = Tensor::empty(s, DType::f64, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, scale * (2.0 * philox_uniform(17, stream, i) - 1.0));
  return t;
}

// Runs `layer` on the CPU in double and in PyTorch, and compares y, every dx and every parameter gradient.
void compare_with_torch(Layer& layer, const std::string& op, const std::vector<Shape>& in) {
  ExecContext ctx;
  TorchCall call;
  call.op = op;
  for (size_t i = 0; i < in.size(); ++i) call.inputs.push_back(random(in[i], 10 + i));
  for (size_t i = 0; const ParamSpec& s : layer.param_specs(in)) call.params.push_back(random(s.shape, 20 + i++, 0.5));
  Shape out = layer.output_shape(in);
  call.dy = random(out, 30);

  ForwardArgs fa;
  fa.x = call.inputs;
  fa.y = Tensor::zeros(out, DType::f64, Device::cpu);
  fa.params = call.params;
  layer.forward(ctx, fa);
  BackwardArgs ba;
  ba.x = call.inputs;
  ba.y = fa.y;
  ba.dy = call.dy;
  for (const Shape& s : in) ba.dx.push_back(Tensor::zeros(s, DType::f64, Device::cpu));
  ba.dx_mode.assign(in.size(), GradMode::overwrite);
  ba.params = call.params;
  for (const Tensor& p : call.params) ba.grads.push_back(Tensor::zeros(p.shape(), DType::f64, Device::cpu));
  layer.backward(ctx, ba);

  TorchResult r = torch_run(call);
  const auto& t = tol::torch_f64;
  INFO(op);
  CS_REQUIRE_CLOSE(fa.y, r.y, t.atol, t.rtol);
  for (size_t i = 0; i < in.size(); ++i) CS_REQUIRE_CLOSE(ba.dx[i], r.dx[i], t.atol, t.rtol);
  for (size_t i = 0; i < ba.grads.size(); ++i) CS_REQUIRE_CLOSE(ba.grads[i], r.dparams[i].reshape(ba.grads[i].shape()), t.atol, t.rtol);
}

}  // namespace

TEST_CASE("foundation layers match PyTorch", "[torch]") {
  Relu relu;
  compare_with_torch(relu, "relu", {{2, 5, 7, 3}});
  Add add;
  compare_with_torch(add, "add", {{2, 5, 7, 3}, {2, 5, 7, 3}});
  PointwiseConv conv(5, true);
  compare_with_torch(conv, "conv1x1", {{2, 4, 6, 7}});
  PointwiseConv conv_nb(3, false);
  compare_with_torch(conv_nb, "conv1x1", {{1, 3, 3, 16}});
  Concat cat;
  compare_with_torch(cat, "concat", {{2, 3, 4, 2}, {2, 3, 4, 5}, {2, 3, 4, 1}});
}
