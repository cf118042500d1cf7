// CUDA launchers for batch norm, per-channel affine, constant scale and dropout (kernels/cuda/norm.cu): the device
// counterparts of kernels/cpu/norm.h, with the same semantics. Plain C++ (no CUDA headers).
//
// Operands are Tensors on ctx's CUDA device: pixel-strided NHWC views for data (x, y, dy, dx, residual), contiguous
// C-element tensors for per-channel vectors. Data, gamma/beta and scale/shift are fp32, fp16 or bf16 (the layer's
// dtype; 16-bit types are storage, maths in fp32); batch-norm statistics, running statistics and all reductions
// are fp32. Reductions are deterministic: fixed pixel chunks (depending on P only) summed in a fixed order into
// fp32 partials in the caller's workspace, then summed in chunk order; no atomics.
// Work is queued on ctx.stream(); nothing synchronises with the host.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/tensor.h"

namespace climseg::cuda {

// ---- workspace sizes (pure arithmetic, also in CPU-only builds: layers report them at plan time) --------------
inline size_t norm_align(size_t b) { return (b + 255) / 256 * 256; }
// Pixel chunk of the reductions: at least 256 pixels, at most 1024 chunks. Depends on P only.
inline int64_t norm_chunk(int64_t P) { return std::max<int64_t>(256, (P + 1023) / 1024); }
inline int64_t norm_chunks(int64_t P) { return P <= 0 ? 0 : (P + norm_chunk(P) - 1) / norm_chunk(P); }
// Forward statistics: one fp32 partial per (chunk, channel).
inline size_t bn_fwd_workspace_bytes(int64_t P, int64_t C) {
  return norm_align(static_cast<size_t>(norm_chunks(P) * C) * sizeof(float));
}
// Backward (batch norm and affine): two partials per (chunk, channel), then the two per-channel sums.
inline size_t bn_bwd_workspace_bytes(int64_t P, int64_t C) {
  return norm_align(static_cast<size_t>(norm_chunks(P) * 2 * C) * sizeof(float)) +
         norm_align(static_cast<size_t>(2 * C) * sizeof(float));
}
inline size_t affine_bwd_workspace_bytes(int64_t P, int64_t C) { return bn_bwd_workspace_bytes(P, C); }

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

// Dropout key buffer `key` (u8, >= 24 bytes): u64 seed, u64 step, u64 training (written by the forward kernel).
// Forward: training: y = keep ? x * cpu::dropout_scale(p) : 0 with keep = philox_uniform(seed, step, i) >= p for
// the NHWC logical index i (bit-identical with the CPU mask); inference: y = x. key may be undefined (no backward).
void dropout_fwd(ExecContext& ctx, double p, uint64_t seed, uint64_t step, bool training, const Tensor& x,
                 const Tensor& y, const Tensor& key);
// dx (=|+=) the same mask and scale applied to dy, regenerated from the key on the device (no host read).
void dropout_bwd(ExecContext& ctx, double p, const Tensor& key, const Tensor& dy, const Tensor& dx, bool accumulate);
// mask[i] = 1 where element i is kept (u8, contiguous, shape of the data): for tests of CPU/GPU mask identity.
void dropout_mask(ExecContext& ctx, double p, uint64_t seed, uint64_t step, const Tensor& mask);

}  // namespace climseg::cuda

// ---- CPU-only build (backend boundary): the launchers exist and throw --------------------------------------------
#if !defined(CLIMSEG_HAVE_CUDA)
namespace climseg::cuda {
namespace detail_norm {
[[noreturn]] inline void no_cuda(const char* who) {
  CS_THROW("cuda::", who, ": this climseg was built without CUDA");
}
}  // namespace detail_norm
inline void bn_fwd_train(ExecContext&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, double, double, bool, const Tensor&, const Tensor&, const Tensor&) {
  detail_norm::no_cuda("bn_fwd_train");
}
inline void bn_fwd_infer(ExecContext&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, double, bool, const Tensor&, const Tensor&) {
  detail_norm::no_cuda("bn_fwd_infer");
}
inline void bn_bwd(ExecContext&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool,
                   const Tensor&, const Tensor&, bool, const Tensor&, bool, const Tensor&, bool, const Tensor&) {
  detail_norm::no_cuda("bn_bwd");
}
inline void affine_fwd(ExecContext&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  detail_norm::no_cuda("affine_fwd");
}
inline void affine_bwd(ExecContext&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, const Tensor&,
                       const Tensor&, bool, const Tensor&) {
  detail_norm::no_cuda("affine_bwd");
}
inline void scale_fwd(ExecContext&, double, const Tensor&, const Tensor&) { detail_norm::no_cuda("scale_fwd"); }
inline void scale_bwd(ExecContext&, double, const Tensor&, const Tensor&, bool) { detail_norm::no_cuda("scale_bwd"); }
inline void dropout_fwd(ExecContext&, double, uint64_t, uint64_t, bool, const Tensor&, const Tensor&,
                        const Tensor&) {
  detail_norm::no_cuda("dropout_fwd");
}
inline void dropout_bwd(ExecContext&, double, const Tensor&, const Tensor&, const Tensor&, bool) {
  detail_norm::no_cuda("dropout_bwd");
}
inline void dropout_mask(ExecContext&, double, uint64_t, uint64_t, const Tensor&) {
  detail_norm::no_cuda("dropout_mask");
}
}  // namespace climseg::cuda
#endif
