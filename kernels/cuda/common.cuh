// Shared by the kernels in kernels/cuda/*.cu (device code only; include from .cu files): launch geometry for
// grid-stride loops and fp32 <-> storage-type conversions (fp16/bf16 storage, fp32 maths, round to nearest even).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

namespace climseg::cuda {

constexpr int kThreads = 256;          // threads per block for elementwise kernels
constexpr int64_t kMaxBlocks = 8192;   // grid cap for grid-stride loops: a few waves on any current GPU, and
                                       // independent of the device so chunked results do not depend on it

// Blocks for n elements, one per kThreads, at least 1 (a zero-size grid is a launch error), at most kMaxBlocks.
inline int grid_for(int64_t n) {
  return static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_f<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

}  // namespace climseg::cuda
