// The Net with the full layer set: layer state (batch-norm running statistics) bound from the Net's state buffer,
// the step counter driving dropout, class-index inputs (labels) feeding the loss; finite differences through a
// whole net in double, and a few SGD steps lowering the loss.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>

#include "engine/net.h"
#include "engine/philox.h"
#include "train/sgd.h"
#include "layers/batchnorm.h"
#include "layers/conv2d.h"
#include "layers/dropout.h"
#include "layers/pool.h"
#include "layers/resize.h"
#include "layers/softmax_xent.h"
#include "tests/util/tolerances.h"

using namespace climseg;

namespace {

struct Ids {
  Net::Id x, labels, loss;
};

// conv3x3 -> BN+ReLU -> dropout -> maxpool 3x3/2 SAME -> bilinear x2 -> conv1x1 (3 classes) -> softmax xent
Ids build(Net& net, Shape in, double p_drop) {
  Ids ids;
  ids.x = net.input("x", in);
  ids.labels = net.input("labels", Shape{in.n, in.h, in.w, 1}, DType::i32);
  Conv2dConfig c1;
  c1.out_channels = 8;
  c1.kernel_h = c1.kernel_w = 3;
  c1.pad_h = c1.pad_w = 1;
  auto h = net.add("conv1", std::make_unique<Conv2d>(c1), {ids.x});
  BatchNormConfig bn;
  bn.relu = true;
  h = net.add("bn1", std::make_unique<BatchNorm2d>(bn), {h});
  h = net.add("drop", std::make_unique<Dropout>(p_drop, 99), {h});
  h = net.add("pool", std::make_unique<MaxPool2d>(PoolConfig::tf_same(3, 2)), {h});
  h = net.add("up", std::make_unique<BilinearResize>(ResizeConfig::to_size(in.h, in.w, ResizeMode::half_pixel)), {h});
  Conv2dConfig c2;
  c2.out_channels = 3;
  h = net.add("logits", std::make_unique<Conv2d>(c2), {h});
  ids.loss = net.add("loss", std::make_unique<SoftmaxXent>(SoftmaxXentConfig{}), {h, ids.labels});
  return ids;
}

void fill_inputs(Net& net, const Ids& ids) {
  Tensor x = net.input_tensor(ids.x);
  for (int64_t i = 0; i < x.numel(); ++i) x.set_flat(i, 2.0 * philox_uniform(3, 1, i) - 1.0);
  Tensor l = net.input_tensor(ids.labels);
  for (int64_t i = 0; i < l.numel(); ++i) l.set_flat(i, std::floor(3.0 * philox_uniform(3, 2, i)));
}

}  // namespace

TEST_CASE("Net binds layer state and advances the step", "[net][layers]") {
  Net net;
  Ids ids = build(net, Shape{2, 6, 8, 4}, 0.2);
  net.compile(NetOptions{.dtype = DType::f32});
  net.init_params(1);
  REQUIRE(net.state().size() == 2);  // bn1 running mean and var
  REQUIRE(net.state()[0].name == "bn1.running_mean");
  REQUIRE(net.state()[1].name == "bn1.running_var");
  REQUIRE(net.state()[1].value.get_flat(0) == 1.0);  // Init::ones
  ExecContext ctx;
  fill_inputs(net, ids);
  REQUIRE(net.step() == 0);
  net.forward(ctx);
  REQUIRE(net.step() == 1);
  // Running statistics moved towards the batch statistics (momentum 0.1).
  REQUIRE(net.state()[0].value.get_flat(0) != 0.0);
  REQUIRE(net.state()[1].value.get_flat(0) != 1.0);
}

TEST_CASE("Net with conv, batch norm, pooling, resize and the loss: finite differences (fp64)", "[net][layers]") {
  Net net;
  Ids ids = build(net, Shape{2, 6, 8, 4}, 0.25);
  net.compile(NetOptions{.dtype = DType::f64});
  net.init_params(5);
  ExecContext ctx;
  fill_inputs(net, ids);
  auto loss = [&] {
    net.set_step(7);  // the same dropout mask for every evaluation
    net.forward(ctx);
    return net.output().get_flat(0);
  };
  loss();
  net.output_grad().set_flat(0, 1.0);
  net.backward(ctx);
  Tensor g = net.grad_buffer().clone();
  const double h = 1e-6;
  int checked = 0;
  for (const Net::Param& p : net.params()) {
    for (int64_t j = 0; j < p.spec.shape.numel(); j += 5) {
      int64_t i = p.offset + j;
      double v = net.param_buffer().get_flat(i);
      net.param_buffer().set_flat(i, v + h);
      double lp = loss();
      net.param_buffer().set_flat(i, v - h);
      double lm = loss();
      net.param_buffer().set_flat(i, v);
      double numeric = (lp - lm) / (2 * h), analytic = g.get_flat(i);
      INFO(p.name << "[" << j << "] analytic " << analytic << " numeric " << numeric);
      // Max-pool can flip its argmax under a perturbation; inputs are random so ties are measure-zero.
      REQUIRE(std::fabs(analytic - numeric) <=
              test::tol::gradcheck_f64.rtol * std::max({1.0, std::fabs(analytic), std::fabs(numeric)}));
      ++checked;
    }
  }
  REQUIRE(checked > 20);
}

TEST_CASE("Net with the layer set trains with SGD on the CPU", "[net][layers][train]") {
  Net net;
  Ids ids = build(net, Shape{2, 8, 8, 4}, 0.0);
  net.compile(NetOptions{.dtype = DType::f32});
  net.init_params(2);
  ExecContext ctx;
  fill_inputs(net, ids);
  double first = 0, last = 0;
  for (int s = 0; s < 30; ++s) {
    net.forward(ctx);
    double l = net.output().get_flat(0);
    net.output_grad().set_flat(0, 1.0);
    net.backward(ctx);
    sgd_step(ctx, net.param_buffer(), net.grad_buffer(), 0.5);
    if (s == 0) first = l;
    last = l;
  }
  INFO("loss " << first << " -> " << last);
  REQUIRE(last < 0.9 * first);
}
