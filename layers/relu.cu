// ReLU, CUDA path: the kernels in kernels/cuda/eltwise.cu (CPU path and shapes: layers/relu.cpp).
#include "kernels/cuda/eltwise.h"
#include "layers/relu.h"

namespace climseg {

void Relu::forward_cuda(ExecContext& ctx, const ForwardArgs& a) { cuda::relu_fwd(ctx, a.x[0], a.y); }

void Relu::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  cuda::relu_bwd(ctx, a.y, a.dy, a.dx[0], a.dx_mode[0] == GradMode::accumulate);
}

}  // namespace climseg
