#include "layers/slice.h"

#include "engine/dispatch.h"
#include "kernels/cpu/eltwise.h"

namespace climseg {

ChannelSlice::ChannelSlice(int64_t offset, int64_t channels) : offset_(offset), channels_(channels) {
  CS_CHECK(offset >= 0 && channels > 0, "slice: offset ", offset, " and channels ", channels, " must be >= 0 and > 0");
}

Shape ChannelSlice::output_shape(const std::vector<Shape>& in) const {
  const Shape& x = in.at(0);
  CS_CHECK(offset_ + channels_ <= x.c, name(), ": channels [", offset_, ", ", offset_ + channels_,
           ") of an input with ", x.c, " channels");
  Shape y = x;
  y.c = channels_;
  return y;
}

LayerCost ChannelSlice::forward_cost(const std::vector<Shape>&, DType) const {
  return {0.0, 0.0};  // a view in a planned Net
}

namespace {
template <class Copy>
void slice_backward(ExecContext& ctx, const BackwardArgs& a, int64_t off, int64_t c, Copy copy) {
  if (!a.dx[0].defined()) return;
  const Tensor& dx = a.dx[0];
  const bool acc = a.dx_mode[0] == GradMode::accumulate;
  if (!acc) {
    if (off > 0) dx.channel_slice(0, off).zero(&ctx);
    const int64_t rest = dx.shape().c - off - c;
    if (rest > 0) dx.channel_slice(off + c, rest).zero(&ctx);
  }
  copy(a.dy, dx.channel_slice(off, c), acc);
}
}  // namespace

void ChannelSlice::forward_cpu(ExecContext&, const ForwardArgs& a) {
  Tensor src = a.x[0].channel_slice(offset_, channels_);
  if (same_view(src, a.y)) return;
  dispatch_cpu_float(src.dtype(), "slice", [&](auto tag) {
    using T = decltype(tag);
    cpu::copy_or_accumulate<T>(src.shape().pixels(), channels_, src.data_as<T>(), src.pixel_stride(), a.y.data_as<T>(),
                               a.y.pixel_stride(), false);
  });
}

void ChannelSlice::backward_cpu(ExecContext& ctx, const BackwardArgs& a) {
  slice_backward(ctx, a, offset_, channels_, [](const Tensor& src, const Tensor& dst, bool acc) {
    dispatch_cpu_float(src.dtype(), "slice", [&](auto tag) {
      using T = decltype(tag);
      cpu::copy_or_accumulate<T>(src.shape().pixels(), src.shape().c, src.data_as<T>(), src.pixel_stride(),
                                 dst.data_as<T>(), dst.pixel_stride(), acc);
    });
  });
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(ChannelSlice)
#endif

}  // namespace climseg
