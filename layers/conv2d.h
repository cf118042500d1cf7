// Conv2d: 2-D convolution, NHWC activations, KRSC weights (K, R, S, C/groups), optional bias (1, 1, 1, K).
// Stride, dilation, groups (1, C for depthwise, or any divisor), and padding either explicit and symmetric
// (PyTorch's `padding`) or TF 'SAME' (output = ceil(in / stride); total padding split with the extra row/column at
// the bottom/right, as TensorFlow does). The 2018 ResNet's conv2d_same is explicit symmetric padding (k-1)/2.
//
// Output size (per spatial dim): (in + pad_begin + pad_end - dilation * (k - 1) - 1) / stride + 1.
#pragma once

#include "engine/layer.h"

namespace climseg {

enum class PaddingMode : uint8_t { explicit_symmetric, tf_same };

struct Conv2dConfig {
  int64_t out_channels = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  PaddingMode padding = PaddingMode::explicit_symmetric;
  int64_t pad_h = 0, pad_w = 0;  // explicit_symmetric only
  bool bias = true;
};

// Padding resolved for one input size: begin/end per dimension.
struct Pads {
  int64_t top = 0, bottom = 0, left = 0, right = 0;
};
Pads resolve_conv_pads(const Conv2dConfig& cfg, int64_t in_h, int64_t in_w);

// The convolutions' bias and inference epilogue (engine/layer.h Epilogue) after the output is written:
// y = act(y + bias + residual), bias = epilogue.bias when defined, else `own_bias` (the layer's bias parameter, or
// undefined). CPU: one pass (cpu::bias_residual_relu); CUDA (defined in conv2d.cu): the eltwise launchers in turn.
void conv_epilogue_cpu(const Tensor& own_bias, const Epilogue& e, const Tensor& y);
void conv_epilogue_cuda(ExecContext& ctx, const Tensor& own_bias, const Epilogue& e, const Tensor& y);

class Conv2d : public Layer {
 public:
  explicit Conv2d(const Conv2dConfig& cfg);
  const char* type() const override { return "conv2d"; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  std::vector<ParamSpec> param_specs(const std::vector<Shape>& in) const override;
  MemoryNeeds memory_needs(const std::vector<Shape>& in, DType t) const override;
  bool is_convolution() const override { return true; }
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  LayerCost backward_cost(const std::vector<Shape>& in, DType t) const override;
  const Conv2dConfig& config() const { return cfg_; }
  bool supports_epilogue() const override { return true; }
  void scale_output_channels(const std::vector<Shape>& in, double* w, const double* scale) const override;

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  Conv2dConfig cfg_;
};

// ConvTranspose2d: the gradient of a convolution with respect to its input, used as a learned upsampling.
// Weights KRSC with K = output channels... stored as (C_in, R, S, C_out / groups) like PyTorch's (in, out/g, kh, kw)
// permuted to channels-last: (C_in, R, S, K/groups). Output size per dim:
//   explicit:  (in - 1) * stride - 2 * pad + dilation * (k - 1) + output_padding + 1   (PyTorch)
//   tf_same:   in * stride                                                             (TF conv2d_transpose SAME)
// The networks use k3 s2 p1 output_padding 1 (exactly 2x) and TF 'same' (also exactly 2x).
struct ConvTranspose2dConfig {
  int64_t out_channels = 0;
  int64_t kernel_h = 3, kernel_w = 3;
  int64_t stride_h = 2, stride_w = 2;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  PaddingMode padding = PaddingMode::explicit_symmetric;
  int64_t pad_h = 1, pad_w = 1;                        // explicit_symmetric only
  int64_t output_padding_h = 1, output_padding_w = 1;  // explicit_symmetric only
  bool bias = true;
};

// Padding of the forward convolution that maps a transposed convolution's output back to its input (the transposed
// conv is that conv's data gradient). top/left are the rows/columns of zeros before the output image in that conv;
// bottom/right follow from the sizes and may be negative. Explicit: top = pad, bottom = pad - output_padding, so
// PyTorch's k3 s2 p1 op1 is (1, 0). tf_same: total = max((in - 1) * stride + dilation * (k - 1) + 1 - in * stride,
// 0), top = total / 2, bottom = total - top, so k3 s2 is (0, 1), the opposite corner.
Pads resolve_deconv_pads(const ConvTranspose2dConfig& cfg, int64_t in_h, int64_t in_w);

class ConvTranspose2d : public Layer {
 public:
  explicit ConvTranspose2d(const ConvTranspose2dConfig& cfg);
  const char* type() const override { return "deconv2d"; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  std::vector<ParamSpec> param_specs(const std::vector<Shape>& in) const override;
  MemoryNeeds memory_needs(const std::vector<Shape>& in, DType t) const override;
  bool is_convolution() const override { return true; }
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  LayerCost backward_cost(const std::vector<Shape>& in, DType t) const override;
  const ConvTranspose2dConfig& config() const { return cfg_; }
  bool supports_epilogue() const override { return true; }
  void scale_output_channels(const std::vector<Shape>& in, double* w, const double* scale) const override;

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  ConvTranspose2dConfig cfg_;
};

}  // namespace climseg
