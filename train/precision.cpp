#include "train/precision.h"

#include "engine/check.h"

namespace climseg {

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

}  // namespace climseg
