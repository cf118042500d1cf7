// Finite-difference gradient checks in double of Conv2d and ConvTranspose2d (CPU reference), over kernels 1/3/5/7,
// strides 1/2, dilations 1/2/3, explicit pads 0..3 and TF 'SAME' on odd and even sizes, groups 1/2/C (depthwise),
// bias on/off, single-pixel inputs; plus the tiling invariance of the im2col path, the padding rules and the
// shifted-GEMM forward against im2col.
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "engine/philox.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/isa.h"
#include "layers/conv2d.h"
#include "tests/util/compare.h"
#include "tests/util/gradcheck.h"
#include "tests/util/tolerances.h"

using namespace climseg;
using namespace climseg::test;

namespace {

void require_pass(Layer& l, const std::vector<Shape>& in, const GradCheckOptions& o = {}) {
  GradCheckResult r = check_gradients(l, in, o);
  INFO(l.type() << " input " << in[0].str() << " -> " << l.output_shape(in).str() << ": " << r.str());
  REQUIRE(r.ok);
  REQUIRE(r.checked > 0);
}

Conv2dConfig conv(int64_t k_out, int64_t k, int64_t stride, int64_t dil, int64_t pad, int64_t groups = 1,
                  bool bias = true, PaddingMode mode = PaddingMode::explicit_symmetric) {
  Conv2dConfig c;
  c.out_channels = k_out;
  c.kernel_h = c.kernel_w = k;
  c.stride_h = c.stride_w = stride;
  c.dilation_h = c.dilation_w = dil;
  c.pad_h = c.pad_w = pad;
  c.groups = groups;
  c.bias = bias;
  c.padding = mode;
  return c;
}

ConvTranspose2dConfig deconv(int64_t k_out, int64_t k, int64_t stride, int64_t pad, int64_t out_pad,
                             PaddingMode mode = PaddingMode::explicit_symmetric, int64_t groups = 1, bool bias = true,
                             int64_t dil = 1) {
  ConvTranspose2dConfig c;
  c.out_channels = k_out;
  c.kernel_h = c.kernel_w = k;
  c.stride_h = c.stride_w = stride;
  c.dilation_h = c.dilation_w = dil;
  c.pad_h = c.pad_w = pad;
  c.output_padding_h = c.output_padding_w = out_pad;
  c.padding = mode;
  c.groups = groups;
  c.bias = bias;
  return c;
}

// The geometry of a Conv2d with this config on input x (the layers' builder, kernels/conv_geometry.h).
ConvGeometry geom_of(const Conv2dConfig& c, const Shape& x) { return conv_geometry(c, false, x, "conv2d"); }

// Forcing the forward onto `path` for a geometry that path does not take is an error saying why.
void require_forced_path_refused(const ConvGeometry& g, cpu::ConvFwdPath path, const char* why) {
  INFO(g.str());
  std::vector<double> x(static_cast<size_t>(g.in_shape().numel()), 0.5);
  std::vector<double> w(static_cast<size_t>(g.filter_shape().numel()), 0.25);
  std::vector<double> y(static_cast<size_t>(g.out_shape().numel())), ws(1 << 16);
  REQUIRE_THROWS_WITH(cpu::conv2d_fwd<double>(g, x.data(), g.in_c, w.data(), y.data(), g.out_c, false, ws.data(),
                                              ws.size() * sizeof(double), path),
                      Catch::Contains(why));
}

}  // namespace

TEST_CASE("conv2d output sizes and TF 'SAME' padding", "[conv]") {
  // TF: out = ceil(in / s), total = max((out - 1) s + (k - 1) d + 1 - in, 0), extra row at the bottom.
  Conv2d c3s2(conv(4, 3, 2, 1, 0, 1, true, PaddingMode::tf_same));
  REQUIRE(c3s2.output_shape({{1, 8, 7, 2}}) == Shape{1, 4, 4, 4});
  Pads p = conv_pads(c3s2.config(), false, 8, 7);
  REQUIRE((p.top == 0 && p.bottom == 1 && p.left == 1 && p.right == 1));  // 8: total 1; 7: total 2
  Conv2d c7s2(conv(4, 7, 2, 1, 0, 1, true, PaddingMode::tf_same));
  p = conv_pads(c7s2.config(), false, 96, 144);
  REQUIRE((p.top == 2 && p.bottom == 3));
  Conv2d c1s2(conv(4, 1, 2, 1, 0, 1, true, PaddingMode::tf_same));
  p = conv_pads(c1s2.config(), false, 9, 9);
  REQUIRE((p.top == 0 && p.bottom == 0));
  Conv2d dil(conv(4, 3, 1, 12, 0, 1, true, PaddingMode::tf_same));
  p = conv_pads(dil.config(), false, 12, 18);
  REQUIRE((p.top == 12 && p.bottom == 12));
  // PyTorch explicit: (in + 2p - d (k - 1) - 1) / s + 1.
  Conv2d e(conv(4, 3, 2, 2, 1));
  REQUIRE(e.output_shape({{1, 9, 10, 2}}) == Shape{1, 4, 4, 4});
  REQUIRE_THROWS_WITH(Conv2d(conv(4, 5, 1, 1, 0)).output_shape({{1, 3, 3, 2}}),
                      Catch::Contains("smaller than the dilated kernel"));
  REQUIRE_THROWS_WITH(Conv2d(conv(4, 3, 1, 1, 1, 3)), Catch::Contains("groups"));
  REQUIRE_THROWS_WITH(Conv2d(conv(6, 3, 1, 1, 1, 3)).output_shape({{1, 3, 3, 4}}), Catch::Contains("groups"));

  // Transposed: explicit k3 s2 p1 op1 and TF 'same' both give exactly 2x, with opposite corners.
  ConvTranspose2d dt(deconv(3, 3, 2, 1, 1));
  REQUIRE(dt.output_shape({{1, 5, 6, 2}}) == Shape{1, 10, 12, 3});
  p = conv_pads(dt.config(), true, 5, 6);
  REQUIRE((p.top == 1 && p.bottom == 0));
  ConvTranspose2d ds(deconv(3, 3, 2, 0, 0, PaddingMode::tf_same));
  REQUIRE(ds.output_shape({{1, 5, 6, 2}}) == Shape{1, 10, 12, 3});
  p = conv_pads(ds.config(), true, 5, 6);
  REQUIRE((p.top == 0 && p.bottom == 1));
  REQUIRE_THROWS_WITH(ConvTranspose2d(deconv(3, 3, 2, 1, 2)), Catch::Contains("output_padding"));
}

