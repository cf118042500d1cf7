// Add, CUDA path (CPU path and shapes: layers/add.cpp).
#include "kernels/cuda/eltwise.h"
#include "layers/add.h"

namespace climseg {

void Add::forward_cuda(ExecContext& ctx, const ForwardArgs& a) { cuda::add_fwd(ctx, a.x[0], a.x[1], a.y); }

void Add::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  // Slot order matters when both slots are the same tensor (x + x): the Net asks slot 0 to overwrite and
  // slot 1 to accumulate. When dx0 shares dy's memory (in place), slot 0 is a no-op copy onto itself and dy
  // stays intact for slot 1.
  for (int i : {0, 1}) {
    if (!a.dx[i].defined()) continue;
    cuda::copy_or_accumulate(ctx, a.dy, a.dx[i], a.dx_mode[i] == GradMode::accumulate);
  }
}

}  // namespace climseg
