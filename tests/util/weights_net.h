// The small net of the weights tests (tests/unit/test_weights.cpp, tests/torch/test_torch_weights.cpp): one layer
// of each kind that has parameters or state, with the cases a layout mapping can get wrong (a grouped conv with a
// non-square kernel and no bias, a grouped transposed conv, renamed batch-norm and affine parameters).
// Its PyTorch twin is TinyNet in tests/torch/weights_check.py: change both together.
//
//   x (N,H,W,3) -> enc.conv   Conv2d 3->8, 3x3, pad 1, bias
//               -> enc.bn     BatchNorm2d with fused ReLU (gamma, beta; running_mean, running_var)
//               -> enc.dw     Conv2d 8->8, 3x1, pad (1,0), groups 4, no bias
//               -> up.deconv  ConvTranspose2d 8->6, 3x3, stride 2, pad 1, output_padding 1, groups 2, bias
//               -> up.affine  Affine (scale, shift)
//               -> head       PointwiseConv 6->head_out, bias
#pragma once

#include <memory>
#include <string>

#include "engine/net.h"
#include "engine/philox.h"
#include "layers/affine.h"
#include "layers/batchnorm.h"
#include "layers/conv2d.h"
#include "layers/pointwise_conv.h"

namespace climseg::test {

struct TinyNetOptions {
  int64_t batch = 2, height = 6, width = 5;
  std::string conv_name = "enc.conv";  // renamed to test name mismatches
  int64_t head_out = 5;                // changed to test shape mismatches
};

inline Net::Id build_tiny_net(Net& net, const TinyNetOptions& o = {}) {
  Net::Id x = net.input("x", Shape{o.batch, o.height, o.width, 3});
  Conv2dConfig conv;
  conv.out_channels = 8;
  conv.kernel_h = conv.kernel_w = 3;
  conv.pad_h = conv.pad_w = 1;
  Net::Id h = net.add(o.conv_name, std::make_unique<Conv2d>(conv), {x});
  BatchNormConfig bn;
  bn.relu = true;
  h = net.add("enc.bn", std::make_unique<BatchNorm2d>(bn), {h});
  Conv2dConfig dw;
  dw.out_channels = 8;
  dw.kernel_h = 3;
  dw.kernel_w = 1;
  dw.pad_h = 1;
  dw.pad_w = 0;
  dw.groups = 4;
  dw.bias = false;
  h = net.add("enc.dw", std::make_unique<Conv2d>(dw), {h});
  ConvTranspose2dConfig up;
  up.out_channels = 6;
  up.groups = 2;
  h = net.add("up.deconv", std::make_unique<ConvTranspose2d>(up), {h});
  h = net.add("up.affine", std::make_unique<Affine>(), {h});
  return net.add("head", std::make_unique<PointwiseConv>(o.head_out, true), {h});
}

// Every parameter U(-0.5, 0.5) and every statistic random (running_var in [0.5, 1.5]), from Philox, so no tensor
// holds its initial constant and a swapped mapping shows.
inline void randomize_weights(Net& net, uint64_t seed) {
  uint64_t stream = 0;
  for (const auto* list : {&net.params(), &net.state()})
    for (const Net::Param& p : *list) {
      const bool var = p.spec.name == "running_var";
      Tensor h = Tensor::empty(p.spec.shape, p.value.dtype(), Device::cpu);
      for (int64_t i = 0; i < h.numel(); ++i) {
        const double u = philox_uniform(seed, stream, static_cast<uint64_t>(i));
        h.set_flat(i, var ? 0.5 + u : u - 0.5);
      }
      p.value.copy_from(h);
      ++stream;
    }
}

}  // namespace climseg::test