TEST_CASE("conv2d gradient: kernels, strides, dilations, explicit padding", "[grad][conv]") {
  struct Case {
    int64_t k, stride, dil, pad;
    Shape in;
  };
  const Case cases[] = {
      {1, 1, 1, 0, {2, 5, 7, 3}}, {1, 2, 1, 0, {2, 5, 7, 3}}, {1, 1, 1, 1, {1, 3, 4, 5}},
      {3, 1, 1, 1, {2, 5, 7, 3}}, {3, 2, 1, 1, {2, 7, 6, 4}}, {3, 1, 2, 2, {1, 6, 7, 3}},
      {3, 1, 3, 3, {1, 7, 5, 2}}, {3, 2, 2, 0, {1, 9, 8, 3}}, {3, 1, 1, 0, {1, 3, 3, 4}},
      {5, 1, 1, 2, {2, 6, 5, 3}}, {5, 2, 1, 2, {1, 9, 7, 2}}, {7, 2, 1, 3, {1, 11, 10, 3}},
      {7, 1, 1, 3, {1, 1, 1, 4}}, {3, 1, 1, 1, {1, 1, 1, 6}}, {3, 2, 1, 1, {1, 1, 1, 2}},
      {5, 1, 2, 3, {1, 4, 3, 2}},  // kernel taps mostly in the padding
  };
  for (const Case& c : cases) {
    for (bool bias : {true, false}) {
      Conv2d l(conv(4, c.k, c.stride, c.dil, c.pad, 1, bias));
      require_pass(l, {c.in});
    }
  }
}

TEST_CASE("conv2d gradient: kernel taps that only see padding are skipped", "[grad][conv]") {
  // ASPP-style dilation larger than the map: rows only (3x3 rate 6 on 4x9 keeps the middle kernel row), rows and
  // columns (rate 6 on 4x5: the centre tap only), stride 2, a useless tap between useful ones (k3 s2 p2 on a
  // 1-row map: rows 0 and 2 reach it, row 1 never does, so all three stay), and no useful tap at all (k2 rate 4,
  // pad 2 on 1x1: both taps fall in the padding, y = bias).
  struct Case {
    int64_t k, stride, dil, pad;
    Shape in;
  };
  const Case cases[] = {{3, 1, 6, 6, {2, 4, 9, 3}}, {3, 1, 6, 6, {1, 4, 5, 3}}, {3, 2, 6, 6, {1, 3, 13, 2}},
                        {5, 2, 1, 2, {1, 1, 6, 2}}, {2, 1, 4, 2, {2, 1, 1, 3}}, {3, 1, 12, 12, {1, 3, 3, 4}},
                        {3, 2, 1, 2, {1, 1, 5, 2}}};
  for (const Case& c : cases)
    for (int64_t groups : {1, 2}) {
      if (c.in.c % groups) continue;
      Conv2d l(conv(4, c.k, c.stride, c.dil, c.pad, groups));
      require_pass(l, {c.in});
    }
  ConvTranspose2d d(deconv(3, 3, 1, 3, 0, PaddingMode::explicit_symmetric, 1, true, 4));  // (in-1) - 6 + 8 + 1
  require_pass(d, {{1, 2, 3, 2}});
  // Workspace only for the kept taps: 1 of 9 here. (With a visible GPU, memory_needs also covers cuDNN's
  // workspace, so the CPU bound is only checked without one.)
  if (!have_cuda()) {
    Conv2d aspp(conv(8, 3, 1, 12, 12));
    REQUIRE(aspp.memory_needs({{2, 3, 4, 16}}, DType::f32).fwd_workspace == 2 * 3 * 4 * 16 * sizeof(float));
    REQUIRE(Conv2d(conv(8, 2, 1, 4, 2)).memory_needs({{1, 1, 1, 4}}, DType::f32).fwd_workspace == 0);
  }
}

TEST_CASE("conv2d gradient: TF 'SAME' padding, odd and even sizes", "[grad][conv]") {
  struct Case {
    int64_t k, stride, dil;
  };
  const Case cases[] = {{3, 1, 1}, {3, 2, 1}, {5, 1, 1}, {7, 2, 1}, {1, 2, 1}, {3, 1, 2}, {3, 2, 3}, {4, 2, 1}};
  const Shape shapes[] = {{1, 8, 6, 3}, {2, 7, 5, 2}, {1, 1, 1, 3}, {1, 2, 9, 2}};
  for (const Case& c : cases)
    for (const Shape& s : shapes) {
      Conv2d l(conv(3, c.k, c.stride, c.dil, 0, 1, true, PaddingMode::tf_same));
      require_pass(l, {s});
    }
}

TEST_CASE("conv2d gradient: groups and depthwise", "[grad][conv]") {
  // groups 2 (general path, per-group GEMMs), depthwise (groups = C = K, direct loops), depthwise with multiplier
  // 2 (groups = C, K = 2C: general path), grouped 1x1 (pointwise path).
  Conv2d g2(conv(6, 3, 1, 1, 1, 2));
  require_pass(g2, {{2, 5, 4, 4}});
  Conv2d g2s(conv(4, 3, 2, 2, 2, 2, false));
  require_pass(g2s, {{1, 7, 6, 6}});
  for (int64_t stride : {1, 2})
    for (int64_t dil : {1, 2}) {
      Conv2d dw(conv(5, 3, stride, dil, dil, 5));
      require_pass(dw, {{2, 6, 7, 5}});
      Conv2d dws(conv(5, 3, stride, dil, 0, 5, false, PaddingMode::tf_same));
      require_pass(dws, {{1, 7, 4, 5}});
    }
  Conv2d dw5(conv(3, 5, 1, 1, 2, 3));
  require_pass(dw5, {{1, 1, 1, 3}});
  Conv2d mult(conv(6, 3, 1, 1, 1, 3));
  require_pass(mult, {{1, 4, 5, 3}});
  Conv2d g1x1(conv(6, 1, 1, 1, 0, 3));
  require_pass(g1x1, {{2, 3, 4, 9}});
  Conv2d dw1x1(conv(4, 1, 1, 1, 0, 4));  // depthwise 1x1: the depthwise path, not C tiny GEMMs
  require_pass(dw1x1, {{2, 3, 4, 4}});
  Conv2d mult1x1(conv(8, 1, 1, 1, 0, 4));  // groups = C, K = 2C, 1x1: pointwise path with per-group GEMMs
  require_pass(mult1x1, {{1, 3, 2, 4}});
}

