// Bilinear resize CUDA kernels: forward and gather-form backward. The CPU reference is kernels/cpu/resize.h (same
// coordinate function, compiled for both devices with explicit round-to-nearest double operations, so both pick
// the same taps and weights), checked by tests/cuda/test_cuda_pool.cpp.
//
// Layout: NHWC, pixel-strided views: element (pixel p, channel c) at p * stride + c.
//
// Algorithm: one thread per output element (forward) or input element (backward), grid-stride loops with channels
// fastest, so a warp reads 32 consecutive channels of a pixel (coalesced when C >= 32). Forward computes its two
// coordinates in double and interpolates in fp32 with explicit __fmul_rn/__fadd_rn in the CPU's order (no FMA
// contraction). Backward first fills small per-axis tables in the workspace (the output coordinates, and for each
// input row/column the first output that samples it, by binary search), then each input element sums
// w_h(dh) * w_w(dw) * dy over its contiguous output range, dh then dw ascending, in fp32 -- the CPU's order and
// operations, with no atomics: deterministic, and bit-identical to the CPU in fp32 by construction (not yet
// confirmed on a GPU; the parity test uses the reductions tolerance row).
//
// Bound: memory-bound. Forward reads 4 neighbouring input pixels per output (shared through L1/L2 when
// upsampling) and writes one; backward reads about (O/I + 1)^2 dy values per input element when upsampling by O/I
// (each dy value is read by up to 4 inputs, from L2). Expect >= 50% of HBM bandwidth for C >= 32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "engine/check_cuda.h"
#include "kernels/cuda/resize.h"

namespace climseg::cuda {

namespace {

using cpu::ResizeCoord;
using cpu::ResizeGeom;
using cpu::resize_coord;
using cpu::resize_first_out;
using cpu::resize_weight;




template <class T>
__global__ void resize_fwd_nhwc_kernel(ResizeGeom g, const T* x, int64_t xs, T* y, int64_t ys) {
  // x: (N, H, W, C) stride xs; y: (N, OH, OW, C) stride ys
  const int64_t n = g.n * g.oh * g.ow * g.c;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / g.c, c = i - p * g.c;
    const int64_t dw = p % g.ow, dh = (p / g.ow) % g.oh, b = p / (g.ow * g.oh);
    const ResizeCoord rh = resize_coord(dh, g.h, g.oh, g.mode), rw = resize_coord(dw, g.w, g.ow, g.mode);
    const float h1l = static_cast<float>(rh.lambda), h0l = static_cast<float>(1.0 - rh.lambda);
    const float w1l = static_cast<float>(rw.lambda), w0l = static_cast<float>(1.0 - rw.lambda);
    const float a = to_f(x[((b * g.h + rh.i0) * g.w + rw.i0) * xs + c]);
    const float bb = to_f(x[((b * g.h + rh.i0) * g.w + rw.i1) * xs + c]);
    const float cc = to_f(x[((b * g.h + rh.i1) * g.w + rw.i0) * xs + c]);
    const float d = to_f(x[((b * g.h + rh.i1) * g.w + rw.i1) * xs + c]);
    const float top = __fadd_rn(__fmul_rn(w0l, a), __fmul_rn(w1l, bb));
    const float bottom = __fadd_rn(__fmul_rn(w0l, cc), __fmul_rn(w1l, d));
    y[p * ys + c] = from_f<T>(__fadd_rn(__fmul_rn(h0l, top), __fmul_rn(h1l, bottom)));
  }
}

// Tables: ch (OH), cw (OW) output coordinates; fh (H + 2), fw (W + 2) with f[v] = first output whose i0 >= v - 1.
__global__ void resize_tables_kernel(ResizeGeom g, ResizeCoord* ch, ResizeCoord* cw, int64_t* fh, int64_t* fw) {
  const int64_t n = g.oh + g.ow + g.h + 2 + g.w + 2;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t j = i;
    if (j < g.oh) {
      ch[j] = resize_coord(j, g.h, g.oh, g.mode);
      continue;
    }
    j -= g.oh;
    if (j < g.ow) {
      cw[j] = resize_coord(j, g.w, g.ow, g.mode);
      continue;
    }
    j -= g.ow;
    if (j < g.h + 2) {
      fh[j] = resize_first_out(j - 1, g.h, g.oh, g.mode);
      continue;
    }
    j -= g.h + 2;
    fw[j] = resize_first_out(j - 1, g.w, g.ow, g.mode);
  }
}

