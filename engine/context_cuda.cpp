// ExecContext for a CUDA build. A CPU context behaves as in context_nocuda.cpp. A CUDA context owns a
// non-blocking stream (no implicit ordering with the legacy default stream or other contexts) and, created on
// first use, a cuBLAS and a cuDNN handle bound to it. Library handles are per context, never global, so two
// contexts (threads, streams) never share mutable library state.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "engine/check_cuda.h"
#include "engine/context.h"
#include "engine/device.h"

namespace climseg {

struct ExecContext::CudaState {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
#if defined(CLIMSEG_HAVE_CUDNN)
  cudnnHandle_t cudnn = nullptr;
#endif
  std::mutex mu;  // guards the lazy cuBLAS and cuDNN creation

  // Releases what was created (also after a constructor failed half-way). Never throws.
  ~CudaState() {
    int prev = -1;
    CUDA_CHECK_LOG(cudaGetDevice(&prev));
    if (prev != device) CUDA_CHECK_LOG(cudaSetDevice(device));
    if (stream) CUDA_CHECK_LOG(cudaStreamSynchronize(stream));
#if defined(CLIMSEG_HAVE_CUDNN)
    if (cudnn) {
      cudnnStatus_t s = cudnnDestroy(cudnn);
      if (s != CUDNN_STATUS_SUCCESS) std::fprintf(stderr, "cudnnDestroy failed: %s\n", cudnnGetErrorString(s));
    }
#endif
    if (cublas) {
      cublasStatus_t s = cublasDestroy(cublas);
      if (s != CUBLAS_STATUS_SUCCESS)
        std::fprintf(stderr, "cublasDestroy failed: %s\n", detail::cublas_status_string(s));
    }
    if (stream) CUDA_CHECK_LOG(cudaStreamDestroy(stream));
    if (prev >= 0 && prev != device) CUDA_CHECK_LOG(cudaSetDevice(prev));
  }
};

ExecContext::ExecContext(Device device, int device_index) : device_(device), device_index_(device_index) {
  if (device == Device::cpu) return;
  const int n = detail::device_count();
  CS_CHECK(n > 0, "a CUDA context was requested, but no CUDA device is visible (no driver or no device)");
  CS_CHECK(device_index >= 0 && device_index < n, "CUDA device ", device_index, " requested, but only ", n,
           " device(s) are visible (indices 0..", n - 1, ")");
  cuda_ = std::make_unique<CudaState>();
  cuda_->device = device_index;
  CUDA_CHECK(cudaSetDevice(device_index));
  CUDA_CHECK(cudaStreamCreateWithFlags(&cuda_->stream, cudaStreamNonBlocking));
  // The cuBLAS handle is created on first use (cublas()), like the cuDNN one: contexts that only copy and run
  // custom kernels (the input pipeline's copy stream, io/pipeline.h) never pay for it.
}

ExecContext::~ExecContext() {
  if (cuda_ && cuda_->stream) CUDA_CHECK_LOG(cudaStreamSynchronize(cuda_->stream));
  workspace_.reset();  // back to the allocator once the stream is done with it, before the stream goes
  cuda_.reset();
}

CUstream_st* ExecContext::stream() const { return cuda_ ? cuda_->stream : nullptr; }

cublasContext* ExecContext::cublas() const {
  CS_CHECK(cuda_ != nullptr, "cuBLAS handle requested from a CPU context");
  std::lock_guard<std::mutex> lock(cuda_->mu);
  if (cuda_->cublas == nullptr) {
    activate();
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    // Default math: fp32 GEMMs stay exact fp32 (no TF32, for parity with the CPU path); fp16/bf16 GEMMs use tensor
    // cores through cublasGemmEx's data and compute types (kernels/cublas/gemm.cpp). Split-K partial sums stay in
    // fp32 (not rounded to the 16-bit output type): weight-gradient GEMMs reduce over all pixels of a batch.
    const int math = CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
    cublasStatus_t s = cublasSetStream(h, cuda_->stream);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetMathMode(h, static_cast<cublasMath_t>(math));
    if (s != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(h);
      CUBLAS_CHECK(s);
    }
    cuda_->cublas = h;
  }
  return cuda_->cublas;
}

cudnnContext* ExecContext::cudnn() const {
  CS_CHECK(cuda_ != nullptr, "cuDNN handle requested from a CPU context");
#if defined(CLIMSEG_HAVE_CUDNN)
  std::lock_guard<std::mutex> lock(cuda_->mu);
  if (cuda_->cudnn == nullptr) {
    // Created on first use: cuDNN's initialisation is slow and most contexts (tests, tools) never need it.
    activate();
    cudnnHandle_t h = nullptr;
    CUDNN_CHECK(cudnnCreate(&h));
    cudnnStatus_t s = cudnnSetStream(h, cuda_->stream);
    if (s != CUDNN_STATUS_SUCCESS) {
      cudnnDestroy(h);
      CUDNN_CHECK(s);
    }
    cuda_->cudnn = h;
  }
  return cuda_->cudnn;
#else
  CS_THROW("cuDNN handle requested, but this climseg was built without cuDNN");
#endif
}

void ExecContext::synchronize() const {
  if (cuda_) CUDA_CHECK(cudaStreamSynchronize(cuda_->stream));
}

void ExecContext::activate() const {
  if (cuda_) CUDA_CHECK(cudaSetDevice(device_index_));
}

void* ExecContext::workspace(size_t bytes) {
  if (bytes <= workspace_bytes_) return workspace_.get();
  if (!cuda_) {
    size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    CS_CHECK(p != nullptr, "workspace allocation of ", bytes, " bytes failed");
    workspace_ = std::shared_ptr<void>(p, std::free);
    workspace_bytes_ = rounded;
    return p;
  }
  // The old block may still be read by work queued on this stream, and the allocator's cache is not stream-aware:
  // wait for the stream before handing it back (growth happens a few times per process, not per step).
  if (workspace_) {
    synchronize();
    workspace_.reset();
    workspace_bytes_ = 0;
  }
  activate();
  const size_t rounded = (bytes + 255) / 256 * 256;
  void* p = detail::device_alloc(rounded);
  workspace_ = std::shared_ptr<void>(p, [rounded](void* q) { detail::device_free(q, rounded); });
  workspace_bytes_ = rounded;
  return p;
}

}  // namespace climseg
