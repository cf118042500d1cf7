// Conv2d: 2-D convolution, NHWC activations, KRSC weights (K, R, S, C/groups), optional bias (1, 1, 1, K).
// Stride, dilation, groups (1, C for depthwise, or any divisor), and padding either explicit and symmetric
// (PyTorch's `padding`) or TF 'SAME' (output = ceil(in / stride); total padding split with the extra row/column at
// the bottom/right, as TensorFlow does). The 2018 ResNet's conv2d_same is explicit symmetric padding (k-1)/2.
// ConvTranspose2d: the same convolution run backwards (its data gradient), a learned upsampling.
//
// Both are a ConvLayer: the geometry (sizes, padding, TF 'SAME' for either), the config checks, the memory needs,
// the cost and the CPU and CUDA passes exist once, driven by the ConvGeometry that conv_geometry()
// (kernels/conv_geometry.h) builds from the config and the input shape; ConvGeometry::transposed swaps the roles
// (Caffe's BaseConvolutionLayer and reverse_dimensions()). The two classes add only their parameters.
//
// Output size (per spatial dim): (in + pad_begin + pad_end - dilation * (k - 1) - 1) / stride + 1.
#pragma once

#include "engine/layer.h"
#include "kernels/conv_geometry.h"

namespace climseg {

// The geometry fields (out_channels, kernel, stride, dilation, groups, padding) are ConvSpec's
// (kernels/conv_geometry.h); output_padding must stay 0.
struct Conv2dConfig : ConvSpec {
  bool bias = true;
};

// ConvTranspose2d: weights stored as (C_in, R, S, C_out / groups), PyTorch's (in, out/g, kh, kw) permuted to
// channels-last: the KRSC filter of the conv whose data gradient the layer is. Output size per dim:
//   explicit:  (in - 1) * stride - 2 * pad + dilation * (k - 1) + output_padding + 1   (PyTorch)
//   tf_same:   in * stride                                                             (TF conv2d_transpose SAME)
// The networks use k3 s2 p1 output_padding 1 (exactly 2x) and TF 'same' (also exactly 2x), hence the defaults.
struct ConvTranspose2dConfig : ConvSpec {
  ConvTranspose2dConfig() {
    kernel_h = kernel_w = 3;
    stride_h = stride_w = 2;
    pad_h = pad_w = 1;
    output_padding_h = output_padding_w = 1;
  }
  bool bias = true;
};

// The convolutions' bias and inference epilogue (engine/layer.h Epilogue) after the output is written:
// y = act(y + bias + residual), bias = epilogue.bias when defined, else `own_bias` (the layer's bias parameter, or
// undefined). CPU: one pass (cpu::bias_residual_relu); CUDA (defined in conv2d.cu): the eltwise launchers in turn.
void conv_epilogue_cpu(const Tensor& own_bias, const Epilogue& e, const Tensor& y);
void conv_epilogue_cuda(ExecContext& ctx, const Tensor& own_bias, const Epilogue& e, const Tensor& y);

// What Conv2d and ConvTranspose2d share. The pads of a layer are conv_pads(config, transposed, H, W)
// (kernels/conv_geometry.h): for ConvTranspose2d those of the conv mapping its output back to its input.
class ConvLayer : public Layer {
 public:
  Shape output_shape(const std::vector<Shape>& in) const override;
  MemoryNeeds memory_needs(const std::vector<Shape>& in, DType t) const override;
  bool is_convolution() const override { return true; }
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  LayerCost backward_cost(const std::vector<Shape>& in, DType t) const override;
  bool supports_epilogue() const override { return true; }
  // The convolution this layer runs on input x (the one builder, kernels/conv_geometry.h).
  ConvGeometry geometry(const Shape& x) const { return conv_geometry(spec_, transposed_, x, name()); }

 protected:
  // Checks the spec (check_conv_spec, `type` naming the layer in errors).
  ConvLayer(const ConvSpec& spec, bool transposed, bool bias, const char* type);
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  ConvSpec spec_;
  bool transposed_;
  bool bias_;
};

class Conv2d : public ConvLayer {
 public:
  explicit Conv2d(const Conv2dConfig& cfg) : ConvLayer(cfg, false, cfg.bias, "conv2d"), cfg_(cfg) {}
  const char* type() const override { return "conv2d"; }
  std::vector<ParamSpec> param_specs(const std::vector<Shape>& in) const override;
  const Conv2dConfig& config() const { return cfg_; }
  void scale_output_channels(const std::vector<Shape>& in, double* w, const double* scale) const override;

 private:
  Conv2dConfig cfg_;
};

class ConvTranspose2d : public ConvLayer {
 public:
  explicit ConvTranspose2d(const ConvTranspose2dConfig& cfg)
      : ConvLayer(cfg, true, cfg.bias, "deconv2d"), cfg_(cfg) {}
  const char* type() const override { return "deconv2d"; }
  std::vector<ParamSpec> param_specs(const std::vector<Shape>& in) const override;
  const ConvTranspose2dConfig& config() const { return cfg_; }
  void scale_output_channels(const std::vector<Shape>& in, double* w, const double* scale) const override;

 private:
  ConvTranspose2dConfig cfg_;
};

}  // namespace climseg
