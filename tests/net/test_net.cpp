// The Net end to end on the CPU: forward/backward through fan-out, residual adds, zero-copy (nested)
// concatenations and in-place layers, checked by finite differences through the whole graph in double, against
// the same graph with every memory optimisation off, and by training a tiny net with plain SGD.
#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <string>

#include "engine/net.h"
#include "engine/philox.h"
#include "train/sgd.h"
#include "layers/add.h"
#include "layers/batchnorm.h"
#include "layers/concat.h"
#include "layers/pointwise_conv.h"
#include "layers/relu.h"
#include "layers/slice.h"
#include "layers/softmax_xent.h"
#include "tests/util/tolerances.h"

using namespace climseg;

namespace {

// A graph with everything the Net must handle:
//   x -> conv a -> relu -> (fan-out) -> conv b -> add(residual with relu out) -> relu
//   dense block: d0 = conv(.), d1 = conv(relu(d0)); c1 = concat(d0, d1); d2 = conv(relu(c1)); c2 = concat(c1, d2)
//   head = conv(c2) -> output
void build(Net& net, Shape in) {
  auto x = net.input("x", in);
  auto a = net.add("conv_a", std::make_unique<PointwiseConv>(6), {x});
  auto ra = net.add("relu_a", std::make_unique<Relu>(), {a});
  auto b = net.add("conv_b", std::make_unique<PointwiseConv>(6), {ra});
  auto s = net.add("add", std::make_unique<Add>(), {b, ra});
  auto rs = net.add("relu_s", std::make_unique<Relu>(), {s});
  auto d0 = net.add("d0", std::make_unique<PointwiseConv>(4), {rs});
  auto r0 = net.add("r0", std::make_unique<Relu>(), {d0});
  auto d1 = net.add("d1", std::make_unique<PointwiseConv>(3), {r0});
  auto c1 = net.add("c1", std::make_unique<Concat>(), {d0, d1});
  auto r1 = net.add("r1", std::make_unique<Relu>(), {c1});
  auto d2 = net.add("d2", std::make_unique<PointwiseConv>(3), {r1});
  auto c2 = net.add("c2", std::make_unique<Concat>(), {c1, d2});
  net.add("head", std::make_unique<PointwiseConv>(2), {c2});
}

void fill(const Tensor& t, uint64_t stream, double scale = 1.0) {
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, scale * (2.0 * philox_uniform(5, stream, i) - 1.0));
}

double loss(const Net& net, const Tensor& r) {
  double s = 0;
  Tensor y = net.output();
  for (int64_t i = 0; i < y.numel(); ++i) s += y.get_flat(i) * r.get_flat(i);
  return s;
}

// Central difference of the loss <output, r> in element i of `target` (an input or the parameter buffer) against the
// analytic gradient, within the "gradcheck fp64" row.
void require_fd_match(Net& net, ExecContext& ctx, const Tensor& r, const Tensor& target, int64_t i, double analytic,
                      const std::string& what) {
  const double h = 1e-6;
  const double v = target.get_flat(i);
  target.set_flat(i, v + h);
  net.forward(ctx);
  const double lp = loss(net, r);
  target.set_flat(i, v - h);
  net.forward(ctx);
  const double lm = loss(net, r);
  target.set_flat(i, v);
  const double numeric = (lp - lm) / (2 * h);
  INFO(what << "[" << i << "]: analytic " << analytic << " numeric " << numeric);
  REQUIRE(std::fabs(analytic - numeric) <=
          test::tol::gradcheck_f64.rtol * std::max({1.0, std::fabs(analytic), std::fabs(numeric)}));
}

const Shape kIn{2, 3, 5, 4};

}  // namespace

