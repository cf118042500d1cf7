// `climseg train` and `climseg eval` (docs/training.md): training of the three networks on DeepCAM-format data
// with the Trainer, optimizers, schedules, mixed precision, loss scaling and checkpoints of train/, and validation with
// both reference IoU definitions.
//
//   climseg train                                   a small DeepLabv3+ on a synthetic set cached on first use
//   climseg train --config run.toml --lr 2e-3       options from a TOML/INI file, the command line overrides
//   climseg train --checkpoint-dir ck --resume      continue from the newest complete checkpoint in ck/
//   climseg eval --weights ck/ckpt-0000000400.safetensors --data DIR
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "apps/model_options.h"
#include "comm/data_parallel.h"

namespace climseg::apps {

// Where the data come from and how a sample is read (shared by train and eval).
struct DataOptions {
  std::string data;       // DIR with train/, validation/ and stats.h5; empty: the cached synthetic set
  std::string stats;      // stats.h5 (default DIR/stats.h5)
  int64_t height = 0, width = 0;  // the size trained on; 0: the files' size (synthetic: the generated size)
  int64_t stride = 0;     // read every k-th row and column instead of a centred crop to --height x --width
  int threads = 2;        // reader threads
  bool skip_bad_files = false;
  int64_t max_bad_files = 10;
  // The synthetic default (no --data): samples and size generated into the cache folder once.
  int64_t synthetic_samples = 0;  // 0: the default
  uint64_t synthetic_seed = 0;
};

struct TrainOptions {
  ModelOptions model;
  DataOptions data;
  int64_t batch = 0;             // 0: the default (4 on the CPU, 2 on CUDA)
  int64_t epochs = 0, steps = 0;  // both 0: the default length (the synthetic default: a few minutes)
  std::string optimizer = "adam";
  double lr = 1e-3, momentum = 0.9, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0, max_grad_norm = 0;
  bool nesterov = false;
  std::string larc = "off";
  double larc_eta = 0.002, larc_eps = 1.0 / 16000;
  std::string schedule;  // empty: constant (the synthetic default: cosine)
  std::vector<int64_t> milestones;
  double decay_rate = 0.1, eta_min = 0, power = 1.0, warmup_factor = 1.0;
  int64_t t_max = 0;
  int64_t warmup_steps = -1;  // < 0: 0 (the synthetic default: 20)
  std::string loss = "reference";  // reference (the model's), gb, gb-tiramisu, deepcam
  std::string precision = "fp32";
  std::string loss_scale = "auto";  // auto (dynamic for fp16, none otherwise), dynamic, static, none
  double static_loss_scale = 1024.0;
  double init_loss_scale = 0;  // 0: SoftmaxXentConfig::initial_loss_scale (2^16, less for a 'sum' loss)
  int64_t loss_scale_window = 2000;
  std::string device = "auto";
  uint64_t seed = 0;
  bool deterministic = false;
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;  // steps; 0: at the end (and at each validation) only
  int keep_checkpoints = 3;
  bool resume = false;
  int64_t validate_every = 0;  // steps; 0: at the end of each epoch and of the run
  int64_t log_every = 10;
  std::string metrics;  // JSONL file (default: <checkpoint-dir>/metrics.jsonl when there is one)
  bool mllog = false;
  // MLPerf submission fields of the :::MLLOG lines (--mllog-*): who ran it, on what, and its status.
  std::string mllog_org = "climseg", mllog_platform, mllog_division = "open", mllog_status = "research";
  bool profile = false;
  std::string profile_csv;
  std::string save_weights;
  bool quiet = false;
  comm::DistOptions dist;  // under mpirun/srun with several ranks (comm/data_parallel.h)
  std::string fault_kill;  // --fault-kill RANK:STEP (failure tests): rank RANK kills itself before step STEP
};

struct EvalOptions {
  std::string weights;  // a checkpoint (the network comes from its metadata) or a climseg weights file
  DataOptions data;
  std::string split = "validation";
  int64_t batch = 2;
  std::string precision = "fp32";
  std::string device = "auto";
  std::string loss = "reference";
  std::string json;  // also write the results to this JSON file
};

struct TrainCommands {
  CLI::App* train = nullptr;
  CLI::App* eval = nullptr;
  TrainOptions t;
  EvalOptions e;
};

void add_train_commands(CLI::App& app, TrainCommands& c);
int run_train(const TrainOptions& o);
int run_eval(const EvalOptions& o);

}  // namespace climseg::apps
