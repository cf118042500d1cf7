// `climseg train` and `climseg eval` (apps/train.h, docs/training.md): the command line. Options become the
// configs of train/ (TrainerConfig, the Evaluator); this file reads the data (io::Loader), decides when to validate
// and checkpoint, and prints the progress. The step itself is train/trainer.h's.
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
#include "comm/ranks.h"
#include "engine/atomic_file.h"
#include "engine/check.h"
#include "engine/checkpoint.h"
#include "engine/net.h"
#include "engine/profiler.h"
#include "engine/safetensors.h"
#include "engine/weights.h"
#include "io/input_metadata.h"
#include "io/pipeline.h"
#include "models/model.h"
#include "train/evaluator.h"
#include "train/fit.h"
#include "train/metrics.h"
#include "train/run_log.h"
#include "train/trainer.h"

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

// ---- checkpoints -----------------------------------------------------------------------------------------------------

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
  // Failure tests only (docs/distributed.md): not listed in --help.
  t->add_option("--fault-kill", o.fault_kill, "RANK:STEP: rank RANK kills itself with SIGKILL before step STEP")
      ->group("");

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

namespace {

// Every validation batch of this rank into the evaluator: the split once in order, each rank its own shard.
void add_validation_batches(Evaluator& ev, ExecContext& ctx, const io::Dataset& ds, const io::LoaderOptions& base,
                            int64_t batch) {
  io::LoaderOptions lo = base;
  lo.shard.mode = io::ShardMode::eval;
  lo.shard.shuffle = false;
  lo.batch = batch;
  lo.start = {};
  lo.epochs = 1;
  io::Loader loader(ds, lo);
  while (std::optional<io::Batch> b = loader.next(ctx)) ev.add(ctx, b->data, b->labels);
}

// --fault-kill RANK:STEP (docs/distributed.md, failure tests): rank RANK kills itself with SIGKILL before step STEP.
void install_fault_kill(Trainer& t, const std::string& spec, int rank) {
  if (spec.empty()) return;
  int kill_rank = -1;
  long long kill_step = -1;
  CS_CHECK(std::sscanf(spec.c_str(), "%d:%lld", &kill_rank, &kill_step) == 2, "--fault-kill ", spec,
           ": expected RANK:STEP");
  if (rank != kill_rank) return;
  t.hooks.before_step = [kill_step](int64_t step) {
    if (step == kill_step) std::raise(SIGKILL);
  };
}

}  // namespace

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
  const comm::RankInfo ri = comm::init_ranks();
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
  if (nranks > 1 && rank != 0) comm::rank_barrier();
  DataSetup data = setup_data(o.data, "");
  if (nranks > 1 && rank == 0) comm::rank_barrier();
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

  TrainerConfig tc;
  tc.model = m;
  tc.batch = batch;
  tc.height = data.height;
  tc.width = data.width;
  tc.precision = prec;
  tc.loss = loss_config(o.loss, m);
  tc.optimizer = optimizer_config(o);
  tc.schedule = schedule_config(o, total_steps);
  tc.scaler = scaler_config(o, prec, tc.loss, batch * data.height * data.width);
  tc.seed = o.seed;
  tc.ranks = nranks;
  tc.dist = o.dist;

  ExecContext ctx(dev, device_index);
  ctx.deterministic = o.deterministic;
  Profiler prof(dev);
  if (o.profile) ctx.profiler = &prof;
  Trainer trainer(tc, ctx);
  install_fault_kill(trainer, o.fault_kill, rank);
  comm::DataParallel* dp = trainer.data_parallel();
  RunState& rs = trainer.state();

  const std::map<std::string, std::string> fields = run_fields(m, o, data, batch, prec, dev, nranks);
  std::unique_ptr<CheckpointStore> store;  // rank 0 writes; every rank reads the checkpoint rank 0 chose
  if (!o.checkpoint_dir.empty() && rank == 0)
    store = std::make_unique<CheckpointStore>(o.checkpoint_dir, CheckpointStoreOptions{o.keep_checkpoints});
  CS_CHECK(!o.resume || !o.checkpoint_dir.empty(), "--resume needs --checkpoint-dir");
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
      trainer.restore(*ck);
      std::printf("resumed from %s at step %lld (%s)\n", ck->path.c_str(), static_cast<long long>(rs.iteration),
                  io::Cursor{rs.cursor.epoch, rs.cursor.position}.str().c_str());
    } else {
      std::printf("--resume: no checkpoint in %s yet; starting from step 0\n", o.checkpoint_dir.c_str());
    }
  }
  const OptimizerConfig& ocfg = tc.optimizer;
  const LossScalerConfig& lcfg = tc.scaler;
  std::printf("climseg train: %s (%s, width %g), %s %s%s, batch %lld, %lldx%lld, %lld training samples (%s)\n",
              m.name.c_str(), norm_name(m.norm), m.width, device_name(dev), dtype_name(prec.storage),
              prec.emulate != DType::f32 ? " (16-bit storage emulated, fp32 maths)" : "", static_cast<long long>(batch),
              static_cast<long long>(data.height), static_cast<long long>(data.width),
              static_cast<long long>(data.train.size()), data.dir.c_str());
  std::string scale_desc = loss_scale_mode_name(lcfg.mode);
  if (lcfg.mode == LossScaleMode::dynamic || lcfg.mode == LossScaleMode::static_scale) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " from %g", lcfg.init_scale);
    scale_desc += buf;
  }
  std::printf("  %lld parameters; %s%s, lr %g, %s schedule; loss %s (%s); loss scaling %s; %lld steps (%lld per "
              "epoch)\n",
              static_cast<long long>(trainer.net().num_params()), optimizer_kind_name(ocfg.kind),
              ocfg.larc != LarcMode::off ? (std::string(" + LARC ") + o.larc).c_str() : "", o.lr,
              o.schedule.c_str(), o.loss.c_str(), xent_reduction_name(tc.loss.reduction), scale_desc.c_str(),
              static_cast<long long>(total_steps), static_cast<long long>(steps_per_epoch));
  if (dp)
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

  {
    MllogRun d;
    d.org = o.mllog_org;
    d.platform = o.mllog_platform.empty() ? std::string(device_name(dev)) : o.mllog_platform;
    d.division = o.mllog_division;
    d.status = o.mllog_status;
    d.seed = o.seed;
    d.ranks = nranks;
    d.nodes = ri.nodes();
    d.accelerators_per_node = dev == Device::cuda ? ri.local_size : 0;
    d.global_batch = batch * nranks;
    d.optimizer = tc.optimizer;
    d.schedule = tc.schedule;
    d.train_samples = static_cast<int64_t>(data.train.size());
    d.eval_samples = data.validation ? static_cast<int64_t>(data.validation->size()) : int64_t{0};
    mllog_run_description(log, d);
  }
  log.mllog("init_stop", nullptr);
  log.mllog("run_start", nullptr);
  if (rs.iteration >= total_steps)
    std::printf("already at step %lld of %lld: nothing to train\n", static_cast<long long>(rs.iteration),
                static_cast<long long>(total_steps));
  lo.start = {rs.cursor.epoch, rs.cursor.position};
  std::optional<io::Loader> loader;
  if (rs.iteration < total_steps) loader.emplace(data.train, lo);
  Evaluator evaluator(m, tc.loss, data.height, data.width, dev, prec);
  FitOptions fo;
  fo.total_steps = total_steps;
  fo.validate_every = o.validate_every;
  fo.checkpoint_every = o.checkpoint_every;
  fo.store = store.get();
  fo.fields = fields;
  FitCallbacks cb;
  cb.next_batch = [&]() -> std::optional<FitBatch> {
    std::optional<io::Batch> b = loader->next(ctx);
    if (!b) return std::nullopt;
    // The loader drops an epoch's partial last batch when it reads the next one, so this batch ends the epoch when
    // fewer than a batch of files is left.
    const bool epoch_end = b->next.epoch != b->epoch || b->next.position + batch > shard;
    return FitBatch{b->data, b->labels, b->epoch, {b->next.epoch, b->next.position}, epoch_end};
  };
  if (data.validation)
    cb.validation_batches = [&](Evaluator& ev) { add_validation_batches(ev, ctx, *data.validation, lo, batch); };
  // Progress: a line every --log-every steps (the window's mean loss and speed), skipped steps, validations.
  double window_loss = 0;
  int64_t window_n = 0, window_samples = 0;
  auto t_window = clock::now();
  const int64_t first_iteration = rs.iteration;
  const auto t_loop = clock::now();
  cb.on_step = [&](const StepStats& st, const FitBatch& b) {
    window_loss += st.loss;
    ++window_n;
    window_samples += batch * nranks;
    if (!st.applied && !o.quiet)
      std::printf("step %lld: non-finite gradient, step skipped; loss scale now %g\n",
                  static_cast<long long>(st.step), st.loss_scale);
    if (!o.quiet && (st.step % o.log_every == 0 || st.step == total_steps)) {
      const double secs = std::chrono::duration<double>(clock::now() - t_window).count();
      const double sps = secs > 0 ? static_cast<double>(window_samples) / secs : 0.0;
      const double elapsed = std::chrono::duration<double>(clock::now() - t_loop).count();
      const double per_step = elapsed / static_cast<double>(st.step - first_iteration);
      std::printf("step %5lld/%lld  epoch %lld  loss %.5f  lr %.3g  scale %g  %.2f samples/s  ETA %s\n",
                  static_cast<long long>(st.step), static_cast<long long>(total_steps),
                  static_cast<long long>(b.epoch), window_loss / static_cast<double>(window_n), st.lr,
                  st.loss_scale, sps, format_duration(per_step * static_cast<double>(total_steps - st.step)).c_str());
      std::fflush(stdout);
      window_loss = 0;
      window_n = window_samples = 0;
      t_window = clock::now();
    }
  };
  cb.on_validation = [&](const char* why, int64_t step, const EvalTotals& t) {
    std::printf("validation (%s, step %lld): %s\n", why, static_cast<long long>(step), t.line().c_str());
    std::fflush(stdout);
  };
  cb.on_checkpoint = [&](const std::string& path, double ms, bool final) {
    if (final || !o.quiet) std::printf("checkpoint %s (%.0f ms)\n", path.c_str(), ms);
  };
  const FitResult res = fit(trainer, evaluator, log, fo, cb);
  if (!o.save_weights.empty() && rank == 0) {
    std::map<std::string, std::string> md = model_metadata(m);
    md.merge(input_fields(m, data));
    save_weights(trainer.net(), o.save_weights, md);
    std::printf("wrote weights %s\n", o.save_weights.c_str());
  }
  const double total_s = std::chrono::duration<double>(clock::now() - t_start).count();
  if (res.last) {
    std::printf("final validation: mean IoU %.4f (all-background baseline %.4f), GB-definition mean IoU %.4f "
                "(baseline %.4f)\n",
                res.last->mean_iou_deepcam(), res.baseline->iou_deepcam, res.last->mean_iou_gb(),
                res.baseline->iou_gb);
  }
  log.mllog("run_stop", nullptr, {{"status", "success"}});
  const LossScaler::State ls = trainer.scaler().state();
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
  Net& net = ev.net(o.batch);
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
  ev.begin(true);
  add_validation_batches(ev, ctx, *data.validation, lo, o.batch);
  const EvalTotals& t = ev.totals();
  const Baseline b = ev.baseline();
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
