// Status checks for the CUDA runtime, cuDNN, cuBLAS and NCCL (see engine/check.h). Include only from CUDA-enabled
// translation units (files named *_cuda.cpp or *.cu, or code under #ifdef CLIMSEG_HAVE_CUDA).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "engine/check.h"

namespace climseg::detail {
const char* cublas_status_string(cublasStatus_t s);
// CLIMSEG_CUDA_SYNC_CHECK=1 (read once, or set_sync_launch_checks): every CUDA_CHECK_LAUNCH also waits for the
// device, so an execution fault (an illegal address, a trap) is reported at the launch of the kernel that caused
// it instead of at a later, unrelated call. For debugging and scripts/gpu-check's first test pass: it serialises
// the host with the device.
bool sync_launch_checks();
void set_sync_launch_checks(bool on);
// cudaGetLastError(), then, with sync_launch_checks(), cudaDeviceSynchronize()'s status.
cudaError_t launch_status();
}  // namespace climseg::detail

#define CUDA_CHECK(expr) CS_CHECK_STATUS((expr), cudaSuccess, cudaGetErrorString)
#define CUBLAS_CHECK(expr) CS_CHECK_STATUS((expr), CUBLAS_STATUS_SUCCESS, ::climseg::detail::cublas_status_string)
// After every kernel launch (Caffe CUDA_POST_KERNEL_CHECK): reports launch-configuration errors at their source,
// and with CLIMSEG_CUDA_SYNC_CHECK=1 execution errors too.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(::climseg::detail::launch_status())
// Non-throwing variant for destructors: logs to stderr.
#define CUDA_CHECK_LOG(expr)                                                                          \
  do {                                                                                                \
    cudaError_t cs_e_ = (expr);                                                                       \
    if (cs_e_ != cudaSuccess)                                                                         \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(cs_e_)); \
  } while (0)

#if defined(CLIMSEG_HAVE_CUDNN)
#include <cudnn.h>
#define CUDNN_CHECK(expr) CS_CHECK_STATUS((expr), CUDNN_STATUS_SUCCESS, cudnnGetErrorString)
#endif

#if defined(CLIMSEG_HAVE_NCCL)
#include <nccl.h>
#define NCCL_CHECK(expr) CS_CHECK_STATUS((expr), ncclSuccess, ncclGetErrorString)
#endif
