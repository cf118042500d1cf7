// CUDA launchers for the weighted softmax cross-entropy fused with argmax and TP/FP/FN counts
// (kernels/cuda/loss.cu): the device counterparts of kernels/cpu/loss.h, with the same semantics, the same saved
// state layout (XentHeader, counts, mask) and the same reductions. Plain C++ (no CUDA headers).
//
// Tensors on the CUDA device of ctx: logits (N, H, W, K) pixel-strided fp32/fp16/bf16, labels (N, H, W, 1)
// pixel-strided i32/i64/u8, y (1, 1, 1, 1) in the logits' dtype, saved and workspace contiguous u8 tensors of at
// least xent_saved_layout(...).total and xent_cuda_workspace_bytes(...) bytes. All maths in fp32 (the loss is
// accumulated in fp32 per block and combined in fp64), 16-bit logits widened on load. K <= kXentCudaMaxClasses.
// Asynchronous on ctx.stream(); nothing reads back to the host.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/tensor.h"
#include "kernels/cpu/loss.h"

namespace climseg::cuda {

constexpr int64_t kXentCudaMaxClasses = 32;

// Forward: y, the argmax mask, the per-sample counts and the header (incl. the first bad label) in `saved`.
void softmax_xent_fwd(ExecContext& ctx, const Tensor& logits, const Tensor& labels, const std::vector<double>& w,
                      int64_t ignore_index, XentReduction red, double scale, const Tensor& y, const Tensor& saved,
                      const Tensor& workspace);
// Backward: dx (=|+=) dy * grad_scale * multiplier * w[l] * (softmax - onehot); dy and grad_scale (from `saved`) are
// read on the device, multiplier (SoftmaxXent::set_grad_multiplier: the loss scale) is a host value.
void softmax_xent_bwd(ExecContext& ctx, const Tensor& logits, const Tensor& labels, const std::vector<double>& w,
                      int64_t ignore_index, const Tensor& dy, const Tensor& saved, double multiplier,
                      const Tensor& dx, bool accumulate);

}  // namespace climseg::cuda

// ---- CPU-only build (backend boundary): the launchers exist, so code naming them links, and they throw --------
#if !defined(CLIMSEG_HAVE_CUDA)
namespace climseg::cuda {
inline void softmax_xent_fwd(ExecContext&, const Tensor&, const Tensor&, const std::vector<double>&, int64_t,
                             XentReduction, double, const Tensor&, const Tensor&, const Tensor&) {
  CS_THROW("cuda::softmax_xent_fwd: this climseg was built without CUDA");
}
inline void softmax_xent_bwd(ExecContext&, const Tensor&, const Tensor&, const std::vector<double>&, int64_t,
                             const Tensor&, const Tensor&, double, const Tensor&, bool) {
  CS_THROW("cuda::softmax_xent_bwd: this climseg was built without CUDA");
}
}  // namespace climseg::cuda
#endif
