// Plain SGD over the Net's flat buffers: params -= lr * grads, one fused pass on either device, no state. Kept for
// the demo and the engine tests; training uses train/optimizer.h (SGD with momentum, Adam, AdamW, LAMB, LARC,
// master weights, loss-scale skipping) with the schedules of train/schedule.h.
#pragma once

#include "engine/context.h"
#include "engine/tensor.h"

namespace climseg {

void sgd_step(ExecContext& ctx, const Tensor& params, const Tensor& grads, double lr);

}  // namespace climseg
