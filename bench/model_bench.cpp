#include "bench/model_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "engine/device_allocator.h"
#include "engine/net.h"
#include "engine/philox.h"
#include "engine/profiler.h"
#include "models/model.h"

namespace climseg::bench {

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int run_model_bench(const ModelBenchOptions& o) {
  const Device dev = parse_device(o.device);
  const DType dt = parse_dtype(o.dtype);
  CS_CHECK(o.steps > 0 && o.warmup >= 0, "--steps must be positive and --warmup non-negative");
  ModelConfig m = ModelConfig::defaults(o.model);
  m.width = o.width;
  Net net;
  ModelGraph g = build_model(net, m, o.batch, o.height, o.width_px);
  add_loss(net, g, reference_loss(m));
  if (dev == Device::cuda) device_allocator().reset_peak();
  net.compile(NetOptions{.device = dev, .dtype = dt});
  net.init_params(1);

  // Inputs: uniform [0, 1) fields (normalised data) and labels with about the reference class mix.
  ExecContext ctx(dev);
  Profiler prof(dev);
  {
    Tensor x = Tensor::empty(net.shape(g.input), DType::f32);
    for (int64_t i = 0; i < x.numel(); ++i) x.set_flat(i, philox_uniform(2, 1, static_cast<uint64_t>(i)));
    net.input_tensor(g.input).copy_from(dt == DType::f32 ? x : x.cast(dt), &ctx);
    Tensor l = Tensor::empty(net.shape(g.labels), DType::i32);
    for (int64_t i = 0; i < l.numel(); ++i) {
      const float u = philox_uniform(2, 2, static_cast<uint64_t>(i));
      l.set_flat(i, u < 0.02f ? 2 : (u < 0.021f ? 1 : 0));
    }
    net.input_tensor(g.labels).copy_from(l, &ctx);
    ctx.synchronize();
  }
  if (o.profile) ctx.profiler = &prof;  // after the input copies: only training steps are profiled
  using clock = std::chrono::steady_clock;
  std::vector<double> fwd, bwd;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    const bool profiled = o.profile && s >= o.warmup;
    if (profiled) prof.begin_step(ctx.stream());
    const auto t0 = clock::now();
    net.forward(ctx);
    ctx.synchronize();
    const auto t1 = clock::now();
    Tensor one = Tensor::empty(Shape{1, 1, 1, 1}, dt);
    one.set_flat(0, 1.0);
    net.output_grad().copy_from(one, &ctx);
    net.backward(ctx);
    ctx.synchronize();
    const auto t2 = clock::now();
    if (profiled) prof.end_step(ctx.stream());
    if (s < o.warmup) continue;
    fwd.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    bwd.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  std::vector<double> step(fwd.size());
  for (size_t i = 0; i < fwd.size(); ++i) step[i] = fwd[i] + bwd[i];
  const double f = median(fwd), b = median(bwd), st = median(step);
  const double gib = 1024.0 * 1024.0 * 1024.0;
  const double arena = static_cast<double>(net.memory_plan().arena_bytes) / gib;
  const double peak = dev == Device::cuda ? static_cast<double>(device_allocator().stats().peak_in_use) / gib : NAN;
  if (o.header)
    std::printf(
        "model,device,dtype,batch,height,width,width_mult,fwd_ms,bwd_ms,step_ms,samples_per_s,arena_gib,"
        "device_peak_gib,steps\n");
  std::printf("%s,%s,%s,%lld,%lld,%lld,%g,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%d\n", o.model.c_str(), device_name(dev),
              dtype_name(dt), static_cast<long long>(o.batch), static_cast<long long>(o.height),
              static_cast<long long>(o.width_px), o.width, f, b, st, 1000.0 * static_cast<double>(o.batch) / st, arena,
              peak, o.steps);
  if (o.profile) std::printf("\n%s\n", prof.report().table().c_str());
  return 0;
}

}  // namespace climseg::bench
