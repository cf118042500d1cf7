// `climseg train` and `climseg eval` (apps/train.h, docs/training.md).
//
// One training step:  loader.next -> inputs into the net -> forward (loss, argmax and per-class counts in one pass)
//   -> backward with the loss scale as the loss layer's gradient multiplier -> Optimizer::step(lr(schedule position),
//   1/scale): inf/NaN anywhere skips the step and changes nothing -> LossScaler::update -> metrics read back.
// The step counter `iteration` counts batches consumed (applied or skipped); the schedule position is the
// optimizer's count of applied steps, so a skipped step leaves the learning rate where it was.
//
// Exact resumption: a checkpoint holds every input of the future (master weights, optimizer moments and count,
// batch-norm running statistics, the loss scaler, the net's step counter that seeds dropout, the data cursor and the
// iteration), and the data order is a pure function of (seed, epoch), so N steps + resume + N steps equals 2N steps
// bit for bit on the same device (tests/py/test_train_cli.cpp).
#include "apps/train.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "apps/data.h"
#include "engine/atomic_file.h"
#include "engine/check.h"
#include "engine/checkpoint.h"
#include "train/loss_scaler.h"
#include "engine/net.h"
#include "train/optimizer.h"
#include "engine/profiler.h"
#include "engine/safetensors.h"
#include "train/schedule.h"
#include "engine/weights.h"
#include "io/input_metadata.h"
#include "io/pipeline.h"
#include "kernels/cpu/eltwise.h"
#include "models/model.h"

namespace climseg::apps {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// ---- defaults of the no-argument run (README: "climseg train") -------------------------------------------------
// Without --data: a width-1/4 DeepLabv3+ (the 2018 layout: ResNet-50 v2, batch norm, deconv1x decoder) on 256
// synthetic samples of 96x144 (224 train, 32 validation), 6 epochs of batch 4 (336 steps), Adam 1e-3 with 20 warmup
// steps and a cosine decay, batch-norm momentum 0.1. About 10 samples/s on 2 CPU cores: 2-3 minutes.
// docs/training.md ("The default run") shows what it prints and why these settings.
constexpr int64_t kSynthHeight = 96, kSynthWidth = 144, kSynthSamples = 256;
constexpr double kDefaultWidthCpu = 0.25;
constexpr int64_t kDefaultEpochs = 6, kDefaultWarmup = 20;

int64_t parse_int_field(const std::map<std::string, std::string>& m, const std::string& k, const std::string& who) {
  auto it = m.find(k);
  CS_CHECK(it != m.end(), who, ": checkpoint metadata lacks '", k, "'");
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    CS_CHECK(used == it->second.size(), "trailing characters");
    return v;
  } catch (const std::exception&) {
    CS_THROW(who, ": checkpoint metadata '", k, "' = '", it->second, "' is not an integer");
  }
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char b[32];
  const long long t = std::llround(s);
  if (t >= 3600)
    std::snprintf(b, sizeof b, "%lldh%02lldm", t / 3600, (t / 60) % 60);
  else if (t >= 60)
    std::snprintf(b, sizeof b, "%lldm%02llds", t / 60, t % 60);
  else
    std::snprintf(b, sizeof b, "%llds", t);
  return b;
}

Device resolve_device(const std::string& d) {
  if (d == "auto") return have_cuda() ? Device::cuda : Device::cpu;
  const Device dev = parse_device(d);
  CS_CHECK(dev == Device::cpu || have_cuda(), "--device cuda: no CUDA device is visible (climseg info lists them)");
  return dev;
}

// The compute dtype of the net and, on the CPU, the emulated 16-bit storage.
struct Precision {
  DType net = DType::f32;
  DType storage = DType::f32;  // what the weights and activations are rounded to
  DType emulate = DType::f32;  // NetOptions::emulate_storage
};
Precision resolve_precision(const std::string& p, Device dev) {
  const DType t = parse_dtype(p);
  CS_CHECK(t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64, "--precision ", p,
           ": use fp32, fp16, bf16 or (on the CPU) fp64");
  Precision r;
  r.storage = t;
  if (t == DType::f64) {
    // The CPU reference in double: weights, activations, gradients and the allreduce in fp64 (docs/training.md).
    CS_CHECK(dev == Device::cpu, "--precision fp64 runs on the CPU only (--device cpu)");
    r.net = DType::f64;
  } else if (dev == Device::cuda) {
    r.net = t;
  } else {
    r.net = DType::f32;
    r.emulate = t;  // fp16/bf16 storage emulated with fp32 maths on the CPU
  }
  return r;
}

SoftmaxXentConfig loss_config(const std::string& name, const ModelConfig& m) {
  if (name == "reference") return reference_loss(m);
  if (name == "gb") return SoftmaxXentConfig::gb_deeplab();
  if (name == "gb-tiramisu") return SoftmaxXentConfig::gb_tiramisu();
  if (name == "deepcam") return SoftmaxXentConfig::deepcam();
  CS_THROW("--loss ", name, ": use reference, gb, gb-tiramisu or deepcam");
}

// ---- data ---------------------------------------------------------------------------------------------------------

std::string cache_root() {
  if (const char* c = std::getenv("CLIMSEG_CACHE_DIR"); c && *c) return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return (fs::path(x) / "climseg").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / ".cache" / "climseg").string();
  return (fs::temp_directory_path() / "climseg-cache").string();
}

// The synthetic default: generated once into the cache (v2: row 0 south since 2026-12-06; v1 caches are not reused) (into a temporary folder renamed into place, so a run
// killed while generating never leaves a half dataset under the final name).
std::string synthetic_dataset(int64_t samples, int64_t h, int64_t w, uint64_t seed) {
  char name[128];
  std::snprintf(name, sizeof name, "synthetic-v2-%lldx%lld-n%lld-seed%llu", static_cast<long long>(h),
                static_cast<long long>(w), static_cast<long long>(samples), static_cast<unsigned long long>(seed));
  const fs::path root = cache_root(), dir = root / name;
  if (fs::exists(dir / "stats.h5")) return dir.string();
  fs::create_directories(root);
  const fs::path tmp = root / (std::string(name) + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  std::printf("no --data: generating the default synthetic dataset (%lld samples of %lldx%lld) into %s\n",
              static_cast<long long>(samples), static_cast<long long>(h), static_cast<long long>(w),
              dir.string().c_str());
  GenerateOptions g;
  g.out = tmp.string();
  g.samples = samples;
  g.height = h;
  g.width = w;
  g.seed = seed;
  g.valid_fraction = 0.125;
  g.quiet = true;  // the per-sample report would bury the training output
  try {
    run_generate(g);
  } catch (...) {
    fs::remove_all(tmp);
    throw;
  }
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) {  // another process finished first: use its copy
    fs::remove_all(tmp);
    CS_CHECK(fs::exists(dir / "stats.h5"), "cannot move the synthetic dataset into ", dir.string(), ": ",
             ec.message());
  }
  return dir.string();
}

struct DataSetup {
  std::string dir, stats;
  io::Dataset train;
  std::optional<io::Dataset> validation;
  io::ReadOptions read;
  int64_t height = 0, width = 0;  // after crop/stride
};

DataSetup setup_data(const DataOptions& o, const std::string& eval_split) {
  DataSetup d;
  if (o.data.empty()) {
    const int64_t h = o.height > 0 ? o.height : kSynthHeight, w = o.width > 0 ? o.width : kSynthWidth;
    // The same bytes on disk as the default (256 x 96x144, 57 MB) at any size, at least 16 samples: a full-size
    // 768x1152 request gets 16 samples (0.9 GB) rather than 256 (14 GB).
    const int64_t scaled = kSynthSamples * kSynthHeight * kSynthWidth / std::max<int64_t>(1, h * w);
    const int64_t n = o.synthetic_samples > 0 ? o.synthetic_samples : std::clamp<int64_t>(scaled, 16, kSynthSamples);
    d.dir = synthetic_dataset(n, h, w, o.synthetic_seed);
  } else {
    d.dir = o.data;
    CS_CHECK(fs::is_directory(d.dir), "--data ", d.dir, " is not a directory");
  }
  const fs::path dir(d.dir);
  if (eval_split.empty()) {
    CS_CHECK(fs::is_directory(dir / "train"), "--data ", d.dir, " has no train/ folder (the DeepCAM layout: train/, ",
             "validation/, stats.h5)");
    d.train = io::Dataset::from_directory((dir / "train").string());
    if (fs::is_directory(dir / "validation")) d.validation = io::Dataset::from_directory((dir / "validation").string());
  } else {
    CS_CHECK(fs::is_directory(dir / eval_split), "--data ", d.dir, " has no ", eval_split, "/ folder");
    d.validation = io::Dataset::from_directory((dir / eval_split).string());
  }
  d.stats = o.stats.empty() ? (dir / "stats.h5").string() : o.stats;
  CS_CHECK(fs::exists(d.stats), "normalisation statistics ", d.stats,
           " not found (give --stats, or write them with `climseg data stats`)");
  const std::string& first = eval_split.empty() ? d.train.files.at(0) : d.validation->files.at(0);
  const io::SampleInfo info = io::inspect_sample(first);
  int64_t H = info.height, W = info.width;
  if (o.stride > 1) {
    d.read.reduce = io::Reduce::stride;
    d.read.stride = o.stride;
    H = (H + o.stride - 1) / o.stride;
    W = (W + o.stride - 1) / o.stride;
    CS_CHECK((o.height == 0 || o.height == H) && (o.width == 0 || o.width == W), "--stride ", o.stride, " reads ",
             H, "x", W, " from ", first, " (", info.height, "x", info.width, "), not --height ", o.height,
             " --width ", o.width);
  } else if ((o.height > 0 && o.height != H) || (o.width > 0 && o.width != W)) {
    const int64_t ch = o.height > 0 ? o.height : H, cw = o.width > 0 ? o.width : W;
    CS_CHECK(ch <= H && cw <= W, "--height ", ch, " --width ", cw, " is larger than the samples (", H, "x", W, ", ",
             first, ")");
    d.read.reduce = io::Reduce::crop;
    d.read.crop_h = ch;
    d.read.crop_w = cw;
    H = ch;
    W = cw;
  }
  d.height = H;
  d.width = W;
  return d;
}

