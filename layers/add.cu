// Add, CUDA path (CPU path and shapes: layers/add.cpp).
#include "kernels/cuda/eltwise.h"
#include "layers/add.h"

namespace climseg {

void Add::forward_cuda(ExecContext& ctx, const ForwardArgs& a) { cuda::add_fwd(ctx, a.x[0], a.x[1], a.y); }

void Add::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  // dx1 first: when dx0 shares dy's memory (in place), dy must still be intact for dx1. Both launches are on the
  // same stream, so the order holds on the device too.
  for (int i : {1, 0}) {
    if (!a.dx[i].defined()) continue;
    cuda::copy_or_accumulate(ctx, a.dy, a.dx[i], a.dx_mode[i] == GradMode::accumulate);
  }
}

}  // namespace climseg
