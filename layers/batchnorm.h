// BatchNorm2d over NHWC: per-channel statistics over the N*H*W pixels, with an optional fused residual add and
// ReLU:  y = act(gamma * (x - mean) * inv_std + beta [+ residual]),  inv_std = 1 / sqrt(var + eps).
//
// Training: batch mean and biased variance normalise; the running statistics (when bound) are updated with PyTorch
// semantics, r = (1 - momentum) r + momentum * batch, the running variance taking the unbiased batch variance
// (momentum 0.1 is PyTorch's default; TF-slim's decay 0.9997 is momentum 0.0003). Inference: the running
// statistics normalise, and backward is that of this affine map.
// One value per channel (N = H = W = 1) in training: the variance is 0 and the output is beta (TensorFlow's
// behaviour; PyTorch refuses to train there), and the running-variance correction M / (M - 1) is taken as 1.
//
// Inputs: x (N,H,W,C), and with residual a second input of the same shape that is added before the activation.
// Parameters: gamma (1,1,1,C) ones, beta (1,1,1,C) zeros.
// State (ForwardArgs::state, not trained, dtype stat_dtype(dt) = fp32, or fp64 for fp64 layers):
//   running_mean (1,1,1,C) zeros, running_var (1,1,1,C) ones. Training without bound state normalises with batch
//   statistics and updates nothing; inference requires it.
// Saved (forward -> backward, u8 bytes, saved_layout()): a 16-byte header whose first u32 is 1 for training and 0
// for inference (backward then knows which formula applies, on the device without a host read), then mean (C) and
// inv_std (C) in stat_dtype: the batch statistics in training, the running ones in inference.
// Workspace: CUDA per-chunk partial sums (fwd and bwd); forward also uses it for the statistics when no saved
// buffer is given (inference without backward). The CPU path needs none.
// Backward needs x, and the output y when the ReLU is fused (its mask); the residual input is not needed.
#pragma once

#include "engine/layer.h"

namespace climseg {

struct BatchNormConfig {
  double momentum = 0.1;  // PyTorch's default; TF-slim decay d corresponds to momentum 1 - d
  double eps = 1e-5;      // PyTorch's default (TF: 1e-3)
  bool relu = false;      // fused ReLU after the normalisation (and residual add)
  bool residual = false;  // second input added before the ReLU: y = relu(bn(x) + residual)
};

class BatchNorm2d : public Layer {
 public:
  explicit BatchNorm2d(BatchNormConfig cfg = {});
  const char* type() const override { return "batchnorm2d"; }
  int num_inputs() const override { return cfg_.residual ? 2 : 1; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  std::vector<ParamSpec> param_specs(const std::vector<Shape>& in) const override;
  std::vector<ParamSpec> state_specs(const std::vector<Shape>& in) const override;
  MemoryNeeds memory_needs(const std::vector<Shape>& in, DType t) const override;
  bool backward_needs_input(int i) const override { return i == 0; }
  bool backward_needs_output() const override { return cfg_.relu; }
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  LayerCost backward_cost(const std::vector<Shape>& in, DType t) const override;
  const BatchNormConfig& config() const { return cfg_; }
  // Inference: scale = gamma / sqrt(running_var + eps), shift = beta - running_mean * scale (Net::fold_batchnorm).
  bool inference_affine(const std::vector<Shape>& in, const std::vector<std::vector<double>>& params,
                        const std::vector<std::vector<double>>& state, ChannelAffine* out) const override;

  // Saved-state layout: header bytes, then mean at mean_offset and inv_std at inv_std_offset (stat_dtype(t)).
  struct SavedLayout {
    size_t mean_offset, inv_std_offset, bytes;
  };
  static SavedLayout saved_layout(int64_t C, DType t);
  static constexpr size_t kHeaderBytes = 16;

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  BatchNormConfig cfg_;
};

}  // namespace climseg
