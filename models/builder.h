// Internal helpers shared by the model builders: dotted node names, the width multiplier, and the norm switch
// (batch norm / "multiply by 0.5" / nothing) with its optional fused ReLU.
#pragma once

#include <memory>
#include <string>

#include "engine/net.h"
#include "layers/conv2d.h"
#include "models/model.h"

namespace climseg::models {

class Builder {
 public:
  Builder(Net& net, const ModelConfig& m) : net_(net), m_(m) {}

  Net& net() { return net_; }
  const ModelConfig& config() const { return m_; }

  // Internal channel count after the width multiplier.
  int64_t ch(int64_t c) const;

  Net::Id add(const std::string& name, std::unique_ptr<Layer> layer, std::vector<Net::Id> in);
  Net::Id conv(const std::string& name, Net::Id x, const Conv2dConfig& c);
  // k x k, stride 1, 'same' for odd k (symmetric padding dilation * (k - 1) / 2).
  Net::Id conv_same(const std::string& name, Net::Id x, int64_t out, int64_t k, bool bias, int64_t dilation = 1);
  // Depthwise k x k (groups = channels) with symmetric padding `pad`.
  Net::Id depthwise(const std::string& name, Net::Id x, int64_t k, int64_t stride, int64_t dilation, int64_t pad);
  // Transposed conv 3x3 stride 2, exactly 2x: TF 'same' (tf_same) or PyTorch's padding 1, output_padding 1.
  Net::Id deconv2x(const std::string& name, Net::Id x, int64_t out, bool bias, bool tf_same);
  // The model's norm at `name`: BatchNorm2d (fused ReLU, fused residual when given), or x0.5, or nothing; then a
  // ReLU node when relu and it could not be fused. Returns the result.
  Net::Id norm(const std::string& name, Net::Id x, bool relu, Net::Id residual = -1);
  // Batch norm regardless of the model's norm mode (DeepCAM always normalises; kept for symmetry).
  Net::Id relu(const std::string& name, Net::Id x);
  Net::Id dropout(const std::string& name, Net::Id x, double p);
  Net::Id concat(const std::string& name, std::vector<Net::Id> in);
  Net::Id sum(const std::string& name, Net::Id a, Net::Id b);

 private:
  Net& net_;
  const ModelConfig& m_;
  uint64_t dropout_count_ = 0;
};

// The builders (one per file).
ModelGraph build_deeplabv3plus(Builder& b, Net::Id input);
ModelGraph build_tiramisu(Builder& b, Net::Id input);
ModelGraph build_deepcam(Builder& b, Net::Id input);

}  // namespace climseg::models
