// CUDA launchers for bilinear resize (kernels/cuda/resize.cu): the device counterparts of kernels/cpu/resize.h,
// with the same coordinate rules (cpu::resize_coord, compiled for both devices, no FMA contraction) and the same
// gather-form backward. Plain C++ (no CUDA headers), so .cpp files and tests call them.
//
// Tensors are on the CUDA device of `ctx`, pixel-strided NHWC views (channel slices work), fp32, fp16 or bf16 (fp32
// maths, one rounding per stored result). Work is queued on ctx.stream(); nothing synchronises.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/tensor.h"
#include "kernels/cpu/resize.h"

namespace climseg::cuda {

// Backward scratch: the per-axis coordinate tables (OH + OW entries) and the first-output tables (H + 2 and W + 2
// entries) that give each input row/column its range of sampling outputs.
inline size_t resize_bwd_workspace_bytes(const cpu::ResizeGeom& g) {
  return sizeof(cpu::ResizeCoord) * static_cast<size_t>(g.oh + g.ow) +
         sizeof(int64_t) * static_cast<size_t>(g.h + g.w + 4);
}

// y = bilinear resize of x (coordinates computed per output pixel, no workspace).
void resize_fwd(ExecContext& ctx, const cpu::ResizeGeom& g, const Tensor& x, const Tensor& y);
// dx (=|+=) gather-form backward (deterministic, no atomics); workspace: resize_bwd_workspace_bytes(g) bytes,
// 8-byte aligned.
void resize_bwd(ExecContext& ctx, const cpu::ResizeGeom& g, const Tensor& dy, const Tensor& dx, bool accumulate,
                void* workspace, size_t bytes);

}  // namespace climseg::cuda

// ---- CPU-only build (backend boundary): the launchers exist, so code naming them links, and they throw --------
#if !defined(CLIMSEG_HAVE_CUDA)
namespace climseg::cuda {
inline void resize_fwd(ExecContext&, const cpu::ResizeGeom&, const Tensor&, const Tensor&) {
  CS_THROW("cuda::resize_fwd: this climseg was built without CUDA");
}
inline void resize_bwd(ExecContext&, const cpu::ResizeGeom&, const Tensor&, const Tensor&, bool, void*, size_t) {
  CS_THROW("cuda::resize_bwd: this climseg was built without CUDA");
}
}  // namespace climseg::cuda
#endif
