// The 2018 Gordon Bell DeepLabv3+ (reference-systems.md 2.1): TF-slim ResNet-50 v2 encoder at output stride 8,
// ASPP with rates 12/24/36 and the image-level branch, and the `deconv1x` decoder (or `deconv`, `bilinear`).
//
// Convolutions followed by a norm have no bias (slim's arg scope: a normalizer_fn replaces the bias, also when the
// 2018 code monkey-patches batch norm into "multiply by 0.5"); tf.layers convolutions and deconvolutions of the
// decoder have a bias and no activation. Padding: slim's conv2d_same is explicit symmetric padding (k-1)/2 * rate
// (also for strided convs), the root max pool and the decoder deconvolutions are TF 'SAME'.
#include <memory>

#include "layers/pool.h"
#include "layers/resize.h"
#include "models/builder.h"

namespace climseg::models {

namespace {

// slim resnet_v2 bottleneck (pre-activation). Returns the unit's output; *low_level receives conv1's activated
// output when asked (block1/unit_3/bottleneck_v2/conv1, the decoder's low-level feature).
Net::Id bottleneck(Builder& b, const std::string& name, Net::Id x, int64_t depth, int64_t bottleneck_depth,
                   int64_t stride, int64_t rate, Net::Id* low_level = nullptr) {
  Net& net = b.net();
  const int64_t depth_in = net.shape(x).c;
  const Net::Id preact = b.norm(name + ".preact", x, /*relu*/ true);
  Net::Id shortcut = x;
  if (depth == depth_in) {
    if (stride > 1)  // slim's subsample: max pool 1x1 / stride
      shortcut = b.add(name + ".shortcut", std::make_unique<MaxPool2d>(PoolConfig::tf_same(1, stride)), {x});
  } else {
    Conv2dConfig c;
    c.out_channels = depth;
    c.stride_h = c.stride_w = stride;
    c.bias = true;
    shortcut = b.conv(name + ".shortcut", preact, c);
  }
  Net::Id r = b.conv_same(name + ".conv1", preact, bottleneck_depth, 1, /*bias*/ false);
  r = b.norm(name + ".bn1", r, true);
  if (low_level) *low_level = r;
  Conv2dConfig c2;
  c2.out_channels = bottleneck_depth;
  c2.kernel_h = c2.kernel_w = 3;
  c2.stride_h = c2.stride_w = stride;
  c2.dilation_h = c2.dilation_w = rate;
  c2.pad_h = c2.pad_w = rate;  // conv2d_same: (kernel_effective - 1) / 2, symmetric for k = 3
  c2.bias = false;
  r = b.conv(name + ".conv2", r, c2);
  r = b.norm(name + ".bn2", r, true);
  r = b.conv_same(name + ".conv3", r, depth, 1, /*bias*/ true);
  return b.sum(name + ".add", shortcut, r);
}

}  // namespace

ModelGraph build_deeplabv3plus(Builder& b, Net::Id input) {
  Net& net = b.net();
  const ModelConfig& m = b.config();
  const Shape in = net.shape(input);

  // ---- encoder: ResNet-50 v2, output stride 8 -------------------------------------------------------------------
  Conv2dConfig root;
  root.out_channels = b.ch(64);
  root.kernel_h = root.kernel_w = 7;
  root.stride_h = root.stride_w = 2;
  root.pad_h = root.pad_w = 3;
  root.bias = true;  // no normalizer on the root conv
  Net::Id x = b.conv("backbone.conv1", input, root);
  x = b.add("backbone.pool1", std::make_unique<MaxPool2d>(PoolConfig::tf_same(3, 2)), {x});

  // slim stack_blocks_dense at output stride 8 (relative stride 2 after the root): block1's last unit strides;
  // afterwards strides become 1 and the rate grows by the stride it replaced (block3 rate 2, block4 rate 4).
  struct BlockDef {
    int64_t base, units, stride;
  };
  const BlockDef blocks[] = {{64, 3, 2}, {128, 4, 2}, {256, 6, 2}, {512, 3, 1}};
  int64_t current_stride = 1, rate = 1;
  const int64_t target_stride = 2;
  Net::Id low_level = -1;
  for (int bi = 0; bi < 4; ++bi) {
    const int64_t bd = b.ch(blocks[bi].base), depth = 4 * bd;
    for (int64_t u = 0; u < blocks[bi].units; ++u) {
      const int64_t unit_stride = u == blocks[bi].units - 1 ? blocks[bi].stride : 1;
      const std::string name = "backbone.block" + std::to_string(bi + 1) + ".unit" + std::to_string(u + 1);
      Net::Id* ll = (bi == 0 && u == 2) ? &low_level : nullptr;
      if (current_stride == target_stride) {
        x = bottleneck(b, name, x, depth, bd, 1, rate, ll);
        rate *= unit_stride;
      } else {
        x = bottleneck(b, name, x, depth, bd, unit_stride, 1, ll);
        current_stride *= unit_stride;
      }
    }
  }
  // ASPP reads end_points['block4'], before resnet_v2's final post-norm (which is therefore not built).

  // ---- ASPP ------------------------------------------------------------------------------------------------------
  const int64_t depth = b.ch(256);
  const Shape enc = net.shape(x);
  std::vector<Net::Id> branches;
  {
    Net::Id y = b.conv_same("aspp.conv1x1", x, depth, 1, false);
    branches.push_back(b.norm("aspp.bn1x1", y, true));
  }
  const int64_t rates[] = {12, 24, 36};
  for (int i = 0; i < 3; ++i) {
    const std::string n = "aspp.conv3x3_" + std::to_string(i + 1);
    Net::Id y = b.conv_same(n, x, depth, 3, false, rates[i]);
    branches.push_back(b.norm("aspp.bn3x3_" + std::to_string(i + 1), y, true));
  }
  {
    Net::Id y = b.add("aspp.image_pool", std::make_unique<GlobalAvgPool>(), {x});
    y = b.conv_same("aspp.image_conv", y, depth, 1, false);
    y = b.norm("aspp.image_bn", y, true);  // batch of 1: variance 0, output beta (TF's behaviour)
    y = b.add("aspp.image_resize",
              std::make_unique<BilinearResize>(ResizeConfig::to_size(enc.h, enc.w, ResizeMode::tf_legacy)), {y});
    branches.push_back(y);
  }
  Net::Id a = b.concat("aspp.concat", branches);
  a = b.conv_same("aspp.project", a, depth, 1, false);
  a = b.norm("aspp.project_bn", a, true);

  // ---- decoder ---------------------------------------------------------------------------------------------------
  Net::Id low = b.conv_same("decoder.low_conv", low_level, b.ch(48), 1, false);
  low = b.norm("decoder.low_bn", low, true);
  const Shape ls = net.shape(low);
  Net::Id y;
  if (m.decoder == DecoderMode::bilinear) {
    y = b.add("decoder.up1", std::make_unique<BilinearResize>(ResizeConfig::to_size(ls.h, ls.w, ResizeMode::tf_legacy)),
              {a});
  } else {
    y = b.deconv2x("decoder.up1", a, depth, true, /*tf_same*/ true);
  }
  y = b.concat("decoder.concat1", {y, low});
  y = b.conv_same("decoder.conv1", y, depth, 3, false);
  y = b.norm("decoder.bn1", y, true);
  y = b.conv_same("decoder.conv2", y, depth, 3, false);
  y = b.norm("decoder.bn2", y, true);
  if (m.decoder == DecoderMode::bilinear) {
    y = b.conv_same("decoder.logits", y, m.num_classes, 1, true);
    return {input,
            b.add("decoder.up_out",
                  std::make_unique<BilinearResize>(ResizeConfig::to_size(in.h, in.w, ResizeMode::tf_legacy)), {y})};
  }
  y = b.deconv2x("decoder.up2", y, depth, true, true);
  y = b.deconv2x("decoder.up3", y, depth, true, true);
  if (m.decoder == DecoderMode::deconv1x) {
    // Full-resolution skip from the normalised input: two linear 3x3 convolutions.
    Net::Id s = b.conv_same("decoder.skip_conv1", input, b.ch(64), 3, true);
    s = b.conv_same("decoder.skip_conv2", s, b.ch(128), 3, true);
    y = b.concat("decoder.concat2", {y, s});
  }
  y = b.conv_same("decoder.conv3", y, depth, 3, true);
  y = b.conv_same("decoder.conv4", y, depth, 3, true);
  return {input, b.conv_same("decoder.logits", y, m.num_classes, 1, true)};
}

}  // namespace climseg::models
