// engine/pinned_memory.h for a build without CUDA: ordinary aligned host memory (nothing to pin for).
#include "engine/pinned_memory.h"

namespace climseg {

bool pinned_memory_available() { return false; }
Tensor pinned_empty(Shape s, DType t) { return Tensor::empty(s, t, Device::cpu); }
bool is_pinned(const void*) { return false; }

}  // namespace climseg
