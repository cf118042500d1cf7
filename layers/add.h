// Add: y = a + b (same shapes). Residual connections.
#pragma once

#include "engine/layer.h"

namespace climseg {

class Add : public Layer {
 public:
  const char* type() const override { return "add"; }
  int num_inputs() const override { return 2; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  bool backward_needs_input(int) const override { return false; }
  bool in_place_ok() const override { return true; }

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;
};

}  // namespace climseg