TEST_CASE("Net: gradients through the whole graph match finite differences (fp64)", "[net]") {
  Net net;
  build(net, kIn);
  net.compile(NetOptions{.dtype = DType::f64, .input_grads = true});
  net.init_params(11);
  // Biases start at zero; give them values so their gradients are exercised in a generic point.
  fill(net.param_buffer(), 77, 0.5);
  ExecContext ctx;
  fill(net.input_tensor(0), 1);
  Tensor r = Tensor::empty(net.output().shape(), DType::f64, Device::cpu);
  fill(r, 2);

  net.forward(ctx);
  net.output_grad().copy_from(r);
  net.backward(ctx);
  Tensor g = net.grad_buffer().clone();
  Tensor gx = net.input_grad(0).clone();

  int checked = 0;
  auto check = [&](const Tensor& target, int64_t i, double analytic, const char* what) {
    require_fd_match(net, ctx, r, target, i, analytic, what);
    ++checked;
  };
  for (const Net::Param& p : net.params())
    for (int64_t j = 0; j < p.spec.shape.numel(); j += 3)
      check(net.param_buffer(), p.offset + j, g.get_flat(p.offset + j), p.name.c_str());
  for (int64_t i = 0; i < gx.numel(); i += 5) check(net.input_tensor(0), i, gx.get_flat(i), "input");
  REQUIRE(checked > 50);
}

TEST_CASE("Net: zero-copy concat and in-place give the same numbers as plain buffers", "[net]") {
  auto run = [](bool optimised, Tensor& out, Tensor& grads, NetStats& stats, MemoryPlan& plan) {
    Net net;
    build(net, kIn);
    net.compile(NetOptions{.dtype = DType::f64, .zero_copy_concat = optimised, .in_place = optimised});
    net.init_params(3);
    fill(net.param_buffer(), 78, 0.5);
    ExecContext ctx;
    fill(net.input_tensor(0), 4);
    net.forward(ctx);
    out = net.output().clone();
    Tensor r = Tensor::empty(out.shape(), DType::f64, Device::cpu);
    fill(r, 5);
    net.output_grad().copy_from(r);
    net.backward(ctx);
    grads = net.grad_buffer().clone();
    stats = net.stats();
    plan = net.memory_plan();
  };
  Tensor o1, g1, o2, g2;
  NetStats s1, s2;
  MemoryPlan p1, p2;
  run(true, o1, g1, s1, p1);
  run(false, o2, g2, s2, p2);
  for (int64_t i = 0; i < o1.numel(); ++i) REQUIRE(o1.get_flat(i) == o2.get_flat(i));
  for (int64_t i = 0; i < g1.numel(); ++i)
    REQUIRE(g1.get_flat(i) ==
            Approx(g2.get_flat(i)).epsilon(test::tol::cpu_same_ops_f64.rtol).margin(test::tol::cpu_same_ops_f64.atol));
  // Every concat input in this graph can be aliased (c1 itself is a slice of c2: nested), and so can their
  // gradients; the relus take over their inputs' memory.
  REQUIRE(s1.concat_inputs_aliased == 4);
  REQUIRE(s1.concat_inputs_copied == 0);
  REQUIRE(s1.concat_grads_aliased == 4);
  REQUIRE(s1.in_place_granted > 0);
  REQUIRE(s2.concat_inputs_aliased == 0);
  REQUIRE(s2.in_place_granted == 0);
  REQUIRE(p1.arena_bytes <= p2.arena_bytes);
  REQUIRE(p1.arena_bytes < p1.no_reuse_bytes);
  REQUIRE(p1.arena_bytes >= p1.lower_bound);
  INFO(p1.report());
}

TEST_CASE("Net: parameter gradients overwrite or accumulate; fan-out inputs accumulate", "[net]") {
  Net net;
  build(net, kIn);
  net.compile(NetOptions{.dtype = DType::f64});
  net.init_params(9);
  ExecContext ctx;
  fill(net.input_tensor(0), 6);
  net.forward(ctx);
  fill(net.output_grad(), 7);
  net.backward(ctx);
  Tensor once = net.grad_buffer().clone();
  net.forward(ctx);
  fill(net.output_grad(), 7);
  net.backward(ctx);  // overwrite again: same values
  for (int64_t i = 0; i < once.numel(); ++i) REQUIRE(net.grad_buffer().get_flat(i) == once.get_flat(i));
  net.forward(ctx);
  fill(net.output_grad(), 7);
  net.backward(ctx, GradMode::accumulate);
  for (int64_t i = 0; i < once.numel(); ++i)
    REQUIRE(net.grad_buffer().get_flat(i) == Approx(2 * once.get_flat(i))
                                                 .epsilon(test::tol::cpu_same_ops_f64.rtol)
                                                 .margin(test::tol::cpu_same_ops_f64.atol));
}

