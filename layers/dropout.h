// Dropout: inverted dropout with drop probability p in training (kept elements scaled by 1 / (1 - p)), the
// identity in inference.
//
// Randomness: element i (its NHWC logical index, so slices and devices agree) is kept when
// philox_uniform(seed, step, i) >= p (engine/philox.h): `seed` is the layer's (the graph builder gives every dropout
// layer its own), `step` is ForwardArgs::step, which the caller advances for each forward pass that needs a fresh
// mask. CPU and CUDA masks are identical bit for bit.
// Backward regenerates the mask from (seed, step) instead of storing it: the saved state is a 32-byte key
// (u64 seed, u64 step, u64 training flag, written by forward; on CUDA by the kernel, so backward reads it on the
// device without a host sync) instead of P*C mask bytes, and regeneration costs ALU work (one Philox call per 4
// elements) in a kernel that is memory-bound anyway. Backward needs neither x nor y, so the layer runs in place.
#pragma once

#include "engine/layer.h"

namespace climseg {

class Dropout : public Layer {
 public:
  explicit Dropout(double p, uint64_t seed = 0);
  const char* type() const override { return "dropout"; }
  Shape output_shape(const std::vector<Shape>& in) const override { return in.at(0); }
  MemoryNeeds memory_needs(const std::vector<Shape>& in, DType t) const override;
  bool backward_needs_input(int) const override { return false; }
  bool in_place_ok() const override { return true; }
  LayerCost forward_cost(const std::vector<Shape>& in, DType t) const override;
  double p() const { return p_; }
  uint64_t seed() const { return seed_; }
  static constexpr size_t kKeyBytes = 32;

 protected:
  void forward_cpu(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cpu(ExecContext& ctx, const BackwardArgs& a) override;
  void forward_cuda(ExecContext& ctx, const ForwardArgs& a) override;
  void backward_cuda(ExecContext& ctx, const BackwardArgs& a) override;

 private:
  double p_;
  uint64_t seed_;
};

}  // namespace climseg
