// BilinearResize, CUDA path: the kernels in kernels/cuda/resize.cu (CPU path and shapes: layers/resize.cpp).
// The backward tables live in a.workspace (memory_needs().bwd_workspace); a caller that runs the layer outside a
// Net without a workspace gets ctx.workspace(), as cuda::bias_grad does.
#include "kernels/cuda/resize.h"
#include "layers/resize.h"

namespace climseg {

void BilinearResize::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  cuda::resize_fwd(ctx, geom(a.x[0].shape()), a.x[0], a.y);
}

void BilinearResize::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  const cpu::ResizeGeom g = geom(a.dx[0].shape());
  const size_t need = cuda::resize_bwd_workspace_bytes(g);
  void* ws = nullptr;
  size_t have = need;
  if (a.workspace.defined()) {
    ws = a.workspace.data();
    have = a.workspace.nbytes();
  } else {
    ws = ctx.workspace(need);
  }
  cuda::resize_bwd(ctx, g, a.dy, a.dx[0], a.dx_mode[0] == GradMode::accumulate, ws, have);
}

}  // namespace climseg
