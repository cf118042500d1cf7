// Pointwise CUDA kernels: ReLU forward/backward, add, copy/accumulate, bias add, bias gradient, axpy and the
// Philox uniform fill. The CPU references are kernels/cpu/eltwise.h (same semantics, checked by
// tests/cuda/test_cuda_parity.cpp) and engine/philox.h (shared with the host, bit-identical).
//
// Layout: NHWC, each operand a pixel-strided (P, C) matrix: element (p, c) at p * stride + c, so channel slices of
// concat buffers are read and written in place. Flat buffers (axpy) are one row.
//
// Algorithm: one thread per element, grid-stride loops over int64 indices, p = i / C and c = i - p * C (the
// division is cheap next to the memory traffic); consecutive threads touch consecutive channels, so a warp reads
// 32 contiguous elements whenever C >= 32 (every real layer) and memory transactions stay coalesced. 16-bit
// storage is widened to fp32, computed, and rounded once on store (round to nearest even), the same single rounding
// the CPU path applies when its fp32 result is stored in 16 bits. The bias gradient is a deterministic two-pass
// column sum: pass 1 gives each (32-channel tile, pixel chunk) block 8 pixel lanes that sum in a fixed order,
// combined in a fixed order through shared memory, into fp32 partials (chunks, K); pass 2 sums each channel's
// partials in chunk order. The chunking depends on P only, never on the GPU, so results are reproducible on any
// device with no atomics.
//
// Bound: all of these are memory-bound (<= 1 FLOP per element, 6-12 bytes per fp32 element). Contiguous fp32
// tensors should reach >= 80% of HBM bandwidth (H100 SXM: ~2.7 of 3.35 TB/s); slices with fewer than 32 channels
// waste part of each 128-byte transaction. Vectorised (128-bit) loads are the next step once parity is in place.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "engine/check_cuda.h"
#include "engine/philox.h"
#include "kernels/cuda/eltwise.h"

namespace climseg::cuda {

namespace {

// ---- kernels -------------------------------------------------------------------------------------------------
// n = P * C elements; every pointer is a (P, C) matrix with the pixel stride that follows it.

template <class T>
__global__ void relu_fwd_nhwc_kernel(int64_t n, int64_t C, const T* x, int64_t xs, T* y, int64_t ys) {
  // x: (P, C), y: (P, C); may be the same memory (in place)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t p = i / C, c = i - p * C;
    T v = x[p * xs + c];
    y[p * ys + c] = to_f(v) <= 0.0f ? from_f<T>(0.0f) : v;  // NaN stays NaN (torch.relu)
  }
}

template <class T>
__global__ void relu_bwd_nhwc_kernel(int64_t n, int64_t C, const T* y, int64_t ys, const T* dy, int64_t dys, T* dx,
                                     int64_t dxs, bool accumulate) {
  // y, dy, dx: (P, C); dx may share dy's memory (in place)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t p = i / C, c = i - p * C;
    float g = to_f(y[p * ys + c]) > 0.0f ? to_f(dy[p * dys + c]) : 0.0f;
    T* d = dx + p * dxs + c;
    *d = from_f<T>(accumulate ? to_f(*d) + g : g);
  }
}

template <class T>
__global__ void add_fwd_nhwc_kernel(int64_t n, int64_t C, const T* a, int64_t as, const T* b, int64_t bs, T* y,
                                    int64_t ys) {
  // a, b, y: (P, C); y may share a's or b's memory
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t p = i / C, c = i - p * C;
    y[p * ys + c] = from_f<T>(to_f(a[p * as + c]) + to_f(b[p * bs + c]));
  }
}

template <class T>
__global__ void copy_or_accumulate_nhwc_kernel(int64_t n, int64_t C, const T* src, int64_t ss, T* dst, int64_t ds,
                                               bool accumulate) {
  // src, dst: (P, C)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t p = i / C, c = i - p * C;
    T* d = dst + p * ds + c;
    T s = src[p * ss + c];
    *d = accumulate ? from_f<T>(to_f(*d) + to_f(s)) : s;
  }
}

template <class T>
__global__ void add_bias_nhwc_kernel(int64_t n, int64_t C, const T* bias, T* y, int64_t ys) {
  // bias: (C), y: (P, C)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t p = i / C, c = i - p * C;
    T* d = y + p * ys + c;
    *d = from_f<T>(to_f(*d) + to_f(bias[c]));
  }
}

