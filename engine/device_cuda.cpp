// engine/device.h for a CUDA build: device memory through the caching allocator (cudaMalloc, never managed
// memory), explicit 2-D copies and memsets on a context's stream, and a device count that never throws.
#include <cuda_runtime.h>

#include <cstdio>
#include <exception>

#include "engine/check_cuda.h"
#include "engine/context.h"
#include "engine/device.h"
#include "engine/device_allocator.h"
#include "engine/tensor.h"

#if defined(CUDASIM)  // the emulation build (kernels/cudasim): cuda_runtime.h above is its stand-in
#include "cudasim/memory.h"
#endif

namespace climseg {

namespace {

// Runs f with `device` current and restores the previous device (cudaFree of another device's block, the cache
// released from any thread).
template <class F>
void on_device(int device, F&& f) {
  int prev = -1;
  CUDA_CHECK(cudaGetDevice(&prev));
  if (prev != device) CUDA_CHECK(cudaSetDevice(device));
  try {
    f();
  } catch (...) {
    if (prev != device) CUDA_CHECK_LOG(cudaSetDevice(prev));
    throw;
  }
  if (prev != device) CUDA_CHECK(cudaSetDevice(prev));
}

void* cuda_raw_alloc(int device, size_t bytes, void*) {
  void* p = nullptr;
  on_device(device, [&] {
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // not sticky, but clear it so the next CUDA_CHECK_LAUNCH does not report it
      p = nullptr;
      return;
    }
    CUDA_CHECK(e);
  });
  return p;
}

void cuda_raw_free(int device, void* ptr, size_t, void*) {
  on_device(device, [&] { CUDA_CHECK(cudaFree(ptr)); });
}

#if defined(CUDASIM)
void handed_out(void* ptr, size_t requested, size_t block, void*) { cudasim::block_handed_out(ptr, requested, block); }
#else
constexpr void (*handed_out)(void*, size_t, size_t, void*) = nullptr;
#endif

// Streams for a copy or memset: the context's when it is a CUDA context, otherwise the default stream followed by
// a synchronisation (the caller has no stream to order later work on).
cudaStream_t stream_of(ExecContext* ctx) {
  return ctx != nullptr && ctx->device() == Device::cuda ? ctx->stream() : nullptr;
}
bool synchronous(ExecContext* ctx) { return ctx == nullptr || ctx->device() != Device::cuda; }

}  // namespace

CachingAllocator& device_allocator() {
  // Never destroyed: tensors released during static destruction still find it, and cudaFree after the CUDA
  // runtime has shut down would fail anyway (the driver reclaims everything at exit).
  static CachingAllocator* instance =
      new CachingAllocator(RawDeviceAllocator{cuda_raw_alloc, cuda_raw_free, nullptr, "cudaMalloc", handed_out});
  return *instance;
}

namespace detail {

void* device_alloc(size_t bytes) {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  return device_allocator().allocate(device, bytes);
}

void device_free(void* ptr, size_t bytes) {
  // Called from Buffer's destructor: must not throw.
  try {
    device_allocator().deallocate(ptr, bytes);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "climseg: device_free: %s\n", e.what());
  }
}

void device_copy_2d(void* dst, size_t dpitch, Device dst_dev, const void* src, size_t spitch, Device src_dev,
                    size_t width, size_t rows, ExecContext* ctx) {
  if (width == 0 || rows == 0) return;
  CS_CHECK(dpitch >= width && spitch >= width, "device_copy_2d: pitches ", dpitch, "/", spitch,
           " smaller than the row width ", width);
  (void)dst_dev;  // cudaMemcpyDefault infers the direction from the pointers (unified addressing)
  (void)src_dev;
  cudaStream_t s = stream_of(ctx);
  // Without a context the copy is synchronous: first wait for all queued work, since the caching allocator may
  // have handed out memory that another (non-blocking) stream is still using.
  if (synchronous(ctx)) CUDA_CHECK(cudaDeviceSynchronize());
  if (dpitch == width && spitch == width)
    CUDA_CHECK(cudaMemcpyAsync(dst, src, width * rows, cudaMemcpyDefault, s));
  else
    CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDefault, s));
  if (synchronous(ctx)) CUDA_CHECK(cudaStreamSynchronize(s));
}

void device_memset_2d(void* dst, size_t pitch, size_t width, size_t rows, ExecContext* ctx) {
  if (width == 0 || rows == 0) return;
  CS_CHECK(pitch >= width, "device_memset_2d: pitch ", pitch, " smaller than the row width ", width);
  cudaStream_t s = stream_of(ctx);
  if (synchronous(ctx)) CUDA_CHECK(cudaDeviceSynchronize());  // as in device_copy_2d
  if (pitch == width)
    CUDA_CHECK(cudaMemsetAsync(dst, 0, width * rows, s));
  else
    CUDA_CHECK(cudaMemset2DAsync(dst, pitch, 0, width, rows, s));
  if (synchronous(ctx)) CUDA_CHECK(cudaStreamSynchronize(s));
}

int device_count() {
  // Computed once: the visible devices do not change during a process. No driver, no device or an
  // incompatible driver all mean 0 devices; the error is cleared so it cannot surface later.
  static const int count = [] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

}  // namespace detail
}  // namespace climseg

namespace climseg {

int cuda_driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return v;
}

int cuda_runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return v;
}

CudaDeviceInfo cuda_device_info(int device) {
  CS_CHECK(device >= 0 && device < detail::device_count(), "cuda_device_info: device ", device, " is not one of the ",
           detail::device_count(), " visible CUDA devices");
  cudaDeviceProp p{};
  CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  CudaDeviceInfo i;
  i.name = p.name;
  i.major = p.major;
  i.minor = p.minor;
  i.memory_bytes = p.totalGlobalMem;
  i.multiprocessors = p.multiProcessorCount;
  return i;
}

}  // namespace climseg
