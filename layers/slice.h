// ChannelSlice: y = x[..., offset : offset + channels] (NHWC).
// Zero-copy inside a Net: the layer reports view_channel_offset(), and the Net binds y as a channel view of x
// (the planner keeps x alive as long as y is used), so forward finds y already equal to the slice and copies
// nothing. Backward writes dy into the slice of dx; in overwrite mode it also zeroes the channels outside the
// slice (they receive no gradient from this consumer). Standalone (or with NetOptions::zero_copy_concat off) it
// copies.
//
// Tiramisu needs it: a dense block's output is one zero-copy concatenation [input | new maps], and the transition
// up takes only the new maps, a contiguous channel range of that buffer. A second concatenation of the new maps
// would have to copy them (a tensor can be written into only one concat buffer); the slice reads them in place.
#pragma once

#include "engine/layer.h"

namespace climseg {

class ChannelSlice : public Layer {
 public:
  ChannelSlice(int64_t offset, int64_t channels);
  const char* type() const override { return "slice"; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  bool backward_needs_input(int) const override { return false; }
  int64_t view_channel_offset() const override { return offset_; }
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  int64_t offset() const { return offset_; }
  int64_t channels() const { return channels_; }

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  int64_t offset_, channels_;
};

}  // namespace climseg