// Bias gradient, pass 1. Block (32 channels, kLanes pixel lanes); grid (ceil(K / 32), chunks).
constexpr int kBiasTile = 32;
constexpr int kBiasLanes = 8;
template <class T>
__global__ void bias_grad_partial_nhwc_kernel(int64_t P, int64_t K, const T* dy, int64_t dys, int64_t chunk,
                                              float* partial) {
  // dy: (P, K); partial: (chunks, K) fp32
  __shared__ float lanes[kBiasLanes][kBiasTile + 1];
  const int64_t c = int64_t(blockIdx.x) * kBiasTile + threadIdx.x;
  const int64_t p0 = int64_t(blockIdx.y) * chunk;
  const int64_t p1 = p0 + chunk < P ? p0 + chunk : P;
  float acc = 0.0f;
  if (c < K)
    for (int64_t p = p0 + threadIdx.y; p < p1; p += kBiasLanes) acc += to_f(dy[p * dys + c]);
  lanes[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < K) {
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < kBiasLanes; ++j) s += lanes[j][threadIdx.x];  // fixed order: deterministic
    partial[int64_t(blockIdx.y) * K + c] = s;
  }
}

// Bias gradient, pass 2: one thread per channel sums the chunk partials in chunk order.
template <class T>
__global__ void bias_grad_final_kernel(int64_t chunks, int64_t K, const float* partial, T* db, bool accumulate) {
  // partial: (chunks, K) fp32; db: (K)
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < K; c += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int64_t j = 0; j < chunks; ++j) s += partial[j * K + c];
    db[c] = from_f<T>(accumulate ? to_f(db[c]) + s : s);
  }
}

template <class T>
__global__ void axpy_kernel(int64_t n, float alpha, const T* x, T* y) {
  // x, y: (n)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    // Explicit _rn operations: never contracted into an FMA, so fp32 matches cpu::axpy's y + (alpha * x).
    y[i] = from_f<T>(__fadd_rn(to_f(y[i]), __fmul_rn(alpha, to_f(x[i]))));
  }
}

__global__ void philox_uniform_kernel(int64_t n, int64_t C, float* out, int64_t os, uint64_t seed,
                                      uint64_t subsequence) {
  // out: (P, C) fp32; n = P * C. One thread per Philox block: 4 consecutive flat indices from one 10-round call.
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks;
       b += int64_t(gridDim.x) * blockDim.x) {
    Philox4 r = philox_block(seed, subsequence, static_cast<uint64_t>(b));
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      int64_t i = 4 * b + j;
      if (i < n) {
        int64_t p = i / C, c = i - p * C;
        out[p * os + c] = philox_uniform_from_bits(r.v[j]);
      }
    }
  }
}

// Pixel chunking of the bias gradient: chunks of at least 256 pixels, at most 1024 chunks. Depends on P only.
constexpr int64_t kBiasMinChunk = 256;
constexpr int64_t kBiasMaxChunks = 1024;
int64_t bias_chunk(int64_t P) { return std::max(kBiasMinChunk, (P + kBiasMaxChunks - 1) / kBiasMaxChunks); }
int64_t bias_chunks(int64_t P) { return P == 0 ? 0 : (P + bias_chunk(P) - 1) / bias_chunk(P); }

}  // namespace

// ---- launchers ---------------------------------------------------------------------------------------------------

void relu_fwd(ExecContext& ctx, const Tensor& x, const Tensor& y) {
  check_ctx(ctx, "relu_fwd");
  check_operand("relu_fwd", "x", x);
  check_like("relu_fwd", "y", y, x);
  const int64_t n = x.numel(), C = x.shape().c;
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(x.dtype(), "relu_fwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    relu_fwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(x), x.pixel_stride(), mptr<T>(y),
                                                              y.pixel_stride());
    CUDA_CHECK_LAUNCH();
  });
}

void relu_bwd(ExecContext& ctx, const Tensor& y, const Tensor& dy, const Tensor& dx, bool accumulate) {
  check_ctx(ctx, "relu_bwd");
  check_operand("relu_bwd", "y", y);
  check_like("relu_bwd", "dy", dy, y);
  check_like("relu_bwd", "dx", dx, y);
  const int64_t n = y.numel(), C = y.shape().c;
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(y.dtype(), "relu_bwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    relu_bwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(y), y.pixel_stride(), cptr<T>(dy),
                                                              dy.pixel_stride(), mptr<T>(dx), dx.pixel_stride(),
                                                              accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

void add_fwd(ExecContext& ctx, const Tensor& a, const Tensor& b, const Tensor& y) {
  check_ctx(ctx, "add_fwd");
  check_operand("add_fwd", "a", a);
  check_like("add_fwd", "b", b, a);
  check_like("add_fwd", "y", y, a);
  const int64_t n = a.numel(), C = a.shape().c;
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(a.dtype(), "add_fwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    add_fwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(a), a.pixel_stride(), cptr<T>(b),
                                                             b.pixel_stride(), mptr<T>(y), y.pixel_stride());
    CUDA_CHECK_LAUNCH();
  });
}

