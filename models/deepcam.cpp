// DeepCAM's DeepLabv3+ with the Xception backbone at output stride 16 (reference-systems.md 2.3; MLPerf HPC
// reference `architecture/deeplab_xception.py`): depthwise separable convolutions, ASPP 6/12/18 with the pooled
// branch normalised by a plain affine, and the deconvolution decoder (ConvTranspose2d k3 s2 p1 output_padding 1).
//
// Node names are the reference's module paths (DeepLabv3_plus: xception_features, bottleneck, conv2/bn2, upsample;
// its batch norms sit in a GBN wrapper, hence `.bn.bn`), so export_pytorch writes a state_dict that the MLPerf
// reference model loads with load_state_dict(strict=True), and its checkpoints import.
//
// Batch norm is fused where the reference's order allows: a BN followed by ReLU is one layer, and a block's final
// BN (the skip's, or the last BN of the residual path when the skip is the identity) absorbs the residual add
// and, with end_relu, the ReLU.
#include <memory>

#include "layers/affine.h"
#include "layers/pool.h"
#include "layers/resize.h"
#include "models/builder.h"

namespace climseg::models {

namespace {

// SeparableConv2d_same: depthwise 3x3 (padding = dilation) then pointwise 1x1, neither with bias; the reference's
// submodules are `conv1` and `pointwise`.
Net::Id sep_conv(Builder& b, const std::string& name, Net::Id x, int64_t out, int64_t dilation, int64_t stride) {
  Net::Id y = b.depthwise(name + ".conv1", x, 3, stride, dilation, dilation);
  return b.conv_same(name + ".pointwise", y, out, 1, false);
}

struct XBlock {
  int64_t cin, cout, reps, stride, dilation;
  bool end_relu, grow_first, is_last;
};

Net::Id xception_block(Builder& b, const std::string& name, Net::Id x, const XBlock& d) {
  // Residual path: reps x [SepConv, BN, ReLU] with the last ReLU dropped, then the appended SepConv without BN
  // for a strided or last block.
  const bool has_skip = d.cout != d.cin || d.stride != 1;
  const bool appended = d.stride != 1 || d.is_last;
  Net::Id r = x;
  for (int64_t i = 0; i < d.reps; ++i) {
    // grow_first: cin -> cout, then cout -> cout; otherwise cin -> cin, and the last one cin -> cout.
    const int64_t cout = d.grow_first || i == d.reps - 1 ? d.cout : d.cin;
    // Indices in the reference's nn.Sequential `rep`: [sep, bn, relu] per repetition, the last relu dropped.
    const std::string sep = name + ".rep." + std::to_string(3 * i),
                      bn = name + ".rep." + std::to_string(3 * i + 1) + ".bn";
    r = sep_conv(b, sep, r, cout, d.dilation, 1);
    const bool last = i == d.reps - 1;
    if (last && !appended && !has_skip) {
      // Identity skip and no appended conv: the last BN takes the residual add (and the end ReLU).
      return b.norm(bn, r, d.end_relu, x);
    }
    r = b.norm(bn, r, !last);
  }
  if (appended) r = sep_conv(b, name + ".rep." + std::to_string(3 * d.reps - 1), r, d.cout, 1, d.stride);
  if (has_skip) {
    Conv2dConfig c;
    c.out_channels = d.cout;
    c.stride_h = c.stride_w = d.stride;
    c.bias = false;
    Net::Id s = b.conv(name + ".skip", x, c);
    return b.norm(name + ".skipbn.bn", s, d.end_relu, r);  // BN(skip) + residual, then the end ReLU
  }
  Net::Id y = b.sum(name + ".add", r, x);
  return d.end_relu ? b.relu(name + ".relu", y) : y;
}

}  // namespace

ModelGraph build_deepcam(Builder& b, Net::Id input) {
  Net& net = b.net();
  const ModelConfig& m = b.config();
  const Shape in = net.shape(input);

  // ---- Xception entry flow ----------------------------------------------------------------------------------------
  Conv2dConfig c1;
  c1.out_channels = b.ch(32);
  c1.kernel_h = c1.kernel_w = 3;
  c1.stride_h = c1.stride_w = 2;
  c1.pad_h = c1.pad_w = 1;
  c1.bias = false;
  Net::Id x = b.conv("xception_features.conv1", input, c1);
  x = b.norm("xception_features.bn1.bn", x, true);
  x = b.conv_same("xception_features.conv2", x, b.ch(64), 3, false);
  x = b.norm("xception_features.bn2.bn", x, true);

  const int64_t c64 = b.ch(64), c128 = b.ch(128), c256 = b.ch(256), c728 = b.ch(728), c1024 = b.ch(1024);
  x = xception_block(b, "xception_features.block1", x, {c64, c128, 2, 2, 1, /*end_relu*/ false, true, false});
  // low_level = block1's output after ReLU; the reference's in-place ReLU also feeds block2 the activated tensor.
  x = b.relu("xception_features.relu_block1", x);
  const Net::Id low_level = x;
  x = xception_block(b, "xception_features.block2", x, {c128, c256, 2, 2, 1, true, true, false});
  x = xception_block(b, "xception_features.block3", x, {c256, c728, 2, 2, 1, true, true, /*is_last*/ true});
  // Middle flow: 16 blocks (728 -> 728, reps 3).
  for (int i = 4; i <= 19; ++i)
    x = xception_block(b, "xception_features.block" + std::to_string(i), x, {c728, c728, 3, 1, 1, true, true, false});
  // Exit flow.
  x = xception_block(b, "xception_features.block20", x,
                     {c728, c1024, 2, 1, 1, /*end_relu*/ false, /*grow_first*/ false,
                      /*is_last*/ true});
  x = sep_conv(b, "xception_features.conv3", x, b.ch(1536), 2, 1);
  x = b.norm("xception_features.bn3.bn", x, true);
  x = sep_conv(b, "xception_features.conv4", x, b.ch(1536), 2, 1);
  x = b.norm("xception_features.bn4.bn", x, true);
  x = sep_conv(b, "xception_features.conv5", x, b.ch(2048), 2, 1);
  x = b.norm("xception_features.bn5.bn", x, true);

  // ---- ASPP ---------------------------------------------------------------------------------------------------------
  const int64_t depth = c256;
  const Shape enc = net.shape(x);
  std::vector<Net::Id> branches;
  const int64_t rates[] = {1, 6, 12, 18};
  for (int i = 0; i < 4; ++i) {
    const std::string n = "bottleneck.aspp" + std::to_string(i + 1);
    Net::Id y = i == 0 ? b.conv_same(n + ".atrous_convolution", x, depth, 1, false)
                       : b.conv_same(n + ".atrous_convolution", x, depth, 3, false, rates[i]);
    branches.push_back(b.norm(n + ".bn.bn", y, true));
  }
  {
    // The reference's nn.Sequential: 0 pool, 1 conv, 2 TrainableAffine (weights, bias as (C,1,1)), 3 ReLU.
    const std::string gp = "bottleneck.global_avg_pool.global_average_pool.";
    Net::Id y = b.add(gp + "0", std::make_unique<GlobalAvgPool>(), {x});
    y = b.conv_same(gp + "1", y, depth, 1, false);
    y = b.add(gp + "2", std::make_unique<Affine>("weights", "bias", ParamLayout::vector_c11), {y});
    y = b.relu(gp + "3", y);
    y = b.add("bottleneck.tile",
              std::make_unique<BilinearResize>(ResizeConfig::to_size(enc.h, enc.w, ResizeMode::align_corners)), {y});
    branches.push_back(y);
  }
  Net::Id a = b.concat("bottleneck.concat", branches);
  a = b.conv_same("bottleneck.conv", a, depth, 1, false);
  a = b.norm("bottleneck.bn.bn", a, true);

  // ---- low-level features and decoder
  // --------------------------------------------------------------------------------
  Net::Id low = b.conv_same("conv2", low_level, b.ch(48), 1, false);
  low = b.norm("bn2.bn", low, true);

  Net::Id y = b.deconv2x("upsample.deconv1.0", a, depth, false, /*tf_same*/ false);
  y = b.norm("upsample.deconv1.1.bn", y, true);
  y = b.deconv2x("upsample.deconv1.3", y, depth, false, false);
  y = b.norm("upsample.deconv1.4.bn", y, true);
  y = b.concat("upsample.concat", {y, low});
  y = b.conv_same("upsample.conv1.0", y, depth, 3, false);
  y = b.norm("upsample.conv1.1.bn", y, true);
  y = b.conv_same("upsample.conv1.3", y, depth, 3, false);
  y = b.norm("upsample.conv1.4.bn", y, true);
  y = b.conv_same("upsample.conv1.6", y, depth, 1, true);
  y = b.deconv2x("upsample.deconv2.0", y, depth, false, false);
  y = b.norm("upsample.deconv2.1.bn", y, true);
  y = b.deconv2x("upsample.last_deconv.0", y, m.num_classes, false, false);
  (void)in;
  return {input, y};
}

}  // namespace climseg::models
