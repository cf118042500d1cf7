// Pooling CUDA kernels: max pool (with u8 argmax), average pool, global average pool; forward and gather-form
// backward. The CPU references are kernels/cpu/pool.h (same geometry helpers, compiled for both devices; same tie
// breaking and summation order), checked by tests/cuda/test_cuda_pool.cpp.
//
// Layout: NHWC, each operand a pixel-strided view: element (pixel p, channel c) at p * stride + c, so channel
// slices of concat buffers are read and written in place. The argmax is contiguous (N, OH, OW, C) u8.
//
// Algorithm: one thread per output element (forward) or input element (backward), grid-stride loops over int64
// indices with channels fastest, so a warp touches 32 consecutive channels of one pixel (coalesced when C >= 32).
// Max pool keeps the first maximum of the row-major window scan (strict >), exactly as the CPU. Backward passes
// GATHER: each input element visits the windows covering it (pool_first_out/pool_last_out), oh then ow ascending,
// and sums in fp32 -- no atomics, so results are deterministic, and in fp32 the max/avg pool sums are the same
// operations in the same order as the CPU's (additions and one division: no contraction possible). Global average
// pool is a deterministic two-pass sum like the bias gradient (kernels/cuda/eltwise.cu): fixed pixel chunks per
// (image, 32-channel tile) with 8 pixel lanes combined in a fixed order, then the chunks in order -- the order the
// CPU reference defines (kernels/cpu/pool.h), so fp32 results match it bit for bit by construction. 16-bit storage is widened to fp32 and rounded once on store.
//
// Bound: memory-bound. Forward reads k_h * k_w inputs per output (mostly from L1/L2 for overlapping windows) and
// writes 1 (+1 byte of argmax); backward reads <= ceil(k/s)^2 dy values (+ argmax bytes) per input element. Expect
// >= 60% of HBM bandwidth for C >= 32; the global pool's two passes read the input once.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "engine/check_cuda.h"
#include "kernels/cuda/pool.h"

namespace climseg::cuda {

namespace {

using cpu::Pool2dGeom;
using cpu::pool_first_out;
using cpu::pool_last_out;
using cpu::pool_valid_count;




// ---- kernels -------------------------------------------------------------------------------------------------

template <class T>
__global__ void maxpool_fwd_nhwc_kernel(Pool2dGeom g, const T* x, int64_t xs, T* y, int64_t ys, uint8_t* argmax) {
  // x: (N, H, W, C) stride xs; y: (N, OH, OW, C) stride ys; argmax: (N, OH, OW, C) u8 contiguous
  const int64_t n = g.n * g.oh * g.ow * g.c;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / g.c, c = i - p * g.c;
    const int64_t ow = p % g.ow, oh = (p / g.ow) % g.oh, b = p / (g.ow * g.oh);
    T best_v = from_f<T>(0.0f);
    float best = 0.0f;
    int best_k = -1;
    for (int64_t r = 0; r < g.kh; ++r) {
      const int64_t ih = oh * g.sh - g.pt + r;
      if (ih < 0 || ih >= g.h) continue;
      for (int64_t s = 0; s < g.kw; ++s) {
        const int64_t iw = ow * g.sw - g.pl + s;
        if (iw < 0 || iw >= g.w) continue;
        const T v = x[((b * g.h + ih) * g.w + iw) * xs + c];
        const float f = to_f(v);
        if (best_k < 0 || f > best || (f != f && best == best)) {  // first maximum wins ties; NaN wins, as the CPU
          best_v = v;
          best = f;
          best_k = static_cast<int>(r * g.kw + s);
        }
      }
    }
    y[p * ys + c] = best_v;
    argmax[i] = static_cast<uint8_t>(best_k);
  }
}

template <class T>
__global__ void maxpool_bwd_nhwc_kernel(Pool2dGeom g, const uint8_t* argmax, const T* dy, int64_t dys, T* dx,
                                        int64_t dxs, bool accumulate) {
  // argmax: (N, OH, OW, C) u8 contiguous; dy: (N, OH, OW, C) stride dys; dx: (N, H, W, C) stride dxs
  const int64_t n = g.n * g.h * g.w * g.c;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / g.c, c = i - p * g.c;
    const int64_t iw = p % g.w, ih = (p / g.w) % g.h, b = p / (g.w * g.h);
    const int64_t oh0 = pool_first_out(ih, g.kh, g.sh, g.pt), oh1 = pool_last_out(ih, g.sh, g.pt, g.oh);
    const int64_t ow0 = pool_first_out(iw, g.kw, g.sw, g.pl), ow1 = pool_last_out(iw, g.sw, g.pl, g.ow);
    float s = 0.0f;
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      const int64_t ki = ih - (oh * g.sh - g.pt);
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t q = (b * g.oh + oh) * g.ow + ow;
        const int64_t k = ki * g.kw + (iw - (ow * g.sw - g.pl));
        if (argmax[q * g.c + c] == k) s += to_f(dy[q * dys + c]);
      }
    }
    T* d = dx + p * dxs + c;
    *d = from_f<T>(accumulate ? to_f(*d) + s : s);
  }
}

