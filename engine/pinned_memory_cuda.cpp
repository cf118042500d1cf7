// engine/pinned_memory.h for a CUDA build: cudaHostAlloc with cudaHostAllocPortable, so the memory counts as
// pinned for every device's context (a loader on device 1 may be built from a thread whose current device is 0).
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "engine/check_cuda.h"
#include "engine/device.h"
#include "engine/pinned_memory.h"

namespace climseg {

bool pinned_memory_available() { return detail::device_count() > 0; }

Tensor pinned_empty(Shape s, DType t) {
  if (!pinned_memory_available()) return Tensor::empty(s, t, Device::cpu);
  const size_t bytes = static_cast<size_t>(s.numel()) * dtype_size(t);
  void* p = nullptr;
  const cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 256, cudaHostAllocPortable);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    CS_THROW("pinned_empty: cudaHostAlloc of ", bytes, " bytes (", dtype_name(t), " ", s.str(),
             ") failed: ", cudaGetErrorString(e), " (page-locked memory is limited by RAM and `ulimit -l`)");
  }
  std::shared_ptr<void> owner(p, [](void* q) { CUDA_CHECK_LOG(cudaFreeHost(q)); });
  return Tensor::wrap(p, s, t, Device::cpu, std::move(owner));
}

bool is_pinned(const void* ptr) {
  if (ptr == nullptr || detail::device_count() == 0) return false;
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, ptr) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeHost;
}

}  // namespace climseg
