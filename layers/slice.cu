// ChannelSlice, CUDA path (CPU path and shapes: layers/slice.cpp). Inside a Net forward launches nothing (the
// output is a view of the input); backward zeroes the channels outside the slice (overwrite mode) and copies or
// accumulates dy into the slice of dx.
#include "kernels/cuda/eltwise.h"
#include "layers/slice.h"

namespace climseg {

void ChannelSlice::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  Tensor src = a.x[0].channel_slice(offset_, channels_);
  if (same_view(src, a.y)) return;
  cuda::copy_or_accumulate(ctx, src, a.y, false);
}

void ChannelSlice::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  const Tensor& dx = a.dx[0];
  const bool acc = a.dx_mode[0] == GradMode::accumulate;
  if (!acc) {
    if (offset_ > 0) dx.channel_slice(0, offset_).zero(&ctx);
    const int64_t rest = dx.shape().c - offset_ - channels_;
    if (rest > 0) dx.channel_slice(offset_ + channels_, rest).zero(&ctx);
  }
  cuda::copy_or_accumulate(ctx, a.dy, dx.channel_slice(offset_, channels_), acc);
}

}  // namespace climseg