// ---- validation -----------------------------------------------------------------------------------------------------

struct EvalTotals {
  int64_t samples = 0, k = 0;
  std::vector<int64_t> tp, fp, fn;
  double iou_sum = 0;   // DeepCAM per-sample IoU, summed
  double loss_sum = 0;  // batch loss times batch size
  int64_t pixels = 0;

  void add(const SoftmaxXentMetrics& m, int64_t b) {
    if (k == 0) {
      k = m.k;
      tp.assign(static_cast<size_t>(k), 0);
      fp = fn = tp;
    }
    for (int64_t c = 0; c < k; ++c) {
      tp[c] += m.tp_total(c);
      fp[c] += m.fp_total(c);
      fn[c] += m.fn_total(c);
    }
    for (int64_t n = 0; n < m.n; ++n) iou_sum += m.sample_iou_deepcam(n);
    loss_sum += m.loss * static_cast<double>(b);
    samples += b;
    pixels += m.valid_pixels;
  }
  // For sums across ranks: [samples, iou_sum, loss_sum, pixels, tp[K], fp[K], fn[K]].
  std::vector<double> pack(int64_t K) const {
    std::vector<double> v = {static_cast<double>(samples), iou_sum, loss_sum, static_cast<double>(pixels)};
    for (const std::vector<int64_t>* a : {&tp, &fp, &fn})
      for (int64_t c = 0; c < K; ++c) v.push_back(c < k ? static_cast<double>((*a)[c]) : 0.0);
    return v;
  }
  void unpack(const std::vector<double>& v, int64_t K) {
    k = K;
    samples = static_cast<int64_t>(v[0]);
    iou_sum = v[1];
    loss_sum = v[2];
    pixels = static_cast<int64_t>(v[3]);
    tp.assign(static_cast<size_t>(K), 0);
    fp = fn = tp;
    for (int64_t c = 0; c < K; ++c) {
      tp[c] = static_cast<int64_t>(v[4 + c]);
      fp[c] = static_cast<int64_t>(v[4 + K + c]);
      fn[c] = static_cast<int64_t>(v[4 + 2 * K + c]);
    }
  }
  double iou_class(int64_t c) const {
    const int64_t d = tp[c] + fp[c] + fn[c];
    return d > 0 ? static_cast<double>(tp[c]) / static_cast<double>(d) : std::nan("");
  }
  // GB 2018: one confusion matrix over all pixels, mean over classes with a nonzero denominator.
  double mean_iou_gb() const {
    double s = 0;
    int n = 0;
    for (int64_t c = 0; c < k; ++c)
      if (tp[c] + fp[c] + fn[c] > 0) {
        s += iou_class(c);
        ++n;
      }
    return n ? s / n : 0.0;
  }
  double mean_iou_deepcam() const { return samples ? iou_sum / static_cast<double>(samples) : 0.0; }
  double accuracy() const {
    int64_t t = 0;
    for (int64_t c = 0; c < k; ++c) t += tp[c];
    return pixels ? static_cast<double>(t) / static_cast<double>(pixels) : 0.0;
  }
  double loss() const { return samples ? loss_sum / static_cast<double>(samples) : 0.0; }
  json to_json() const {
    json j;
    j["samples"] = samples;
    j["loss"] = loss();
    j["mean_iou"] = mean_iou_deepcam();
    j["mean_iou_gb"] = mean_iou_gb();
    j["accuracy"] = accuracy();
    std::vector<double> per;
    for (int64_t c = 0; c < k; ++c) per.push_back(iou_class(c));
    j["iou_per_class"] = per;
    return j;
  }
  std::string line() const {
    char b[256];
    std::snprintf(b, sizeof b,
                  "mean IoU %.4f (per sample, DeepCAM) / %.4f (confusion matrix, GB 2018); IoU background %.4f, TC "
                  "%.4f, AR %.4f; accuracy %.4f; loss %.5g; %lld samples",
                  mean_iou_deepcam(), mean_iou_gb(), k > 0 ? iou_class(0) : 0.0, k > 1 ? iou_class(1) : 0.0,
                  k > 2 ? iou_class(2) : 0.0, accuracy(), loss(), static_cast<long long>(samples));
    return b;
  }
};

// The "all background" prediction's scores on the same data: the baseline training must beat.
struct Baseline {
  double iou_deepcam = 0, iou_gb = 0;
};

// Inference nets for validation, one per batch size met (the last batch of an epoch may be smaller), sharing the
// training net's weights by copy before each pass.
class Evaluator {
 public:
  Evaluator(ModelConfig m, SoftmaxXentConfig loss, int64_t H, int64_t W, Device dev, Precision prec)
      : m_(std::move(m)), loss_(std::move(loss)), H_(H), W_(W), dev_(dev), prec_(prec) {}

  struct Entry {
    std::unique_ptr<Net> net;
    ModelGraph g;
    int64_t version = -1;  // of the weights it holds
  };
  Entry& get(int64_t b) {
    auto it = nets_.find(b);
    if (it != nets_.end()) return it->second;
    Entry e;
    e.net = std::make_unique<Net>();
    e.g = build_model(*e.net, m_, b, H_, W_);
    add_loss(*e.net, e.g, loss_, DType::i32);
    NetOptions no;
    no.device = dev_;
    no.dtype = prec_.net;
    no.training = false;
    no.emulate_storage = prec_.emulate;
    e.net->compile(no);
    return nets_.emplace(b, std::move(e)).first->second;
  }
  // The weights (parameters and running statistics) to evaluate: copied into each inference net before its next
  // use (the parameter layout depends on the graph, not on the batch, so the flat buffers match).
  void set_weights(const Net& src) {
    src_ = &src;
    ++version_;
  }

