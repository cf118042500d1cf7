// SoftmaxXent, CUDA path: the kernels in kernels/cuda/loss.cu (CPU path, shapes and the saved-state contract:
// layers/softmax_xent.cpp). Nothing here reads back to the host unless Config::validate_labels asks for it.
#include <cstring>

#include "kernels/cuda/loss.h"
#include "layers/softmax_xent.h"

namespace climseg {

void SoftmaxXent::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  const Shape& s = a.x[0].shape();
  check_saved(a.saved, s);
  cuda::softmax_xent_fwd(ctx, a.x[0], a.x[1], w_, cfg_.ignore_index, cfg_.reduction, cfg_.scale, a.y, a.saved,
                         a.workspace);
  if (cfg_.validate_labels) {
    // Debug mode: a device-to-host copy of the header and a stream sync, then the same error as the CPU path.
    Tensor head = Tensor::wrap(a.saved.data(), Shape{1, 1, 1, static_cast<int64_t>(sizeof(XentHeader))}, DType::u8,
                               Device::cuda, a.saved.buffer())
                      .to(Device::cpu, &ctx);
    ctx.synchronize();
    XentHeader h;
    std::memcpy(&h, head.data(), sizeof h);
    if (h.bad_index >= 0) {
      const int64_t HW = s.h * s.w, n = h.bad_index / HW, r = h.bad_index % HW;
      CS_THROW(name(), ": label ", h.bad_value, " at (n=", n, ", h=", r / s.w, ", w=", r % s.w, ") is outside [0, ",
               s.c, ") and is not the ignore_index");
    }
  }
}

void SoftmaxXent::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  check_saved(a.saved, a.x[0].shape());
  cuda::softmax_xent_bwd(ctx, a.x[0], a.x[1], w_, cfg_.ignore_index, a.dy, a.saved, grad_multiplier_, a.dx[0],
                         a.dx_mode[0] == GradMode::accumulate);
}

}  // namespace climseg
