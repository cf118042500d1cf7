// Concat: channel concatenation y = [x0 | x1 | ...] (NHWC, same N, H, W).
// Zero-copy inside a Net: the Net makes each producer write straight into its channel slice of y and gives each
// input's gradient as the matching slice of dy, so forward and backward find source and destination to be the same
// memory and copy nothing. Standalone (or where the Net cannot alias) it copies.
#pragma once

#include "engine/layer.h"

namespace climseg {

class Concat : public Layer {
 public:
  const char* type() const override { return "concat"; }
  int num_inputs() const override { return -1; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  bool backward_needs_input(int) const override { return false; }
  bool is_concat() const override { return true; }
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;
};

}  // namespace climseg
