// The precision of a training or evaluation run: the net's compute dtype and, on the CPU, the emulated 16-bit
// storage (docs/training.md, "Precision").
#pragma once

#include <string>

#include "engine/dtype.h"
#include "engine/tensor.h"

namespace climseg {

struct Precision {
  DType net = DType::f32;
  DType storage = DType::f32;  // what the weights and activations are rounded to
  DType emulate = DType::f32;  // NetOptions::emulate_storage
};
// `name`: fp32, fp16, bf16 or (on the CPU) fp64, as given to --precision.
Precision resolve_precision(const std::string& name, Device dev);

}  // namespace climseg
