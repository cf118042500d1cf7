// CUDA kernels for the per-channel affine map y = x * scale[c] + shift[c] and the constant scale y = alpha x, with
// their backward passes. The CPU references are kernels/cpu/norm.h (same semantics, checked by
// tests/cuda/test_cuda_norm.cpp).
//
// Layout: NHWC, data operands pixel-strided (P, C) matrices (element (p, c) at p * stride + c), so channel slices
// of concat buffers are read and written in place; per-channel vectors contiguous (C).
//
// Algorithm: pointwise kernels, one thread per element, grid-stride loops, 16-bit storage widened to fp32 and
// rounded once on store; each output is one or two explicitly rounded fp32 operations (no FMA contraction), as
// the CPU's. The parameter gradients (sum dy x, sum dy) are the deterministic per-channel sums of
// kernels/cuda/channel_sums.cu (mode kAffineBwd).
//
// Bound: memory. Forward reads x and writes y (8 bytes per fp32 element); backward reads x and dy for the sums and
// dy again for dx.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "engine/check_cuda.h"
#include "kernels/cuda/affine.h"
#include "kernels/cuda/channel_sums.h"
#include "kernels/cuda/common.cuh"

namespace climseg::cuda {

namespace {

template <class T>
__global__ void affine_fwd_nhwc_kernel(int64_t n, int64_t C, const T* x, int64_t xs, const T* scale, const T* shift,
                                       T* y, int64_t ys) {
  // x, y: (P, C); scale, shift: (C)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / C, c = i - p * C;
    y[p * ys + c] = from_f<T>(__fadd_rn(__fmul_rn(to_f(x[p * xs + c]), to_f(scale[c])), to_f(shift[c])));
  }
}

// dx (=|+=) dy * s[c] (s null: the constant alpha)
template <class T>
__global__ void scale_bwd_nhwc_kernel(int64_t n, int64_t C, const T* dy, int64_t dys, const T* s, float alpha, T* dx,
                                      int64_t dxs, bool acc) {
  // dy, dx: (P, C); s: (C) or null
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / C, c = i - p * C;
    const float g = s ? __fmul_rn(to_f(dy[p * dys + c]), to_f(s[c])) : __fmul_rn(alpha, to_f(dy[p * dys + c]));
    T* d = dx + p * dxs + c;
    *d = from_f<T>(acc ? __fadd_rn(to_f(*d), g) : g);
  }
}

}  // namespace

void affine_fwd(ExecContext& ctx, const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y) {
  const char* who = "affine_fwd";
  check_ctx(ctx, who);
  check_operand(who, "x", x);
  check_like(who, "y", y, x);
  const int64_t C = x.shape().c, n = x.numel();
  check_vec(who, "scale", scale, C, x.dtype());
  check_vec(who, "shift", shift, C, x.dtype());
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(x.dtype(), who, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    affine_fwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(x), x.pixel_stride(), cptr<T>(scale),
                                                                cptr<T>(shift), mptr<T>(y), y.pixel_stride());
    CUDA_CHECK_LAUNCH();
  });
}

void affine_bwd(ExecContext& ctx, const Tensor& x, const Tensor& dy, const Tensor& scale, const Tensor& dx,
                bool dx_accumulate, const Tensor& dscale, const Tensor& dshift, bool param_accumulate,
                const Tensor& workspace) {
  const char* who = "affine_bwd";
  check_ctx(ctx, who);
  check_operand(who, "x", x);
  check_like(who, "dy", dy, x);
  if (dx.defined()) check_like(who, "dx", dx, x);
  const int64_t P = x.shape().pixels(), C = x.shape().c, n = x.numel();
  check_vec(who, "scale", scale, C, x.dtype());
  check_vec(who, "dscale", dscale, C, x.dtype());
  check_vec(who, "dshift", dshift, C, x.dtype());
  check_bytes(who, "workspace", workspace, affine_bwd_workspace_bytes(P, C));
  CS_CHECK(P > 0, "cuda::", who, ": no pixels");
  cudaStream_t s = stream_of(ctx);
  const int64_t chunks = norm_chunks(P);
  float* partial = static_cast<float*>(workspace.data());
  dispatch(x.dtype(), who, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    ReduceArgs a{P, C, norm_chunk(P), x.data(), x.pixel_stride(), nullptr, 0, dy.data(), dy.pixel_stride(),
                 nullptr, nullptr, false, partial};
    channel_sums_partial(kAffineBwd, x.dtype(), a, s);
    channel_sums_final2(x.dtype(), chunks, C, partial, nullptr, dscale.data(), dshift.data(), param_accumulate, s);
    if (!dx.defined()) return;
    scale_bwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(dy), dy.pixel_stride(), cptr<T>(scale),
                                                               0.0f, mptr<T>(dx), dx.pixel_stride(), dx_accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

void scale_fwd(ExecContext& ctx, double alpha, const Tensor& x, const Tensor& y) {
  // y = alpha * x is the backward kernel without accumulation
  check_ctx(ctx, "scale_fwd");
  check_operand("scale_fwd", "x", x);
  check_like("scale_fwd", "y", y, x);
  const int64_t C = x.shape().c, n = x.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(x.dtype(), "scale_fwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    scale_bwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(x), x.pixel_stride(), nullptr,
                                                               static_cast<float>(alpha), mptr<T>(y),
                                                               y.pixel_stride(), false);
    CUDA_CHECK_LAUNCH();
  });
}

void scale_bwd(ExecContext& ctx, double alpha, const Tensor& dy, const Tensor& dx, bool accumulate) {
  check_ctx(ctx, "scale_bwd");
  check_operand("scale_bwd", "dy", dy);
  check_like("scale_bwd", "dx", dx, dy);
  const int64_t C = dy.shape().c, n = dy.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(dy.dtype(), "scale_bwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    scale_bwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(dy), dy.pixel_stride(), nullptr,
                                                               static_cast<float>(alpha), mptr<T>(dx),
                                                               dx.pixel_stride(), accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace climseg::cuda
