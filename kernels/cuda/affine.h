// CUDA launchers for the per-channel affine map and the constant scale (kernels/cuda/affine.cu): the device
// counterparts of kernels/cpu/norm.h's affine and scale, with the same semantics. Plain C++ (no CUDA headers).
//
// Operands are Tensors on ctx's CUDA device: pixel-strided NHWC views for data (x, y, dy, dx), contiguous C-element
// tensors for scale/shift and their gradients. Data and scale/shift are fp32, fp16 or bf16 (the layer's dtype;
// 16-bit types are storage, maths in fp32); the parameter-gradient sums are fp32 and deterministic
// (kernels/cuda/channel_sums.h). Work is queued on ctx.stream(); nothing synchronises with the host.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/tensor.h"
#include "kernels/cuda/channel_sums.h"
#include "kernels/cuda/no_cuda.h"

namespace climseg::cuda {

// Backward workspace (pure arithmetic, also in CPU-only builds): two partials per (chunk, channel), then the two
// per-channel sums.
inline size_t affine_bwd_workspace_bytes(int64_t P, int64_t C) { return channel_sums2_workspace_bytes(P, C); }

// y = x * scale[c] + shift[c]
void affine_fwd(ExecContext& ctx, const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y);
// dscale (=|+=) sum dy x, dshift (=|+=) sum dy, dx (=|+=) dy scale (dx may be undefined).
// workspace >= affine_bwd_workspace_bytes(P, C).
void affine_bwd(ExecContext& ctx, const Tensor& x, const Tensor& dy, const Tensor& scale, const Tensor& dx,
                bool dx_accumulate, const Tensor& dscale, const Tensor& dshift, bool param_accumulate,
                const Tensor& workspace);
// y = alpha x;  dx (=|+=) alpha dy
void scale_fwd(ExecContext& ctx, double alpha, const Tensor& x, const Tensor& y);
void scale_bwd(ExecContext& ctx, double alpha, const Tensor& dy, const Tensor& dx, bool accumulate);

}  // namespace climseg::cuda

// ---- CPU-only build (backend boundary): the launchers exist and throw --------------------------------------------
#if !defined(CLIMSEG_HAVE_CUDA)
namespace climseg::cuda {
inline void affine_fwd(ExecContext&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  detail::no_cuda("affine_fwd");
}
inline void affine_bwd(ExecContext&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, const Tensor&,
                       const Tensor&, bool, const Tensor&) {
  detail::no_cuda("affine_bwd");
}
inline void scale_fwd(ExecContext&, double, const Tensor&, const Tensor&) { detail::no_cuda("scale_fwd"); }
inline void scale_bwd(ExecContext&, double, const Tensor&, const Tensor&, bool) { detail::no_cuda("scale_bwd"); }
}  // namespace climseg::cuda
#endif
