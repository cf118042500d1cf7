// PointwiseConv: 1x1 convolution, stride 1, as one GEMM over pixels (NHWC makes the input a (pixels x C) matrix).
//   y (P, K) = x (P, C) * W^T,  W: KRSC (K, 1, 1, C);  optional bias (1, 1, 1, K).
// The general Conv2d (layers/conv2d.h) covers every kernel, stride, dilation and group count; this GEMM-only
// layer proved the engine end to end before it and stays as the minimal 1x1 layer (Conv2d has its own 1x1 path).
#pragma once

#include "engine/layer.h"

namespace climseg {

class PointwiseConv : public Layer {
 public:
  PointwiseConv(int64_t out_channels, bool bias = true) : k_(out_channels), bias_(bias) {}
  const char* type() const override { return "conv1x1"; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  std::vector<ParamSpec> param_specs(const std::vector<Shape>& in) const override;
  bool is_convolution() const override { return true; }
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  LayerCost backward_cost(const std::vector<Shape>& in, DType t) const override;
  int64_t out_channels() const { return k_; }
  bool supports_epilogue() const override { return true; }
  void scale_output_channels(const std::vector<Shape>& in, double* w, const double* scale) const override;

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  int64_t k_;
  bool bias_;
};

}  // namespace climseg