template <class T>
__global__ void avgpool_fwd_nhwc_kernel(Pool2dGeom g, bool count_include_pad, const T* x, int64_t xs, T* y,
                                        int64_t ys) {
  // x: (N, H, W, C) stride xs; y: (N, OH, OW, C) stride ys
  const int64_t n = g.n * g.oh * g.ow * g.c;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / g.c, c = i - p * g.c;
    const int64_t ow = p % g.ow, oh = (p / g.ow) % g.oh, b = p / (g.ow * g.oh);
    const int64_t div = count_include_pad ? g.kh * g.kw
                                          : pool_valid_count(oh, g.kh, g.sh, g.pt, g.h) *
                                                pool_valid_count(ow, g.kw, g.sw, g.pl, g.w);
    float s = 0.0f;
    for (int64_t r = 0; r < g.kh; ++r) {
      const int64_t ih = oh * g.sh - g.pt + r;
      if (ih < 0 || ih >= g.h) continue;
      for (int64_t t = 0; t < g.kw; ++t) {
        const int64_t iw = ow * g.sw - g.pl + t;
        if (iw < 0 || iw >= g.w) continue;
        s += to_f(x[((b * g.h + ih) * g.w + iw) * xs + c]);
      }
    }
    y[p * ys + c] = from_f<T>(s / static_cast<float>(div));
  }
}

template <class T>
__global__ void avgpool_bwd_nhwc_kernel(Pool2dGeom g, bool count_include_pad, const T* dy, int64_t dys, T* dx,
                                        int64_t dxs, bool accumulate) {
  // dy: (N, OH, OW, C) stride dys; dx: (N, H, W, C) stride dxs
  const int64_t n = g.n * g.h * g.w * g.c;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / g.c, c = i - p * g.c;
    const int64_t iw = p % g.w, ih = (p / g.w) % g.h, b = p / (g.w * g.h);
    const int64_t oh0 = pool_first_out(ih, g.kh, g.sh, g.pt), oh1 = pool_last_out(ih, g.sh, g.pt, g.oh);
    const int64_t ow0 = pool_first_out(iw, g.kw, g.sw, g.pl), ow1 = pool_last_out(iw, g.sw, g.pl, g.ow);
    float s = 0.0f;
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t div = count_include_pad ? g.kh * g.kw
                                              : pool_valid_count(oh, g.kh, g.sh, g.pt, g.h) *
                                                    pool_valid_count(ow, g.kw, g.sw, g.pl, g.w);
        s += to_f(dy[((b * g.oh + oh) * g.ow + ow) * dys + c]) / static_cast<float>(div);
      }
    }
    T* d = dx + p * dxs + c;
    *d = from_f<T>(accumulate ? to_f(*d) + s : s);
  }
}

// Global average pool, pass 1. Block (32 channels, kLanes pixel lanes); grid (ceil(C / 32), chunks, N).
constexpr int kTile = 32;
constexpr int kLanes = static_cast<int>(cpu::kGlobalPoolLanes);  // the CPU's lane count and order
template <class T>
__global__ void global_avgpool_partial_nhwc_kernel(int64_t hw, int64_t C, const T* x, int64_t xs, int64_t chunk,
                                                   int64_t chunks, float* partial) {
  // x: (N, HW, C) stride xs; partial: (N, chunks, C) fp32
  __shared__ float lanes[kLanes][kTile + 1];
  const int64_t c = int64_t(blockIdx.x) * kTile + threadIdx.x;
  const int64_t b = blockIdx.z;
  const int64_t p0 = int64_t(blockIdx.y) * chunk;
  const int64_t p1 = p0 + chunk < hw ? p0 + chunk : hw;
  const T* xb = x + b * hw * xs;
  float acc = 0.0f;
  if (c < C)
    for (int64_t p = p0 + threadIdx.y; p < p1; p += kLanes) acc += to_f(xb[p * xs + c]);
  lanes[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < kLanes; ++j) s += lanes[j][threadIdx.x];  // fixed order: deterministic
    partial[(b * chunks + blockIdx.y) * C + c] = s;
  }
}

