#include "apps/demo.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>

#include "engine/net.h"
#include "engine/philox.h"
#include "engine/profiler.h"
#include "train/sgd.h"
#include "layers/add.h"
#include "layers/concat.h"
#include "layers/pointwise_conv.h"
#include "layers/relu.h"

namespace climseg::apps {

namespace {

// The demo network: 16 -> conv 32 -> relu -> conv 32 -> relu -> add(residual) -> concat(with first relu) -> conv 3
Net::Id build_demo_net(Net& net, Shape in_shape) {
  auto x = net.input("x", in_shape);
  auto c1 = net.add("conv1", std::make_unique<PointwiseConv>(32), {x});
  auto r1 = net.add("relu1", std::make_unique<Relu>(), {c1});
  auto c2 = net.add("conv2", std::make_unique<PointwiseConv>(32), {r1});
  auto r2 = net.add("relu2", std::make_unique<Relu>(), {c2});
  auto c3 = net.add("conv3", std::make_unique<PointwiseConv>(32), {r2});
  auto s = net.add("residual", std::make_unique<Add>(), {c3, r1});
  auto r3 = net.add("relu3", std::make_unique<Relu>(), {s});
  auto c4 = net.add("conv4", std::make_unique<PointwiseConv>(16), {r3});
  auto cat = net.add("concat", std::make_unique<Concat>(), {r3, c4});
  return net.add("head", std::make_unique<PointwiseConv>(3), {cat});
}

void fill_inputs(Tensor& x, uint64_t seed, uint64_t step) {
  for (int64_t i = 0; i < x.numel(); ++i) x.set_flat(i, 2.0 * philox_uniform(seed, 1000 + step, i) - 1.0);
}

// Teacher: a fixed random 2-layer pointwise map 16 -> 8 -> 3 with tanh, evaluated on the host.
void teacher(const Tensor& x, Tensor& target, uint64_t seed) {
  const int64_t C = x.shape().c;
  std::vector<double> w1(static_cast<size_t>(8 * C)), w2(24);
  for (size_t i = 0; i < w1.size(); ++i) w1[i] = (2.0 * philox_uniform(seed, 7, i) - 1.0) / std::sqrt(double(C));
  for (size_t i = 0; i < w2.size(); ++i) w2[i] = (2.0 * philox_uniform(seed, 8, i) - 1.0);
  for (int64_t p = 0; p < x.shape().pixels(); ++p) {
    double h[8];
    for (int j = 0; j < 8; ++j) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += w1[static_cast<size_t>(j * C + c)] * x.get_flat(p * C + c);
      h[j] = std::tanh(2.0 * s);
    }
    for (int k = 0; k < 3; ++k) {
      double s = 0;
      for (int j = 0; j < 8; ++j) s += w2[static_cast<size_t>(k * 8 + j)] * h[j];
      target.set_flat(p * 3 + k, s);
    }
  }
}

}  // namespace

int run_demo(const DemoOptions& opt) {
  Device dev = opt.device == "auto" ? (have_cuda() ? Device::cuda : Device::cpu) : parse_device(opt.device);
  CS_CHECK(opt.batch > 0 && opt.height > 0 && opt.width > 0, "--batch, --height and --width must be positive");
  CS_CHECK(opt.steps > 0, "--steps must be positive");
  std::printf("climseg demo: an engine demonstration (training arrives with `climseg train`)\n");
  std::printf("device %s, batch %d, %dx%d, 16 channels, %d SGD steps, lr %g, seed %llu\n", device_name(dev),
              opt.batch, opt.height, opt.width, opt.steps, opt.lr, static_cast<unsigned long long>(opt.seed));

  ExecContext ctx(dev);
  Profiler prof(dev);
  if (opt.profile) ctx.profiler = &prof;

  Net net;
  Shape in_shape{opt.batch, opt.height, opt.width, 16};
  build_demo_net(net, in_shape);
  net.compile(NetOptions{.device = dev, .dtype = DType::f32});
  net.init_params(opt.seed);
  std::printf("\n%s\n", net.summary().c_str());

  Tensor x_host = Tensor::empty(in_shape, DType::f32, Device::cpu);
  Tensor target = Tensor::empty(Shape{opt.batch, opt.height, opt.width, 3}, DType::f32, Device::cpu);
  Tensor dy_host = Tensor::empty(target.shape(), DType::f32, Device::cpu);
  const double inv_n = 1.0 / static_cast<double>(target.numel());
  double first_loss = 0, last_loss = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int step = 0; step < opt.steps; ++step) {
    if (opt.profile) prof.begin_step(ctx.stream());
    fill_inputs(x_host, opt.seed, static_cast<uint64_t>(step));
    teacher(x_host, target, opt.seed);
    {
      ProfileScope s(ctx, ProfCategory::copy_transpose, "h2d input");
      net.input_tensor(0).copy_from(x_host, &ctx);
    }
    net.forward(ctx);
    Tensor y = net.output().to(Device::cpu, &ctx);
    ctx.synchronize();
    // Mean squared error and its gradient (on the host: the loss layers come with the layer set).
    double loss = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      double d = y.get_flat(i) - target.get_flat(i);
      loss += d * d;
      dy_host.set_flat(i, 2.0 * d * inv_n);
    }
    loss *= inv_n;
    net.output_grad().copy_from(dy_host, &ctx);
    net.backward(ctx);
    sgd_step(ctx, net.param_buffer(), net.grad_buffer(), opt.lr);
    ctx.synchronize();
    if (opt.profile) prof.end_step(ctx.stream());
    if (step == 0) first_loss = loss;
    last_loss = loss;
    if (step % 25 == 0 || step == opt.steps - 1) std::printf("step %4d  loss %.6f\n", step, loss);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("\nloss %.6f -> %.6f (%.1f%% of the first step's) in %.2f s, %.1f samples/s\n", first_loss, last_loss,
              100.0 * last_loss / first_loss, secs, opt.steps * opt.batch / secs);
  if (opt.profile) {
    ProfReport r = prof.report();
    std::printf("\n%s\n", r.table().c_str());
    if (!opt.profile_csv.empty()) {
      std::ofstream f(opt.profile_csv);
      CS_CHECK(f.good(), "cannot write --profile-csv file ", opt.profile_csv);
      f << r.csv();
    }
  }
  if (!(last_loss < first_loss)) {
    std::fprintf(stderr, "demo: the loss did not decrease (%g -> %g)\n", first_loss, last_loss);
    return 1;
  }
  return 0;
}

}  // namespace climseg::apps
