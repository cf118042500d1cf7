// The index mapping of the cuDNN convolution paths, checked on the CPU (no GPU needed): kernels/cudnn/conv.h runs
// every Conv2d / ConvTranspose2d pass as a cuDNN call on a geometry with symmetric padding, with the conv's X
// zero-extended by extra_rows/extra_cols (TF 'SAME' with an odd total) and gradients with respect to X cropped
// back. This test emulates exactly those cuDNN calls in double (forward, backward-data into the extended buffer
// then crop, backward-filter on the extended X) from the layers' ConvGeometry (kernels/conv_geometry.h), and
// compares them with
// the layers' CPU paths on the networks' corner cases: stride 2 'SAME' on odd and even sizes, even kernels,
// dilation, groups, 1x1 inputs, PyTorch's output_padding. What it cannot check is cuDNN itself
// (tests/cuda/test_cuda_conv.cpp does, on a GPU).
#include <catch2/catch.hpp>


#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/layer.h"
#include "engine/philox.h"
#include "kernels/cudnn/conv.h"
#include "layers/conv2d.h"
#include "tests/util/compare.h"
#include "tests/util/tolerances.h"

using namespace climseg;
namespace tol = climseg::test::tol;

namespace {

Tensor random_f64(Shape s, uint64_t seed) {
  Tensor t = Tensor::empty(s, DType::f64, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set_flat(i, 2.0 * philox_uniform(seed, 0, static_cast<uint64_t>(i)) - 1.0);
  return t;
}

Tensor workspace(size_t bytes) {
  return bytes ? Tensor::empty(Shape{1, 1, 1, static_cast<int64_t>(bytes)}, DType::u8, Device::cpu) : Tensor();
}

// The conv's X zero-extended to (h + eh, w + ew): what cuDNN reads.
struct Extended {
  const ConvGeometry& g;
  int64_t H, W;
  double at(const Tensor& x, int64_t b, int64_t y, int64_t xx, int64_t c) const {
    return (y < x.shape().h && xx < x.shape().w) ? x.get(b, y, xx, c) : 0.0;
  }
};

// Calls f(b, i, j, o, y, x, r, s, ci_global, ci_local) for every tap of cuDNN's symmetric-pad conv on the extended X
// that lands inside it.
template <class F>
void for_each_tap(const ConvGeometry& g, int64_t H, int64_t W, F&& f) {
  const int64_t cg = g.in_c / g.groups, kg = g.out_c / g.groups;
  for (int64_t b = 0; b < g.n; ++b)
    for (int64_t i = 0; i < g.out_h; ++i)
      for (int64_t j = 0; j < g.out_w; ++j)
        for (int64_t o = 0; o < g.out_c; ++o)
          for (int64_t r = 0; r < g.kernel_h; ++r)
            for (int64_t s = 0; s < g.kernel_w; ++s) {
              const int64_t y = i * g.stride_h - g.pad_top + r * g.dilation_h;
              const int64_t x = j * g.stride_w - g.pad_left + s * g.dilation_w;
              if (y < 0 || y >= H || x < 0 || x >= W) continue;
              for (int64_t ci = 0; ci < cg; ++ci) f(b, i, j, o, y, x, r, s, (o / kg) * cg + ci, ci);
            }
}

// cuDNN forward: Y = conv(X extended).
Tensor emu_forward(const ConvGeometry& g, const Tensor& X, const Tensor& F) {
  const int64_t H = g.in_h + cudnn::extra_rows(g), W = g.in_w + cudnn::extra_cols(g);
  Tensor Y = Tensor::zeros(Shape{g.n, g.out_h, g.out_w, g.out_c}, DType::f64, Device::cpu);
  Extended e{g, H, W};
  for_each_tap(g, H, W, [&](int64_t b, int64_t i, int64_t j, int64_t o, int64_t y, int64_t x, int64_t r, int64_t s,
                            int64_t c, int64_t ci) {
    Y.set(b, i, j, o, Y.get(b, i, j, o) + e.at(X, b, y, x, c) * F.get(o, r, s, ci));
  });
  return Y;
}

// cuDNN backward-data into the extended buffer, then the crop to (h, w).
Tensor emu_backward_data(const ConvGeometry& g, const Tensor& dY, const Tensor& F) {
  const int64_t H = g.in_h + cudnn::extra_rows(g), W = g.in_w + cudnn::extra_cols(g);
  std::vector<double> full(static_cast<size_t>(g.n * H * W * g.in_c), 0.0);
  for_each_tap(g, H, W, [&](int64_t b, int64_t i, int64_t j, int64_t o, int64_t y, int64_t x, int64_t r, int64_t s,
                            int64_t c, int64_t ci) {
    full[static_cast<size_t>(((b * H + y) * W + x) * g.in_c + c)] += dY.get(b, i, j, o) * F.get(o, r, s, ci);
  });
  Tensor dX = Tensor::empty(Shape{g.n, g.in_h, g.in_w, g.in_c}, DType::f64, Device::cpu);
  for (int64_t b = 0; b < g.n; ++b)
    for (int64_t y = 0; y < g.in_h; ++y)
      for (int64_t x = 0; x < g.in_w; ++x)
        for (int64_t c = 0; c < g.in_c; ++c) dX.set(b, y, x, c, full[static_cast<size_t>(((b * H + y) * W + x) * g.in_c + c)]);
  return dX;
}

// cuDNN backward-filter on the extended X.
Tensor emu_backward_filter(const ConvGeometry& g, const Tensor& X, const Tensor& dY) {
  const int64_t H = g.in_h + cudnn::extra_rows(g), W = g.in_w + cudnn::extra_cols(g);
  Tensor dF = Tensor::zeros(Shape{g.out_c, g.kernel_h, g.kernel_w, g.in_c / g.groups}, DType::f64, Device::cpu);
  Extended e{g, H, W};
  for_each_tap(g, H, W, [&](int64_t b, int64_t i, int64_t j, int64_t o, int64_t y, int64_t x, int64_t r, int64_t s,
                            int64_t c, int64_t ci) {
    dF.set(o, r, s, ci, dF.get(o, r, s, ci) + e.at(X, b, y, x, c) * dY.get(b, i, j, o));
  });
  return dF;
}

// The output size cuDNN computes for its descriptors (cudnnGetConvolution2dForwardOutputDim, checked by
// kernels/cudnn/conv.cpp at run time) on the extended X: it must be the layer's.
void require_cudnn_sizes(const ConvGeometry& g) {
  auto out = [](int64_t in, int64_t pad, int64_t k, int64_t dil, int64_t stride) {
    return (in + 2 * pad - (dil * (k - 1) + 1)) / stride + 1;
  };
  REQUIRE(out(g.in_h + cudnn::extra_rows(g), g.pad_top, g.kernel_h, g.dilation_h, g.stride_h) == g.out_h);
  REQUIRE(out(g.in_w + cudnn::extra_cols(g), g.pad_left, g.kernel_w, g.dilation_w, g.stride_w) == g.out_w);
}

struct Run {
  Tensor x, w, y, dy, dx, dw;
};

Run run_cpu(Layer& layer, const Shape& in) {
  ExecContext cpu;
  Run r;
  const MemoryNeeds mn = layer.memory_needs({in}, DType::f64);
  r.x = random_f64(in, 1);
  r.w = random_f64(layer.param_specs({in}).at(0).shape, 2);
  ForwardArgs f;
  f.x = {r.x};
  f.y = Tensor::empty(layer.output_shape({in}), DType::f64, Device::cpu);
  f.params = {r.w};
  f.workspace = workspace(mn.fwd_workspace);
  layer.forward(cpu, f);
  r.y = f.y;
  r.dy = random_f64(r.y.shape(), 3);
  BackwardArgs b;
  b.x = {r.x};
  b.y = r.y;
  b.dy = r.dy;
  b.dx = {Tensor::empty(in, DType::f64, Device::cpu)};
  b.dx_mode = {GradMode::overwrite};
  b.params = {r.w};
  b.grads = {Tensor::empty(r.w.shape(), DType::f64, Device::cpu)};
  b.workspace = workspace(mn.bwd_workspace);
  layer.backward(cpu, b);
  r.dx = b.dx[0];
  r.dw = b.grads[0];
  return r;
}

void require_same(const Tensor& got, const Tensor& ref, const char* what) {
  INFO(what);
  CS_REQUIRE_CLOSE(got, ref, tol::cpu_same_ops_f64.atol, tol::cpu_same_ops_f64.rtol);
}

Conv2dConfig conv(int64_t k, int64_t kernel, int64_t stride, int64_t dilation, int64_t pad, int64_t groups,
                  bool same) {
  Conv2dConfig c;
  c.out_channels = k;
  c.kernel_h = c.kernel_w = kernel;
  c.stride_h = c.stride_w = stride;
  c.dilation_h = c.dilation_w = dilation;
  c.pad_h = c.pad_w = pad;
  c.groups = groups;
  c.padding = same ? PaddingMode::tf_same : PaddingMode::explicit_symmetric;
  c.bias = false;
  return c;
}

ConvTranspose2dConfig deconv(int64_t k, int64_t kernel, int64_t stride, int64_t pad, int64_t op, int64_t groups,
                             bool same, int64_t dilation = 1) {
  ConvTranspose2dConfig c;
  c.out_channels = k;
  c.kernel_h = c.kernel_w = kernel;
  c.stride_h = c.stride_w = stride;
  c.dilation_h = c.dilation_w = dilation;
  c.pad_h = c.pad_w = pad;
  c.output_padding_h = c.output_padding_w = op;
  c.groups = groups;
  c.padding = same ? PaddingMode::tf_same : PaddingMode::explicit_symmetric;
  c.bias = false;
  return c;
}

// The layer's three passes on the CPU against the emulated cuDNN calls its CUDA path makes on its geometry. For a
// transposed layer: forward = backward-data of the conv (its dY = x); data gradient = the conv's forward on dy;
// filter gradient = backward-filter with the conv's X = dy and its dY = x.
void require_mapping(ConvLayer& layer, const Shape& x, int64_t extra) {
  const ConvGeometry g = layer.geometry(x);
  INFO(g.str() << (g.transposed ? " transposed" : ""));
  REQUIRE(cudnn::extra_rows(g) == extra);
  require_cudnn_sizes(g);
  REQUIRE(layer.output_shape({x}) == g.layer_out());
  const Run r = run_cpu(layer, x);
  const Tensor& cx = g.transposed ? r.dy : r.x;  // the conv's X and dY
  const Tensor& cdy = g.transposed ? r.x : r.dy;
  require_same(g.transposed ? emu_backward_data(g, r.x, r.w) : emu_forward(g, r.x, r.w), r.y, "forward");
  require_same(g.transposed ? emu_forward(g, r.dy, r.w) : emu_backward_data(g, r.dy, r.w), r.dx, "input gradient");
  require_same(emu_backward_filter(g, cx, cdy), r.dw, "weight gradient");
}

}  // namespace

TEST_CASE("cuDNN Conv2d mapping (symmetric pad, zero-extended X, crop) equals the CPU path", "[unit][cudnn]") {
  struct Case {
    Shape x;
    Conv2dConfig cfg;
    int64_t extra;  // expected extra_rows
  };
  const Case c = GENERATE(Case{{2, 9, 11, 4}, conv(6, 7, 2, 1, 3, 1, false), 0},   // ResNet root 7x7/2
                          Case{{2, 9, 11, 4}, conv(4, 3, 1, 4, 4, 1, false), 0},   // ASPP rate 4
                          Case{{1, 5, 6, 4}, conv(4, 3, 1, 12, 12, 1, false), 0},  // rate 12 on a small map
                          Case{{2, 8, 10, 4}, conv(4, 3, 2, 1, 0, 4, true), 1},    // depthwise SAME s2, even: (0, 1)
                          Case{{2, 7, 9, 4}, conv(6, 3, 2, 1, 0, 2, true), 0},     // SAME s2, odd: (1, 1)
                          Case{{2, 7, 8, 4}, conv(6, 4, 2, 1, 0, 1, true), 1},     // even kernel: (1, 2)
                          Case{{2, 8, 7, 4}, conv(6, 3, 1, 2, 0, 1, true), 0},     // SAME dilated
                          Case{{1, 1, 1, 4}, conv(6, 3, 2, 1, 0, 1, true), 0},     // 1x1 input
                          Case{{2, 8, 7, 4}, conv(6, 1, 2, 1, 0, 1, false), 0},    // Tiramisu 1x1 s2
                          Case{{2, 8, 7, 4}, conv(6, 5, 3, 1, 0, 1, true), 1});    // SAME s3: (1, 2)
  Conv2d layer(c.cfg);
  require_mapping(layer, c.x, c.extra);
}

TEST_CASE("cuDNN ConvTranspose2d mapping (conv roles swapped) equals the CPU path", "[unit][cudnn]") {
  struct Case {
    Shape x;
    ConvTranspose2dConfig cfg;
    int64_t extra;
  };
  const Case c = GENERATE(Case{{2, 3, 4, 4}, deconv(6, 3, 2, 1, 1, 1, false), 0},   // k3 s2 p1 op1 (DeepLabv3+)
                          Case{{2, 3, 4, 4}, deconv(6, 3, 2, 1, 0, 1, false), 0},   // op 0
                          Case{{2, 3, 4, 4}, deconv(6, 4, 2, 1, 0, 2, false), 0},   // k4, groups
                          Case{{2, 3, 4, 4}, deconv(6, 2, 2, 0, 0, 1, false), 0},   // k2 s2
                          Case{{2, 3, 4, 4}, deconv(6, 3, 2, 0, 0, 1, true), 1},    // TF SAME k3 s2: (0, 1)
                          Case{{2, 3, 5, 4}, deconv(6, 4, 2, 0, 0, 1, true), 0},    // TF SAME k4 s2: (1, 1)
                          Case{{2, 3, 4, 4}, deconv(6, 3, 1, 0, 0, 1, true), 0},    // TF SAME s1
                          Case{{1, 1, 1, 4}, deconv(6, 3, 2, 0, 0, 1, true), 1},    // 1x1 input
                          Case{{2, 3, 4, 4}, deconv(6, 5, 3, 0, 0, 1, true), 0},    // TF SAME k5 s3: (1, 1)
                          Case{{2, 3, 4, 4}, deconv(6, 3, 2, 2, 1, 1, false, 2), 0});  // dilated
  ConvTranspose2d layer(c.cfg);
  require_mapping(layer, c.x, c.extra);
}

TEST_CASE("cuDNN ConvTranspose2d: output_padding >= stride is refused with a clear error", "[unit][cudnn]") {
  // PyTorch allows output_padding < dilation; the conv would need negative end padding, which the legacy cuDNN
  // descriptor cannot express.
  ConvTranspose2d layer(deconv(4, 3, 1, 1, 1, 1, false, 2));
  const ConvGeometry g = layer.geometry(Shape{1, 4, 4, 4});
  REQUIRE_THROWS_WITH(cudnn::extra_rows(g), Catch::Contains("negative end padding"));
}