// Pass 2: one thread per (image, channel) sums the chunk partials in chunk order and divides by H * W.
template <class T>
__global__ void global_avgpool_final_kernel(int64_t N, int64_t hw, int64_t C, int64_t chunks, const float* partial,
                                            T* y, int64_t ys) {
  // partial: (N, chunks, C) fp32; y: (N, 1, 1, C) stride ys
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N * C; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / C, c = i - b * C;
    float s = 0.0f;
    for (int64_t j = 0; j < chunks; ++j) s += partial[(b * chunks + j) * C + c];
    y[b * ys + c] = from_f<T>(s / static_cast<float>(hw));
  }
}

template <class T>
__global__ void global_avgpool_bwd_nhwc_kernel(int64_t hw, int64_t C, int64_t n, const T* dy, int64_t dys, T* dx,
                                               int64_t dxs, bool accumulate) {
  // dy: (N, 1, 1, C) stride dys; dx: (N, HW, C) stride dxs; n = N * HW * C
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / C, c = i - p * C;
    const float v = to_f(dy[(p / hw) * dys + c]) / static_cast<float>(hw);
    T* d = dx + p * dxs + c;
    *d = from_f<T>(accumulate ? to_f(*d) + v : v);
  }
}

// ---- launch helpers ------------------------------------------------------------------------------------------

uint8_t* argmax_ptr(const char* who, const Tensor& a, int64_t n) {
  CS_CHECK(a.defined() && a.device() == Device::cuda && a.dtype() == DType::u8 && a.is_contiguous() &&
               a.numel() >= n,
           "cuda::", who, ": argmax must be a contiguous u8 CUDA tensor of at least ", n, " bytes");
  return static_cast<uint8_t*>(a.data());
}

Shape in_shape(const Pool2dGeom& g) { return Shape{g.n, g.h, g.w, g.c}; }
Shape out_shape(const Pool2dGeom& g) { return Shape{g.n, g.oh, g.ow, g.c}; }

}  // namespace

// ---- launchers ---------------------------------------------------------------------------------------------------

void maxpool_fwd(ExecContext& ctx, const Pool2dGeom& g, const Tensor& x, const Tensor& y, const Tensor& argmax) {
  check_ctx(ctx, "maxpool_fwd");
  check_operand("maxpool_fwd", "x", x, in_shape(g), x.dtype());
  check_operand("maxpool_fwd", "y", y, out_shape(g), x.dtype());
  CS_CHECK(g.kh * g.kw <= 256, "cuda::maxpool_fwd: window ", g.kh, "x", g.kw, " exceeds the u8 argmax");
  const int64_t n = y.numel();
  if (n == 0) return;
  uint8_t* am = argmax_ptr("maxpool_fwd", argmax, n);
  cudaStream_t s = stream_of(ctx);
  dispatch(x.dtype(), "maxpool_fwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    maxpool_fwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(g, cptr<T>(x), x.pixel_stride(), mptr<T>(y),
                                                                 y.pixel_stride(), am);
    CUDA_CHECK_LAUNCH();
  });
}

