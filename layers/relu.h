// ReLU: y = max(x, 0). In place allowed (backward uses the output only).
#pragma once

#include "engine/layer.h"

namespace climseg {

class Relu : public Layer {
 public:
  const char* type() const override { return "relu"; }
  Shape output_shape(const std::vector<Shape>& in) const override { return in.at(0); }
  bool backward_needs_input(int) const override { return false; }
  bool backward_needs_output() const override { return true; }
  bool in_place_ok() const override { return true; }
  // Foldable into a preceding convolution's epilogue at inference (Net::fold_batchnorm): identity map, then ReLU.
  bool inference_affine(const std::vector<Shape>& in, const std::vector<std::vector<double>>& params,
                        const std::vector<std::vector<double>>& state, ChannelAffine* out) const override {
    const size_t C = static_cast<size_t>(in.at(0).c);
    out->scale.assign(C, 1.0);
    out->shift.assign(C, 0.0);
    out->relu = true;
    return true;
  }

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;
};

}  // namespace climseg
