// ExecContext: where work runs. Device, CUDA stream, library handles (cuBLAS, cuDNN), a workspace, the profiler
// and the deterministic flag. Layers receive it in every call; nothing is global except the device allocator.
// The CUDA types are forward-declared so CPU-only code includes this header without CUDA headers.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/dtype.h"

struct CUstream_st;
struct cublasContext;
struct cudnnContext;

namespace climseg {

class Profiler;

class ExecContext {
 public:
  // A CPU context, or a CUDA context on device `device_index` with its own non-blocking stream and handles.
  explicit ExecContext(Device device = Device::cpu, int device_index = 0);
  ~ExecContext();
  ExecContext(const ExecContext&) = delete;
  ExecContext& operator=(const ExecContext&) = delete;

  Device device() const { return device_; }
  int device_index() const { return device_index_; }
  CUstream_st* stream() const;       // cudaStream_t; null on CPU
  cublasContext* cublas() const;     // cublasHandle_t bound to stream(), created on first use; throws on CPU
  cudnnContext* cudnn() const;       // cudnnHandle_t bound to stream(); throws on CPU or without cuDNN
  void synchronize() const;          // waits for the stream (no-op on CPU)
  // Makes this context's device current for the calling thread (no-op on CPU).
  void activate() const;

  // Scratch memory shared by all layers (they overlap in time, never in use). Grows on request; the pointer is
  // valid until the next call with a larger size. Planned networks give the workspace from their arena instead.
  void* workspace(size_t bytes);
  size_t workspace_bytes() const { return workspace_bytes_; }

  Profiler* profiler = nullptr;  // optional; scopes are no-ops without one
  bool deterministic = false;    // atomics-free kernels and deterministic library algorithms

 private:
  Device device_;
  int device_index_;
  struct CudaState;
  std::unique_ptr<CudaState> cuda_;
  std::shared_ptr<void> workspace_;
  size_t workspace_bytes_ = 0;
};

}  // namespace climseg