void copy_or_accumulate(ExecContext& ctx, const Tensor& src, const Tensor& dst, bool accumulate) {
  check_ctx(ctx, "copy_or_accumulate");
  check_operand("copy_or_accumulate", "src", src);
  check_like("copy_or_accumulate", "dst", dst, src);
  const int64_t n = src.numel(), C = src.shape().c;
  if (n == 0) return;
  if (!accumulate && src.data() == dst.data() && src.pixel_stride() == dst.pixel_stride()) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(src.dtype(), "copy_or_accumulate", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    copy_or_accumulate_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(src), src.pixel_stride(),
                                                                        mptr<T>(dst), dst.pixel_stride(),
                                                                        accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

void add_bias(ExecContext& ctx, const Tensor& bias, const Tensor& y) {
  check_ctx(ctx, "add_bias");
  check_operand("add_bias", "y", y);
  check_operand("add_bias", "bias", bias);
  CS_CHECK(bias.is_contiguous() && bias.numel() == y.shape().c, "cuda::add_bias: bias ", bias.str(),
           " must be contiguous with ", y.shape().c, " elements");
  CS_CHECK(bias.dtype() == y.dtype(), "cuda::add_bias: bias is ", dtype_name(bias.dtype()), ", y is ",
           dtype_name(y.dtype()));
  const int64_t n = y.numel(), C = y.shape().c;
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(y.dtype(), "add_bias", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    add_bias_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(bias), mptr<T>(y), y.pixel_stride());
    CUDA_CHECK_LAUNCH();
  });
}

size_t bias_grad_workspace_bytes(int64_t P, int64_t K) {
  return static_cast<size_t>(bias_chunks(P) * K) * sizeof(float);
}

void bias_grad(ExecContext& ctx, const Tensor& dy, const Tensor& db, bool accumulate) {
  check_ctx(ctx, "bias_grad");
  check_operand("bias_grad", "dy", dy);
  check_operand("bias_grad", "db", db);
  const int64_t P = dy.shape().pixels(), K = dy.shape().c;
  CS_CHECK(db.is_contiguous() && db.numel() == K, "cuda::bias_grad: db ", db.str(), " must be contiguous with ", K,
           " elements");
  CS_CHECK(db.dtype() == dy.dtype(), "cuda::bias_grad: db is ", dtype_name(db.dtype()), ", dy is ",
           dtype_name(dy.dtype()));
  if (K == 0) return;
  cudaStream_t s = stream_of(ctx);
  const int64_t chunk = bias_chunk(P), chunks = bias_chunks(P);
  float* partial = nullptr;  // (chunks, K) fp32
  if (chunks > 0) partial = static_cast<float*>(ctx.workspace(bias_grad_workspace_bytes(P, K)));
  const int64_t tiles = (K + kBiasTile - 1) / kBiasTile;
  CS_CHECK(tiles <= 0x7fffffff, "cuda::bias_grad: ", K, " channels exceed the grid");
  dispatch(dy.dtype(), "bias_grad", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if (chunks > 0) {
      dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(chunks));
      dim3 block(kBiasTile, kBiasLanes);
      bias_grad_partial_nhwc_kernel<T><<<grid, block, 0, s>>>(P, K, cptr<T>(dy), dy.pixel_stride(), chunk, partial);
      CUDA_CHECK_LAUNCH();
    }
    bias_grad_final_kernel<T><<<grid_for(K), kThreads, 0, s>>>(chunks, K, partial, mptr<T>(db), accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

void axpy(ExecContext& ctx, double alpha, const Tensor& x, const Tensor& y) {
  check_ctx(ctx, "axpy");
  check_operand("axpy", "x", x);
  check_like("axpy", "y", y, x);
  CS_CHECK(x.is_contiguous() && y.is_contiguous(), "cuda::axpy: flat buffers must be contiguous (", x.str(), ", ",
           y.str(), ")");
  const int64_t n = x.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  const float a = static_cast<float>(alpha);  // as cpu::axpy<float>: static_cast<T>(alpha)
  dispatch(x.dtype(), "axpy", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    axpy_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, a, cptr<T>(x), mptr<T>(y));
    CUDA_CHECK_LAUNCH();
  });
}

void philox_uniform(ExecContext& ctx, const Tensor& out, uint64_t seed, uint64_t subsequence) {
  check_ctx(ctx, "philox_uniform");
  check_operand("philox_uniform", "out", out);
  CS_CHECK(out.dtype() == DType::f32, "cuda::philox_uniform: out must be fp32, got ", dtype_name(out.dtype()));
  const int64_t n = out.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  philox_uniform_kernel<<<grid_for((n + 3) / 4), kThreads, 0, s>>>(n, out.shape().c, mptr<float>(out),
                                                                    out.pixel_stride(), seed, subsequence);
  CUDA_CHECK_LAUNCH();
}

}  // namespace climseg::cuda
