// Affine: y = x * scale[c] + shift[c], trainable per-channel scale (ones) and shift (zeros), both (1,1,1,C).
// DeepCAM's replacement for batch norm in the pooled ASPP branch (a 1x1 pooled map has no batch statistics).
//
// Scale: y = alpha * x with a fixed alpha and no parameters: the 2018 Gordon Bell DeepLabv3+ "multiply by 0.5" that
// stands in for batch norm where it was removed. A separate parameter-free layer rather than a frozen Affine, so
// the constant is not a trainable parameter (nothing for the optimizer, allreduce or checkpoints to carry) and the
// layer can run in place.
#pragma once

#include "engine/layer.h"

namespace climseg {

class Affine : public Layer {
 public:
  // Parameter names and their PyTorch layout: ("scale", "shift", vector) by default; DeepCAM's reference module
  // (TrainableAffine) calls them "weights" and "bias" and stores them as (C, 1, 1), which its builder asks for so
  // that exported weights load into the reference code.
  Affine() = default;
  Affine(std::string scale_name, std::string shift_name, ParamLayout layout)
      : scale_name_(std::move(scale_name)), shift_name_(std::move(shift_name)), layout_(layout) {}
  const char* type() const override { return "affine"; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  std::vector<ParamSpec> param_specs(const std::vector<Shape>& in) const override;
  MemoryNeeds memory_needs(const std::vector<Shape>& in, DType t) const override;  // CUDA backward partials
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  bool inference_affine(const std::vector<Shape>& in, const std::vector<std::vector<double>>& params,
                        const std::vector<std::vector<double>>& state, ChannelAffine* out) const override;

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  std::string scale_name_ = "scale", shift_name_ = "shift";
  ParamLayout layout_ = ParamLayout::vector;
};

class Scale : public Layer {
 public:
  explicit Scale(double alpha) : alpha_(alpha) {}
  const char* type() const override { return "scale"; }
  Shape output_shape(const std::vector<Shape>& in) const override { return in.at(0); }
  bool backward_needs_input(int) const override { return false; }
  bool in_place_ok() const override { return true; }
  double alpha() const { return alpha_; }
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  bool inference_affine(const std::vector<Shape>& in, const std::vector<std::vector<double>>& params,
                        const std::vector<std::vector<double>>& state, ChannelAffine* out) const override;

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  double alpha_;
};

}  // namespace climseg