TEST_CASE("Net: plain SGD on the CPU lowers the loss of a tiny regression", "[net][train]") {
  Net net;
  auto x = net.input("x", Shape{4, 6, 6, 3});
  auto h = net.add("c1", std::make_unique<PointwiseConv>(16), {x});
  auto r = net.add("r1", std::make_unique<Relu>(), {h});
  auto cat = net.add("cat", std::make_unique<Concat>(), {r, h});
  net.add("c2", std::make_unique<PointwiseConv>(1), {cat});
  net.compile(NetOptions{.dtype = DType::f32});
  net.init_params(1);
  ExecContext ctx;
  Tensor in = net.input_tensor(x);
  fill(in, 8);
  // target: |x0| + x1 * x2 per pixel (needs the nonlinearity)
  Tensor target = Tensor::empty(net.output().shape(), DType::f32, Device::cpu);
  for (int64_t p = 0; p < target.numel(); ++p)
    target.set_flat(p, std::fabs(in.get_flat(3 * p)) + in.get_flat(3 * p + 1) * in.get_flat(3 * p + 2));
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    net.forward(ctx);
    double l = 0;
    Tensor y = net.output(), dy = net.output_grad();
    for (int64_t i = 0; i < y.numel(); ++i) {
      double d = y.get_flat(i) - target.get_flat(i);
      l += d * d / static_cast<double>(y.numel());
      dy.set_flat(i, 2 * d / static_cast<double>(y.numel()));
    }
    net.backward(ctx);
    sgd_step(ctx, net.param_buffer(), net.grad_buffer(), 0.1);
    if (step == 0) first = l;
    last = l;
  }
  INFO("loss " << first << " -> " << last);
  REQUIRE(last < 0.5 * first);
}

TEST_CASE("Net: clear errors for bad graphs and misuse", "[net]") {
  {
    Net net;
    auto x = net.input("x", Shape{1, 2, 2, 3});
    auto y = net.input("y", Shape{1, 2, 2, 4});
    REQUIRE_THROWS_WITH(net.add("sum", std::make_unique<Add>(), {x, y}),
                        Catch::Contains("sum: add of different shapes"));
    REQUIRE_THROWS_WITH(net.add("bad", std::make_unique<Relu>(), {x, y}), Catch::Contains("expected 1 inputs"));
    REQUIRE_THROWS_WITH(net.add("ghost", std::make_unique<Relu>(), {42}),
                        Catch::Contains("unknown input tensor id 42"));
  }
  {
    Net net;
    auto x = net.input("x", Shape{1, 2, 2, 3});
    net.add("unused", std::make_unique<Relu>(), {x});
    net.add("out", std::make_unique<PointwiseConv>(2), {x});
    REQUIRE_THROWS_WITH(net.compile({}), Catch::Contains("'unused' is never used"));
  }
  {
    Net net;
    auto x = net.input("x", Shape{1, 2, 2, 3});
    net.add("out", std::make_unique<PointwiseConv>(2), {x});
    ExecContext ctx;
    REQUIRE_THROWS_WITH(net.forward(ctx), Catch::Contains("before compile"));
    net.compile({});
    REQUIRE_THROWS_WITH(net.compile({}), Catch::Contains("called twice"));
    REQUIRE_THROWS_WITH(net.input_tensor(1), Catch::Contains("not a graph input"));
  }
  {
    Net net;
    auto x = net.input("x", Shape{1, 2, 2, 3});
    net.add("out", std::make_unique<PointwiseConv>(2), {x});
    REQUIRE_THROWS_WITH(net.compile(NetOptions{.dtype = DType::f16}), Catch::Contains("no cpu path for fp16"));
  }
}

