// SoftmaxXent: class-weighted softmax cross-entropy, fused with the argmax prediction and per-class TP/FP/FN
// counts (from which train/metrics.h computes the IoU metrics of both reference systems) in the same pass over the
// logits.
//
//   inputs:  logits (N, H, W, K) in the compute dtype; labels (N, H, W, 1) class indices (i32, i64 or u8)
//   output:  the scalar loss (1, 1, 1, 1) in the compute dtype, accumulated in fp32 or wider whatever the dtype.
//            In fp16 a large loss does not fit (the 2018 DeepLabv3+ 'sum' reduction gives ~1e5 for one 768x1152
//            sample, above fp16's 65504): the output is then inf. The saved header's fp64 loss (read_metrics) is
//            always exact; the trainers report that one.
//   loss:    scale * sum_p w[l_p] * (logsumexp(x_p) - x_p[l_p]) / denom, denom from the reduction (kernels/cpu/loss.h)
//   saved:   XentHeader (loss, the backward scale, the first bad label), per-sample counts (N, 3, K) int64 and the
//            argmax mask (N, H, W) u8; read with read_metrics() / argmax_mask().
//   backward: dlogits = dy * scale / denom * w[l] * (softmax(x) - onehot(l)); labels get no gradient.
//
// Why the softmax is recomputed in backward instead of saved: saving it costs 4K bytes per pixel (fp32, K = 3:
// 12 bytes, 21 MB per 768x1152 sample) for as many exponentials (K per pixel) as it saves, and the logits stay
// alive anyway until this layer's backward (backward_needs_input(0)). Backward is memory-bound either way; reading
// the 16-bit logits (6 bytes per pixel) is cheaper than reading saved fp32 probabilities (12 bytes).
//
// Labels outside [0, K) (other than ignore_index):
// - CPU: forward throws, naming the layer, the value and its (n, h, w) position.
// - CUDA: a hot-path check would need a device-to-host sync every step, so forward records the first bad pixel
//   (lowest flat index, found without atomics) in the saved header, gives it no loss and no gradient, and
//   read_metrics() throws when it finds one (it copies the header to the host anyway). Config::validate_labels
//   makes forward sync and throw at once (debugging).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/layer.h"
#include "kernels/cpu/loss.h"

namespace climseg {

// Class frequencies of the reference data (reference-systems.md 1.1), order (background, TC, AR).
// GB 2018 passes sqrt of its frequencies (0.982, 0.00071, 0.017) on the command line, rounded: 0.991 0.0266 0.13.
std::vector<double> gb2018_class_weights();   // w ~ 1 / sqrt(f), normalized to sum 1: (0.0218, 0.8120, 0.1662)
std::vector<double> deepcam_class_weights();  // w = f^(-1/8), f = (0.986267818, 0.000457871, 0.013274311):
                                              // (1.00173, 2.61461, 1.71642)
// The two rules for any frequencies.
std::vector<double> inverse_sqrt_frequency_weights(const std::vector<double>& freq);  // normalized to sum 1
std::vector<double> frequency_power_weights(const std::vector<double>& freq, double power);  // f^power

struct SoftmaxXentConfig {
  int64_t num_classes = 3;
  std::vector<double> class_weights;  // empty: all 1; otherwise num_classes entries, finite and >= 0
  XentReduction reduction = XentReduction::mean;
  double scale = 1.0;          // multiplies the reduced loss (GB: 0.1)
  int64_t ignore_index = -1;   // label to ignore (no loss, no gradient, no counts); -1: none
  bool validate_labels = false;  // CUDA: sync after forward and throw on a bad label (debug; the CPU always does)

  // The reference systems (reference-systems.md 3.1, 3.2).
  static SoftmaxXentConfig gb_deeplab();   // GB weights, sum, x0.1
  static SoftmaxXentConfig gb_tiramisu();  // GB weights, sum by nonzero weights, x0.1
  static SoftmaxXentConfig deepcam();      // DeepCAM weights, plain mean over all pixels

  // The first scale of dynamic loss scaling for this loss on `pixels` labelled pixels per step and rank (batch x
  // height x width; docs/training.md, "Loss scaling"). 2^16, PyTorch's GradScaler default, is calibrated for a loss
  // divided by its pixel count, whose per-pixel logit gradients are O(1/pixels): mean, weighted_mean and
  // sum_by_nonzero_weights. The `sum` reduction (the 2018 DeepLabv3+ loss) has gradients `pixels` times larger,
  // so its scale starts that much lower: 2^16 / 2^ceil(log2(pixels)), at least 1 (the scaler's floor). Starting
  // at 2^16 instead skips every step until the scale has halved down to it (7 of the first 12 steps of a
  // width-1/16 DeepLabv3+ at 32x48, batch 2, in fp16, measured).
  double initial_loss_scale(int64_t pixels) const;
};

struct SoftmaxXentMetrics {
  int64_t n = 0, k = 0;
  std::vector<int64_t> tp, fp, fn;  // per sample: (n, k) row-major
  double loss = 0;                  // the forward's loss, in double (before rounding to the compute dtype)
  double denom = 0;
  int64_t valid_pixels = 0;
  int64_t tp_total(int64_t c) const;
  int64_t fp_total(int64_t c) const;
  int64_t fn_total(int64_t c) const;
  // The IoU metrics of both reference systems are computed from these counts in train/metrics.h.
};

class SoftmaxXent : public Layer {
 public:
  explicit SoftmaxXent(SoftmaxXentConfig cfg);
  const char* type() const override { return "softmax_xent"; }
  int num_inputs() const override { return 2; }
  bool input_is_index(int i) const override { return i == 1; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  MemoryNeeds memory_needs(const std::vector<Shape>& in, DType t) const override;
  bool backward_needs_input(int) const override { return true; }  // softmax recomputed from the logits
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  LayerCost backward_cost(const std::vector<Shape>& in, DType t) const override;
  const SoftmaxXentConfig& config() const { return cfg_; }
  // Loss scaling: backward multiplies the gradient by `m` (a host value, applied in double before the result is
  // rounded to the compute dtype), so the scale (2^16 by default) never has to be stored in a 16-bit dy, whose
  // largest finite fp16 value is 65504. The forward's loss and metrics are unscaled. Default 1.
  void set_grad_multiplier(double m) { grad_multiplier_ = m; }
  double grad_multiplier() const { return grad_multiplier_; }

  // Counts and loss from a forward's saved state (on either device; copies to the host and, for a device tensor,
  // synchronizes ctx's stream). Throws when forward met a label outside [0, K).
  static SoftmaxXentMetrics read_metrics(ExecContext& ctx, const Tensor& saved, const Shape& logits_shape);
  // The argmax class per pixel: a (N, H, W, 1) u8 view into the saved state (same device, no copy).
  static Tensor argmax_mask(const Tensor& saved, const Shape& logits_shape);

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  SoftmaxXentConfig cfg_;
  std::vector<double> w_;  // class weights, num_classes entries
  double grad_multiplier_ = 1.0;
  void check_saved(const Tensor& saved, const Shape& logits) const;
};

}  // namespace climseg
