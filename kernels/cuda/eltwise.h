// CUDA launchers for the pointwise kernels (kernels/cuda/eltwise.cu): the device counterparts of
// kernels/cpu/eltwise.h, with the same semantics. Plain C++ (no CUDA headers), so .cpp files and tests call them.
//
// Every launcher takes Tensors on the CUDA device of `ctx`: pixel-strided NHWC views (channels contiguous, pixels
// at a fixed stride, so channel slices of concat buffers work), checked with CS_CHECK. dtype fp32, fp16 or bf16:
// 16-bit types are storage only, the maths is fp32 and every result is rounded once (round to nearest even).
// Work is queued on ctx.stream() (asynchronous); the caller makes ctx's device current (ExecContext::activate).
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/tensor.h"
#include "kernels/cuda/no_cuda.h"

namespace climseg::cuda {

// y = max(x, 0)
void relu_fwd(ExecContext& ctx, const Tensor& x, const Tensor& y);
// dx (=|+=) dy * (y > 0)
void relu_bwd(ExecContext& ctx, const Tensor& y, const Tensor& dy, const Tensor& dx, bool accumulate);
// y = a + b
void add_fwd(ExecContext& ctx, const Tensor& a, const Tensor& b, const Tensor& y);
// dst (=|+=) src; nothing to do when both view the same elements and accumulate is false
void copy_or_accumulate(ExecContext& ctx, const Tensor& src, const Tensor& dst, bool accumulate);
// y[p, c] += bias[c]                      bias: K elements (any shape with numel K, contiguous), y: (P, K)
void add_bias(ExecContext& ctx, const Tensor& bias, const Tensor& y);
// db (=|+=) sum over pixels of dy         dy: (P, K), db: K elements (contiguous)
// Deterministic (no atomics): fixed pixel chunks summed in fp32, then the chunks in order. Uses
// ctx.workspace(bias_grad_workspace_bytes(P, K)) for the per-chunk partial sums.
void bias_grad(ExecContext& ctx, const Tensor& dy, const Tensor& db, bool accumulate);
size_t bias_grad_workspace_bytes(int64_t P, int64_t K);
// y += alpha * x over flat contiguous buffers (plain SGD: cuda::axpy(ctx, -lr, grads, params)).
// fp32: the same rounding steps as cpu::axpy (no fused multiply-add), so results match the CPU bit for bit.
void axpy(ExecContext& ctx, double alpha, const Tensor& x, const Tensor& y);
// out[i] = philox_uniform(seed, subsequence, i) for the i-th element of the view in NHWC order (engine/philox.h);
// fp32 only, bit-identical with the host function.
void philox_uniform(ExecContext& ctx, const Tensor& out, uint64_t seed, uint64_t subsequence);

}  // namespace climseg::cuda

// ---- CPU-only build (backend boundary): the launchers exist, so code naming them links, and they throw --------
#if !defined(CLIMSEG_HAVE_CUDA)
namespace climseg::cuda {
inline void relu_fwd(ExecContext&, const Tensor&, const Tensor&) { detail::no_cuda("relu_fwd"); }
inline void relu_bwd(ExecContext&, const Tensor&, const Tensor&, const Tensor&, bool) {
  detail::no_cuda("relu_bwd");
}
inline void add_fwd(ExecContext&, const Tensor&, const Tensor&, const Tensor&) { detail::no_cuda("add_fwd"); }
inline void copy_or_accumulate(ExecContext&, const Tensor&, const Tensor&, bool) {
  detail::no_cuda("copy_or_accumulate");
}
inline void add_bias(ExecContext&, const Tensor&, const Tensor&) { detail::no_cuda("add_bias"); }
inline void bias_grad(ExecContext&, const Tensor&, const Tensor&, bool) { detail::no_cuda("bias_grad"); }
inline size_t bias_grad_workspace_bytes(int64_t, int64_t) { detail::no_cuda("bias_grad_workspace_bytes"); }
inline void axpy(ExecContext&, double, const Tensor&, const Tensor&) { detail::no_cuda("axpy"); }
inline void philox_uniform(ExecContext&, const Tensor&, uint64_t, uint64_t) { detail::no_cuda("philox_uniform"); }
}  // namespace climseg::cuda
#endif