TEST_CASE("conv_transpose2d gradient", "[grad][conv]") {
  // k3 s2 p1 op1 (PyTorch) and TF 'same' (both exactly 2x), odd and even sizes, single pixels, other kernels,
  // dilation, groups and depthwise.
  const Shape shapes[] = {{2, 3, 4, 3}, {1, 5, 5, 2}, {1, 1, 1, 4}, {1, 2, 7, 3}};
  for (const Shape& s : shapes) {
    for (bool bias : {true, false}) {
      ConvTranspose2d pt(deconv(4, 3, 2, 1, 1, PaddingMode::explicit_symmetric, 1, bias));
      require_pass(pt, {s});
      ConvTranspose2d tf(deconv(4, 3, 2, 0, 0, PaddingMode::tf_same, 1, bias));
      require_pass(tf, {s});
    }
  }
  ConvTranspose2d k2(deconv(3, 2, 2, 0, 0));
  require_pass(k2, {{1, 3, 4, 2}});
  ConvTranspose2d k4(deconv(3, 4, 2, 1, 0));
  require_pass(k4, {{1, 3, 4, 2}});
  ConvTranspose2d k5tf(deconv(3, 5, 2, 0, 0, PaddingMode::tf_same));
  require_pass(k5tf, {{2, 3, 3, 2}});
  ConvTranspose2d k3s1(deconv(3, 3, 1, 1, 0));
  require_pass(k3s1, {{1, 4, 5, 3}});
  ConvTranspose2d k1(deconv(5, 1, 1, 0, 0));
  require_pass(k1, {{2, 3, 3, 4}});
  ConvTranspose2d k1s2(deconv(3, 1, 2, 0, 1));
  require_pass(k1s2, {{1, 3, 4, 2}});
  ConvTranspose2d dil(deconv(3, 3, 2, 2, 1, PaddingMode::explicit_symmetric, 1, true, 2));
  require_pass(dil, {{1, 4, 3, 2}});
  ConvTranspose2d s3(deconv(2, 3, 3, 1, 2));
  require_pass(s3, {{1, 3, 2, 3}});
  ConvTranspose2d grp(deconv(4, 3, 2, 1, 1, PaddingMode::explicit_symmetric, 2));
  require_pass(grp, {{1, 3, 4, 6}});
  ConvTranspose2d dw(deconv(4, 3, 2, 0, 0, PaddingMode::tf_same, 4));
  require_pass(dw, {{2, 3, 4, 4}});
}

namespace {

Tensor random(Shape s, uint64_t stream) {
  Tensor t = Tensor::empty(s, DType::f64, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, 2.0 * philox_uniform(99, stream, i) - 1.0);
  return t;
}

// He-scaled weights (std sqrt(2 / fan_in)) from `random`'s U(-1, 1): the fp32-vs-fp64 comparisons need O(1) sums, as the
// row "cpu fp32 vs fp64" assumes (its rtol is relative to the result, whose rounding error scales with the sum of the
// terms' magnitudes: with U(-1, 1) weights the sums of a 5x5x64 conv are ~13 and a result that cancels to 0.02 carried
// 2e-5 of rounding, over the row's budget on the im2col path).
Tensor he_scaled(Tensor w, int64_t fan_in) {
  const double s = std::sqrt(6.0 / static_cast<double>(fan_in));
  for (int64_t i = 0; i < w.numel(); ++i) w.set_flat(i, s * w.get_flat(i));
  return w;
}

// Full 53-bit mantissas (two fp32-precision draws): products of `random` values are exact in double, so paths that
// regroup the same sums would agree to the bit and a test could not tell them apart.
Tensor random53(Shape sh, uint64_t stream) {
  Tensor t = random(sh, stream), lo = random(sh, stream + 100);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, t.get_flat(i) + 0x1p-24 * lo.get_flat(i));
  return t;
}

// A stride-1 conv case: input n x h x w x c -> k channels, kernel kh x kw with dilation dil, top/left padding, and
// extra_b / extra_r bottom/right rows and columns beyond the top/left padding (negative: fewer).
struct StrideOneCase {
  int64_t n, h, w, c, k, kh, kw, dil, pad_t, pad_l, extra_b, extra_r;
  ConvGeometry geom() const {
    ConvGeometry g;
    g.n = n, g.in_h = h, g.in_w = w, g.in_c = c, g.out_c = k;
    g.kernel_h = kh, g.kernel_w = kw;
    g.dilation_h = g.dilation_w = dil;
    g.pad_top = pad_t, g.pad_left = pad_l;
    g.out_h = h + 2 * pad_t + extra_b - dil * (kh - 1);
    g.out_w = w + 2 * pad_l + extra_r - dil * (kw - 1);
    return g;
  }
};
std::ostream& operator<<(std::ostream& os, const StrideOneCase& c) {
  return os << "input " << c.n << "x" << c.h << "x" << c.w << "x" << c.c << " -> " << c.k << " kernel " << c.kh << "x"
            << c.kw << " dilation " << c.dil << " pads " << c.pad_t << "," << c.pad_l << " extra " << c.extra_b << ","
            << c.extra_r;
}

// The three passes with a workspace of `ws_bytes`, on contiguous tensors.
struct Passes {
  Tensor y, dx, dw;
};
Passes run_passes(const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor& dy, size_t ws_bytes) {
  Passes r;
  r.y = Tensor::zeros(dy.shape(), DType::f64, Device::cpu);
  r.dx = Tensor::zeros(x.shape(), DType::f64, Device::cpu);
  r.dw = Tensor::zeros(w.shape(), DType::f64, Device::cpu);
  std::vector<double> ws(ws_bytes / sizeof(double) + 1);
  cpu::conv2d_fwd<double>(g, x.data_as<double>(), g.in_c, w.data_as<double>(), r.y.data_as<double>(), g.out_c, false,
                          ws.data(), ws_bytes);
  cpu::conv2d_bwd_data<double>(g, dy.data_as<double>(), g.out_c, w.data_as<double>(), r.dx.data_as<double>(), g.in_c,
                               false, ws.data(), ws_bytes);
  cpu::conv2d_bwd_filter<double>(g, x.data_as<double>(), g.in_c, dy.data_as<double>(), g.out_c, r.dw.data_as<double>(),
                                 false, ws.data(), ws_bytes);
  return r;
}

}  // namespace