TEST_CASE("Net: inference compile keeps only what forward needs", "[net]") {
  Net train, infer;
  build(train, kIn);
  build(infer, kIn);
  train.compile(NetOptions{.dtype = DType::f32});
  infer.compile(NetOptions{.dtype = DType::f32, .training = false});
  REQUIRE(infer.memory_plan().arena_bytes < train.memory_plan().arena_bytes);
  REQUIRE_FALSE(infer.grad_buffer().defined());
  ExecContext ctx;
  train.init_params(2);
  infer.init_params(2);
  fill(train.input_tensor(0), 3);
  fill(infer.input_tensor(0), 3);
  train.forward(ctx);
  infer.forward(ctx);
  for (int64_t i = 0; i < train.output().numel(); ++i)
    REQUIRE(train.output().get_flat(i) == infer.output().get_flat(i));
  REQUIRE_THROWS_WITH(infer.backward(ctx), Catch::Contains("inference"));
}

TEST_CASE("Net: a tensor used twice by one layer (x + x) and fanned out to several layers", "[net]") {
  for (bool in_place : {true, false}) {
    Net net;
    auto x = net.input("x", Shape{1, 2, 3, 4});
    auto a = net.add("a", std::make_unique<PointwiseConv>(4), {x});
    auto r = net.add("r", std::make_unique<Relu>(), {a});
    auto d = net.add("double", std::make_unique<Add>(), {r, r});     // both slots the same tensor, its only consumer
    auto b = net.add("b", std::make_unique<PointwiseConv>(4), {a});  // a fans out to r and b
    auto s = net.add("s", std::make_unique<Add>(), {d, b});
    net.add("out", std::make_unique<PointwiseConv>(2), {s});
    net.compile(NetOptions{.dtype = DType::f64, .in_place = in_place});
    INFO("in_place " << in_place);
    net.init_params(4);
    ExecContext ctx;
    fill(net.input_tensor(x), 9);
    Tensor rr = Tensor::empty(Shape{1, 2, 3, 2}, DType::f64, Device::cpu);
    fill(rr, 10);
    net.forward(ctx);
    net.output_grad().copy_from(rr);
    net.backward(ctx);
    Tensor g = net.grad_buffer().clone();
    for (const Net::Param& p : net.params()) {
      for (int64_t j = 0; j < p.spec.shape.numel(); ++j)
        require_fd_match(net, ctx, rr, net.param_buffer(), p.offset + j, g.get_flat(p.offset + j), p.name);
    }
  }
}

TEST_CASE("Net: batch norm whose residual is its own input (both slots one tensor)", "[net]") {
  // y = bn(a) + a: the Net gives slot 0 (x) the overwrite and slot 1 (residual) the accumulate on a's gradient buffer,
  // so the layer must write dx before adding dres (as Add does).
  Net net;
  auto x = net.input("x", Shape{2, 3, 2, 4});
  auto a = net.add("a", std::make_unique<PointwiseConv>(4), {x});
  BatchNormConfig cfg;
  cfg.residual = true;
  auto b = net.add("bn", std::make_unique<BatchNorm2d>(cfg), {a, a});
  net.add("out", std::make_unique<PointwiseConv>(2), {b});
  net.compile(NetOptions{.dtype = DType::f64});
  net.init_params(5);
  ExecContext ctx;
  fill(net.input_tensor(x), 11);
  Tensor rr = Tensor::empty(Shape{2, 3, 2, 2}, DType::f64, Device::cpu);
  fill(rr, 12);
  net.forward(ctx);
  net.output_grad().copy_from(rr);
  net.backward(ctx);
  Tensor g = net.grad_buffer().clone();
  for (const Net::Param& p : net.params()) {
    if (p.name.rfind("a", 0) != 0) continue;  // the conv before the batch norm: its gradient goes through both slots
    for (int64_t j = 0; j < p.spec.shape.numel(); ++j)
      require_fd_match(net, ctx, rr, net.param_buffer(), p.offset + j, g.get_flat(p.offset + j), p.name);
  }
}

