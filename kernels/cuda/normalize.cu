// Min-max normalisation of an input batch on the GPU: fp32 in (the raw fields as read from the files and copied
// from pinned host memory), the compute dtype out. The CPU reference is kernels/cpu/normalize.h (same formula,
// same two fp32 roundings; checked bit for bit by tests/cuda/test_cuda_pipeline.cpp).
//
// Layout: NHWC, x and y pixel-strided (P, C) matrices; shift and scale are (C) fp32 vectors on the device.
//
// Algorithm: one thread per element, grid-stride loop over int64 indices, p = i / C, c = i - p * C (the
// eltwise.cu pattern): consecutive threads touch consecutive channels, so loads and stores are coalesced, and the
// per-channel coefficients (16 values for climate data) stay in L1. __fsub_rn and __fmul_rn keep nvcc from fusing
// the two operations into an FMA, which would round once instead of twice and differ from the CPU in the last bit.
//
// Bound: memory. A 768x1152x16 sample is 56.6 MB read and 56.6 (fp32) or 28.3 (fp16) MB written: about 40 us per
// sample at the H100's ~3 TB/s, negligible next to the host-to-device copy itself (56.6 MB at ~25 GB/s over
// PCIe 5 x16: ~2.3 ms), which runs on the same copy stream before it.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "engine/check_cuda.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/normalize.h"

namespace climseg::cuda {

namespace {

template <class T>
__global__ void minmax_normalize_nhwc_kernel(int64_t n, int64_t C, const float* x, int64_t xs, const float* shift,
                                             const float* scale, T* y, int64_t ys) {
  // x: (P, C) fp32; y: (P, C) T, may be x (T = float); shift, scale: (C)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / C, c = i - p * C;
    const float d = __fsub_rn(x[p * xs + c], shift[c]);
    y[p * ys + c] = from_f<T>(__fmul_rn(scale[c], d));
  }
}

}  // namespace

void minmax_normalize(ExecContext& ctx, const Tensor& x, const Tensor& shift, const Tensor& scale, const Tensor& y) {
  const char* who = "minmax_normalize";
  check_ctx(ctx, who);
  check_operand(who, "x", x);
  check_operand(who, "y", y);
  CS_CHECK(x.dtype() == DType::f32, "cuda::minmax_normalize: x must be fp32, got ", x.str());
  CS_CHECK(y.shape() == x.shape(), "cuda::minmax_normalize: y is ", y.shape().str(), ", x is ", x.shape().str());
  const int64_t C = x.shape().c, n = x.numel();
  check_vec(who, "shift", shift, C, DType::f32);
  check_vec(who, "scale", scale, C, DType::f32);
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(y.dtype(), who, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    minmax_normalize_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<float>(x), x.pixel_stride(),
                                                                      cptr<float>(shift), cptr<float>(scale),
                                                                      mptr<T>(y), y.pixel_stride());
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace climseg::cuda