TEST_CASE("conv2d im2col tiles give the same results as one tile", "[conv]") {
  // Tiles of 1, 7 and 50 output pixels (tiles cross output rows and images) against one tile of all pixels.
  // Forward and data gradient: each output pixel's GEMM row and each input pixel's gather order are the same for
  // any tiling, so the results are bitwise equal. Filter gradient: the sum over pixels is split into per-tile
  // GEMMs with beta = 1, a different order of the same additions: row "cpu fp64 same operations".
  struct Case {
    int64_t k, stride, dil, pad, groups;
  };
  for (const Case& c : {Case{3, 1, 1, 1, 1}, Case{3, 2, 2, 2, 2}, Case{5, 2, 1, 1, 1}, Case{7, 2, 1, 3, 1},
                        Case{3, 1, 9, 9, 1}}) {  // the last keeps 1 of 3 kernel rows and 3 of 3 columns
    const ConvGeometry g = geom_of(conv(6, c.k, c.stride, c.dil, c.pad, c.groups), {2, 9, 11, 4});
    REQUIRE(cpu::conv2d_algo(g) == cpu::ConvAlgo::general);
    const Tensor x = random({g.n, g.in_h, g.in_w, g.in_c}, 1);
    const Tensor w = random({g.out_c, g.kernel_h, g.kernel_w, g.in_c / g.groups}, 2);
    const Tensor dy = random({g.n, g.out_h, g.out_w, g.out_c}, 3);
    const size_t row = static_cast<size_t>(g.kernel_h * g.kernel_w * (g.in_c / g.groups)) * sizeof(double);
    const size_t whole = cpu::conv2d_workspace_bytes(g, sizeof(double));
    const size_t kept = c.dil == 9 ? 3 : 1;  // rate 9 on a 9-row map: only the middle kernel row reaches it
    REQUIRE(whole * kept == row * static_cast<size_t>(g.n * g.out_h * g.out_w));
    const size_t crow = row / kept;  // the im2col row of the kept taps
    REQUIRE(cpu::conv2d_workspace_bytes(g, sizeof(double), 7 * crow + 5) == 7 * crow);  // the budget caps the tile
    const Passes ref = run_passes(g, x, w, dy, whole);
    for (size_t rows : {size_t(1), size_t(7), size_t(50)}) {
      INFO("tile of " << rows << " pixels, kernel " << c.k << " stride " << c.stride);
      const Passes t = run_passes(g, x, w, dy, rows * crow);
      CS_REQUIRE_CLOSE(t.y, ref.y, 0.0, 0.0);
      CS_REQUIRE_CLOSE(t.dx, ref.dx, 0.0, 0.0);
      CS_REQUIRE_CLOSE(t.dw, ref.dw, tol::cpu_same_ops_f64.atol, tol::cpu_same_ops_f64.rtol);
    }
    std::vector<double> small(1);
    REQUIRE_THROWS_WITH(cpu::conv2d_fwd<double>(g, x.data_as<double>(), g.in_c, w.data_as<double>(),
                                                dy.data_as<double>(), g.out_c, false, small.data(), crow - 1),
                        Catch::Contains("workspace"));
  }
}

TEST_CASE("conv2d workspace is bounded for full-resolution layers", "[conv]") {
  // The decoder's 3x3 384->256 conv at 768x1152, batch 2: im2col of the whole image would be 2.4 GiB in fp32.
  // With a visible GPU, memory_needs also covers cuDNN's workspace: the CPU bound is checked without one.
  if (have_cuda()) {
    WARN("CUDA device visible: memory_needs includes cuDNN's workspace; CPU workspace bounds not checked");
    return;
  }
  Conv2d l(conv(256, 3, 1, 1, 1));
  MemoryNeeds m = l.memory_needs({{2, 768, 1152, 384}}, DType::f32);
  REQUIRE(m.fwd_workspace <= cpu::kConvWorkspaceBudget);
  REQUIRE(m.fwd_workspace > cpu::kConvWorkspaceBudget / 2);
  REQUIRE(m.bwd_workspace == m.fwd_workspace);
  // 1x1 stride-1 and depthwise convs need none.
  REQUIRE(Conv2d(conv(256, 1, 1, 1, 0)).memory_needs({{2, 96, 144, 2048}}, DType::f32).fwd_workspace == 0);
  REQUIRE(Conv2d(conv(728, 3, 1, 1, 1, 728)).memory_needs({{2, 96, 144, 728}}, DType::f32).fwd_workspace == 0);
}

TEST_CASE("conv2d shifted GEMM forward equals the im2col forward", "[conv]") {
  // The shifted GEMM (stride 1, one group) sums the same products per output element as im2col, grouped by tap
  // (one GEMM per tap with beta = 1) instead of one long dot product: row "cpu fp64 same operations". Covered:
  // odd sizes, padding beyond the kernel's reach (output rows that see only padding), extra bottom/right padding,
  // dilation, dropped taps, non-square kernels, C = 1 and K = 1, pixel-strided views, accumulate, and workspaces
  // from one band for the whole image down to one output row per band.
  using Case = StrideOneCase;
  for (const Case& c : {Case{2, 9, 11, 5, 3, 3, 3, 1, 1, 1, 0, 0}, Case{1, 7, 6, 3, 4, 3, 3, 1, 4, 3, 0, 0},
                        Case{2, 8, 9, 1, 2, 5, 5, 2, 3, 4, 1, 0}, Case{1, 5, 13, 4, 2, 1, 3, 1, 0, 1, 1, 1},
                        Case{1, 6, 5, 2, 1, 3, 1, 3, 2, 0, 0, 2}, Case{2, 9, 11, 4, 6, 3, 3, 9, 9, 9, 0, 0},
                        Case{1, 4, 5, 3, 2, 1, 1, 1, 1, 1, 0, 0}, Case{1, 1, 1, 2, 3, 3, 3, 1, 1, 1, 0, 0}}) {
    const ConvGeometry g = c.geom();
    INFO(c);
    REQUIRE(cpu::conv2d_algo(g) == cpu::ConvAlgo::general);
    // Pixel-strided views: x and y live in wider buffers (as channel slices of concats do).
    const int64_t xs = c.c + 2, ys = c.k + 3;
    const Tensor x = random({g.n, g.in_h, g.in_w, xs}, 11);
    const Tensor w = random({g.out_c, g.kernel_h, g.kernel_w, g.in_c}, 12);
    const Tensor y0 = random({g.n, g.out_h, g.out_w, ys}, 13);
    for (bool acc : {false, true}) {
      INFO("accumulate " << acc);
      auto run = [&](cpu::ConvFwdPath path, size_t ws_elems) {
        Tensor y = y0.clone();
        std::vector<double> ws(ws_elems + 1);
        cpu::conv2d_fwd<double>(g, x.data_as<double>(), xs, w.data_as<double>(), y.data_as<double>(), ys, acc,
                                ws.data(), ws_elems * sizeof(double), path);
        return y;
      };
      const Tensor ref = run(cpu::ConvFwdPath::im2col, cpu::conv2d_workspace_bytes(g, sizeof(double)));
      int bands_checked = 0;
      for (size_t elems = size_t(1) << 16; elems > 0; elems /= 2) {
        INFO("workspace of " << elems << " elements");
        Tensor y;
        try {
          y = run(cpu::ConvFwdPath::shifted, elems);
        } catch (const std::exception& e) {
          REQUIRE_THAT(e.what(), Catch::Contains("workspace"));  // less than one band
          break;
        }
        CS_REQUIRE_CLOSE(y, ref, tol::cpu_same_ops_f64.atol, tol::cpu_same_ops_f64.rtol);
        ++bands_checked;
      }
      REQUIRE(bands_checked > 0);
      // The automatic choice (whichever path it takes) agrees too.
      CS_REQUIRE_CLOSE(run(cpu::ConvFwdPath::automatic, cpu::conv2d_workspace_bytes(g, sizeof(double))), ref,
                       tol::cpu_same_ops_f64.atol, tol::cpu_same_ops_f64.rtol);
    }
  }
  // Stride 2 has no shifted path: forcing it is an error, the automatic choice is im2col.
  require_forced_path_refused(geom_of(conv(8, 3, 2, 1, 1), {1, 7, 8, 64}), cpu::ConvFwdPath::shifted, "stride 1");
}