TEST_CASE("Net: channel views (ChannelSlice) are zero copy and their gradients are right", "[net]") {
  // x -> conv a -> relu -> slice [2, 5) -> conv s ; relu -> conv b ; add(s, b) ; concat(add, conv d(relu)) ;
  // slice [1, 4) of the concat -> head. The relu output fans out to a view and two convolutions (accumulated
  // gradients), and the second view reads across both members of a zero-copy concat.
  auto build_views = [](Net& net) {
    auto x = net.input("x", kIn);
    auto a = net.add("conv_a", std::make_unique<PointwiseConv>(6), {x});
    auto ra = net.add("relu_a", std::make_unique<Relu>(), {a});
    auto sl = net.add("slice1", std::make_unique<ChannelSlice>(2, 3), {ra});
    auto cs = net.add("conv_s", std::make_unique<PointwiseConv>(3), {sl});
    auto cb = net.add("conv_b", std::make_unique<PointwiseConv>(3), {ra});
    auto s = net.add("add", std::make_unique<Add>(), {cs, cb});
    auto d = net.add("conv_d", std::make_unique<PointwiseConv>(2), {ra});
    auto c = net.add("cat", std::make_unique<Concat>(), {s, d});
    auto sl2 = net.add("slice2", std::make_unique<ChannelSlice>(1, 3), {c});
    net.add("head", std::make_unique<PointwiseConv>(2), {sl2});
  };
  auto run = [&](bool optimised, Tensor& out, Tensor& grads, Tensor& gx, NetStats& stats) {
    Net net;
    build_views(net);
    net.compile(
        NetOptions{.dtype = DType::f64, .input_grads = true, .zero_copy_concat = optimised, .in_place = optimised});
    net.init_params(9);
    fill(net.param_buffer(), 79, 0.5);
    ExecContext ctx;
    fill(net.input_tensor(0), 6);
    net.forward(ctx);
    out = net.output().clone();
    Tensor r = Tensor::empty(out.shape(), DType::f64, Device::cpu);
    fill(r, 7);
    net.output_grad().copy_from(r);
    net.backward(ctx);
    grads = net.grad_buffer().clone();
    gx = net.input_grad(0).clone();
    stats = net.stats();
    if (!optimised) return;
    // The views share their inputs' memory.
    REQUIRE(net.activation(3).data() == static_cast<const char*>(net.activation(2).data()) + 2 * sizeof(double));
    // Finite differences for every parameter and a few inputs.
    auto check = [&](const Tensor& target, int64_t i, double analytic) {
      require_fd_match(net, ctx, r, target, i, analytic, "element");
    };
    for (const Net::Param& p : net.params())
      for (int64_t j = 0; j < p.spec.shape.numel(); ++j)
        check(net.param_buffer(), p.offset + j, grads.get_flat(p.offset + j));
    for (int64_t i = 0; i < gx.numel(); i += 7) check(net.input_tensor(0), i, gx.get_flat(i));
  };
  Tensor o1, g1, x1, o2, g2, x2;
  NetStats s1, s2;
  run(true, o1, g1, x1, s1);
  run(false, o2, g2, x2, s2);
  REQUIRE(s1.views == 2);
  REQUIRE(s2.views == 0);
  REQUIRE(s1.concat_inputs_copied == 0);
  for (int64_t i = 0; i < o1.numel(); ++i) REQUIRE(o1.get_flat(i) == o2.get_flat(i));
  for (int64_t i = 0; i < g1.numel(); ++i)
    REQUIRE(g1.get_flat(i) ==
            Approx(g2.get_flat(i)).epsilon(test::tol::cpu_same_ops_f64.rtol).margin(test::tol::cpu_same_ops_f64.atol));
  for (int64_t i = 0; i < x1.numel(); ++i)
    REQUIRE(x1.get_flat(i) ==
            Approx(x2.get_flat(i)).epsilon(test::tol::cpu_same_ops_f64.rtol).margin(test::tol::cpu_same_ops_f64.atol));
}

