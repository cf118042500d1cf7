// Pooling layers: MaxPool2d, AvgPool2d (kernel, stride, explicit or TF 'SAME' padding) and GlobalAvgPool.
//
// Padding (PoolConfig):
// - explicit (PyTorch nn.MaxPool2d / nn.AvgPool2d, ceil_mode=False): out = floor((in + 2p - k) / s) + 1, padding
//   p on both sides, p <= k / 2 (PyTorch's rule, so every window holds an image element).
// - TF 'SAME': out = ceil(in / s), pad_total = max((out - 1) * s + k - in, 0), top/left = total / 2, the rest at the
//   bottom/right. E.g. the ResNet root max pool 3x3/2 'SAME', and the ResNet v2 shortcut "max pool 1x1 / stride s"
//   (pure subsampling).
// Padded positions never win a max and never add to a sum. The average divisor is k_h * k_w when
// count_include_pad (PyTorch's default) or the number of image elements in the window otherwise (TF 'SAME'
// semantics; PoolConfig::same() sets count_include_pad = false).
//
// MaxPool2d saves the window-local index of each output's winner (u8: k_h * k_w <= 256; memory_needs().saved_bytes
// = one byte per output element) and routes the gradient to it in backward; ties go to the FIRST maximum in
// row-major window order on both devices. Backward passes are gather-form and deterministic (kernels/cpu/pool.h).
#pragma once

#include "engine/layer.h"
#include "kernels/cpu/pool.h"

namespace climseg {

struct PoolConfig {
  int64_t kh = 1, kw = 1;
  int64_t sh = 1, sw = 1;
  int64_t ph = 0, pw = 0;        // explicit padding (ignored when same)
  bool same = false;             // TF 'SAME' padding
  bool count_include_pad = true;  // average pool only

  // k x k window, stride s, explicit padding p (PyTorch).
  static PoolConfig explicit_pad(int64_t k, int64_t s, int64_t p = 0) {
    PoolConfig c;
    c.kh = c.kw = k;
    c.sh = c.sw = s;
    c.ph = c.pw = p;
    return c;
  }
  // k x k window, stride s, TF 'SAME' padding; average over the image elements only (TF).
  static PoolConfig tf_same(int64_t k, int64_t s) {
    PoolConfig c;
    c.kh = c.kw = k;
    c.sh = c.sw = s;
    c.same = true;
    c.count_include_pad = false;
    return c;
  }
  // The kernel geometry for an input shape; throws (naming `who`) for configurations the layer cannot take.
  cpu::Pool2dGeom geom(const Shape& in, const std::string& who) const;
};

class MaxPool2d : public Layer {
 public:
  explicit MaxPool2d(PoolConfig cfg) : cfg_(cfg) {}
  const char* type() const override { return "maxpool2d"; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  MemoryNeeds memory_needs(const std::vector<Shape>& in, DType t) const override;
  bool backward_needs_input(int) const override { return false; }  // the saved argmax is enough
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  const PoolConfig& config() const { return cfg_; }

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  PoolConfig cfg_;
};

class AvgPool2d : public Layer {
 public:
  explicit AvgPool2d(PoolConfig cfg) : cfg_(cfg) {}
  const char* type() const override { return "avgpool2d"; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  bool backward_needs_input(int) const override { return false; }
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  const PoolConfig& config() const { return cfg_; }

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  PoolConfig cfg_;
};

// (N, H, W, C) -> (N, 1, 1, C): the mean over each image's pixels (PyTorch adaptive_avg_pool2d(x, 1); the
// DeepLabv3+ ASPP image-level branch).
class GlobalAvgPool : public Layer {
 public:
  const char* type() const override { return "global_avgpool"; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  // fwd_workspace: the CUDA path's per-chunk partial sums (kernels/cuda/pool.h); the CPU path needs none.
  MemoryNeeds memory_needs(const std::vector<Shape>& in, DType t) const override;
  bool backward_needs_input(int) const override { return false; }
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;
};

}  // namespace climseg