TEST_CASE("conv2d Winograd F(2x2,3x3) forward equals the im2col forward", "[conv]") {
  // Row "cpu fp64 winograd". Covered: odd and even output sizes (partial tiles on the last row and column), pads
  // 0, 1 and 2 (asymmetric extra bottom/right padding), C and K of 1 and not multiples of anything, pixel-strided
  // views, accumulate, several images, and workspaces from one block for everything down to one tile per block.
  using Case = StrideOneCase;  // 3x3, dilation 1
  double worst = 0;
  for (const Case& c : {Case{2, 9, 11, 5, 3, 3, 3, 1, 1, 1, 0, 0}, Case{1, 8, 8, 16, 16, 3, 3, 1, 1, 1, 0, 0},
                        Case{2, 7, 6, 3, 4, 3, 3, 1, 0, 0, 0, 0}, Case{1, 6, 9, 1, 2, 3, 3, 1, 2, 2, 0, 1},
                        Case{3, 5, 4, 7, 1, 3, 3, 1, 1, 0, 1, 1}, Case{1, 3, 3, 2, 3, 3, 3, 1, 1, 1, 0, 0},
                        Case{1, 12, 17, 19, 23, 3, 3, 1, 1, 1, 0, 0}}) {
    const ConvGeometry g = c.geom();
    INFO(c);
    const int64_t xs = c.c + 2, ys = c.k + 3;
    const Tensor x = random53({g.n, g.in_h, g.in_w, xs}, 21);
    const Tensor w = random53({g.out_c, 3, 3, g.in_c}, 22);
    const Tensor y0 = random53({g.n, g.out_h, g.out_w, ys}, 23);
    for (bool acc : {false, true}) {
      INFO("accumulate " << acc);
      auto run = [&](cpu::ConvFwdPath path, size_t ws_elems) {
        Tensor y = y0.clone();
        std::vector<double> ws(ws_elems + 1);
        cpu::conv2d_fwd<double>(g, x.data_as<double>(), xs, w.data_as<double>(), y.data_as<double>(), ys, acc,
                                ws.data(), ws_elems * sizeof(double), path);
        return y;
      };
      const Tensor ref = run(cpu::ConvFwdPath::im2col, cpu::conv2d_workspace_bytes(g, sizeof(double)));
      // The whole problem in one block, then smaller workspaces: fewer tiles per block, down to one.
      const size_t one_tile = static_cast<size_t>(16 * g.out_c * g.in_c + 16 * (g.in_c + g.out_c) + g.in_c);
      int blocks_checked = 0;
      for (size_t elems = one_tile + size_t(16 * (g.in_c + g.out_c)) * 64; elems >= one_tile;
           elems = elems == one_tile ? 0 : std::max(one_tile, elems / 2)) {
        INFO("workspace of " << elems << " elements");
        const Tensor y = run(cpu::ConvFwdPath::winograd, elems);
        CS_REQUIRE_CLOSE(y, ref, tol::cpu_winograd_f64.atol, tol::cpu_winograd_f64.rtol);
        for (int64_t i = 0; i < y.numel(); ++i)
          worst = std::max(worst, std::abs(y.data_as<double>()[i] - ref.data_as<double>()[i]));
        ++blocks_checked;
        if (elems == one_tile) break;
      }
      REQUIRE(blocks_checked >= 2);
      // One element short of a tile: an error naming the workspace.
      REQUIRE_THROWS_WITH(run(cpu::ConvFwdPath::winograd, one_tile - 1), Catch::Contains("workspace"));
    }
  }
  std::printf("conv2d Winograd vs im2col, fp64: largest difference %.3g\n", worst);
  // Not for 5x5, stride 2 or dilation 2: forcing it is an error.
  require_forced_path_refused(geom_of(conv(4, 3, 2, 1, 1), {1, 8, 8, 4}), cpu::ConvFwdPath::winograd, "Winograd");
}

