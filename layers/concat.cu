// Concat, CUDA path (CPU path and shapes: layers/concat.cpp). Inside a Net both directions find source and
// destination to be the same view and launch nothing; standalone they copy slice by slice.
#include "kernels/cuda/eltwise.h"
#include "layers/concat.h"

namespace climseg {

void Concat::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  int64_t c0 = 0;
  for (const Tensor& x : a.x) {
    Tensor dst = a.y.channel_slice(c0, x.shape().c);
    c0 += x.shape().c;
    if (same_view(dst, x)) continue;
    cuda::copy_or_accumulate(ctx, x, dst, false);
  }
}

void Concat::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  int64_t c0 = 0;
  for (size_t i = 0; i < a.dx.size(); ++i) {
    int64_t c = a.x[i].defined() ? a.x[i].shape().c : a.dx[i].shape().c;
    Tensor src = a.dy.channel_slice(c0, c);
    c0 += c;
    if (!a.dx[i].defined()) continue;
    bool acc = a.dx_mode[i] == GradMode::accumulate;
    if (!acc && same_view(src, a.dx[i])) continue;
    cuda::copy_or_accumulate(ctx, src, a.dx[i], acc);
  }
}

}  // namespace climseg
