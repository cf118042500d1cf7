// CUDA launchers for batch norm (kernels/cuda/norm.cu): the device counterparts of the batch-norm functions of
// kernels/cpu/norm.h, with the same semantics. Plain C++ (no CUDA headers). Affine and scale: kernels/cuda/affine.h;
// dropout: kernels/cuda/dropout.h.
//
// Operands are Tensors on ctx's CUDA device: pixel-strided NHWC views for data (x, y, dy, dx, residual), contiguous
// C-element tensors for per-channel vectors. Data and gamma/beta are fp32, fp16 or bf16 (the layer's
// dtype; 16-bit types are storage, maths in fp32); batch-norm statistics, running statistics and all reductions
// are fp32. Reductions are deterministic (kernels/cuda/channel_sums.h): fixed pixel chunks (depending on P only)
// summed in a fixed order into fp32 partials in the caller's workspace, then summed in chunk order; no atomics.
// Work is queued on ctx.stream(); nothing synchronises with the host.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/tensor.h"
#include "kernels/cuda/channel_sums.h"
#include "kernels/cuda/no_cuda.h"

namespace climseg::cuda {

// ---- workspace sizes (pure arithmetic, also in CPU-only builds: layers report them at plan time) --------------
// Forward statistics: one fp32 partial per (chunk, channel).
inline size_t bn_fwd_workspace_bytes(int64_t P, int64_t C) { return channel_sums1_workspace_bytes(P, C); }
// Backward: two partials per (chunk, channel), then the two per-channel sums.
inline size_t bn_bwd_workspace_bytes(int64_t P, int64_t C) { return channel_sums2_workspace_bytes(P, C); }

// Batch-norm statistics buffer `stats` (u8): a 16-byte header whose first u32 is the mode (1 training, 0
// inference), then mean (C) fp32 at byte 16 and inv_std (C) fp32 after it (BatchNorm2d::saved_layout for fp32).

// Training forward: batch statistics into stats (mode 1), running statistics updated when defined (unbiased
// variance, correction 1 for P = 1), then y = act((x - mean) inv_std gamma + beta [+ res]).
// res, running_mean, running_var may be undefined. workspace: u8, >= bn_fwd_workspace_bytes(P, C).
void bn_fwd_train(ExecContext& ctx, const Tensor& x, const Tensor& res, const Tensor& gamma, const Tensor& beta,
                  const Tensor& running_mean, const Tensor& running_var, double momentum, double eps, bool relu,
                  const Tensor& y, const Tensor& stats, const Tensor& workspace);
// Inference forward: stats (mode 0) = running mean and 1 / sqrt(running_var + eps), then the same apply.
void bn_fwd_infer(ExecContext& ctx, const Tensor& x, const Tensor& res, const Tensor& gamma, const Tensor& beta,
                  const Tensor& running_mean, const Tensor& running_var, double eps, bool relu, const Tensor& y,
                  const Tensor& stats);
// Backward: dgamma/dbeta (=|+=), dx (=|+=) by the formula for the mode stored in stats (read on the device),
// dres (=|+=) dz. y is needed when relu; dx and dres may be undefined. workspace >= bn_bwd_workspace_bytes.
void bn_bwd(ExecContext& ctx, const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
            const Tensor& stats, bool relu, const Tensor& dgamma, const Tensor& dbeta, bool param_accumulate,
            const Tensor& dx, bool dx_accumulate, const Tensor& dres, bool dres_accumulate, const Tensor& workspace);

}  // namespace climseg::cuda

// ---- CPU-only build (backend boundary): the launchers exist and throw --------------------------------------------
#if !defined(CLIMSEG_HAVE_CUDA)
namespace climseg::cuda {
inline void bn_fwd_train(ExecContext&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, double, double, bool, const Tensor&, const Tensor&, const Tensor&) {
  detail::no_cuda("bn_fwd_train");
}
inline void bn_fwd_infer(ExecContext&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, double, bool, const Tensor&, const Tensor&) {
  detail::no_cuda("bn_fwd_infer");
}
inline void bn_bwd(ExecContext&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool,
                   const Tensor&, const Tensor&, bool, const Tensor&, bool, const Tensor&, bool, const Tensor&) {
  detail::no_cuda("bn_bwd");
}
}  // namespace climseg::cuda
#endif
