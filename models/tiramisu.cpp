// The 2018 Gordon Bell Tiramisu (FC-DenseNet variant, reference-systems.md 2.2): post-activation dense layers
// (conv k x k -> growth, (norm), ReLU, dropout), strided 1x1 transitions down, transposed-convolution transitions
// up of the previous block's new maps, skips concatenated on the way up.
//
// Memory: every dense block is one zero-copy concatenation chain (concat(concat(x, b1), b2) ...: each layer writes
// its maps straight into the block buffer), the up path's concat(transition up, skip) is zero copy too, and the
// transition up reads the block's new maps as a channel view of that buffer (ChannelSlice) instead of gathering
// them (reference: tf.concat of the new maps).
#include <memory>

#include "layers/slice.h"
#include "models/builder.h"

namespace climseg::models {

namespace {

struct BlockOut {
  Net::Id all = -1;  // [input | new maps]
  int64_t new_channels = 0;
};

Net::Id dense_layer(Builder& b, const std::string& name, Net::Id x, bool dropout) {
  const ModelConfig& m = b.config();
  Net::Id y = b.conv_same(name + ".conv", x, b.ch(m.growth), m.kernel, true);
  y = b.norm(name + ".norm", y, true);
  if (dropout) y = b.dropout(name + ".drop", y, m.dropout);
  return y;
}

BlockOut dense_block(Builder& b, const std::string& name, Net::Id x, int64_t layers) {
  const bool drop = b.config().dropout > 0;
  BlockOut out;
  Net::Id cat = x;
  for (int64_t j = 0; j < layers; ++j) {
    const std::string ln = name + ".layer" + std::to_string(j + 1);
    Net::Id y = dense_layer(b, ln, cat, drop);
    out.new_channels += b.net().shape(y).c;
    cat = b.concat(ln + ".cat", {cat, y});
  }
  out.all = cat;
  return out;
}

}  // namespace

ModelGraph build_tiramisu(Builder& b, Net::Id input) {
  Net& net = b.net();
  const ModelConfig& m = b.config();
  CS_CHECK(m.blocks.size() >= 2, "tiramisu: needs at least two dense blocks (down path and bottleneck), got ",
           m.blocks.size());
  for (int64_t n : m.blocks) CS_CHECK(n > 0, "tiramisu: dense block sizes must be positive");
  CS_CHECK(m.growth > 0 && m.kernel > 0 && m.kernel % 2 == 1, "tiramisu: growth ", m.growth, " and kernel ", m.kernel,
           " must be positive, the kernel odd");
  const bool drop = m.dropout > 0;

  Net::Id x = b.conv_same("stem.conv", input, b.ch(m.stem_channels), m.kernel, true);
  x = b.relu("stem.relu", x);
  if (drop) x = b.dropout("stem.drop", x, m.dropout);

  // Down path: each block but the last is followed by a transition down; its output before the TD is a skip.
  const size_t nb = m.blocks.size();
  std::vector<Net::Id> skips;
  BlockOut blk;
  for (size_t i = 0; i < nb; ++i) {
    const std::string name = "down" + std::to_string(i + 1);
    blk = dense_block(b, name, x, m.blocks[i]);
    if (i + 1 == nb) break;  // the bottleneck: its TD is built in TF but unused (pruned)
    skips.push_back(blk.all);
    Conv2dConfig td;
    td.out_channels = net.shape(blk.all).c;
    td.stride_h = td.stride_w = 2;
    td.bias = true;
    x = b.conv(name + ".td.conv", blk.all, td);
    x = b.norm(name + ".td.norm", x, true);
    if (drop) x = b.dropout(name + ".td.drop", x, m.dropout);
  }

  // Up path over the down blocks in reverse: TU(new maps of the previous block) -> concat skip -> dense block.
  for (size_t i = 0; i + 1 < nb; ++i) {
    const size_t level = nb - 2 - i;
    const std::string name = "up" + std::to_string(i + 1);
    const Shape all = net.shape(blk.all);
    Net::Id fresh = b.add(name + ".new_maps",
                          std::make_unique<ChannelSlice>(all.c - blk.new_channels, blk.new_channels), {blk.all});
    Net::Id tu = b.deconv2x(name + ".tu", fresh, blk.new_channels, true, /*tf_same*/ true);
    Net::Id cat = b.concat(name + ".cat", {tu, skips[level]});
    blk = dense_block(b, name, cat, m.blocks[level]);
  }
  return {input, b.conv_same("head", blk.all, m.num_classes, 1, true)};
}

}  // namespace climseg::models