template <class T>
__global__ void resize_bwd_nhwc_kernel(ResizeGeom g, const ResizeCoord* ch, const ResizeCoord* cw,
                                       const int64_t* fh, const int64_t* fw, const T* dy, int64_t dys, T* dx,
                                       int64_t dxs, bool accumulate) {
  // dy: (N, OH, OW, C) stride dys; dx: (N, H, W, C) stride dxs
  const int64_t n = g.n * g.h * g.w * g.c;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / g.c, c = i - p * g.c;
    const int64_t iw = p % g.w, ih = (p / g.w) % g.h, b = p / (g.w * g.h);
    const int64_t dh0 = fh[ih], dh1 = fh[ih + 2], dw0 = fw[iw], dw1 = fw[iw + 2];
    float s = 0.0f;
    for (int64_t dh = dh0; dh < dh1; ++dh) {
      const float wh = static_cast<float>(resize_weight(ch[dh], ih));
      for (int64_t dw = dw0; dw < dw1; ++dw) {
        const float w = __fmul_rn(wh, static_cast<float>(resize_weight(cw[dw], iw)));
        s = __fadd_rn(s, __fmul_rn(w, to_f(dy[((b * g.oh + dh) * g.ow + dw) * dys + c])));
      }
    }
    T* d = dx + p * dxs + c;
    *d = from_f<T>(accumulate ? __fadd_rn(to_f(*d), s) : s);
  }
}

}  // namespace

void resize_fwd(ExecContext& ctx, const ResizeGeom& g, const Tensor& x, const Tensor& y) {
  check_ctx(ctx, "resize_fwd");
  check_operand("resize_fwd", "x", x, Shape{g.n, g.h, g.w, g.c}, x.dtype());
  check_operand("resize_fwd", "y", y, Shape{g.n, g.oh, g.ow, g.c}, x.dtype());
  const int64_t n = y.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(x.dtype(), "resize_fwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    resize_fwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(g, cptr<T>(x), x.pixel_stride(),
                                                                mptr<T>(y), y.pixel_stride());
    CUDA_CHECK_LAUNCH();
  });
}

void resize_bwd(ExecContext& ctx, const ResizeGeom& g, const Tensor& dy, const Tensor& dx, bool accumulate,
                void* workspace, size_t bytes) {
  check_ctx(ctx, "resize_bwd");
  check_operand("resize_bwd", "dy", dy, Shape{g.n, g.oh, g.ow, g.c}, dy.dtype());
  check_operand("resize_bwd", "dx", dx, Shape{g.n, g.h, g.w, g.c}, dy.dtype());
  const int64_t n = dx.numel();
  if (n == 0) return;
  CS_CHECK(workspace != nullptr && bytes >= resize_bwd_workspace_bytes(g) &&
               reinterpret_cast<uintptr_t>(workspace) % 8 == 0,
           "cuda::resize_bwd: needs ", resize_bwd_workspace_bytes(g), " bytes of 8-byte aligned workspace, got ",
           bytes);
  ResizeCoord* ch = static_cast<ResizeCoord*>(workspace);
  ResizeCoord* cw = ch + g.oh;
  int64_t* fh = reinterpret_cast<int64_t*>(cw + g.ow);
  int64_t* fw = fh + g.h + 2;
  cudaStream_t s = stream_of(ctx);
  resize_tables_kernel<<<grid_for(g.oh + g.ow + g.h + g.w + 4), kThreads, 0, s>>>(g, ch, cw, fh, fw);
  CUDA_CHECK_LAUNCH();
  dispatch(dy.dtype(), "resize_bwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    resize_bwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(g, ch, cw, fh, fw, cptr<T>(dy),
                                                                dy.pixel_stride(), mptr<T>(dx),
                                                                dx.pixel_stride(), accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace climseg::cuda
