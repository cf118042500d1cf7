// Plain SGD over the Net's flat buffers: params -= lr * grads, one fused pass on either device. This is the
// minimal optimizer that proves training end to end; the full set (momentum, Adam, LAMB, LARC, schedules, mixed
// precision) belongs to the training issue and will replace it.
#pragma once

#include "engine/context.h"
#include "engine/tensor.h"

namespace climseg {

void sgd_step(ExecContext& ctx, const Tensor& params, const Tensor& grads, double lr);

}  // namespace climseg