  // baseline_totals (optional): the all-background prediction's counts, for sums across ranks.
  EvalTotals run(ExecContext& ctx, const io::Dataset& ds, const io::LoaderOptions& base, int64_t batch,
                 Baseline* baseline = nullptr, EvalTotals* baseline_totals = nullptr) {
    io::LoaderOptions lo = base;
    lo.shard.mode = io::ShardMode::eval;
    lo.shard.shuffle = false;
    lo.batch = batch;
    lo.start = {};
    lo.epochs = 1;
    io::Loader loader(ds, lo);
    EvalTotals t;
    EvalTotals bl;
    while (std::optional<io::Batch> b = loader.next(ctx)) {
      const int64_t nb = b->data.shape().n;
      Entry& e = get(nb);
      if (e.version != version_) {
        CS_CHECK(src_ != nullptr, "Evaluator: no weights set");
        if (src_ != e.net.get()) {
          if (e.net->param_buffer().defined()) e.net->param_buffer().copy_from(src_->param_buffer(), &ctx);
          if (e.net->state_buffer().defined()) e.net->state_buffer().copy_from(src_->state_buffer(), &ctx);
        }
        e.version = version_;
      }
      e.net->input_tensor(e.g.input).copy_from(b->data, &ctx);
      e.net->input_tensor(e.g.labels).copy_from(b->labels, &ctx);
      e.net->forward(ctx);
      const SoftmaxXentMetrics met = SoftmaxXent::read_metrics(ctx, e.net->saved(e.g.loss), e.net->shape(e.g.logits));
      t.add(met, nb);
      if (baseline != nullptr) {
        // All background: TP_0 = pixels labelled 0, FP_0 = the others; class c > 0: FN = pixels labelled c.
        Tensor lab = b->labels.to(Device::cpu, &ctx);
        ctx.synchronize();
        SoftmaxXentMetrics z;
        z.n = nb;
        z.k = met.k;
        z.tp.assign(static_cast<size_t>(nb * z.k), 0);
        z.fp = z.fn = z.tp;
        const int32_t* l = lab.data_as<int32_t>();
        const int64_t HW = lab.shape().h * lab.shape().w;
        for (int64_t n = 0; n < nb; ++n)
          for (int64_t p = 0; p < HW; ++p) {
            const int32_t c = l[n * HW + p];
            if (c == 0) {
              z.tp[static_cast<size_t>(n * z.k)]++;
            } else {
              z.fp[static_cast<size_t>(n * z.k)]++;
              z.fn[static_cast<size_t>(n * z.k + c)]++;
            }
          }
        z.valid_pixels = nb * HW;
        bl.add(z, nb);
      }
    }
    if (baseline != nullptr) {
      baseline->iou_deepcam = bl.mean_iou_deepcam();
      baseline->iou_gb = bl.mean_iou_gb();
      if (baseline_totals != nullptr) *baseline_totals = bl;
    }
    return t;
  }
 private:
  ModelConfig m_;
  SoftmaxXentConfig loss_;
  int64_t H_, W_;
  Device dev_;
  Precision prec_;
  std::map<int64_t, Entry> nets_;
  const Net* src_ = nullptr;
  int64_t version_ = 0;
};

// ---- metrics output ------------------------------------------------------------------------------------------------

