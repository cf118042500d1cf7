// Affine and Scale, CUDA path: the kernels in kernels/cuda/affine.cu (CPU path and shapes: layers/affine.cpp).
#include "kernels/cuda/affine.h"
#include "layers/affine.h"

namespace climseg {

void Affine::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  cuda::affine_fwd(ctx, a.x[0], a.params[0], a.params[1], a.y);
}

void Affine::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  const Shape& s = a.x[0].shape();
  const size_t need = cuda::affine_bwd_workspace_bytes(s.pixels(), s.c);
  CS_CHECK(a.workspace.defined() && a.workspace.nbytes() >= need, name(), ": backward needs ", need,
           " workspace bytes (memory_needs().bwd_workspace)");
  cuda::affine_bwd(ctx, a.x[0], a.dy, a.params[0], a.dx[0], a.dx_mode[0] == GradMode::accumulate, a.grads[0],
                   a.grads[1], a.param_mode == GradMode::accumulate, a.workspace);
}

void Scale::forward_cuda(ExecContext& ctx, const ForwardArgs& a) { cuda::scale_fwd(ctx, alpha_, a.x[0], a.y); }

void Scale::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  cuda::scale_bwd(ctx, alpha_, a.dy, a.dx[0], a.dx_mode[0] == GradMode::accumulate);
}

}  // namespace climseg
