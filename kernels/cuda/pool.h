// CUDA launchers for the pooling kernels (kernels/cuda/pool.cu): the device counterparts of kernels/cpu/pool.h,
// with the same window geometry (cpu::Pool2dGeom), tie breaking and gather-form backward passes. Plain C++ (no
// CUDA headers), so .cpp files and tests call them.
//
// Tensors are on the CUDA device of `ctx`, pixel-strided NHWC views (channel slices work), fp32, fp16 or bf16 (fp32
// maths, one rounding per stored result). The max-pool argmax is a contiguous u8 tensor with one byte per output
// element (the window-local index of the first maximum). Work is queued on ctx.stream(); nothing synchronises.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/tensor.h"
#include "kernels/cpu/pool.h"
#include "kernels/cuda/no_cuda.h"

namespace climseg::cuda {

// y = window max, argmax = window-local index of the first maximum (row-major scan order).
void maxpool_fwd(ExecContext& ctx, const cpu::Pool2dGeom& g, const Tensor& x, const Tensor& y,
                 const Tensor& argmax);
// dx (=|+=) gather of dy over the windows whose argmax is this element (fixed order, no atomics).
void maxpool_bwd(ExecContext& ctx, const cpu::Pool2dGeom& g, const Tensor& argmax, const Tensor& dy,
                 const Tensor& dx, bool accumulate);
void avgpool_fwd(ExecContext& ctx, const cpu::Pool2dGeom& g, bool count_include_pad, const Tensor& x,
                 const Tensor& y);
void avgpool_bwd(ExecContext& ctx, const cpu::Pool2dGeom& g, bool count_include_pad, const Tensor& dy,
                 const Tensor& dx, bool accumulate);

// Global average pool: x (N, H, W, C) -> y (N, 1, 1, C). Deterministic two-pass sum in the CPU's order
// (cpu::global_avgpool_chunk, 8 lanes, then chunks in order): per-chunk fp32 partial sums in `workspace`
// (global_avgpool_workspace_bytes), then the chunks in order.
inline size_t global_avgpool_workspace_bytes(int64_t n, int64_t hw, int64_t c) {
  return static_cast<size_t>(n * cpu::global_avgpool_chunks(hw) * c) * sizeof(float);
}
void global_avgpool_fwd(ExecContext& ctx, const Tensor& x, const Tensor& y, void* workspace, size_t bytes);
// dx (=|+=) dy / (H * W)
void global_avgpool_bwd(ExecContext& ctx, const Tensor& dy, const Tensor& dx, bool accumulate);

}  // namespace climseg::cuda

// ---- CPU-only build (backend boundary): the launchers exist, so code naming them links, and they throw --------
#if !defined(CLIMSEG_HAVE_CUDA)
namespace climseg::cuda {
inline void maxpool_fwd(ExecContext&, const cpu::Pool2dGeom&, const Tensor&, const Tensor&, const Tensor&) {
  detail::no_cuda("maxpool_fwd");
}
inline void maxpool_bwd(ExecContext&, const cpu::Pool2dGeom&, const Tensor&, const Tensor&, const Tensor&, bool) {
  detail::no_cuda("maxpool_bwd");
}
inline void avgpool_fwd(ExecContext&, const cpu::Pool2dGeom&, bool, const Tensor&, const Tensor&) {
  detail::no_cuda("avgpool_fwd");
}
inline void avgpool_bwd(ExecContext&, const cpu::Pool2dGeom&, bool, const Tensor&, const Tensor&, bool) {
  detail::no_cuda("avgpool_bwd");
}
inline void global_avgpool_fwd(ExecContext&, const Tensor&, const Tensor&, void*, size_t) {
  detail::no_cuda("global_avgpool_fwd");
}
inline void global_avgpool_bwd(ExecContext&, const Tensor&, const Tensor&, bool) {
  detail::no_cuda("global_avgpool_bwd");
}
}  // namespace climseg::cuda
#endif