TEST_CASE("conv2d data gradient through Winograd equals the col2im gather", "[conv]") {
  // A 3x3 stride-1 conv's data gradient is a 3x3 conv of dy with the rotated, channel-swapped kernel and padding
  // 2 - pad; wide enough, the backward pass runs it through Winograd. Reference: the same pass with a workspace too
  // small for a Winograd block (which then takes im2col's col2im gather). Row "cpu fp64 winograd". Pads 0, 1, 2,
  // top and left padding that differ, bottom and right padding other than the top and left (extra_b, extra_r: rows
  // and columns more or fewer), odd sizes, pixel-strided views, accumulate.
  using Case = StrideOneCase;  // 3x3, dilation 1
  for (const Case& c : {Case{1, 45, 47, 64, 64, 3, 3, 1, 1, 1, 0, 0}, Case{2, 40, 52, 64, 72, 3, 3, 1, 0, 0, 0, 0},
                        Case{1, 41, 50, 80, 64, 3, 3, 1, 2, 2, 0, 0}, Case{1, 44, 49, 64, 64, 3, 3, 1, 2, 0, -1, 1},
                        Case{1, 47, 46, 64, 64, 3, 3, 1, 0, 1, 2, -1}}) {
    const ConvGeometry g = c.geom();
    INFO(c);
    const int64_t dys = c.k + 1, dxs = c.c + 2;
    const Tensor dy = random53({g.n, g.out_h, g.out_w, dys}, 31);
    const Tensor w = random53({g.out_c, 3, 3, g.in_c}, 32);
    const Tensor dx0 = random53({g.n, g.in_h, g.in_w, dxs}, 33);
    const size_t full = cpu::conv2d_workspace_bytes(g, sizeof(double)) / sizeof(double);
    const size_t small = static_cast<size_t>(9 * g.in_c * 64);  // 64 im2col rows: less than one Winograd tile
    REQUIRE(cpu::conv2d_path(g, ConvPass::backward_data, sizeof(double), full * sizeof(double)) == std::string("winograd"));
    REQUIRE(cpu::conv2d_path(g, ConvPass::backward_data, sizeof(double), small * sizeof(double)) == std::string("gather"));
    for (bool acc : {false, true}) {
      INFO("accumulate " << acc);
      auto run = [&](size_t elems) {
        Tensor dx = dx0.clone();
        std::vector<double> ws(elems);
        cpu::conv2d_bwd_data<double>(g, dy.data_as<double>(), dys, w.data_as<double>(), dx.data_as<double>(), dxs, acc,
                                     ws.data(), elems * sizeof(double));
        return dx;
      };
      const Tensor ref = run(small), got = run(full);
      CS_REQUIRE_CLOSE(got, ref, tol::cpu_winograd_f64.atol, tol::cpu_winograd_f64.rtol);
      double diff = 0;
      for (int64_t i = 0; i < got.numel(); ++i)
        diff = std::max(diff, std::abs(got.data_as<double>()[i] - ref.data_as<double>()[i]));
      REQUIRE(diff > 0);  // the two really are different computations (fp64 rounding differs somewhere)
    }
  }
}

TEST_CASE("conv2d Winograd in fp32: the same bits on 1 and 2 threads, and close to fp64", "[conv]") {
  // Each output element comes from one serial GEMM call per transform position and fixed transforms, so the thread
  // count must not change a bit (forward and data gradient). The fp32 result against the fp64 one: row "cpu fp32 vs
  // fp64".
  const ConvGeometry g = geom_of(conv(80, 3, 1, 1, 1), {2, 33, 70, 64});
  const Tensor x = random({g.n, g.in_h, g.in_w, g.in_c}, 41), w = he_scaled(random({g.out_c, 3, 3, g.in_c}, 42), 9 * g.in_c);
  const Tensor dy = random({g.n, g.out_h, g.out_w, g.out_c}, 43);
  const Tensor xf = x.cast(DType::f32), wf = w.cast(DType::f32), dyf = dy.cast(DType::f32);
  const size_t ws_bytes = cpu::conv2d_workspace_bytes(g, sizeof(float));
  std::vector<float> ws(ws_bytes / sizeof(float));
  auto fwd = [&](int threads) {
    Tensor y = Tensor::empty({g.n, g.out_h, g.out_w, g.out_c}, DType::f32, Device::cpu);
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    cpu::conv2d_fwd<float>(g, xf.data_as<float>(), g.in_c, wf.data_as<float>(), y.data_as<float>(), g.out_c, false,
                           ws.data(), ws_bytes, cpu::ConvFwdPath::winograd);
    omp_set_num_threads(before);
    return y;
  };
  auto bwd = [&](int threads) {
    Tensor dx = Tensor::empty({g.n, g.in_h, g.in_w, g.in_c}, DType::f32, Device::cpu);
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    cpu::conv2d_bwd_data<float>(g, dyf.data_as<float>(), g.out_c, wf.data_as<float>(), dx.data_as<float>(), g.in_c,
                                false, ws.data(), ws_bytes);
    omp_set_num_threads(before);
    return dx;
  };
  const Tensor y1 = fwd(1), y2 = fwd(2), dx1 = bwd(1), dx2 = bwd(2);
  REQUIRE(std::memcmp(y1.data(), y2.data(), y1.nbytes()) == 0);
  REQUIRE(std::memcmp(dx1.data(), dx2.data(), dx1.nbytes()) == 0);
  std::vector<double> wsd(cpu::conv2d_workspace_bytes(g, sizeof(double)) / sizeof(double));
  Tensor yd = Tensor::empty({g.n, g.out_h, g.out_w, g.out_c}, DType::f64, Device::cpu);
  cpu::conv2d_fwd<double>(g, x.data_as<double>(), g.in_c, w.data_as<double>(), yd.data_as<double>(), g.out_c, false,
                          wsd.data(), wsd.size() * sizeof(double), cpu::ConvFwdPath::im2col);
  CS_REQUIRE_CLOSE(y1.cast(DType::f64), yd, tol::cpu_f32_vs_f64.atol, tol::cpu_f32_vs_f64.rtol);
}

TEST_CASE("conv2d data gradient through the shifted GEMM equals the col2im gather", "[conv]") {
  // A stride-1 conv's data gradient is the forward conv of dy with the flipped kernel and padding dil*(k-1) - pad;
  // on large enough maps (and K >= 16) the backward pass runs it as a shifted GEMM. Reference: the same pass with a
  // workspace too small for that (the col2im gather). The same products grouped by tap: row "cpu fp64 same
  // operations". Covered: 5x5 with K = 32 (Tiramisu's shape, scaled), non-square kernels, dilation, padding from 0 to
  // the kernel's reach, extra bottom/right padding, odd sizes, kernel rows that only ever see padding (the 3x800
  // map with a dilated 3x1 kernel keeps its centre row), pixel-strided views, accumulate.
  using Case = StrideOneCase;
  for (const Case& c : {Case{1, 48, 50, 40, 32, 5, 5, 1, 2, 2, 0, 0}, Case{2, 45, 47, 32, 16, 3, 3, 1, 1, 1, 0, 0},
                        Case{1, 50, 44, 33, 17, 3, 5, 1, 0, 1, 1, 0}, Case{1, 46, 49, 36, 20, 3, 3, 2, 2, 1, 0, 1},
                        Case{1, 44, 52, 32, 24, 5, 3, 1, 4, 2, -1, 0}, Case{1, 3, 800, 32, 16, 3, 1, 3, 3, 0, 0, 0}}) {
    const ConvGeometry g = c.geom();
    INFO(c);
    const int64_t dys = c.k + 1, dxs = c.c + 2;
    const Tensor dy = random53({g.n, g.out_h, g.out_w, dys}, 51);
    const Tensor w = random53({g.out_c, g.kernel_h, g.kernel_w, g.in_c}, 52);
    const Tensor dx0 = random53({g.n, g.in_h, g.in_w, dxs}, 53);
    const size_t full = cpu::conv2d_workspace_bytes(g, sizeof(double)) / sizeof(double);
    const size_t small = static_cast<size_t>(c.kh * c.kw * c.c);  // one im2col row: less than weights plus a band
    auto path = [&](size_t elems) { return std::string(cpu::conv2d_path(g, ConvPass::backward_data, 8, elems * 8)); };
    REQUIRE(path(full) == "shifted");
    REQUIRE(path(small) == "gather");
    for (bool acc : {false, true}) {
      INFO("accumulate " << acc);
      auto run = [&](size_t elems) {
        Tensor dx = dx0.clone();
        std::vector<double> ws(elems);
        cpu::conv2d_bwd_data<double>(g, dy.data_as<double>(), dys, w.data_as<double>(), dx.data_as<double>(), dxs, acc,
                                     ws.data(), elems * sizeof(double));
        return dx;
      };
      const Tensor ref = run(small);
      // The whole map in one band, then smaller workspaces: fewer rows per band, down to one.
      int runs = 0;
      for (size_t elems = full; path(elems) == "shifted"; elems = elems * 2 / 3) {
        INFO("workspace of " << elems << " elements");
        CS_REQUIRE_CLOSE(run(elems), ref, tol::cpu_same_ops_f64.atol, tol::cpu_same_ops_f64.rtol);
        ++runs;
      }
      REQUIRE(runs >= 3);
    }
  }
}

