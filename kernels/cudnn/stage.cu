// Staging copies for the cuDNN convolution wrapper (declared in kernels/cudnn/stage.h).
//
// Layout: both operands are NHWC windows with channels contiguous and arbitrary element strides for pixels, rows
// and images (a channel slice, or the top-left (h, w) window of a padded packed buffer).
//
// Algorithm: one thread per element, grid-stride over int64 indices i = ((b * h + y) * w + x) * c + ch; consecutive
// threads touch consecutive channels, so warps read and write contiguous runs of c elements (coalesced whenever
// c >= 32). A pure bit copy of 2- or 4-byte elements: no arithmetic, so any dtype of that size is exact.
//
// Bound: memory-bound, 2 x elem_bytes of traffic per element; the index divisions are hidden by the memory latency.
// Vectorised copies (128-bit when c and the strides allow) are the obvious next step if staging shows up in
// profiles.
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/check_cuda.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cudnn/stage.h"

namespace climseg::cudnn::detail {

namespace {

using cuda::grid_for;
using cuda::kThreads;

template <class U>
__global__ void copy_window_kernel(int64_t total, int64_t h, int64_t w, int64_t c, const U* src, int64_t sn,
                                   int64_t sh, int64_t sw, U* dst, int64_t dn, int64_t dh, int64_t dw) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t t = i / c;
    const int64_t ch = i - t * c;
    const int64_t x = t % w;
    t /= w;
    const int64_t y = t % h;
    const int64_t b = t / h;
    dst[b * dn + y * dh + x * dw + ch] = src[b * sn + y * sh + x * sw + ch];
  }
}

}  // namespace

void copy_window(ExecContext& ctx, int64_t n, int64_t h, int64_t w, int64_t c, size_t elem_bytes, const void* src,
                 int64_t sn, int64_t sh, int64_t sw, void* dst, int64_t dn, int64_t dh, int64_t dw) {
  const int64_t total = n * h * w * c;
  if (total == 0) return;
  CS_CHECK(src != nullptr && dst != nullptr, "cudnn staging copy: null pointer");
  const int blocks = grid_for(total);
  cudaStream_t st = cuda::stream_of(ctx);
  switch (elem_bytes) {
    case 2:
      copy_window_kernel<uint16_t><<<blocks, kThreads, 0, st>>>(total, h, w, c, static_cast<const uint16_t*>(src),
                                                                sn, sh, sw, static_cast<uint16_t*>(dst), dn, dh, dw);
      break;
    case 4:
      copy_window_kernel<uint32_t><<<blocks, kThreads, 0, st>>>(total, h, w, c, static_cast<const uint32_t*>(src),
                                                                sn, sh, sw, static_cast<uint32_t*>(dst), dn, dh, dw);
      break;
    default: CS_THROW("cudnn staging copy: element size ", elem_bytes, " (expected 2 or 4)");
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace climseg::cudnn::detail
