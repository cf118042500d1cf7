// BilinearResize: (N, H, W, C) -> (N, OH, OW, C) by bilinear interpolation, to a fixed output size or by a scale
// factor (OH = floor(H * scale_h); the coordinates then use H / OH, as PyTorch's recompute_scale_factor=True).
//
// Coordinate modes (kernels/cpu/resize.h has the exact formulas):
//   ResizeMode::align_corners  PyTorch F.interpolate(mode='bilinear', align_corners=True)
//   ResizeMode::half_pixel     PyTorch F.interpolate(mode='bilinear', align_corners=False) (and TF2 resize)
//   ResizeMode::tf_legacy      TF1 tf.image.resize_bilinear(align_corners=False) without half-pixel centres: the
//                              2018 DeepLabv3+ code's ASPP image-level branch and 'bilinear' decoder
// Backward is the deterministic gather form (no atomics) on both devices.
#pragma once

#include "engine/layer.h"
#include "kernels/cpu/resize.h"

namespace climseg {

using cpu::ResizeMode;

struct ResizeConfig {
  int64_t out_h = 0, out_w = 0;        // output size, or
  double scale_h = 0.0, scale_w = 0.0;  // scale factors (used when out_h/out_w are 0)
  ResizeMode mode = ResizeMode::half_pixel;

  static ResizeConfig to_size(int64_t h, int64_t w, ResizeMode m) {
    ResizeConfig c;
    c.out_h = h;
    c.out_w = w;
    c.mode = m;
    return c;
  }
  static ResizeConfig by_scale(double s, ResizeMode m) {
    ResizeConfig c;
    c.scale_h = c.scale_w = s;
    c.mode = m;
    return c;
  }
};

class BilinearResize : public Layer {
 public:
  explicit BilinearResize(ResizeConfig cfg) : cfg_(cfg) {}
  const char* type() const override { return "bilinear_resize"; }
  Shape output_shape(const std::vector<Shape>& in) const override;
  // bwd_workspace: the CUDA path's coordinate tables (kernels/cuda/resize.h); the CPU path needs none.
  MemoryNeeds memory_needs(const std::vector<Shape>& in, DType t) const override;
  bool backward_needs_input(int) const override { return false; }
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  LayerCost backward_cost(const std::vector<Shape>& in, DType t) const override;
  const ResizeConfig& config() const { return cfg_; }
  cpu::ResizeGeom geom(const Shape& in) const;

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  ResizeConfig cfg_;
};

}  // namespace climseg
