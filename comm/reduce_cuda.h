// Device reduction used by the NCCL transport (comm/reduce_cuda.cu); CUDA builds only.
#pragma once

#include <cstdint>

#include "engine/dtype.h"

namespace climseg::comm {
// dst[i] = round(float(dst[i]) + float(src[i])) on device buffers, enqueued on `stream` (a cudaStream_t).
void device_reduce_sum(void* dst, const void* src, int64_t count, DType dt, void* stream);
}  // namespace climseg::comm