// NetOptions::emulate_storage: with f16 (bf16) storage emulated on an fp32 CPU net, every activation (graph input
// included, the loss excepted) and every gradient holds a value exactly representable in f16 (bf16), and it is the
// rounding of what the fp32 net computes from the same rounded inputs (one rounding per written tensor, fp32 maths).
TEST_CASE("Net: emulated 16-bit storage rounds every written tensor, and only that", "[net][precision]") {
  ExecContext ctx;
  for (DType storage : {DType::f16, DType::bf16}) {
    DYNAMIC_SECTION(dtype_name(storage)) {
      auto representable = [storage](double v) {
        const float f = static_cast<float>(v);
        const float r = storage == DType::f16 ? half_to_float(float_to_half(f)) : bf16_to_float(float_to_bf16(f));
        return std::isnan(f) ? std::isnan(r) : r == f;
      };
      Net em;
      build(em, kIn);
      em.compile({.device = Device::cpu, .dtype = DType::f32, .input_grads = true, .emulate_storage = storage});
      em.init_params(3);
      // Parameters are the optimizer's to round; round them here as it would.
      Tensor pb = em.param_buffer();
      for (int64_t i = 0; i < pb.numel(); ++i)
        pb.set_flat(i, storage == DType::f16 ? half_to_float(float_to_half(pb.get_flat(i)))
                                             : bf16_to_float(float_to_bf16(pb.get_flat(i))));
      fill(em.input_tensor(0), 1, 3.0);  // unrounded: forward rounds graph inputs
      Tensor x_rounded = em.input_tensor(0).clone();
      em.forward(ctx);
      for (int64_t i = 0; i < x_rounded.numel(); ++i) REQUIRE(representable(em.input_tensor(0).get_flat(i)));
      Tensor y = em.output().clone();
      for (int64_t i = 0; i < y.numel(); ++i) REQUIRE(representable(y.get_flat(i)));
      bool some_changed = false;
      for (int64_t i = 0; i < x_rounded.numel(); ++i)
        some_changed = some_changed || em.input_tensor(0).get_flat(i) != x_rounded.get_flat(i);
      CHECK(some_changed);  // the rounding did something to random data

      // The same graph in plain fp32 from the rounded input and weights: its output, rounded, is the emulated
      // output to within the intermediate roundings (not bit-equal: the emulated net rounds inside too).
      Net ref;
      build(ref, kIn);
      ref.compile({.device = Device::cpu, .dtype = DType::f32});
      ref.param_buffer().copy_from(pb);
      ref.input_tensor(0).copy_from(em.input_tensor(0));
      ref.forward(ctx);
      const double rel = storage == DType::f16 ? 1.0 / 1024 : 1.0 / 128;  // a few roundings of 2^-11 / 2^-8
      for (int64_t i = 0; i < y.numel(); ++i)
        CHECK(std::abs(y.get_flat(i) - ref.output().get_flat(i)) <= 8 * rel * (1 + std::abs(ref.output().get_flat(i))));

      fill(em.output_grad(), 2);
      em.backward(ctx);
      Tensor g = em.grad_buffer();
      for (int64_t i = 0; i < g.numel(); ++i) REQUIRE(representable(g.get_flat(i)));
      Tensor dx = em.input_grad(0);
      for (int64_t i = 0; i < dx.numel(); ++i) REQUIRE(representable(dx.get_flat(i)));
    }
  }
  Net bad;
  build(bad, kIn);
  CHECK_THROWS_WITH(bad.compile({.device = Device::cpu, .dtype = DType::f64, .emulate_storage = DType::f16}),
                    Catch::Contains("emulate_storage"));
}

TEST_CASE("an error inside a layer names the node, its input shapes, dtype and device", "[net]") {
  // A refusal deep in a kernel (a bad label here; no cuDNN algorithm for a shape on a GPU) must say which layer.
  Net net;
  auto x = net.input("x", Shape{1, 2, 2, 4});
  auto labels = net.input("labels", Shape{1, 2, 2, 1}, DType::i32);
  auto logits = net.add("head", std::make_unique<PointwiseConv>(3), {x});
  net.add("loss", std::make_unique<SoftmaxXent>(SoftmaxXentConfig{}), {logits, labels});
  net.compile(NetOptions{});
  net.init_params(1);
  ExecContext ctx;
  Tensor l = Tensor::zeros(Shape{1, 2, 2, 1}, DType::i32, Device::cpu);
  l.set_flat(3, 7);  // outside [0, 3)
  net.input_tensor(labels).copy_from(l, &ctx);
  REQUIRE_THROWS_WITH(net.forward(ctx),
                      Catch::StartsWith("node 'loss' (softmax_xent, input (1,2,2,3) (1,2,2,1), fp32, cpu) forward: ") &&
                          Catch::Contains("label 7"));
}
