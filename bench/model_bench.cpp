#include "bench/model_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <omp.h>
#include <vector>

#include "engine/device_allocator.h"
#include "train/loss_scaler.h"
#include "engine/net.h"
#include "train/optimizer.h"
#include "engine/philox.h"
#include "engine/profiler.h"
#include "layers/softmax_xent.h"
#include "models/model.h"

namespace climseg::bench {

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

// --infer: forward passes of an inference net on one fixed input, timed after o.warmup untimed ones.
int run_infer_bench(const ModelBenchOptions& o) {
  const Device dev = parse_device(o.device);
  const DType dt = parse_dtype(o.dtype);
  CS_CHECK(!o.train, "climseg-bench model: --infer and --train exclude each other");
  CS_CHECK(o.steps > 0 && o.warmup >= 0, "--steps must be positive and --warmup non-negative");
  ModelConfig m = ModelConfig::defaults(o.model);
  m.width = o.width;
  Net net;
  ModelGraph g = build_model(net, m, o.batch, o.height, o.width_px);
  net.compile(NetOptions{.device = dev, .dtype = dt, .training = false, .fold = !o.no_fold});
  net.init_params(1);
  const int folded = o.no_fold ? 0 : net.fold_batchnorm();
  ExecContext ctx(dev);
  Profiler prof(dev);
  {
    Tensor x = Tensor::empty(net.shape(g.input), DType::f32);
    for (int64_t i = 0; i < x.numel(); ++i) x.set_flat(i, philox_uniform(2, 1, static_cast<uint64_t>(i)));
    net.input_tensor(g.input).copy_from(dt == DType::f32 ? x : x.cast(dt), &ctx);
    ctx.synchronize();
  }
  if (o.profile) ctx.profiler = &prof;
  using clock = std::chrono::steady_clock;
  std::vector<double> fwd;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    const bool profiled = o.profile && s >= o.warmup;
    if (profiled) prof.begin_step(ctx.stream());
    const auto t0 = clock::now();
    net.forward(ctx);
    ctx.synchronize();
    const auto t1 = clock::now();
    if (profiled) prof.end_step(ctx.stream());
    if (s >= o.warmup) fwd.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  const double f = median(fwd), fmin = *std::min_element(fwd.begin(), fwd.end());
  const double gflop = net.forward_flops() / 1e9;
  if (o.header) std::printf("%s\n", kInferHeader);
  std::printf("%s,climseg,%s,%s,%lld,%lld,%lld,%g,%d,%.3f,%.3f,%.4f,%d,%d,%.3f,%.2f\n", o.model.c_str(),
              device_name(dev), dtype_name(dt), static_cast<long long>(o.batch), static_cast<long long>(o.height),
              static_cast<long long>(o.width_px), o.width, omp_get_max_threads(), f, fmin,
              1000.0 * static_cast<double>(o.batch) / f, o.steps, folded, gflop, 1000.0 * gflop / f);
  if (o.profile) {
    std::printf("\n%s\n", prof.report().table().c_str());
    // Per layer ("climseg time"), heaviest first: ms per forward, share of the total, GFLOP/s.
    std::vector<Profiler::NameRow> rows = prof.by_name();
    double total = 0;
    for (const auto& r : rows) total += r.ms;
    std::printf("layer,calls,ms_per_step,pct,gflops\n");
    for (size_t i = 0; i < rows.size(); ++i) {  // every layer (heaviest first)
      const auto& r = rows[i];
      const double per = r.ms / static_cast<double>(o.steps);
      std::printf("%s,%lld,%.2f,%.1f,%.2f\n", r.name.c_str(), static_cast<long long>(r.calls), per,
                  100.0 * r.ms / total, r.ms > 0 ? r.flops / r.ms / 1e6 : 0.0);
    }
  }
  return 0;
}

int run_model_bench(const ModelBenchOptions& o) {
  if (o.infer) return run_infer_bench(o);
  const Device dev = parse_device(o.device);
  const DType dt = parse_dtype(o.dtype);
  CS_CHECK(o.steps > 0 && o.warmup >= 0, "--steps must be positive and --warmup non-negative");
  ModelConfig m = ModelConfig::defaults(o.model);
  m.width = o.width;
  Net net;
  ModelGraph g = build_model(net, m, o.batch, o.height, o.width_px);
  const SoftmaxXentConfig loss_cfg = reference_loss(m);
  add_loss(net, g, loss_cfg);
  if (dev == Device::cuda) device_allocator().reset_peak();
  net.compile(NetOptions{.device = dev, .dtype = dt});
  net.init_params(1);
  auto* loss_layer = dynamic_cast<SoftmaxXent*>(&net.layer(net.num_nodes() - 1));
  CS_CHECK(loss_layer != nullptr, "model bench: the net's last node is not the loss");

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
  // --train: Adam (PyTorch's defaults but lr 1e-4) with fp32 master weights; fp16 with dynamic loss scaling from the
  // loss's initial scale, as `climseg train` does (docs/training.md, "Loss scaling").
  std::unique_ptr<Optimizer> opt;
  LossScalerConfig lsc;
  lsc.mode = dt == DType::f16 ? LossScaleMode::dynamic : LossScaleMode::none;
  lsc.init_scale = loss_cfg.initial_loss_scale(o.batch * o.height * o.width_px);
  LossScaler scaler(lsc);
  if (o.train) {
    std::vector<ParamRange> ranges;
    for (const Net::Param& p : net.params()) ranges.push_back({p.offset, p.spec.shape.numel()});
    OptimizerConfig oc;
    oc.kind = OptimizerKind::adam;
    opt = std::make_unique<Optimizer>(oc, net.param_buffer(), net.grad_buffer(), ranges, dt, ctx);
  }
  if (o.profile) ctx.profiler = &prof;  // after the input copies: only training steps are profiled
  using clock = std::chrono::steady_clock;
  std::vector<double> fwd, bwd;
  int64_t skipped = 0;
  // Warm-up: o.warmup steps, then, with dynamic loss scaling, until two steps in a row were applied (at most 20
  // more): the scale calibrates itself in its first overflows (DeepCAM's fp16 skips 1-3 steps from 2^16), which
  // is start-up, not steady state. A timed step that is skipped is counted.
  int warmup = o.warmup;
  int clean_run = 0;
  for (int s = 0; s < warmup + o.steps; ++s) {
    const bool profiled = o.profile && s >= warmup;
    if (profiled) prof.begin_step(ctx.stream());
    const auto t0 = clock::now();
    loss_layer->set_grad_multiplier(scaler.scale());
    net.forward(ctx);
    ctx.synchronize();
    const auto t1 = clock::now();
    Tensor one = Tensor::empty(Shape{1, 1, 1, 1}, dt);
    one.set_flat(0, 1.0);
    net.output_grad().copy_from(one, &ctx);
    net.backward(ctx);
    if (opt) {
      const StepResult r = opt->step(ctx, 1e-4, scaler.inverse());
      scaler.update(r.applied);
      clean_run = r.applied ? clean_run + 1 : 0;
      if (s >= warmup) {
        if (!r.applied) ++skipped;
      } else if (s == warmup - 1 && lsc.mode == LossScaleMode::dynamic && clean_run < 2 && warmup < o.warmup + 20) {
        ++warmup;
      }
    }
    ctx.synchronize();
    const auto t2 = clock::now();
    if (profiled) prof.end_step(ctx.stream());
    if (s < warmup) continue;
    fwd.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    bwd.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  if (warmup > o.warmup)
    std::fprintf(stderr, "model bench: warm-up extended from %d to %d steps while the loss scale calibrated\n", o.warmup,
                 warmup);
  std::vector<double> step(fwd.size());
  for (size_t i = 0; i < fwd.size(); ++i) step[i] = fwd[i] + bwd[i];
  const double f = median(fwd), b = median(bwd), st = median(step);
  const double gib = 1024.0 * 1024.0 * 1024.0;
  const double arena = static_cast<double>(net.memory_plan().arena_bytes) / gib;
  const double peak = dev == Device::cuda ? static_cast<double>(device_allocator().stats().peak_in_use) / gib : NAN;
  // Model FLOPs of forward + backward (the optimizer's few per parameter are left out, as usual).
  const double gflop = net.training_flops() / 1e9;
  const double tflops = gflop / st;  // GFLOP per ms = TFLOP/s
  const double pct = o.peak_tflops > 0 ? 100.0 * tflops / o.peak_tflops : NAN;
  if (o.header)
    std::printf(
        "model,device,dtype,batch,height,width,width_mult,fwd_ms,bwd_ms,step_ms,samples_per_s,arena_gib,"
        "device_peak_gib,steps,train,skipped,gflop_per_step,tflops,pct_peak\n");
  std::printf("%s,%s,%s,%lld,%lld,%lld,%g,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%d,%d,%lld,%.3f,%.4f,%.2f\n",
              o.model.c_str(), device_name(dev), dtype_name(dt), static_cast<long long>(o.batch),
              static_cast<long long>(o.height), static_cast<long long>(o.width_px), o.width, f, b, st,
              1000.0 * static_cast<double>(o.batch) / st, arena, peak, o.steps, o.train ? 1 : 0,
              static_cast<long long>(skipped), gflop, tflops, pct);
  if (o.profile) std::printf("\n%s\n", prof.report().table().c_str());
  return 0;
}

}  // namespace climseg::bench