class MetricsLog {
 public:
  MetricsLog(const std::string& path, bool mllog) : mllog_(mllog) {
    if (path.empty()) return;
    // Append (a resumed run continues its file). A killed run may have left a partial last line: end it first, so
    // every complete line stays valid JSON.
    bool needs_newline = false;
    if (const fs::path parent = fs::path(path).parent_path(); !parent.empty()) fs::create_directories(parent);
    if (fs::exists(path) && fs::file_size(path) > 0) {
      std::ifstream in(path, std::ios::binary);
      in.seekg(-1, std::ios::end);
      needs_newline = in.get() != '\n';
    }
    f_ = std::fopen(path.c_str(), "a");
    CS_CHECK(f_ != nullptr, "cannot open --metrics file ", path, " for appending");
    if (needs_newline) std::fputc('\n', f_);
  }
  ~MetricsLog() {
    if (f_) std::fclose(f_);
  }
  void write(const json& j) {
    if (!f_) return;
    const std::string s = j.dump();
    std::fprintf(f_, "%s\n", s.c_str());
    std::fflush(f_);
  }
  // MLPerf logging (mlperf_logging's format): ":::MLLOG {...}" on stdout; keys ending in _start / _stop are the
  // INTERVAL_START / INTERVAL_END events of mlperf_logging's log_start / log_end, the rest POINT_IN_TIME.
  void mllog(const std::string& key, const json& value, const json& metadata = json::object()) {
    if (!mllog_) return;
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    json j;
    j["namespace"] = "";
    j["time_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(now).count();
    j["event_type"] = key.ends_with("_start") ? "INTERVAL_START"
                      : key.ends_with("_stop") ? "INTERVAL_END"
                                               : "POINT_IN_TIME";
    j["key"] = key;
    j["value"] = value;
    j["metadata"] = metadata;
    std::printf(":::MLLOG %s\n", j.dump().c_str());
  }

 private:
  FILE* f_ = nullptr;
  bool mllog_;
};

// ---- checkpoints -----------------------------------------------------------------------------------------------------

constexpr const char* kOptPrefix = "optimizer.";

std::map<std::string, std::string> input_fields(const ModelConfig& m, const DataSetup& d) {
  return io::input_metadata(io::read_stats(d.stats, m.in_channels), io::default_channel_names(m.in_channels));
}

// Fields a resumed run must share with its checkpoint (the model and everything that shapes the state or the data
// order). Learning-rate and schedule options may change on resume.
std::map<std::string, std::string> run_fields(const ModelConfig& m, const TrainOptions& o, const DataSetup& d,
                                              int64_t batch, const Precision& prec, Device dev, int ranks) {
  std::map<std::string, std::string> f = model_metadata(m);
  f["train.height"] = std::to_string(d.height);
  f["train.width"] = std::to_string(d.width);
  f["train.batch"] = std::to_string(batch);
  f["train.ranks"] = std::to_string(ranks);
  f["train.precision"] = dtype_name(prec.storage);
  f["train.device"] = device_name(dev);
  f["train.optimizer"] = o.optimizer;
  f["train.larc"] = o.larc;
  f["train.seed"] = std::to_string(o.seed);
  f["train.loss"] = o.loss;
  f["train.train_files"] = std::to_string(d.train.size());
  f["train.lag"] = std::to_string(o.dist.lag);
  // The input contract (channels, normalisation) travels with the weights (io/input_metadata.h); a resume must use
  // the same statistics (their values, wherever the file now is).
  for (const auto& [k, v] : input_fields(m, d))
    if (k != "input.stats") f[k] = v;
  return f;
}

struct RunState {
  int64_t iteration = 0;  // batches consumed
  io::Cursor cursor;
  int64_t samples = 0;
  double lag_scale = 1;  // gradient lag: the loss scale the gradients waiting in the lag buffer were computed with
};

constexpr const char* kLagTensor = "lag.grads";  // gradient lag: the summed gradients of the last step

void save_checkpoint(CheckpointStore& store, const Net& net, Optimizer& opt, const LossScaler& scaler,
                     const RunState& rs, const std::map<std::string, std::string>& fields, ExecContext& ctx,
                     const std::string& note, const Tensor& lag = {}) {
  // Not profiled: checkpoints are written between steps, and the profile's total is the sum of step times.
  const auto t0 = std::chrono::steady_clock::now();
  ctx.synchronize();
  std::vector<CheckpointTensor> tensors;
  // Parameters under their net names, from the master weights (fp32): the file is a weights file too.
  Tensor master;
  std::vector<Optimizer::StateTensor> st = opt.state();
  for (const auto& s : st)
    if (s.name == "master") master = s.tensor.to(Device::cpu, &ctx);
  CS_CHECK(master.defined(), "optimizer state has no master weights");
  ctx.synchronize();
  const size_t mes = master.element_size();
  for (const Net::Param& p : net.params())
    tensors.push_back({p.name, Tensor::wrap(static_cast<char*>(master.data()) + static_cast<size_t>(p.offset) * mes,
                                            p.spec.shape, master.dtype(), Device::cpu, master.buffer())});
  if (net.state_buffer().defined()) {
    Tensor state = net.state_buffer().to(Device::cpu, &ctx);
    ctx.synchronize();
    const size_t ses = state.element_size();
    for (const Net::Param& p : net.state())
      tensors.push_back({p.name, Tensor::wrap(static_cast<char*>(state.data()) + static_cast<size_t>(p.offset) * ses,
                                              p.spec.shape, state.dtype(), Device::cpu, state.buffer())});
  }
  for (const auto& s : st)
    if (s.name != "master") tensors.push_back({kOptPrefix + s.name, s.tensor.to(Device::cpu, &ctx)});
  if (lag.defined()) tensors.push_back({kLagTensor, lag.to(Device::cpu, &ctx)});
  ctx.synchronize();
  std::map<std::string, std::string> meta = fields;
  meta["state.iteration"] = std::to_string(rs.iteration);
  meta["state.samples"] = std::to_string(rs.samples);
  meta["state.cursor_epoch"] = std::to_string(rs.cursor.epoch);
  meta["state.cursor_position"] = std::to_string(rs.cursor.position);
  meta["state.net_step"] = std::to_string(net.step());
  meta["state.optimizer_steps"] = std::to_string(opt.steps());
  if (lag.defined()) {
    char b[40];
    std::snprintf(b, sizeof b, "%a", rs.lag_scale);  // hex float: exact
    meta["state.lag_scale"] = b;
  }
  write_loss_scaler_state(scaler.state(), meta, "state.loss_scaler.");
  const std::string path = store.save(rs.iteration, meta, tensors);
  if (!note.empty())
    std::printf("%s %s (%.0f ms)\n", note.c_str(), path.c_str(),
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
}

// Resume: the parameters of a checkpoint into the optimizer's flat master layout (`master_flat`, host, padding
// zero) and the layer state into the net, by name, all required.
void net_from_checkpoint(const Checkpoint& ck, Net& net, Tensor& master_flat) {
  std::map<std::string, const Tensor*> by;
  for (const auto& t : ck.tensors) by[t.name] = &t.data;
  auto find = [&](const std::string& name, const Shape& s) -> const Tensor& {
    auto it = by.find(name);
    CS_CHECK(it != by.end(), "checkpoint ", ck.path, " has no tensor '", name, "'");
    CS_CHECK(it->second->shape() == s, "checkpoint ", ck.path, ": '", name, "' is ", it->second->shape().str(),
             ", the net expects ", s.str());
    return *it->second;
  };
  const size_t es = master_flat.element_size();
  for (const Net::Param& p : net.params()) {
    const Tensor& t = find(p.name, p.spec.shape);
    Tensor dst = Tensor::wrap(static_cast<char*>(master_flat.data()) + static_cast<size_t>(p.offset) * es,
                              p.spec.shape, master_flat.dtype(), Device::cpu, master_flat.buffer());
    CS_CHECK(t.dtype() == dst.dtype(), "checkpoint ", ck.path, ": '", p.name, "' is ", dtype_name(t.dtype()),
             ", the master weights are ", dtype_name(dst.dtype()));
    dst.copy_from(t);
  }
  for (const Net::Param& p : net.state()) {
    const Tensor& t = find(p.name, p.spec.shape);
    p.value.copy_from(t.dtype() == p.value.dtype() ? t : t.cast(p.value.dtype()));
  }
}

void restore(const Checkpoint& ck, Net& net, Optimizer& opt, LossScaler& scaler, RunState& rs, ExecContext& ctx) {
  const std::string who = "resume from " + ck.path;
  // Master weights: a flat host buffer in the optimizer's layout (padding zero), filled by name.
  Tensor master_ref;
  for (const auto& s : opt.state())
    if (s.name == "master") master_ref = s.tensor;
  Tensor flat = Tensor::zeros(master_ref.shape(), master_ref.dtype(), Device::cpu);
  net_from_checkpoint(ck, net, flat);
  opt.load_state("master", flat, ctx);
  for (const auto& t : ck.tensors)
    if (t.name.rfind(kOptPrefix, 0) == 0) opt.load_state(t.name.substr(std::string(kOptPrefix).size()), t.data, ctx);
  if (const auto it = ck.meta.find("state.lag_scale"); it != ck.meta.end()) rs.lag_scale = std::strtod(it->second.c_str(), nullptr);
  for (const auto& s : opt.state())
    if (s.name != "master") {
      bool found = false;
      for (const auto& t : ck.tensors) found = found || t.name == kOptPrefix + s.name;
      CS_CHECK(found, who, ": the checkpoint has no optimizer state '", kOptPrefix, s.name, "'");
    }
  opt.set_steps(parse_int_field(ck.meta, "state.optimizer_steps", who));
  scaler.set_state(read_loss_scaler_state(ck.meta, "state.loss_scaler."));
  net.set_step(static_cast<uint64_t>(parse_int_field(ck.meta, "state.net_step", who)));
  rs.iteration = parse_int_field(ck.meta, "state.iteration", who);
  rs.samples = parse_int_field(ck.meta, "state.samples", who);
  rs.cursor.epoch = parse_int_field(ck.meta, "state.cursor_epoch", who);
  rs.cursor.position = parse_int_field(ck.meta, "state.cursor_position", who);
  ctx.synchronize();
}

OptimizerConfig optimizer_config(const TrainOptions& o) {
  OptimizerConfig c;
  c.kind = parse_optimizer_kind(o.optimizer);
  c.momentum = o.momentum;
  c.nesterov = o.nesterov;
  c.beta1 = o.beta1;
  c.beta2 = o.beta2;
  c.eps = o.eps;
  c.weight_decay = o.weight_decay;
  c.max_grad_norm = o.max_grad_norm;
  c.larc = parse_larc_mode(o.larc);
  c.larc_eta = o.larc_eta;
  c.larc_eps = o.larc_eps;
  c.validate();
  return c;
}

ScheduleConfig schedule_config(const TrainOptions& o, int64_t total_steps) {
  ScheduleConfig s;
  s.kind = parse_schedule_kind(o.schedule);
  s.base_lr = o.lr;
  s.milestones = o.milestones;
  s.decay_rate = o.decay_rate;
  s.t_max = o.t_max;
  if (s.t_max == 0 && (s.kind == ScheduleKind::cosine || s.kind == ScheduleKind::poly))
    s.t_max = std::max<int64_t>(1, total_steps - o.warmup_steps);  // default: the rest of the run
  s.eta_min = o.eta_min;
  s.power = o.power;
  s.warmup_steps = o.warmup_steps;
  s.warmup_factor = o.warmup_factor;
  s.validate();
  return s;
}

// `pixels`: labelled pixels per step on one rank (its loss's reduction size).
LossScalerConfig scaler_config(const TrainOptions& o, const Precision& prec, const SoftmaxXentConfig& loss,
                               int64_t pixels) {
  LossScalerConfig c;
  std::string mode = o.loss_scale;
  if (mode == "auto") mode = prec.storage == DType::f16 ? "dynamic" : "none";
  c.mode = parse_loss_scale_mode(mode);
  const double init = o.init_loss_scale > 0 ? o.init_loss_scale : loss.initial_loss_scale(pixels);
  c.init_scale = c.mode == LossScaleMode::static_scale ? o.static_loss_scale : init;
  c.growth_interval = o.loss_scale_window;
  c.validate();
  return c;
}

}  // namespace

// ---- the commands ------------------------------------------------------------------------------------------------

namespace {

void add_data_options(CLI::App* c, DataOptions& d) {
  c->add_option("--data", d.data,
                "Dataset folder in the DeepCAM layout (train/, validation/, stats.h5); default: a small synthetic set "
                "generated once into the cache folder ($CLIMSEG_CACHE_DIR, else ~/.cache/climseg)");
  c->add_option("--stats", d.stats, "stats.h5 for min-max normalisation (default: DATA/stats.h5)");
  c->add_option("--height", d.height, "Rows trained on: a centred crop of the samples (default: the samples' size)")
      ->check(CLI::PositiveNumber);
  c->add_option("--width", d.width, "Columns trained on (as --height)")->check(CLI::PositiveNumber);
  c->add_option("--stride", d.stride, "Read every k-th row and column instead of cropping")
      ->check(CLI::PositiveNumber);
  c->add_option("--reader-threads", d.threads, "Input pipeline reader threads")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_flag("--skip-bad-files", d.skip_bad_files, "Skip (and count) files that fail validation");
  c->add_option("--max-bad-files", d.max_bad_files, "With --skip-bad-files: stop after more bad files than this")
      ->capture_default_str();
}

}  // namespace

void add_train_commands(CLI::App& app, TrainCommands& c) {
  TrainOptions& o = c.t;
  c.train = app.add_subcommand("train", "Train a network (default: a small DeepLabv3+ on synthetic data)");
  CLI::App* t = c.train;
  // CLI11 reads configuration files in the main app only; the file's [train] (and [eval]) section holds this
  // subcommand's options, and fallthrough lets `climseg train --config FILE` reach the main app's option.
  app.set_config("--config", "",
                 "TOML or INI file: options of `train` under [train], of `eval` under [eval], keys as the long options "
                 "without dashes (lr = 2e-3); the command line overrides the file");
  app.allow_config_extras(CLI::config_extras_mode::error);
  t->fallthrough();
  add_model_options(t, o.model);
  add_data_options(t, o.data);
  t->add_option("--synthetic-samples", o.data.synthetic_samples, "Without --data: samples of the synthetic set");
  t->add_option("--synthetic-seed", o.data.synthetic_seed, "Without --data: seed of the synthetic set");
  t->add_option("--batch", o.batch, "Samples per step (default 4 on the CPU, 2 on CUDA)")->check(CLI::PositiveNumber);
  t->add_option("--epochs", o.epochs, "Epochs to train")->check(CLI::NonNegativeNumber);
  t->add_option("--steps", o.steps, "Steps to train (total, counted from the first step of the run: a resumed run "
                "stops at the same step as an uninterrupted one)")->check(CLI::NonNegativeNumber);
  t->add_option("--optimizer", o.optimizer, "sgd, adam, adamw or lamb")
      ->check(CLI::IsMember({"sgd", "adam", "adamw", "lamb"}))
      ->capture_default_str();
  t->add_option("--lr", o.lr, "Base learning rate")->check(CLI::NonNegativeNumber)->capture_default_str();
  t->add_option("--momentum", o.momentum, "SGD momentum")->capture_default_str();
  t->add_flag("--nesterov", o.nesterov, "SGD with Nesterov momentum");
  t->add_option("--beta1", o.beta1, "Adam/AdamW/LAMB beta1")->capture_default_str();
  t->add_option("--beta2", o.beta2, "Adam/AdamW/LAMB beta2")->capture_default_str();
  t->add_option("--eps", o.eps, "Adam/AdamW/LAMB epsilon")->capture_default_str();
  t->add_option("--weight-decay", o.weight_decay, "Weight decay (sgd/adam: L2 in the gradient; adamw/lamb: decoupled)")
      ->capture_default_str();
  t->add_option("--max-grad-norm", o.max_grad_norm, "Clip the global gradient norm to this (0: off; LAMB in DeepCAM: 1)")
      ->capture_default_str();
  t->add_option("--larc", o.larc, "LARC around the optimizer: off, clip or scale")
      ->check(CLI::IsMember({"off", "clip", "scale"}))
      ->capture_default_str();
  t->add_option("--larc-eta", o.larc_eta, "LARC trust coefficient")->capture_default_str();
  t->add_option("--larc-eps", o.larc_eps, "LARC local learning rate when a norm is zero")->capture_default_str();
  t->add_option("--schedule", o.schedule,
                "constant, multistep, cosine or poly, stepped per optimizer step (default: constant; without --data "
                "cosine)")
      ->check(CLI::IsMember({"constant", "multistep", "cosine", "poly"}));
  t->add_option("--milestones", o.milestones, "multistep: steps after warmup where the lr is multiplied by --decay-rate");
  t->add_option("--decay-rate", o.decay_rate, "multistep factor")->capture_default_str();
  t->add_option("--t-max", o.t_max, "cosine period / poly length in steps (default: the rest of the run)");
  t->add_option("--eta-min", o.eta_min, "cosine floor")->capture_default_str();
  t->add_option("--power", o.power, "poly power")->capture_default_str();
  t->add_option("--warmup-steps", o.warmup_steps, "Linear warmup steps (default 0; without --data 20)")
      ->check(CLI::NonNegativeNumber);
  t->add_option("--warmup-factor", o.warmup_factor, "DeepCAM warmup factor")->capture_default_str();
  t->add_option("--loss", o.loss,
                "reference (the model's reference system), gb (weighted sum x0.1), gb-tiramisu (sum by nonzero "
                "weights x0.1) or deepcam (f^-1/8 weights, mean)")
      ->check(CLI::IsMember({"reference", "gb", "gb-tiramisu", "deepcam"}))
      ->capture_default_str();
  t->add_option("--precision", o.precision, "fp32, fp16 or bf16 (fp32 master weights; on the CPU 16-bit storage is "
                "emulated), or fp64 on the CPU (a reference in double, for comparisons)")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16", "fp64"}))
      ->capture_default_str();
  t->add_option("--loss-scale", o.loss_scale, "auto (dynamic for fp16, none otherwise), dynamic, static or none")
      ->check(CLI::IsMember({"auto", "dynamic", "static", "none"}))
      ->capture_default_str();
  t->add_option("--static-loss-scale", o.static_loss_scale, "The scale of --loss-scale static")->capture_default_str();
  t->add_option("--init-loss-scale", o.init_loss_scale,
                "Dynamic loss scaling: initial scale (default: 65536; for a 'sum' loss (--loss gb, DeepLabv3+'s "
                "reference) 65536 / (batch x height x width) rounded down to a power of 2, at least 1)")
      ->check(CLI::PositiveNumber);
  t->add_option("--loss-scale-window", o.loss_scale_window, "Dynamic loss scaling: clean steps before x2")
      ->capture_default_str();
  t->add_option("--device", o.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  t->add_option("--seed", o.seed, "Seed of the initialisation, dropout and data order")->capture_default_str();
  t->add_flag("--deterministic", o.deterministic, "Deterministic algorithms (bit-identical reruns on one device)");
  t->add_option("--checkpoint-dir", o.checkpoint_dir, "Folder of checkpoints (ckpt-<step>.safetensors and `latest`)");
  t->add_option("--checkpoint-every", o.checkpoint_every, "Steps between checkpoints (0: at validations and the end)")
      ->capture_default_str();
  t->add_option("--keep-checkpoints", o.keep_checkpoints, "Checkpoints kept")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  t->add_flag("--resume", o.resume, "Continue from the newest complete checkpoint in --checkpoint-dir (if any)");
  t->add_option("--validate-every", o.validate_every, "Steps between validations (0: each epoch's end and the run's)")
      ->capture_default_str();
  t->add_option("--log-every", o.log_every, "Steps between progress lines")->check(CLI::PositiveNumber)
      ->capture_default_str();
  t->add_option("--metrics", o.metrics, "JSONL metrics file (default: CHECKPOINT_DIR/metrics.jsonl)");
  t->add_flag("--mllog", o.mllog, "Also print MLPerf-style :::MLLOG lines (the keys the MLPerf HPC DeepCAM rules require)");
  t->add_option("--mllog-org", o.mllog_org, "MLLOG submission_org")->capture_default_str();
  t->add_option("--mllog-platform", o.mllog_platform, "MLLOG submission_platform (default: the device, cpu or cuda)");
  t->add_option("--mllog-division", o.mllog_division, "MLLOG submission_division")
      ->check(CLI::IsMember({"closed", "open"}))
      ->capture_default_str();
  t->add_option("--mllog-status", o.mllog_status, "MLLOG submission_status")
      ->check(CLI::IsMember({"cloud", "onprem", "preview", "research"}))
      ->capture_default_str();
  t->add_flag("--profile", o.profile, "Print the per-category profile at the end");
  t->add_option("--profile-csv", o.profile_csv, "Also write the profile as CSV");
  t->add_option("--save-weights", o.save_weights, "Write the final weights (climseg weights file) here");
  t->add_flag("--quiet", o.quiet, "Only the summary lines");
  // Data parallel (under mpirun/srun with several ranks; docs/distributed.md).
  t->add_option("--ranks-per-node", o.dist.ranks_per_node, "Group consecutive ranks into emulated nodes of this size")
      ->check(CLI::NonNegativeNumber);
  t->add_option("--allreduce", o.dist.algo, "auto, ring, tree, halving_doubling, hierarchical, mpi or nccl")
      ->capture_default_str();
  t->add_option("--ports", o.dist.ports, "Multi-port split of the inter-node allreduce phase")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  t->add_option("--bucket-mb", o.dist.bucket_mb, "Gradient bucket size (MiB)")->capture_default_str();
  t->add_flag("--no-overlap", [&o](int64_t) { o.dist.overlap = false; },
              "Reduce the gradients after backward instead of bucket by bucket during it");
  t->add_option("--gradient-lag", o.dist.lag, "1: apply the previous step's reduced gradients (the 2018 recipe)")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  t->add_option("--comm-timeout", o.dist.timeout_s, "Seconds a rank waits for a peer before failing, naming it")
      ->capture_default_str();
  t->add_option("--check-replicas", o.dist.check_replicas,
                "Every this many steps, check that all ranks hold identical weights (debugging)");

  EvalOptions& e = c.e;
  c.eval = app.add_subcommand("eval", "Validate a checkpoint or weights file: loss, IoU (both definitions), accuracy");
  c.eval->fallthrough();
  c.eval->add_option("--weights", e.weights, "A checkpoint (ckpt-*.safetensors) or a climseg weights file")
      ->required()
      ->check(CLI::ExistingFile);
  add_data_options(c.eval, e.data);
  c.eval->add_option("--split", e.split, "Folder of DATA to evaluate")->capture_default_str();
  c.eval->add_option("--batch", e.batch, "Samples per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  c.eval->add_option("--precision", e.precision, "fp32, fp16 or bf16, or fp64 on the CPU")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16", "fp64"}))
      ->capture_default_str();
  c.eval->add_option("--device", e.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  c.eval->add_option("--loss", e.loss, "reference, gb, gb-tiramisu or deepcam")
      ->check(CLI::IsMember({"reference", "gb", "gb-tiramisu", "deepcam"}))
      ->capture_default_str();
  c.eval->add_option("--json", e.json, "Also write the results as JSON here");
}

int run_train(const TrainOptions& o_in) {
  using clock = std::chrono::steady_clock;
  TrainOptions o = o_in;
  const auto t_start = clock::now();
  if (o.schedule.empty()) o.schedule = o.data.data.empty() ? "cosine" : "constant";
  if (o.warmup_steps < 0) o.warmup_steps = o.data.data.empty() && o.schedule == "cosine" ? kDefaultWarmup : 0;
  const Device dev = resolve_device(o.device);
  const Precision prec = resolve_precision(o.precision, dev);
  const bool default_run = o.data.data.empty();
  // Several ranks (mpirun/srun): one replica per rank, device = local rank, rank 0 prints, logs and checkpoints.
  const RankInfo ri = init_ranks();
  const int rank = ri.rank, nranks = ri.size;
  if (rank != 0) {
    std::fflush(stdout);
    CS_CHECK(std::freopen("/dev/null", "w", stdout) != nullptr, "rank ", rank, ": cannot silence stdout");
  }
  const int device_index = dev == Device::cuda ? cuda_device_for_local_rank(ri.local_rank, cuda_device_count()) : 0;
  ModelOptions mo = o.model;
  if (default_run && dev == Device::cpu && mo.width == 1.0) mo.width = kDefaultWidthCpu;
  // Short runs: the 2018 decay of 0.9997 leaves the running statistics near their initial values for thousands of
  // steps, so validation (inference mode) would judge a net that never ran; the default run uses PyTorch's 0.1.
  if (default_run && mo.bn_momentum < 0) mo.bn_momentum = 0.1;
  mo.seed = o.seed;
  const ModelConfig m = mo.config();
  const int64_t batch = o.batch > 0 ? o.batch : (dev == Device::cuda ? 2 : 4);
  MetricsLog log(rank != 0 ? "" : !o.metrics.empty() ? o.metrics
                                 : (o.checkpoint_dir.empty() ? "" : (fs::path(o.checkpoint_dir) / "metrics.jsonl")
                                                                        .string()),
                 o.mllog && rank == 0);
  log.mllog("init_start", nullptr);

  // The synthetic default is generated once: by rank 0 while the others wait.
  if (nranks > 1 && rank != 0) rank_barrier();
  DataSetup data = setup_data(o.data, "");
  if (nranks > 1 && rank == 0) rank_barrier();
  check_input_size(m, data.height, data.width);
  const io::ShardSpec shard_spec{rank, nranks, io::ShardMode::train, true, o.seed};
  const int64_t shard = io::shard_size(data.train.size(), shard_spec);
  const int64_t steps_per_epoch = shard / batch;
  CS_CHECK(steps_per_epoch > 0, "--batch ", batch, " is larger than the training set's share of each of the ",
           nranks, " rank(s) (", data.train.size(), " files in ", data.dir, "/train)");
  int64_t total_steps = o.steps;
  if (total_steps == 0) total_steps = (o.epochs > 0 ? o.epochs : (default_run ? kDefaultEpochs : 1)) * steps_per_epoch;
  else if (o.epochs > 0)
    total_steps = std::min(total_steps, o.epochs * steps_per_epoch);

  const SoftmaxXentConfig loss_cfg = loss_config(o.loss, m);
  const OptimizerConfig ocfg = optimizer_config(o);
  const ScheduleConfig sched = schedule_config(o, total_steps);
  const LossScalerConfig lcfg = scaler_config(o, prec, loss_cfg, batch * data.height * data.width);

  ExecContext ctx(dev, device_index);
  ctx.deterministic = o.deterministic;
  Profiler prof(dev);
  if (o.profile) ctx.profiler = &prof;

  Net net;
  ModelGraph g = build_model(net, m, batch, data.height, data.width);
  add_loss(net, g, loss_cfg, DType::i32);
  NetOptions no;
  no.device = dev;
  no.dtype = prec.net;
  no.emulate_storage = prec.emulate;
  net.compile(no);
  net.init_params(o.seed);
  auto* loss_layer = dynamic_cast<SoftmaxXent*>(&net.layer(net.num_nodes() - 1));
  CS_CHECK(loss_layer != nullptr, "the net's last node is not the loss");
  std::vector<ParamRange> ranges;
  for (const Net::Param& p : net.params()) ranges.push_back({p.offset, p.spec.shape.numel()});
  std::unique_ptr<DataParallel> dp;
  if (nranks > 1 || o.dist.lag > 0) dp = std::make_unique<DataParallel>(o.dist, net, dev, ctx);
  Optimizer opt(ocfg, net.param_buffer(), dp ? dp->optimizer_grads() : net.grad_buffer(), ranges, prec.storage, ctx);
  if (prec.emulate != DType::f32) {
    // The model copy starts as the rounded master weights (as after every step).
    const Tensor& pb = net.param_buffer();
    round_to_storage(1, pb.numel(), pb.data_as<float>(), pb.numel(), prec.emulate == DType::bf16);
  }
  LossScaler scaler(lcfg);

  const std::map<std::string, std::string> fields = run_fields(m, o, data, batch, prec, dev, nranks);
  std::unique_ptr<CheckpointStore> store;  // rank 0 writes; every rank reads the checkpoint rank 0 chose
  if (!o.checkpoint_dir.empty() && rank == 0)
    store = std::make_unique<CheckpointStore>(o.checkpoint_dir, CheckpointStoreOptions{o.keep_checkpoints});
  CS_CHECK(!o.resume || !o.checkpoint_dir.empty(), "--resume needs --checkpoint-dir");
  RunState rs;
  if (o.resume) {
    std::vector<std::string> skipped;
    std::optional<Checkpoint> ck;
    if (rank == 0) ck = store->load_latest(&skipped);
    if (nranks > 1) {
      const std::string path = dp->broadcast_string(ck ? ck->path : "");
      if (rank != 0 && !path.empty()) ck = CheckpointStore::load_file(path);
    }
    for (const std::string& s : skipped) std::printf("warning: skipped checkpoint %s\n", s.c_str());
    if (ck) {
      check_checkpoint_fields(*ck, fields);
      restore(*ck, net, opt, scaler, rs, ctx);
      if (dp && dp->has_lag()) {
        const CheckpointTensor* lt = ck->find(kLagTensor);
        CS_CHECK(lt != nullptr, "resume from ", ck->path, ": --gradient-lag 1 but the checkpoint has no '", kLagTensor,
                 "'");
        dp->set_lag_buffer(lt->data);
      }
      std::printf("resumed from %s at step %lld (%s)\n", ck->path.c_str(), static_cast<long long>(rs.iteration),
                  rs.cursor.str().c_str());
    } else {
      std::printf("--resume: no checkpoint in %s yet; starting from step 0\n", o.checkpoint_dir.c_str());
    }
  }

  std::printf("climseg train: %s (%s, width %g), %s %s%s, batch %lld, %lldx%lld, %lld training samples (%s)\n",
              m.name.c_str(), norm_name(m.norm), m.width, device_name(dev), dtype_name(prec.storage),
              prec.emulate != DType::f32 ? " (16-bit storage emulated, fp32 maths)" : "", static_cast<long long>(batch),
              static_cast<long long>(data.height), static_cast<long long>(data.width),
              static_cast<long long>(data.train.size()), data.dir.c_str());
  std::string scale_desc = loss_scale_mode_name(lcfg.mode);
  if (lcfg.mode == LossScaleMode::dynamic || lcfg.mode == LossScaleMode::static_scale)
  {
    char buf[64];
    std::snprintf(buf, sizeof buf, " from %g", lcfg.init_scale);
    scale_desc += buf;
  }
  std::printf("  %lld parameters; %s%s, lr %g, %s schedule; loss %s (%s); loss scaling %s; %lld steps (%lld per "
              "epoch)\n",
              static_cast<long long>(net.num_params()), optimizer_kind_name(ocfg.kind),
              ocfg.larc != LarcMode::off ? (std::string(" + LARC ") + o.larc).c_str() : "", o.lr,
              o.schedule.c_str(), o.loss.c_str(), xent_reduction_name(loss_cfg.reduction), scale_desc.c_str(),
              static_cast<long long>(total_steps), static_cast<long long>(steps_per_epoch));
  if (nranks > 1 || dp)
    std::printf("  data parallel: %d rank(s) (%s), batch %lld per rank = %lld global; allreduce %s, buckets of %g MiB%s%s\n",
                nranks, dp->topology().c_str(), static_cast<long long>(batch),
                static_cast<long long>(batch * nranks), o.dist.algo.c_str(), o.dist.bucket_mb,
                o.dist.overlap ? " overlapping backward" : ", after backward",
                o.dist.lag ? "; gradient lag 1" : "");
  std::fflush(stdout);

  io::LoaderOptions lo;
  lo.shard = shard_spec;
  lo.device_index = device_index;
  lo.batch = batch;
  lo.threads = o.data.threads;
  lo.buffers = 2;
  lo.device = dev;
  lo.dtype = prec.net;
  lo.stats = data.stats;
  lo.read = data.read;
  lo.skip_bad_files = o.data.skip_bad_files;
  lo.max_bad_files = o.data.max_bad_files;

  Evaluator evaluator(m, loss_cfg, data.height, data.width, dev, prec);
  std::optional<Baseline> baseline;
  EvalTotals last_eval;
  bool have_eval = false;
  auto validate = [&](const char* why) {
    if (!data.validation) return;
    Profiler* p = ctx.profiler;
    ctx.profiler = nullptr;  // the profile covers training steps only
    log.mllog("eval_start", nullptr,
              {{"epoch_num", rs.cursor.position == 0 ? rs.cursor.epoch : rs.cursor.epoch + 1}});
    // Ranks validate disjoint shards (nothing dropped) with the same weights and the average of their batch-norm
    // running statistics (each rank's come from its own batches), then sum the counts.
    if (dp && dp->has_lag()) dp->lag_buffer();  // no allreduce in flight during the collectives below
    if (nranks > 1) dp->average_state(net, ctx);
    evaluator.set_weights(net);
    Baseline b;
    EvalTotals bl;
    last_eval = evaluator.run(ctx, *data.validation, lo, batch, baseline ? nullptr : &b, &bl);
    if (nranks > 1) {
      const int64_t K = m.num_classes;
      std::vector<double> v = last_eval.pack(K), w = bl.pack(K);
      v.insert(v.end(), w.begin(), w.end());
      dp->sum(v);
      last_eval.unpack(std::vector<double>(v.begin(), v.begin() + static_cast<int64_t>(v.size() / 2)), K);
      bl.unpack(std::vector<double>(v.begin() + static_cast<int64_t>(v.size() / 2), v.end()), K);
      b.iou_deepcam = bl.mean_iou_deepcam();
      b.iou_gb = bl.mean_iou_gb();
    }
    if (!baseline) baseline = b;
    have_eval = true;
    const int64_t epoch = rs.cursor.position == 0 ? rs.cursor.epoch : rs.cursor.epoch + 1;
    std::printf("validation (%s, step %lld): %s\n", why, static_cast<long long>(rs.iteration),
                last_eval.line().c_str());
    std::fflush(stdout);
    log.mllog("eval_stop", nullptr, {{"epoch_num", epoch}});
    json j = last_eval.to_json();
    j["event"] = "validation";
    j["step"] = rs.iteration;
    j["epoch"] = epoch;
    j["baseline_mean_iou"] = baseline->iou_deepcam;
    log.write(j);
    log.mllog("eval_accuracy", last_eval.mean_iou_deepcam(), {{"epoch_num", epoch}});
    ctx.profiler = p;
  };

  // The run's description, as the MLPerf HPC DeepCAM rules require it (docs/training.md "MLPerf logging").
  {
    int local_size = 1;
    for (const char* v : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"})
      if (const char* e = std::getenv(v); e != nullptr && std::atoi(e) > 0) {
        local_size = std::atoi(e);
        break;
      }
    if (nranks == 1) local_size = 1;
    log.mllog("submission_benchmark", "deepcam");
    log.mllog("submission_org", o.mllog_org);
    log.mllog("submission_platform", o.mllog_platform.empty() ? std::string(device_name(dev)) : o.mllog_platform);
    log.mllog("submission_division", o.mllog_division);
    log.mllog("submission_status", o.mllog_status);
    log.mllog("cache_clear", true);
    log.mllog("seed", o.seed);
    log.mllog("number_of_ranks", nranks);
    log.mllog("number_of_nodes", (nranks + local_size - 1) / local_size);
    log.mllog("accelerators_per_node", dev == Device::cuda ? local_size : 0);
    log.mllog("global_batch_size", batch * nranks);
    log.mllog("batchnorm_group_size", 1);
    log.mllog("gradient_accumulation_frequency", 1);
    static const std::map<std::string, std::string> kOptNames = {
        {"sgd", "SGD"}, {"adam", "Adam"}, {"adamw", "AdamW"}, {"lamb", "LAMB"}};
    const std::string kind = optimizer_kind_name(ocfg.kind);
    log.mllog("opt_name", kOptNames.count(kind) ? kOptNames.at(kind) : kind);
    log.mllog("opt_lr", sched.base_lr);
    if (ocfg.kind == OptimizerKind::sgd) {
      log.mllog("opt_momentum", ocfg.momentum);
    } else {
      log.mllog("opt_betas", json::array({ocfg.beta1, ocfg.beta2}));
      log.mllog("opt_eps", ocfg.eps);
    }
    log.mllog("opt_weight_decay", ocfg.weight_decay);
    if (ocfg.max_grad_norm > 0) log.mllog("opt_max_grad_norm", ocfg.max_grad_norm);
    const std::string sk = schedule_kind_name(sched.kind);
    log.mllog("scheduler_type", sk == "cosine" ? std::string("cosine_annealing") : sk);
    if (sched.kind == ScheduleKind::multistep) {
      log.mllog("scheduler_milestones", sched.milestones);
      log.mllog("scheduler_decay_rate", sched.decay_rate);
    } else if (sched.kind == ScheduleKind::cosine) {
      log.mllog("scheduler_t_max", sched.t_max);
      log.mllog("scheduler_eta_min", sched.eta_min);
    } else if (sched.kind == ScheduleKind::poly) {
      log.mllog("scheduler_t_max", sched.t_max);
      log.mllog("scheduler_power", sched.power);
    }
    log.mllog("scheduler_lr_warmup_steps", sched.warmup_steps);
    log.mllog("scheduler_lr_warmup_factor", sched.warmup_factor);
    log.mllog("train_samples", static_cast<int64_t>(data.train.size()));
    log.mllog("eval_samples", data.validation ? static_cast<int64_t>(data.validation->size()) : int64_t{0});
  }
  log.mllog("init_stop", nullptr);
  log.mllog("run_start", nullptr);
  bool in_epoch = false;  // between MLLOG epoch_start and epoch_stop
  int64_t epoch_num = 0;  // MLLOG's epoch number (1-based) of the epoch in progress
  if (rs.iteration < total_steps) {
    lo.start = rs.cursor;
    io::Loader loader(data.train, lo);
    Tensor dy_host = Tensor::empty(Shape{1, 1, 1, 1}, prec.net, Device::cpu);
    dy_host.set_flat(0, 1.0);  // dLoss/dLoss; the loss scale is the loss layer's gradient multiplier
    Tensor labels_view = net.input_tensor(g.labels);
    // The loss layer's header and counts, copied out after forward (backward reuses the saved state's memory): an
    // asynchronous device copy, read on the host after the optimizer step.
    const Shape ls = net.shape(g.logits);
    const XentSavedLayout lay = xent_saved_layout(ls.n, ls.h * ls.w, ls.c);
    Tensor metrics_copy = Tensor::zeros(Shape{1, 1, 1, static_cast<int64_t>(lay.total)}, DType::u8, dev, &ctx);
    const Tensor metrics_head = metrics_copy.channel_slice(0, static_cast<int64_t>(lay.mask));
    double window_loss = 0, step_iou = 0;
    int64_t window_n = 0, window_samples = 0;
    auto t_window = clock::now();
    const int64_t first_iteration = rs.iteration;
    const auto t_loop = clock::now();
    // Fault injection for the failure tests (docs/distributed.md): CLIMSEG_FAULT_KILL=R:S makes rank R kill itself
    // with SIGKILL before step S.
    int kill_rank = -1;
    long long kill_step = -1;
    if (const char* f = std::getenv("CLIMSEG_FAULT_KILL");
        f != nullptr && std::sscanf(f, "%d:%lld", &kill_rank, &kill_step) != 2)
      CS_THROW("CLIMSEG_FAULT_KILL=", f, ": expected RANK:STEP");
    while (rs.iteration < total_steps) {
      if (rank == kill_rank && rs.iteration + 1 == kill_step) std::raise(SIGKILL);
      if (o.profile) prof.begin_step(ctx.stream());
      std::optional<io::Batch> b;
      {
        ProfileScope s(ctx, ProfCategory::data_wait, "loader.next");
        b = loader.next(ctx);
      }
      CS_CHECK(b.has_value(), "the training data ended before step ", rs.iteration);
      if (!in_epoch) {
        epoch_num = b->epoch + 1;
        log.mllog("epoch_start", nullptr, {{"epoch_num", epoch_num}, {"step_num", rs.iteration}});
        in_epoch = true;
      }
      {
        ProfileScope s(ctx, ProfCategory::copy_transpose, "batch into the net");
        net.input_tensor(g.input).copy_from(b->data, &ctx);
        labels_view.copy_from(b->labels, &ctx);
      }
      loss_layer->set_grad_multiplier(scaler.scale());
      net.forward(ctx);
      metrics_head.copy_from(net.saved(g.loss).channel_slice(0, static_cast<int64_t>(lay.mask)), &ctx);
      // Set after forward: the planner gives the output gradient memory that earlier tensors use.
      net.output_grad().copy_from(dy_host, &ctx);
      const double lr = schedule_lr(sched, opt.steps());
      StepResult r;
      if (dp) {
        // Buckets reduce while backward goes on; the optimizer divides the sum by the rank count. With lag it
        // applies the previous step's gradients, computed with the previous step's loss scale.
        net.backward(ctx, GradMode::overwrite, [&](int node) { dp->node_done(node); });
        dp->finish();
        const double used_scale = dp->has_lag() ? rs.lag_scale : scaler.scale();
        r = opt.step(ctx, lr, 1.0 / (used_scale * static_cast<double>(nranks)));
        rs.lag_scale = scaler.scale();
      } else {
        net.backward(ctx);
        r = opt.step(ctx, lr, scaler.inverse());
      }
      scaler.update(r.applied);
      SoftmaxXentMetrics met = SoftmaxXent::read_metrics(ctx, metrics_copy, ls);
      if (nranks > 1) {
        // The global batch's loss (the mean of the ranks' losses: each is its local batch's reduction) and IoU.
        double iou = 0;
        for (int64_t n = 0; n < met.n; ++n) iou += met.sample_iou_deepcam(n);
        std::vector<double> v = {met.loss, iou};
        dp->sum(v);
        met.loss = v[0] / static_cast<double>(nranks);
        step_iou = v[1] / static_cast<double>(met.n * nranks);
      } else {
        double iou = 0;
        for (int64_t n = 0; n < met.n; ++n) iou += met.sample_iou_deepcam(n);
        step_iou = met.n ? iou / static_cast<double>(met.n) : 0.0;
      }
      if (dp && o.dist.check_replicas > 0 && (rs.iteration + 1) % o.dist.check_replicas == 0)
        for (const auto& st : opt.state())
          if (st.name == "master") dp->check_replicas(st.tensor, rs.iteration + 1, ctx);
      // Last: with lag, this step's gradients start their allreduce on the communication thread, which must be the
      // only thread in MPI until the next finish() (MPI_THREAD_SERIALIZED).
      if (dp) dp->after_step();
      if (o.profile) prof.end_step(ctx.stream());
      ++rs.iteration;
      rs.samples += batch * nranks;
      rs.cursor = b->next;
      window_loss += met.loss;
      ++window_n;
      window_samples += batch * nranks;
      json j;
      j["event"] = "step";
      j["step"] = rs.iteration;
      j["epoch"] = b->epoch;
      j["loss"] = met.loss;
      j["lr"] = lr;
      j["loss_scale"] = scaler.scale();
      j["applied"] = r.applied;
      j["grad_norm"] = r.applied ? r.grad_norm : -1.0;
      j["iou"] = step_iou;
      log.write(j);
      if (!r.applied && !o.quiet)
        std::printf("step %lld: non-finite gradient, step skipped; loss scale now %g\n",
                    static_cast<long long>(rs.iteration), scaler.scale());
      if (!o.quiet && (rs.iteration % o.log_every == 0 || rs.iteration == total_steps)) {
        const double secs = std::chrono::duration<double>(clock::now() - t_window).count();
        const double sps = secs > 0 ? static_cast<double>(window_samples) / secs : 0.0;
        const double elapsed = std::chrono::duration<double>(clock::now() - t_loop).count();
        const double per_step = elapsed / static_cast<double>(rs.iteration - first_iteration);
        std::printf("step %5lld/%lld  epoch %lld  loss %.5f  lr %.3g  scale %g  %.2f samples/s  ETA %s\n",
                    static_cast<long long>(rs.iteration), static_cast<long long>(total_steps),
                    static_cast<long long>(b->epoch), window_loss / static_cast<double>(window_n), lr, scaler.scale(),
                    sps, format_duration(per_step * static_cast<double>(total_steps - rs.iteration)).c_str());
        std::fflush(stdout);
        window_loss = 0;
        window_n = window_samples = 0;
        t_window = clock::now();
      }
      // The loader drops an epoch's partial last batch when it reads the next one, so this batch ends the epoch when
      // fewer than a batch of files is left.
      const bool epoch_end = b->next.epoch != b->epoch || b->next.position + batch > shard;
      const bool last = rs.iteration == total_steps;
      const bool want_val = !last && (o.validate_every > 0 ? rs.iteration % o.validate_every == 0 : epoch_end);
      if (want_val) validate(epoch_end ? "end of epoch" : "periodic");
      if (epoch_end && !last) {
        log.mllog("epoch_stop", nullptr, {{"epoch_num", epoch_num}, {"step_num", rs.iteration}});
        in_epoch = false;
      }
      if (store && !last && ((o.checkpoint_every > 0 && rs.iteration % o.checkpoint_every == 0) ||
                             (o.checkpoint_every == 0 && want_val)))
        save_checkpoint(*store, net, opt, scaler, rs, fields, ctx, o.quiet ? "" : "checkpoint",
                        dp && dp->has_lag() ? dp->lag_buffer() : Tensor());
    }
  } else {
    std::printf("already at step %lld of %lld: nothing to train\n", static_cast<long long>(rs.iteration),
                static_cast<long long>(total_steps));
  }
  validate("end of run");
  if (in_epoch) log.mllog("epoch_stop", nullptr, {{"epoch_num", epoch_num}, {"step_num", rs.iteration}});
  if (store)
    save_checkpoint(*store, net, opt, scaler, rs, fields, ctx, "checkpoint",
                    dp && dp->has_lag() ? dp->lag_buffer() : Tensor());
  if (!o.save_weights.empty() && rank == 0) {
    std::map<std::string, std::string> md = model_metadata(m);
    md.merge(input_fields(m, data));
    save_weights(net, o.save_weights, md);
    std::printf("wrote weights %s\n", o.save_weights.c_str());
  }
  const double total_s = std::chrono::duration<double>(clock::now() - t_start).count();
  if (have_eval) {
    std::printf("final validation: mean IoU %.4f (all-background baseline %.4f), GB-definition mean IoU %.4f "
                "(baseline %.4f)\n",
                last_eval.mean_iou_deepcam(), baseline->iou_deepcam, last_eval.mean_iou_gb(), baseline->iou_gb);
  }
  log.mllog("run_stop", nullptr, {{"status", "success"}});
  const LossScaler::State ls = scaler.state();
  std::printf("done: %lld steps (%lld skipped for non-finite gradients), %lld samples, %s\n",
              static_cast<long long>(rs.iteration), static_cast<long long>(ls.skipped_steps),
              static_cast<long long>(rs.samples), format_duration(total_s).c_str());
  if (o.profile) {
    ProfReport r = prof.report();
    std::printf("\n%s\n", r.table().c_str());
    if (!o.profile_csv.empty()) {
      AtomicFile out(o.profile_csv);
      {
        std::ofstream f(out.tmp_path());
        CS_CHECK(f.good(), "cannot write --profile-csv file ", o.profile_csv);
        f << r.csv();
      }
      out.commit();
    }
  }
  return 0;
}

int run_eval(const EvalOptions& o) {
  const Device dev = resolve_device(o.device);
  const Precision prec = resolve_precision(o.precision, dev);
  SafetensorsReader file(o.weights);
  const bool is_ckpt = is_checkpoint_file(o.weights);
  const ModelConfig m = model_from_metadata(file.metadata());
  DataSetup data = setup_data(o.data, o.split);
  check_input_size(m, data.height, data.width);
  const SoftmaxXentConfig loss_cfg = loss_config(o.loss, m);
  ExecContext ctx(dev);
  Evaluator ev(m, loss_cfg, data.height, data.width, dev, prec);
  Net& net = *ev.get(o.batch).net;
  if (is_ckpt) {
    load_checkpoint_weights(net, o.weights);  // verifies the checksum
  } else {
    load_weights(net, o.weights);
  }
  ev.set_weights(net);
  io::LoaderOptions lo;
  lo.threads = o.data.threads;
  lo.device = dev;
  lo.dtype = prec.net;
  lo.stats = data.stats;
  lo.read = data.read;
  lo.skip_bad_files = o.data.skip_bad_files;
  lo.max_bad_files = o.data.max_bad_files;
  Baseline b;
  const EvalTotals t = ev.run(ctx, *data.validation, lo, o.batch, &b);
  std::printf("climseg eval: %s (%s) on %s/%s, %lldx%lld, %s %s\n", o.weights.c_str(), m.name.c_str(),
              data.dir.c_str(), o.split.c_str(), static_cast<long long>(data.height),
              static_cast<long long>(data.width), device_name(dev), dtype_name(prec.storage));
  std::printf("%s\n", t.line().c_str());
  std::printf("all-background baseline: mean IoU %.4f (per sample) / %.4f (GB)\n", b.iou_deepcam, b.iou_gb);
  if (!o.json.empty()) {
    json j = t.to_json();
    j["weights"] = o.weights;
    j["baseline_mean_iou"] = b.iou_deepcam;
    j["baseline_mean_iou_gb"] = b.iou_gb;
    AtomicFile out(o.json);
    {
      std::ofstream f(out.tmp_path());
      CS_CHECK(f.good(), "cannot write --json file ", o.json);
      f << j.dump(2) << "\n";
    }
    out.commit();
  }
  return 0;
}

}  // namespace climseg::apps
