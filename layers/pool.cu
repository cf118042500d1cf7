// Pooling layers, CUDA path: the kernels in kernels/cuda/pool.cu (CPU path, shapes and geometry: layers/pool.cpp).
// Scratch comes from the planned args (a.saved for the argmax, a.workspace for the global pool's partial sums);
// a caller that runs a layer outside a Net without a workspace gets ctx.workspace(), as cuda::bias_grad does.
#include "kernels/cuda/pool.h"
#include "layers/pool.h"

namespace climseg {

void MaxPool2d::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  const cpu::Pool2dGeom g = cfg_.geom(a.x[0].shape(), name());
  CS_CHECK(a.saved.defined() && a.saved.numel() >= a.y.numel(), name(), ": needs ", a.y.numel(),
           " bytes of saved state (memory_needs().saved_bytes) for the argmax");
  cuda::maxpool_fwd(ctx, g, a.x[0], a.y, a.saved);
}

void MaxPool2d::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  const cpu::Pool2dGeom g = cfg_.geom(a.dx[0].shape(), name());
  CS_CHECK(a.saved.defined() && a.saved.numel() >= a.dy.numel(), name(), ": needs ", a.dy.numel(),
           " bytes of saved state (the argmax from forward)");
  cuda::maxpool_bwd(ctx, g, a.saved, a.dy, a.dx[0], a.dx_mode[0] == GradMode::accumulate);
}

void AvgPool2d::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  cuda::avgpool_fwd(ctx, cfg_.geom(a.x[0].shape(), name()), cfg_.count_include_pad, a.x[0], a.y);
}

void AvgPool2d::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  cuda::avgpool_bwd(ctx, cfg_.geom(a.dx[0].shape(), name()), cfg_.count_include_pad, a.dy, a.dx[0],
                    a.dx_mode[0] == GradMode::accumulate);
}

void GlobalAvgPool::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  const Shape& s = a.x[0].shape();
  const size_t need = cuda::global_avgpool_workspace_bytes(s.n, s.h * s.w, s.c);
  void* ws = nullptr;
  size_t have = need;
  if (a.workspace.defined()) {
    ws = a.workspace.data();
    have = a.workspace.nbytes();
  } else if (need > 0) {
    ws = ctx.workspace(need);
  }
  cuda::global_avgpool_fwd(ctx, a.x[0], a.y, ws, have);
}

void GlobalAvgPool::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  cuda::global_avgpool_bwd(ctx, a.dy, a.dx[0], a.dx_mode[0] == GradMode::accumulate);
}

}  // namespace climseg
