// Device-side reduction of the schedules' NCCL transport: dst[i] = round(float(a[i]) + float(b[i])), the same
// arithmetic as host_reduce_sum (fp32 add, one rounding to the 16-bit storage type). Memory-bound: 3 accesses per
// element, one grid-stride loop; it should run at the device's copy bandwidth.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "comm/reduce_cuda.h"
#include "engine/check.h"
#include "engine/check_cuda.h"
#include "kernels/cuda/common.cuh"

namespace climseg::comm {
namespace {

// dst = a + b in fp32, rounded once to T (__fadd_rn: no contraction with a neighbouring multiply).
template <class T>
__global__ void sum_kernel(T* dst, const T* a, const T* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = cuda::from_f<T>(__fadd_rn(cuda::to_f(a[i]), cuda::to_f(b[i])));
}

}  // namespace

void device_reduce_sum(void* dst, const void* a, const void* b, int64_t count, DType dt, void* stream) {
  if (count <= 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  dispatch_float_storage<__half, __nv_bfloat16, false>(
      dt,
      [&](auto tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        sum_kernel<T><<<cuda::grid_for(count), cuda::kThreads, 0, s>>>(
            static_cast<T*>(dst), static_cast<const T*>(a), static_cast<const T*>(b), count);
      },
      [&] { CS_THROW("allreduce: unsupported dtype ", dtype_name(dt)); });
  CUDA_CHECK_LAUNCH();
}

}  // namespace climseg::comm