void maxpool_bwd(ExecContext& ctx, const Pool2dGeom& g, const Tensor& argmax, const Tensor& dy, const Tensor& dx,
                 bool accumulate) {
  check_ctx(ctx, "maxpool_bwd");
  check_operand("maxpool_bwd", "dy", dy, out_shape(g), dy.dtype());
  check_operand("maxpool_bwd", "dx", dx, in_shape(g), dy.dtype());
  const int64_t n = dx.numel();
  if (n == 0) return;
  const uint8_t* am = argmax_ptr("maxpool_bwd", argmax, dy.numel());
  cudaStream_t s = stream_of(ctx);
  dispatch(dy.dtype(), "maxpool_bwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    maxpool_bwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(g, am, cptr<T>(dy), dy.pixel_stride(), mptr<T>(dx),
                                                                 dx.pixel_stride(), accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

void avgpool_fwd(ExecContext& ctx, const Pool2dGeom& g, bool count_include_pad, const Tensor& x, const Tensor& y) {
  check_ctx(ctx, "avgpool_fwd");
  check_operand("avgpool_fwd", "x", x, in_shape(g), x.dtype());
  check_operand("avgpool_fwd", "y", y, out_shape(g), x.dtype());
  const int64_t n = y.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(x.dtype(), "avgpool_fwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    avgpool_fwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(g, count_include_pad, cptr<T>(x), x.pixel_stride(),
                                                                 mptr<T>(y), y.pixel_stride());
    CUDA_CHECK_LAUNCH();
  });
}

void avgpool_bwd(ExecContext& ctx, const Pool2dGeom& g, bool count_include_pad, const Tensor& dy, const Tensor& dx,
                 bool accumulate) {
  check_ctx(ctx, "avgpool_bwd");
  check_operand("avgpool_bwd", "dy", dy, out_shape(g), dy.dtype());
  check_operand("avgpool_bwd", "dx", dx, in_shape(g), dy.dtype());
  const int64_t n = dx.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(dy.dtype(), "avgpool_bwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    avgpool_bwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(g, count_include_pad, cptr<T>(dy),
                                                                 dy.pixel_stride(), mptr<T>(dx), dx.pixel_stride(),
                                                                 accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

void global_avgpool_fwd(ExecContext& ctx, const Tensor& x, const Tensor& y, void* workspace, size_t bytes) {
  check_ctx(ctx, "global_avgpool_fwd");
  const Shape& xs = x.shape();
  check_operand("global_avgpool_fwd", "x", x, xs, x.dtype());
  check_operand("global_avgpool_fwd", "y", y, Shape{xs.n, 1, 1, xs.c}, x.dtype());
  const int64_t hw = xs.h * xs.w, C = xs.c, N = xs.n;
  if (N * C == 0) return;
  const int64_t chunk = cpu::global_avgpool_chunk(hw), chunks = cpu::global_avgpool_chunks(hw);
  CS_CHECK(workspace != nullptr && bytes >= global_avgpool_workspace_bytes(N, hw, C),
           "cuda::global_avgpool_fwd: needs ", global_avgpool_workspace_bytes(N, hw, C), " bytes of workspace, got ",
           bytes);
  const int64_t tiles = (C + kTile - 1) / kTile;
  CS_CHECK(tiles <= 0x7fffffff && N <= 65535, "cuda::global_avgpool_fwd: ", x.str(), " exceeds the grid");
  float* partial = static_cast<float*>(workspace);  // (N, chunks, C) fp32
  cudaStream_t s = stream_of(ctx);
  dispatch(x.dtype(), "global_avgpool_fwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(chunks), static_cast<unsigned>(N));
    dim3 block(kTile, kLanes);
    global_avgpool_partial_nhwc_kernel<T><<<grid, block, 0, s>>>(hw, C, cptr<T>(x), x.pixel_stride(), chunk, chunks,
                                                                 partial);
    CUDA_CHECK_LAUNCH();
    global_avgpool_final_kernel<T><<<grid_for(N * C), kThreads, 0, s>>>(N, hw, C, chunks, partial, mptr<T>(y),
                                                                        y.pixel_stride());
    CUDA_CHECK_LAUNCH();
  });
}

void global_avgpool_bwd(ExecContext& ctx, const Tensor& dy, const Tensor& dx, bool accumulate) {
  check_ctx(ctx, "global_avgpool_bwd");
  const Shape& xs = dx.shape();
  check_operand("global_avgpool_bwd", "dx", dx, xs, dy.dtype());
  check_operand("global_avgpool_bwd", "dy", dy, Shape{xs.n, 1, 1, xs.c}, dy.dtype());
  const int64_t n = dx.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(dy.dtype(), "global_avgpool_bwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    global_avgpool_bwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(xs.h * xs.w, xs.c, n, cptr<T>(dy),
                                                                        dy.pixel_stride(), mptr<T>(dx),
                                                                        dx.pixel_stride(), accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace climseg::cuda
