// The one copy of what every CUDA source file shares (include from .cu files only: it needs the CUDA headers):
// launch geometry for grid-stride loops, fp32 <-> storage-type conversions (fp16/bf16 storage, fp32 maths, round to
// nearest even), the dtype dispatch of the launchers and their argument checks (messages "cuda::<who>: ...").
// Used by kernels/cuda/*.cu, kernels/cudnn/*.cu and comm/*.cu; launch errors are checked with CUDA_CHECK_LAUNCH()
// from engine/check_cuda.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/dispatch.h"
#include "engine/dtype.h"
#include "engine/tensor.h"

namespace climseg::cuda {

// ---- launch geometry -------------------------------------------------------------------------------------------

constexpr int kThreads = 256;          // threads per block for elementwise kernels
constexpr int64_t kMaxBlocks = 8192;   // grid cap for grid-stride loops: a few waves on any current GPU, and
                                       // independent of the device so chunked results do not depend on it

// Blocks for n elements, one per kThreads, at least 1 (a zero-size grid is a launch error), at most kMaxBlocks.
inline int grid_for(int64_t n) {
  return static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

// ---- fp32 <-> storage ------------------------------------------------------------------------------------------

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

// ---- launcher helpers (host) -----------------------------------------------------------------------------------

// Calls f(static_cast<T*>(nullptr)) with T = float, __half or __nv_bfloat16 for the tensor dtype; others throw.
//   dispatch(x.dtype(), "relu_fwd", [&](auto tag) { using T = std::remove_pointer_t<decltype(tag)>; ... });
template <class F>
void dispatch(DType t, const char* who, F&& f) {
  dispatch_float_storage<__half, __nv_bfloat16, false>(t, std::forward<F>(f), [&] {
    CS_THROW("cuda::", who, ": the CUDA kernels take fp32, fp16 or bf16, not ", dtype_name(t));
  });
}

inline cudaStream_t stream_of(ExecContext& ctx) { return static_cast<cudaStream_t>(ctx.stream()); }

inline void check_ctx(ExecContext& ctx, const char* who) {
  CS_CHECK(ctx.device() == Device::cuda, "cuda::", who, ": needs a CUDA context, got a ", device_name(ctx.device()),
           " one");
}

// A data operand: defined, on the CUDA device, pixel-strided (NHWC, channels contiguous).
inline void check_operand(const char* who, const char* what, const Tensor& t) {
  CS_CHECK(t.defined(), "cuda::", who, ": ", what, " is undefined");
  CS_CHECK(t.device() == Device::cuda, "cuda::", who, ": ", what, " ", t.str(), " is not on the CUDA device");
  CS_CHECK(t.is_pixel_strided(), "cuda::", who, ": ", what, " ", t.str(), " is not pixel-strided");
}

// ... and of shape `want` and dtype `dt`.
inline void check_operand(const char* who, const char* what, const Tensor& t, const Shape& want, DType dt) {
  check_operand(who, what, t);
  CS_CHECK(t.shape() == want, "cuda::", who, ": ", what, " is ", t.shape().str(), ", expected ", want.str());
  CS_CHECK(t.dtype() == dt, "cuda::", who, ": ", what, " is ", dtype_name(t.dtype()), ", expected ", dtype_name(dt));
}

// ... and of ref's shape and dtype.
inline void check_like(const char* who, const char* what, const Tensor& t, const Tensor& ref) {
  check_operand(who, what, t, ref.shape(), ref.dtype());
}

// A contiguous per-channel vector of C elements of dtype dt.
inline void check_vec(const char* who, const char* what, const Tensor& t, int64_t C, DType dt) {
  check_operand(who, what, t);
  CS_CHECK(t.is_contiguous() && t.numel() == C && t.dtype() == dt, "cuda::", who, ": ", what, " ", t.str(),
           " must be contiguous ", dtype_name(dt), " with ", C, " elements");
}

// A byte buffer (saved state, workspace) of at least `need` bytes.
inline void check_bytes(const char* who, const char* what, const Tensor& t, size_t need) {
  check_operand(who, what, t);
  CS_CHECK(t.nbytes() >= need, "cuda::", who, ": ", what, " has ", t.nbytes(), " bytes, needs ", need);
}

// Typed element pointers of a tensor (null for an undefined one).
template <class T>
const T* cptr(const Tensor& t) {
  return static_cast<const T*>(t.data());
}
template <class T>
T* mptr(const Tensor& t) {
  return static_cast<T*>(t.data());
}

}  // namespace climseg::cuda
