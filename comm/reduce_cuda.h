// Device reduction used by the NCCL transport (comm/reduce_cuda.cu); CUDA builds only.
#pragma once

#include <cstdint>

#include "engine/dtype.h"

namespace climseg::comm {
// dst[i] = round(float(a[i]) + float(b[i])) on device buffers, enqueued on `stream` (a cudaStream_t); dst may be a.
void device_reduce_sum(void* dst, const void* a, const void* b, int64_t count, DType dt, void* stream);
}  // namespace climseg::comm
