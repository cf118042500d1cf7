// climseg-bench: microbenchmarks. Every row is verified against the CPU reference before it is timed
// (STYLE.md G). Subcommands arrive with their issues (op, allreduce, scaling); `layers` times the engine's
// foundation layers (1x1 convolution as GEMM, ReLU, add, concat copy) on shapes from the three networks.
// `allreduce` (under mpirun, MPI builds) prints nccl-tests' table instead of CSV: bench/bench_allreduce.cpp.
//
// CSV columns (stable): category,op,provider,variant,dtype,layout,shape,time_ms_median,time_ms_min,gflops,gbps,
//                       pct_peak,verify
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_allreduce.h"
#include "bench/events_bench.h"
#include "bench/model_bench.h"
#include "bench/op.h"
#include "bench/scaling.h"
#include "engine/context.h"
#include "engine/layer.h"
#include "engine/philox.h"
#include "engine/profiler.h"
#include "layers/add.h"
#include "layers/concat.h"
#include "layers/pointwise_conv.h"
#include "layers/relu.h"
#include "models/model.h"
#include "tests/util/tolerances.h"

using namespace climseg;

namespace {

struct Case {
  std::string op;
  std::vector<Shape> in;
  int64_t k = 0;  // conv1x1 output channels
};

std::unique_ptr<Layer> make_layer(const Case& c) {
  if (c.op == "conv1x1") return std::make_unique<PointwiseConv>(c.k, true);
  if (c.op == "relu") return std::make_unique<Relu>();
  if (c.op == "add") return std::make_unique<Add>();
  if (c.op == "concat") return std::make_unique<Concat>();
  CS_THROW("unknown op ", c.op);
}

// Shapes from the networks at a resolution scaled by `scale` (1 = 768x1152).
std::vector<Case> cases(int div) {
  auto S = [div](int64_t n, int64_t h, int64_t w, int64_t c) { return Shape{n, h / div, w / div, c}; };
  return {
      {"conv1x1", {S(2, 96, 144, 2048)}, 256},   // DeepLabv3+ ASPP 1x1 branch
      {"conv1x1", {S(2, 96, 144, 1280)}, 256},   // ASPP projection
      {"conv1x1", {S(2, 192, 288, 256)}, 48},    // DeepCAM decoder low-level projection
      {"conv1x1", {S(2, 768, 1152, 256)}, 3},    // logits
      {"relu", {S(2, 192, 288, 256)}, 0},
      {"add", {S(2, 96, 144, 1024), S(2, 96, 144, 1024)}, 0},  // ResNet residual
      {"concat", {S(2, 192, 288, 256), S(2, 192, 288, 48)}, 0},  // DeepLabv3+ decoder concat (304 ch)
  };
}

// U(-scale, scale). Weights get He scale (as the parity tests): sums over thousands of channels stay O(1), which
// is what the GEMM tolerance rows assume.
void fill(Tensor& t, uint64_t stream, double scale = 1.0) {
  Tensor h = Tensor::empty(t.shape(), DType::f32, Device::cpu);
  float* p = h.data_as<float>();
  for (int64_t i = 0; i < h.numel(); ++i)
    p[i] = static_cast<float>(scale * (2.0 * philox_uniform(99, stream, static_cast<uint64_t>(i)) - 1.0));
  t.copy_from(t.dtype() == DType::f32 ? h : h.cast(t.dtype()));
}

struct Bound {
  std::vector<Tensor> x, params;
  Tensor y;
};

Bound bind(const Layer& layer, const Case& c, DType dt, Device dev) {
  Bound b;
  for (size_t i = 0; i < c.in.size(); ++i) {
    b.x.push_back(Tensor::empty(c.in[i], dt, dev));
    fill(b.x.back(), i);
  }
  int s = 10;
  for (const ParamSpec& p : layer.param_specs(c.in)) {
    b.params.push_back(Tensor::empty(p.shape, dt, dev));
    const double scale = p.name == "bias" ? 0.5 : std::sqrt(6.0 / static_cast<double>(p.fan_in));
    fill(b.params.back(), static_cast<uint64_t>(s++), scale);
  }
  b.y = Tensor::empty(layer.output_shape(c.in), dt, dev);
  return b;
}

void run_forward(Layer& layer, ExecContext& ctx, const Bound& b) {
  ForwardArgs a;
  a.x = b.x;
  a.y = b.y;
  a.params = b.params;
  layer.forward(ctx, a);
}

// Verify: the device path on a small instance against the CPU path (fp32), max relative error.
std::string verify(const Case& c, DType dt, Device dev) {
  Case small = c;
  for (Shape& s : small.in) {
    s.h = std::min<int64_t>(s.h, 8);
    s.w = std::min<int64_t>(s.w, 12);
  }
  auto layer = make_layer(small);
  ExecContext cpu(Device::cpu);
  Bound ref = bind(*layer, small, DType::f32, Device::cpu);
  if (dt != DType::f32) {  // the reference sees the same rounded values as the device
    for (auto& t : ref.x) t = t.cast(dt).cast(DType::f32);
    for (auto& t : ref.params) t = t.cast(dt).cast(DType::f32);
  }
  run_forward(*layer, cpu, ref);
  ExecContext ctx(dev);
  Bound got;
  for (auto& t : ref.x) got.x.push_back(t.cast(dt).to(dev));
  for (auto& t : ref.params) got.params.push_back(t.cast(dt).to(dev));
  got.y = Tensor::empty(ref.y.shape(), dt, dev);
  run_forward(*layer, ctx, got);
  Tensor y = got.y.to(Device::cpu, &ctx);
  ctx.synchronize();
  // The GEMM rows of the test tolerance table (docs/tolerances.md) bound every op here.
  const test::Tolerance& t = dt == DType::f32   ? test::tol::cuda_f32_gemm
                             : dt == DType::f16 ? test::tol::cuda_f16_gemm
                                                : test::tol::cuda_bf16_gemm;
  double worst = 0;  // share of the error budget used
  for (int64_t i = 0; i < y.numel(); ++i) {
    double r = ref.y.get_flat(i), g = y.get_flat(i);
    worst = std::max(worst, std::abs(g - r) / (t.atol + t.rtol * std::abs(r)));
  }
  return worst <= 1.0 ? "pass" : "FAIL(" + std::to_string(worst) + " of budget)";
}

int run_layers(const std::string& device, const std::string& dtype_s, int reps, int div, bool header) {
  Device dev = parse_device(device);
  DType dt = parse_dtype(dtype_s);
  if (div == 0) div = dev == Device::cpu ? 4 : 1;
  ExecContext ctx(dev);
  if (header)
    std::printf("category,op,provider,variant,dtype,layout,shape,time_ms_median,time_ms_min,gflops,gbps,pct_peak,"
                "verify\n");
  for (const Case& c : cases(div)) {
    auto layer = make_layer(c);
    std::string v = dev == Device::cpu ? "reference" : verify(c, dt, dev);
    Bound b = bind(*layer, c, dt, dev);
    LayerCost cost = layer->forward_cost(c.in, dt);
    if (c.op == "concat") cost.bytes = 2.0 * static_cast<double>(b.y.nbytes());  // standalone: a real copy
    // Each repetition is one profiler step: CUDA events on the context's stream on a GPU, wall time on the CPU.
    std::vector<double> ms;
    for (int r = 0; r < reps + 2; ++r) {
      Profiler prof(dev);
      ctx.profiler = &prof;
      prof.begin_step(ctx.stream());
      run_forward(*layer, ctx, b);
      prof.end_step(ctx.stream());
      ctx.profiler = nullptr;
      double t = prof.report().total.ms;
      if (r >= 2) ms.push_back(t);  // two warm-up runs
    }
    std::sort(ms.begin(), ms.end());
    double med = ms[ms.size() / 2], mn = ms.front();
    std::string shape;
    for (size_t i = 0; i < c.in.size(); ++i) shape += (i ? "+" : "") + c.in[i].str();
    if (c.k) shape += "->K" + std::to_string(c.k);
    std::printf("%s,%s,%s,%s,%s,NHWC,\"%s\",%.4f,%.4f,%.2f,%.2f,,%s\n", layer->is_convolution() ? "conv" : "pointwise",
                c.op.c_str(), dev == Device::cpu ? (c.op == "conv1x1" ? "openblas" : "cpu") : (c.op == "conv1x1" ? "cublas" : "custom"),
                "default", dtype_name(dt), shape.c_str(), med, mn, cost.flops / (med * 1e6), cost.bytes / (med * 1e6),
                v.c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"climseg-bench: verified microbenchmarks (CSV)"};
  app.require_subcommand(1);
  std::string device = "cpu", dtype = "fp32";
  int reps = 10, div = 0;
  bool no_header = false;
  auto* layers = app.add_subcommand("layers", "Forward time of the foundation layers on the networks' shapes");
  layers->add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  layers->add_option("--dtype", dtype, "fp32, fp16 or bf16 (CUDA); fp32 or fp64 (CPU)");
  layers->add_option("--reps", reps, "Timed repetitions (median reported)")->check(CLI::PositiveNumber);
  layers->add_option("--downscale", div, "Divide H and W by this (default: 4 on CPU, 1 on CUDA)");
  layers->add_flag("--no-header", no_header, "Omit the CSV header");
  std::string descriptor, shapes = std::string(CLIMSEG_SOURCE_DIR) + "/bench/shapes/networks.csv", network;
  bool all = false, torch = false, forward_only = false;
  int op_div = 0;
  auto* op = app.add_subcommand("op", "One layer from a descriptor (or --all: every distinct layer of the three "
                                      "networks), verified against the CPU reference, then timed");
  op->add_option("descriptor", descriptor,
                 "e.g. \"conv2d n=2 h=96 w=144 c=256 k=256 r=3 s=3 stride=1 pad=2 dil=2 groups=1 dtype=fp32 "
                 "device=cpu\" (see bench/op.h)");
  op->add_flag("--all", all, "Run every row of the shape list");
  op->add_option("--shapes", shapes, "Shape list for --all")->check(CLI::ExistingFile);
  op->add_option("--network", network, "With --all: only rows of this network (deeplab, tiramisu, deepcam)");
  op->add_option("--device", device, "With --all: cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  op->add_option("--dtype", dtype, "With --all: fp32, fp16, bf16 (CUDA) or fp32, fp64 (CPU)");
  op->add_option("--downscale", op_div, "With --all: divide H and W by this (default 8 on the CPU, 1 on CUDA)");
  op->add_option("--reps", reps, "Timed repetitions (median reported)")->check(CLI::PositiveNumber);
  op->add_flag("--torch", torch, "CPU: also time PyTorch's CPU layer on the same shapes and print the ratio");
  op->add_flag("--forward-only", forward_only, "Skip the backward pass");
  op->add_flag("--no-header", no_header, "Omit the CSV header");
  bench::ModelBenchOptions mb;
  auto* model = app.add_subcommand("model", "A whole network's step (forward, loss, backward; with --train the optimizer too) timed");
  model->add_option("--model", mb.model, "deeplabv3plus, tiramisu or deepcam")
      ->check(CLI::IsMember(model_names()))
      ->capture_default_str();
  model->add_option("--width-multiplier", mb.width, "Channel width multiplier")->check(CLI::PositiveNumber);
  model->add_option("--batch", mb.batch, "Samples per step")->check(CLI::PositiveNumber)->capture_default_str();
  model->add_option("--height", mb.height, "Input height")->check(CLI::PositiveNumber)->capture_default_str();
  model->add_option("--width", mb.width_px, "Input width")->check(CLI::PositiveNumber)->capture_default_str();
  model->add_option("--device", mb.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  model->add_option("--dtype", mb.dtype, "fp32, fp16, bf16 (CUDA); fp32 (CPU)")->capture_default_str();
  model->add_option("--warmup", mb.warmup, "Untimed steps first")->capture_default_str();
  model->add_option("--steps", mb.steps, "Timed steps (median reported)")->check(CLI::PositiveNumber)->capture_default_str();
  model->add_flag("--profile", mb.profile, "Also print the per-category profile of the timed steps");
  model->add_flag("--train", mb.train,
                  "Whole training steps: also the Adam update (fp32 master weights) and, in fp16, dynamic loss "
                  "scaling; the skipped column counts timed steps skipped for non-finite gradients");
  model->add_flag("--infer", mb.infer,
                  "Inference as `climseg predict` computes it: forward only, no loss, training false, batch norm and "
                  "the other per-channel maps folded into the convolutions; its own CSV (as bench/torch_model.py "
                  "--infer)");
  model->add_flag("--no-fold", mb.no_fold, "With --infer: run the batch norms instead of folding them");
  model->add_option("--peak-tflops", mb.peak_tflops,
                    "The device's dense peak for the dtype (TFLOP/s): fills pct_peak (model FLOPs / time / peak)")
      ->check(CLI::NonNegativeNumber);
  model->add_flag("--no-header", no_header, "Omit the CSV header");
  bench::ScalingOptions scaling_opts;
  auto* scaling = bench::add_scaling_subcommand(app, scaling_opts);
#if defined(CLIMSEG_BENCH_EVENTS)
  bench::EventsBenchOptions events_opts;
  auto* events = bench::add_events_subcommand(app, events_opts);
#endif
#if defined(CLIMSEG_BENCH_ALLREDUCE)
  bench::AllreduceBenchOptions ar;
  auto* allr = app.add_subcommand("allreduce", "Allreduce sweep in nccl-tests' style (run under mpirun): our "
                                               "algorithms, MPI_Allreduce and (device cuda) ncclAllReduce");
  allr->add_option("-b,--minbytes", ar.minbytes, "Smallest size in bytes (K/M/G suffixes: powers of 1024)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  allr->add_option("-e,--maxbytes", ar.maxbytes, "Largest size in bytes (K/M/G suffixes)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  allr->add_option("-f,--stepfactor", ar.stepfactor, "Multiply the size by this each row (1: add --stepbytes)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  allr->add_option("-i,--stepbytes", ar.stepbytes, "Size increment when --stepfactor is 1")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  allr->add_option("-n,--iters", ar.iters, "Timed calls per row")->check(CLI::PositiveNumber)->capture_default_str();
  allr->add_option("-w,--warmup_iters", ar.warmup, "Untimed calls per row")->capture_default_str();
  allr->add_option("-c,--check", ar.check, "1: verify one call per row on exact data (#wrong)")->capture_default_str();
  allr->add_option("--algo", ar.algos,
                   "Algorithms: ring, tree, halving_doubling, hierarchical, mpi, nccl, auto, or all (several allowed, "
                   "comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  allr->add_option("--dtype", ar.dtype, "fp32, fp16 or bf16")->capture_default_str();
  allr->add_option("--device", ar.device, "cpu (host buffers, MPI transport) or cuda (device buffers, NCCL)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  allr->add_option("--ports", ar.ports, "Multi-port split of the inter-node phase")->capture_default_str();
  allr->add_option("--ranks-per-node", ar.ranks_per_node, "Emulated nodes of this many consecutive ranks (0: real)")
      ->capture_default_str();
  allr->add_option("--timeout", ar.timeout_s, "Seconds before a wait gives up naming the peer (0: none)");
#endif
  CLI11_PARSE(app, argc, argv);
  try {
    if (*scaling) return bench::run_scaling(scaling_opts);
#if defined(CLIMSEG_BENCH_EVENTS)
    if (*events) return bench::run_events_bench(events_opts);
#endif
#if defined(CLIMSEG_BENCH_ALLREDUCE)
    if (*allr) return bench::run_allreduce_bench(ar);
#endif
    if (*layers) return run_layers(device, dtype, reps, div, !no_header);
    if (*model) {
      mb.header = !no_header;
      return bench::run_model_bench(mb);
    }
    if (*op) {
      std::vector<bench::OpDesc> descs;
      if (all) {
        CS_CHECK(descriptor.empty(), "climseg-bench op: give a descriptor or --all, not both");
        Device dev = parse_device(device);
        int d = op_div > 0 ? op_div : (dev == Device::cpu ? 8 : 1);
        for (bench::OpDesc x : bench::load_op_shapes(shapes)) {
          if (!network.empty() && x.network != network) continue;
          x.device = dev;
          x.dtype = parse_dtype(dtype);
          x.h = std::max<int64_t>(1, x.h / d);
          x.w = std::max<int64_t>(1, x.w / d);
          if (x.op == "resize" && !x.extra.empty()) {  // output size scales too
            size_t p = x.extra.find('x');
            x.extra = std::to_string(std::max<int64_t>(1, std::stoll(x.extra.substr(0, p)) / d)) + "x" +
                      std::to_string(std::max<int64_t>(1, std::stoll(x.extra.substr(p + 1)) / d));
          }
          descs.push_back(x);
        }
      } else {
        CS_CHECK(!descriptor.empty(), "climseg-bench op: give a descriptor or --all");
        descs.push_back(bench::parse_op_descriptor(descriptor));
      }
      bench::OpRunOptions o;
      o.reps = reps;
      o.backward = !forward_only;
      o.torch = torch;
      o.header = !no_header;
      int failed = bench::run_ops(descs, o);
      if (failed) std::fprintf(stderr, "climseg-bench: %d row(s) failed verification\n", failed);
      return failed ? 1 : 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "climseg-bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
