// Dropout, CUDA path: the kernels in kernels/cuda/dropout.cu (CPU path, the key layout and the choice to regenerate
// the mask: layers/dropout.h). The forward kernel writes the key into the saved buffer; backward reads it there.
#include "kernels/cuda/dropout.h"
#include "layers/dropout.h"

namespace climseg {

void Dropout::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  if (a.saved.defined())
    CS_CHECK(a.saved.nbytes() >= kKeyBytes, name(), ": saved buffer has ", a.saved.nbytes(), " bytes, needs ",
             kKeyBytes);
  cuda::dropout_fwd(ctx, p_, seed_, a.step, a.training, a.x[0], a.y, a.saved);
}

void Dropout::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  CS_CHECK(a.saved.defined() && a.saved.nbytes() >= kKeyBytes, name(), ": backward needs the key saved by forward");
  cuda::dropout_bwd(ctx, p_, a.saved, a.dy, a.dx[0], a.dx_mode[0] == GradMode::accumulate);
}

}  // namespace climseg
