// The op registry of `climseg-bench op`: descriptor -> layer instance and input shapes.
#include <memory>

#include "bench/op.h"
#include "layers/add.h"
#include "layers/concat.h"
#include "layers/conv2d.h"
#include "layers/pointwise_conv.h"
#include "layers/relu.h"
#include "layers/affine.h"
#include "layers/batchnorm.h"
#include "layers/dropout.h"
#include "layers/pool.h"
#include "layers/resize.h"
#include "layers/softmax_xent.h"

namespace climseg::bench {

OpInstance make_op(const OpDesc& d) {
  OpInstance op;
  const Shape in{d.n, d.h, d.w, d.c};
  auto values = [&](std::vector<Shape> shapes) {
    op.inputs = std::move(shapes);
    op.index_input.assign(op.inputs.size(), false);
  };
  if (d.op == "relu") {
    op.layer = std::make_unique<Relu>();
    values({in});
  } else if (d.op == "add") {
    op.layer = std::make_unique<Add>();
    values({in, in});
  } else if (d.op == "concat") {
    // extra = number of inputs; c is split evenly, the remainder going to the first input.
    int64_t parts = d.extra.empty() ? 2 : std::stoll(d.extra);
    CS_CHECK(parts >= 1 && parts <= d.c, "concat: extra=", d.extra, " inputs for ", d.c, " channels");
    std::vector<Shape> shapes(static_cast<size_t>(parts), Shape{d.n, d.h, d.w, d.c / parts});
    shapes[0].c += d.c % parts;
    op.layer = std::make_unique<Concat>();
    values(shapes);
  } else if (d.op == "conv1x1") {  // the GEMM-only PointwiseConv of the engine foundation
    op.layer = std::make_unique<PointwiseConv>(d.k, true);
    values({in});
  } else if (d.op == "conv2d") {
    Conv2dConfig c;
    c.out_channels = d.k;
    c.kernel_h = d.r, c.kernel_w = d.s;
    c.stride_h = c.stride_w = d.stride;
    c.dilation_h = c.dilation_w = d.dil;
    c.groups = d.groups;
    c.padding = d.pad == "same" ? PaddingMode::tf_same : PaddingMode::explicit_symmetric;
    if (d.pad != "same") c.pad_h = c.pad_w = std::stoll(d.pad);
    op.layer = std::make_unique<Conv2d>(c);
    values({in});
  } else if (d.op == "deconv2d") {
    // extra = output_padding (explicit padding only).
    ConvTranspose2dConfig c;
    c.out_channels = d.k;
    c.kernel_h = d.r, c.kernel_w = d.s;
    c.stride_h = c.stride_w = d.stride;
    c.dilation_h = c.dilation_w = d.dil;
    c.groups = d.groups;
    c.padding = d.pad == "same" ? PaddingMode::tf_same : PaddingMode::explicit_symmetric;
    if (d.pad != "same") c.pad_h = c.pad_w = std::stoll(d.pad);
    c.output_padding_h = c.output_padding_w = d.extra.empty() ? 0 : std::stoll(d.extra);
    op.layer = std::make_unique<ConvTranspose2d>(c);
    values({in});
  } else if (d.op == "maxpool" || d.op == "avgpool") {
    PoolConfig c = d.pad == "same" ? PoolConfig::tf_same(d.r, d.stride) : PoolConfig::explicit_pad(d.r, d.stride, std::stoll(d.pad));
    c.kw = d.s;
    if (d.op == "maxpool")
      op.layer = std::make_unique<MaxPool2d>(c);
    else
      op.layer = std::make_unique<AvgPool2d>(c);
    values({in});
  } else if (d.op == "globalavgpool") {
    op.layer = std::make_unique<GlobalAvgPool>();
    values({in});
  } else if (d.op == "resize") {
    // extra = output "HxW" (mode half_pixel, PyTorch's align_corners=False).
    size_t x = d.extra.find('x');
    CS_CHECK(x != std::string::npos, "resize: extra must be the output size HxW, got '", d.extra, "'");
    op.layer = std::make_unique<BilinearResize>(ResizeConfig::to_size(std::stoll(d.extra.substr(0, x)),
                                                                      std::stoll(d.extra.substr(x + 1)),
                                                                      ResizeMode::half_pixel));
    values({in});
  } else if (d.op == "batchnorm") {
    // extra = "relu" for the fused ReLU.
    BatchNormConfig c;
    c.relu = d.extra == "relu";
    op.layer = std::make_unique<BatchNorm2d>(c);
    values({in});
  } else if (d.op == "affine") {
    op.layer = std::make_unique<Affine>();
    values({in});
  } else if (d.op == "dropout") {
    op.layer = std::make_unique<Dropout>(d.extra.empty() ? 0.5 : std::stod(d.extra), 1);
    values({in});
  } else if (d.op == "softmax_xent") {
    // c = number of classes (logits channels); labels are the second, class-index input.
    SoftmaxXentConfig c = SoftmaxXentConfig::deepcam();
    c.num_classes = d.c;
    if (static_cast<int64_t>(c.class_weights.size()) != d.c) c.class_weights.clear();
    op.layer = std::make_unique<SoftmaxXent>(c);
    op.inputs = {in, Shape{d.n, d.h, d.w, 1}};
    op.index_input = {false, true};
    op.classes = d.c;
  } else {
    CS_THROW("climseg-bench op: no layer for '", d.str(), "' in this build");
  }
  return op;
}

}  // namespace climseg::bench