TEST_CASE("conv2d filter gradient through the shifted GEMM equals the im2col one", "[conv]") {
  // Few output channels (K <= 48) and C >= 64 on maps of >= 2048 pixels take conv2d_bwd_filter_shifted: per tap
  // dW_tap += dy_band^T * x_band_shifted. Reference: the same pass with a workspace of one im2col row (too small for
  // a band). The same products summed in another order: row "cpu fp64 same operations". Covered as the data
  // gradient's test, plus dropped taps (their gradient is 0, or kept in accumulate mode).
  using Case = StrideOneCase;
  for (const Case& c : {Case{1, 48, 50, 64, 32, 5, 5, 1, 2, 2, 0, 0}, Case{2, 45, 47, 64, 16, 3, 3, 1, 1, 1, 0, 0},
                        Case{1, 50, 44, 70, 17, 3, 5, 1, 0, 1, 1, 0}, Case{1, 46, 49, 64, 20, 3, 3, 2, 2, 1, 0, 1},
                        Case{1, 3, 800, 64, 32, 3, 1, 3, 3, 0, 0, 0}, Case{1, 800, 3, 64, 32, 1, 3, 3, 0, 3, 0, 0}}) {
    const ConvGeometry g = c.geom();
    INFO(c);
    const int64_t xs = c.c + 2, dys = c.k + 1;
    const Tensor x = random53({g.n, g.in_h, g.in_w, xs}, 61);
    const Tensor dy = random53({g.n, g.out_h, g.out_w, dys}, 62);
    const Tensor dw0 = random53({g.out_c, g.kernel_h, g.kernel_w, g.in_c}, 63);
    const size_t full = cpu::conv2d_workspace_bytes(g, sizeof(double)) / sizeof(double);
    const size_t small = static_cast<size_t>(c.kh * c.kw * c.c);  // one im2col row
    auto path = [&](size_t elems) { return std::string(cpu::conv2d_path(g, ConvPass::backward_filter, 8, elems * 8)); };
    REQUIRE(path(full) == "shifted");
    REQUIRE(path(small) == "im2col");
    for (bool acc : {false, true}) {
      INFO("accumulate " << acc);
      auto run = [&](size_t elems) {
        Tensor dw = dw0.clone();
        std::vector<double> ws(elems);
        cpu::conv2d_bwd_filter<double>(g, x.data_as<double>(), xs, dy.data_as<double>(), dys, dw.data_as<double>(), acc,
                                       ws.data(), elems * sizeof(double));
        return dw;
      };
      const Tensor ref = run(small);
      int runs = 0;  // one band for the whole map, then fewer rows per band, down to one
      for (size_t elems = full; path(elems) == "shifted"; elems = elems * 2 / 3) {
        INFO("workspace of " << elems << " elements");
        CS_REQUIRE_CLOSE(run(elems), ref, tol::cpu_same_ops_f64.atol, tol::cpu_same_ops_f64.rtol);
        ++runs;
      }
      REQUIRE(runs >= 2);
    }
  }
}

TEST_CASE("conv2d shifted backward passes in fp32: the same bits on 1 and 2 threads", "[conv]") {
  // The data gradient (shifted GEMM blocks fixed by the shape) and the filter gradient ((tap, channel block) items,
  // each dW element summed by one GEMM in a fixed band and image order) must not depend on the thread count.
  const ConvGeometry g = geom_of(conv(32, 5, 1, 1, 2), {2, 40, 60, 64});
  const Tensor x = random({g.n, g.in_h, g.in_w, g.in_c}, 71).cast(DType::f32);
  const Tensor w = random({g.out_c, 5, 5, g.in_c}, 72).cast(DType::f32);
  const Tensor dy = random({g.n, g.out_h, g.out_w, g.out_c}, 73).cast(DType::f32);
  const size_t ws_bytes = cpu::conv2d_workspace_bytes(g, sizeof(float));
  REQUIRE(cpu::conv2d_path(g, ConvPass::backward_data, sizeof(float), ws_bytes) == std::string("shifted"));
  REQUIRE(cpu::conv2d_path(g, ConvPass::backward_filter, sizeof(float), ws_bytes) == std::string("shifted"));
  std::vector<float> ws(ws_bytes / sizeof(float));
  auto passes = [&](int threads) {
    Tensor dx = Tensor::empty({g.n, g.in_h, g.in_w, g.in_c}, DType::f32, Device::cpu);
    Tensor dw = Tensor::empty({g.out_c, 5, 5, g.in_c}, DType::f32, Device::cpu);
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    cpu::conv2d_bwd_data<float>(g, dy.data_as<float>(), g.out_c, w.data_as<float>(), dx.data_as<float>(), g.in_c, false,
                                ws.data(), ws_bytes);
    cpu::conv2d_bwd_filter<float>(g, x.data_as<float>(), g.in_c, dy.data_as<float>(), g.out_c, dw.data_as<float>(),
                                  false, ws.data(), ws_bytes);
    omp_set_num_threads(before);
    return std::make_pair(dx, dw);
  };
  const auto one = passes(1), two = passes(2);
  REQUIRE(std::memcmp(one.first.data(), two.first.data(), one.first.nbytes()) == 0);
  REQUIRE(std::memcmp(one.second.data(), two.second.data(), one.second.nbytes()) == 0);
}

