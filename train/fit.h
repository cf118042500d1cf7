// fit(): the training loop around Trainer::step (docs/training.md, "climseg train and climseg eval"): batches from
// the caller's loader until total_steps, validation at each epoch end (or every validate_every steps) and at the
// end, checkpoints at each validation (or every checkpoint_every steps) and at the end, one JSONL line per step and
// per validation, and the MLLOG epoch and eval events. What is printed is the caller's (the callbacks).
//
// The loader stays the caller's (a function giving the next batch), so train/ needs no data library: `climseg
// train` adapts io::Loader (apps/train.cpp), a test can feed tensors.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "engine/checkpoint.h"
#include "train/evaluator.h"
#include "train/metrics.h"
#include "train/run_log.h"
#include "train/run_state.h"
#include "train/trainer.h"

namespace climseg {

// One batch of training data, as the caller's loader gives it.
struct FitBatch {
  Tensor data, labels;
  int64_t epoch = 0;       // the epoch it belongs to (0-based)
  DataCursor next;         // where the data stand after it (saved in checkpoints)
  bool epoch_end = false;  // no full batch of its epoch is left after it
};

struct FitOptions {
  int64_t total_steps = 0;
  int64_t validate_every = 0;        // steps; 0: at the end of each epoch (and always at the end of the run)
  int64_t checkpoint_every = 0;      // steps; 0: at each validation (and always at the end of the run)
  CheckpointStore* store = nullptr;  // null: no checkpoints (or not this rank's to write)
  std::map<std::string, std::string> fields;  // checkpoint metadata a resume must match
};

struct FitCallbacks {
  // The next training batch (called inside the profiler's data_wait scope); nullopt: the data ended (an error).
  std::function<std::optional<FitBatch>()> next_batch;
  // Feeds ev.add() every validation batch of this rank; null: the run has no validation data.
  std::function<void(Evaluator& ev)> validation_batches;
  // Progress: after each step, after each validation (why: "end of epoch", "periodic" or "end of run"), after each
  // checkpoint (final: the one at the end of the run).
  std::function<void(const StepStats& s, const FitBatch& b)> on_step;
  std::function<void(const char* why, int64_t step, const EvalTotals& t)> on_validation;
  std::function<void(const std::string& path, double ms, bool final)> on_checkpoint;
};

struct FitResult {
  std::optional<EvalTotals> last;   // the last validation (none without validation data)
  std::optional<Baseline> baseline;  // the all-background prediction's scores on the validation data
};

// Trains from trainer.state() (iteration, data cursor: a resumed run continues) to options.total_steps.
FitResult fit(Trainer& trainer, Evaluator& evaluator, MetricsLog& log, const FitOptions& options,
              const FitCallbacks& cb);

}  // namespace climseg
