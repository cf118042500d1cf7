// The state of a training run and its checkpoints (docs/training.md, "Checkpoints and exact resumption").
//
// A training checkpoint holds every input of the future: the master weights (fp32, under the net's parameter
// names, so the file is a weights file too), the batch-norm running statistics, the optimizer's moments and step
// count ("optimizer.<name>"), the loss scaler, the net's step counter (it seeds dropout), the data cursor, the
// iteration and, with gradient lag, the summed gradients waiting to be applied ("lag.grads"). The data order is a
// pure function of (seed, epoch), so N steps + resume + N steps equals 2N steps bit for bit on the same device.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "engine/checkpoint.h"
#include "engine/context.h"
#include "engine/net.h"
#include "train/loss_scaler.h"
#include "train/optimizer.h"

namespace climseg {

// Where the training data stand: the next sample's epoch and position in that epoch's order (io::Cursor's values).
struct DataCursor {
  int64_t epoch = 0, position = 0;
};

struct RunState {
  int64_t iteration = 0;  // batches consumed (applied or skipped steps)
  int64_t samples = 0;    // over all ranks
  DataCursor cursor;
  double lag_scale = 1;  // gradient lag: the loss scale the gradients waiting in the lag buffer were computed with
};

constexpr const char* kCheckpointLagTensor = "lag.grads";

// Writes a checkpoint of the run into `store` (the metadata: `fields`, which a resume must match, plus the state).
// `lag`: the gradient-lag buffer, or undefined. Returns the file's path.
std::string save_training_checkpoint(CheckpointStore& store, const Net& net, Optimizer& opt, const LossScaler& scaler,
                                     const RunState& rs, const std::map<std::string, std::string>& fields,
                                     ExecContext& ctx, const Tensor& lag = {});
// Restores net, optimizer, scaler and run state from a checkpoint whose fields were checked by the caller
// (check_checkpoint_fields). Every tensor is required, by name; errors name the file and what is missing.
void restore_training_checkpoint(const Checkpoint& ck, Net& net, Optimizer& opt, LossScaler& scaler, RunState& rs,
                                 ExecContext& ctx);

}  // namespace climseg