TEST_CASE("conv2d direct kernel for few output channels (fp32, AVX-512) equals the fp64 im2col forward", "[conv]") {
  // K = 16, 32, 48 or 64 on maps the shifted layout takes (small maps included): the forward pass runs the direct
  // kernel when the CPU has AVX-512 (elsewhere the shifted GEMM: then this test checks that instead). Against the fp64
  // im2col result: row "cpu fp32 vs fp64". Covered: 5x5 and 3x3, dilation, padding beyond the kernel's reach, odd C,
  // dropped kernel rows, pixel-strided views, accumulate, workspaces from one band down to a few rows, 1 vs 2 threads
  // bit for bit.
  using Case = StrideOneCase;
  for (const Case& c : {Case{1, 48, 50, 40, 32, 5, 5, 1, 2, 2, 0, 0}, Case{2, 45, 47, 17, 16, 3, 3, 1, 1, 1, 0, 0},
                        Case{1, 50, 44, 33, 48, 3, 5, 1, 0, 1, 1, 0}, Case{1, 46, 49, 36, 32, 3, 3, 2, 3, 1, 0, 1},
                        Case{1, 3, 800, 16, 16, 3, 1, 3, 3, 0, 0, 0}, Case{2, 40, 52, 20, 64, 3, 3, 1, 1, 1, 0, 0},
                        Case{1, 12, 18, 64, 32, 5, 5, 1, 2, 2, 0, 0}}) {
    const ConvGeometry g = c.geom();
    INFO(c);
    const int64_t xs = c.c + 2, ys = c.k + 3;
    const Tensor x = random({g.n, g.in_h, g.in_w, xs}, 81),
                 w = he_scaled(random({g.out_c, g.kernel_h, g.kernel_w, g.in_c}, 82), g.kernel_h * g.kernel_w * g.in_c);
    const Tensor y0 = random({g.n, g.out_h, g.out_w, ys}, 83);
    const Tensor xf = x.cast(DType::f32), wf = w.cast(DType::f32), y0f = y0.cast(DType::f32);
    const size_t full = cpu::conv2d_workspace_bytes(g, sizeof(float)) / sizeof(float);
    auto path = [&](size_t elems) { return std::string(cpu::conv2d_path(g, ConvPass::forward, 4, elems * 4)); };
    const std::string want = path(full);
    if (cpu::conv2d_direct_kernel_available()) {
      REQUIRE(want == "direct");
    } else {
      REQUIRE((want == "shifted" || want == "im2col"));
      WARN("this CPU has no AVX-512: the direct kernel is not used; the " << want << " path is checked instead");
    }
    for (bool acc : {false, true}) {
      INFO("accumulate " << acc);
      std::vector<double> wsd(cpu::conv2d_workspace_bytes(g, sizeof(double)) / sizeof(double));
      Tensor ref = y0.clone();
      cpu::conv2d_fwd<double>(g, x.data_as<double>(), xs, w.data_as<double>(), ref.data_as<double>(), ys, acc,
                              wsd.data(), wsd.size() * sizeof(double), cpu::ConvFwdPath::im2col);
      auto run = [&](size_t elems, int threads) {
        Tensor y = y0f.clone();
        std::vector<float> ws(elems);
        const int before = omp_get_max_threads();
        omp_set_num_threads(threads);
        cpu::conv2d_fwd<float>(g, xf.data_as<float>(), xs, wf.data_as<float>(), y.data_as<float>(), ys, acc, ws.data(),
                               elems * sizeof(float));
        omp_set_num_threads(before);
        return y;
      };
      int runs = 0;
      // Down to one im2col row, the least any path accepts (the im2col path, taken without AVX-512 for the small
      // maps, keeps its name for every workspace size).
      const size_t row = static_cast<size_t>(g.kernel_h * g.kernel_w * g.in_c);
      for (size_t elems = full; elems >= row && path(elems) == want; elems = elems * 2 / 3) {
        INFO("workspace of " << elems << " elements");
        const Tensor y1 = run(elems, 1), y2 = run(elems, 2);
        REQUIRE(std::memcmp(y1.data(), y2.data(), y1.nbytes()) == 0);
        CS_REQUIRE_CLOSE(y1.cast(DType::f64), ref, tol::cpu_f32_vs_f64.atol, tol::cpu_f32_vs_f64.rtol);
        ++runs;
      }
      REQUIRE(runs >= 2);
    }
  }
}

TEST_CASE("CLIMSEG_CPU_DISPATCH=portable turns the AVX-512 direct kernel off", "[conv][dispatch]") {
  // ctest runs this case also with CLIMSEG_CPU_DISPATCH=portable (grad_test_conv_grads_portable) and with a bad value
  // (grad_test_conv_grads_bad_dispatch: refused, naming the variable); docs/tolerances.md.
  const char* env = std::getenv("CLIMSEG_CPU_DISPATCH");
  const std::string mode = env != nullptr ? env : "";
  INFO("CLIMSEG_CPU_DISPATCH=" << mode);
  const bool cpu_has = __builtin_cpu_supports("avx512f");
  if (!mode.empty() && mode != "auto" && mode != "portable") {
    // A bad value is refused, naming the variable and the accepted values (grad_test_conv_grads_bad_dispatch).
    REQUIRE_THROWS_WITH(cpu::cpu_dispatch(), Catch::Contains("CLIMSEG_CPU_DISPATCH=" + mode +
                                                             ": expected auto or portable"));
    REQUIRE_THROWS_WITH(cpu::conv2d_direct_kernel_available(), Catch::Contains("CLIMSEG_CPU_DISPATCH=" + mode));
    return;
  }
  const ConvGeometry g = StrideOneCase{1, 48, 50, 40, 32, 5, 5, 1, 2, 2, 0, 0}.geom();  // a direct-kernel shape
  const std::string path = cpu::conv2d_path(g, ConvPass::forward, 4, cpu::conv2d_workspace_bytes(g, 4));
  if (mode == "portable") {
    REQUIRE(cpu::cpu_dispatch() == cpu::CpuDispatch::portable);
    REQUIRE_FALSE(cpu::conv2d_direct_kernel_available());
    REQUIRE(path == "shifted");
  } else {
    REQUIRE(cpu::cpu_dispatch() == cpu::CpuDispatch::automatic);
    REQUIRE(cpu::conv2d_direct_kernel_available() == cpu_has);
    REQUIRE(path == (cpu_has ? "direct" : "shifted"));
  }
}
