// Device-side reduction of the schedules' NCCL transport: dst[i] = round(float(a[i]) + float(b[i])), the same
// arithmetic as host_reduce_sum (fp32 add, one rounding to the 16-bit storage type). Memory-bound: 3 accesses per
// element, one grid-stride loop; it should run at the device's copy bandwidth.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "comm/reduce_cuda.h"
#include "engine/check.h"
#include "engine/check_cuda.h"

namespace climseg::comm {
namespace {

__global__ void sum_f32_kernel(float* dst, const float* a, const float* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = __fadd_rn(a[i], b[i]);
}
__global__ void sum_f16_kernel(__half* dst, const __half* a, const __half* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = __float2half_rn(__fadd_rn(__half2float(a[i]), __half2float(b[i])));
}
__global__ void sum_bf16_kernel(__nv_bfloat16* dst, const __nv_bfloat16* a, const __nv_bfloat16* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = __float2bfloat16_rn(__fadd_rn(__bfloat162float(a[i]), __bfloat162float(b[i])));
}

}  // namespace

void device_reduce_sum(void* dst, const void* a, const void* b, int64_t count, DType dt, void* stream) {
  if (count <= 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((count + threads - 1) / threads, 4096));
  switch (dt) {
    case DType::f32:
      sum_f32_kernel<<<blocks, threads, 0, s>>>(static_cast<float*>(dst), static_cast<const float*>(a),
                                                static_cast<const float*>(b), count);
      break;
    case DType::f16:
      sum_f16_kernel<<<blocks, threads, 0, s>>>(static_cast<__half*>(dst), static_cast<const __half*>(a),
                                                static_cast<const __half*>(b), count);
      break;
    case DType::bf16:
      sum_bf16_kernel<<<blocks, threads, 0, s>>>(static_cast<__nv_bfloat16*>(dst), static_cast<const __nv_bfloat16*>(a),
                                                 static_cast<const __nv_bfloat16*>(b), count);
      break;
    default:
      CS_THROW("allreduce: unsupported dtype ", dtype_name(dt));
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace climseg::comm
