// Trainer: one network, its optimizer, loss scaler and (under several ranks or with gradient lag) data parallelism;
// step(batch) is one training step (docs/training.md):
//
//   forward       the batch into the net; the loss layer computes loss, argmax and per-class counts in one pass
//   backward      the loss scale is the loss layer's gradient multiplier; with data parallelism each node's
//                 gradient hook starts the allreduce of the buckets it completes, overlapping the rest of backward
//   reduce        wait for the sums across ranks (with gradient lag 1: the previous step's)
//   update        Optimizer::step(lr(schedule position), 1/(scale x ranks)): inf/NaN anywhere skips the step and
//                 changes nothing; then LossScaler::update
//   metrics       loss and DeepCAM IoU read back (and averaged across ranks)
//
// The step counter (RunState::iteration) counts batches consumed (applied or skipped); the schedule position is the
// optimizer's count of applied steps, so a skipped step leaves the learning rate where it was. Checkpoints hold the
// whole state (train/run_state.h): N steps + restore + N steps equals 2N steps bit for bit on the same device.
//
// The batches come in as tensors (the caller's loader): the Trainer needs no data library. Validation is the
// Evaluator's (train/evaluator.h), on the weights prepare_validation() leaves in net().
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "comm/data_parallel.h"
#include "engine/checkpoint.h"
#include "engine/context.h"
#include "engine/net.h"
#include "layers/softmax_xent.h"
#include "models/model.h"
#include "train/loss_scaler.h"
#include "train/optimizer.h"
#include "train/precision.h"
#include "train/run_state.h"
#include "train/schedule.h"

namespace climseg {

struct TrainerConfig {
  ModelConfig model;
  int64_t batch = 1, height = 0, width = 0;  // per rank
  Precision precision;
  SoftmaxXentConfig loss;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  LossScalerConfig scaler;
  uint64_t seed = 0;    // the parameters' initialisation (and the model's dropout, ModelConfig::seed)
  int ranks = 1;        // data-parallel ranks (comm::init_ranks().size)
  comm::DistOptions dist;  // buckets, overlap, gradient lag, replica checks
};

struct StepStats {
  int64_t step = 0;       // RunState::iteration after the step
  double loss = 0;        // the batch's loss (the mean of the ranks' losses)
  double iou = 0;         // DeepCAM mean IoU of the (global) batch
  double lr = 0;          // the learning rate the step used
  double loss_scale = 1;  // the scale after LossScaler::update
  bool applied = false;   // false: a non-finite gradient, the step was skipped
  double grad_norm = -1;  // global L2 norm of the unscaled gradient (-1 when skipped)
};

// Test hooks (fault injection): called at the start of each step with the step's 1-based number.
struct TrainerHooks {
  std::function<void(int64_t step)> before_step;
};

class Trainer {
 public:
  // Builds and compiles the net on ctx's device (ctx must outlive the Trainer), initialises the parameters from
  // cfg.seed and, with several ranks or gradient lag, joins the data-parallel world (collective).
  Trainer(const TrainerConfig& cfg, ExecContext& ctx);
  ~Trainer();

  // One step on a batch: data (batch, H, W, C) in the net's dtype, labels (batch, H, W, 1) i32, either device.
  StepStats step(const Tensor& data, const Tensor& labels);

  // Before a validation: no allreduce in flight and, with several ranks, every rank's batch-norm running statistics
  // replaced by their average (each rank's come from its own batches).
  void prepare_validation();
  // A vector of doubles summed across the ranks (identity with one rank).
  void sum_across_ranks(std::vector<double>& v);

  // Checkpoints: `fields` are the metadata a resume must match (check_checkpoint_fields), written with the state.
  std::string save(CheckpointStore& store, const std::map<std::string, std::string>& fields);
  void restore(const Checkpoint& ck);

  ExecContext& context() { return ctx_; }
  Net& net() { return net_; }
  const ModelGraph& graph() const { return g_; }
  const TrainerConfig& config() const { return cfg_; }
  Optimizer& optimizer() { return *opt_; }
  const LossScaler& scaler() const { return scaler_; }
  comm::DataParallel* data_parallel() { return dp_.get(); }  // null with one rank and no lag
  RunState& state() { return rs_; }
  const RunState& state() const { return rs_; }

  TrainerHooks hooks;

 private:
  TrainerConfig cfg_;
  ExecContext& ctx_;
  Net net_;
  ModelGraph g_;
  SoftmaxXent* loss_layer_ = nullptr;
  std::unique_ptr<comm::DataParallel> dp_;
  std::unique_ptr<Optimizer> opt_;
  LossScaler scaler_;
  RunState rs_;
  // dLoss/dLoss (1: the loss scale is the loss layer's gradient multiplier) and the loss layer's header and counts,
  // copied out after forward (backward reuses the saved state's memory) and read after the optimizer step.
  Tensor dy_host_, metrics_copy_, metrics_head_;
  int64_t metrics_bytes_ = 0;
};

}  // namespace climseg
