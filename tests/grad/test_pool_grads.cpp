// Finite-difference gradient checks in double of the pooling and resize layers' CPU paths
// (tests/util/gradcheck.h: accumulate mode and channel-slice views included), plus exact checks of the
// semantics the gradients rest on: output sizes, TF 'SAME' padding, first-maximum tie breaking, the average
// divisors, the resize coordinate rules, the gather-form resize backward against the scatter form, and a planned
// Net using all four layers (saved state and workspaces from the arena, outputs written into concat slices).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/net.h"
#include "engine/philox.h"
#include "kernels/cpu/resize.h"
#include "layers/concat.h"
#include "layers/pointwise_conv.h"
#include "layers/pool.h"
#include "layers/resize.h"
#include "tests/util/compare.h"
#include "tests/util/gradcheck.h"
#include "tests/util/tolerances.h"

using namespace climseg;
using namespace climseg::test;

namespace {

void require_pass(const GradCheckResult& r) {
  INFO(r.str());
  REQUIRE(r.ok);
  REQUIRE(r.checked > 0);
}

Tensor random_f64(Shape s, uint64_t seed) {
  Tensor t = Tensor::empty(s, DType::f64);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set_flat(i, 2.0 * philox_uniform(seed, 0, static_cast<uint64_t>(i)) - 1.0);
  return t;
}

// Forward on the CPU in double; returns y (and the saved state through `saved`).
Tensor run_forward(Layer& l, const Tensor& x, Tensor* saved_out = nullptr) {
  ExecContext ctx;
  ForwardArgs f;
  f.x = {x};
  f.y = Tensor::empty(l.output_shape({x.shape()}), x.dtype());
  MemoryNeeds m = l.memory_needs({x.shape()}, x.dtype());
  if (m.saved_bytes) f.saved = Tensor::zeros(Shape{1, 1, 1, static_cast<int64_t>(m.saved_bytes)}, DType::u8,
                                             Device::cpu);
  l.forward(ctx, f);
  if (saved_out) *saved_out = f.saved;
  return f.y;
}

Tensor run_backward(Layer& l, const Tensor& x, const Tensor& saved, const Tensor& dy) {
  ExecContext ctx;
  BackwardArgs b;
  b.x = {x};
  b.dy = dy;
  b.dx = {Tensor::empty(x.shape(), x.dtype())};
  b.dx_mode = {GradMode::overwrite};
  b.saved = saved;
  l.backward(ctx, b);
  return b.dx[0];
}

struct PoolCase {
  Shape in;
  PoolConfig cfg;
  std::string what;
};

PoolConfig rect(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  PoolConfig c;
  c.kh = kh;
  c.kw = kw;
  c.sh = sh;
  c.sw = sw;
  c.ph = ph;
  c.pw = pw;
  return c;
}

std::vector<PoolCase> pool_cases() {
  return {
      {{2, 7, 9, 3}, PoolConfig::explicit_pad(3, 2, 1), "3x3/2 pad 1 (ResNet v1 root, PyTorch)"},
      {{2, 7, 9, 3}, PoolConfig::tf_same(3, 2), "3x3/2 SAME (ResNet root, TF)"},
      {{1, 8, 6, 5}, PoolConfig::tf_same(3, 2), "3x3/2 SAME, even sizes"},
      {{1, 5, 5, 4}, PoolConfig::tf_same(3, 1), "3x3/1 SAME"},
      {{2, 6, 7, 3}, PoolConfig::explicit_pad(2, 2), "2x2/2 (Tiramisu transition down), odd width"},
      {{2, 7, 7, 2}, PoolConfig::explicit_pad(1, 2), "1x1/2 (ResNet v2 shortcut subsampling)"},
      {{1, 7, 5, 2}, PoolConfig::tf_same(1, 2), "1x1/2 SAME"},
      {{1, 9, 10, 2}, PoolConfig::explicit_pad(2, 3), "stride > kernel: 2x2/3"},
      {{1, 9, 10, 2}, PoolConfig::tf_same(2, 3), "stride > kernel, SAME"},
      {{1, 1, 1, 3}, PoolConfig::explicit_pad(1, 1), "1x1 input"},
      {{1, 1, 1, 3}, PoolConfig::tf_same(3, 2), "1x1 input, 3x3/2 SAME"},
      {{2, 3, 3, 4}, PoolConfig::explicit_pad(3, 1), "output 1x1"},
      {{1, 2, 2, 2}, PoolConfig::explicit_pad(3, 2, 1), "2x2 input, 3x3/2 pad 1 (corner windows)"},
      {{1, 5, 8, 33}, rect(3, 2, 1, 2, 1, 1), "rectangular window 3x2, stride 1x2, pad 1x1"},
      {{1, 6, 6, 2}, PoolConfig::explicit_pad(4, 2, 2), "4x4/2 pad 2 (pad = k/2)"},
  };
}

}  // namespace

TEST_CASE("maxpool2d gradient", "[grad][pool]") {
  GradCheckOptions o;  // random inputs are distinct, so no window has a tie within the step
  for (const PoolCase& pc : pool_cases()) {
    INFO(pc.what << " on " << pc.in.str());
    MaxPool2d l(pc.cfg);
    require_pass(check_gradients(l, {pc.in}, o));
  }
}

TEST_CASE("avgpool2d gradient, count_include_pad true and false", "[grad][pool]") {
  for (const PoolCase& pc : pool_cases()) {
    for (bool inc : {true, false}) {
      INFO(pc.what << " on " << pc.in.str() << (inc ? " count_include_pad" : " valid count"));
      PoolConfig c = pc.cfg;
      c.count_include_pad = inc;
      AvgPool2d l(c);
      require_pass(check_gradients(l, {pc.in}, {}));
    }
  }
}

TEST_CASE("global average pool gradient", "[grad][pool]") {
  for (Shape s : {Shape{2, 5, 7, 3}, Shape{1, 1, 1, 1}, Shape{3, 4, 2, 16}, Shape{1, 7, 5, 33}}) {
    GlobalAvgPool l;
    require_pass(check_gradients(l, {s}, {}));
  }
}

TEST_CASE("bilinear resize gradient, all coordinate modes", "[grad][resize]") {
  struct RCase {
    Shape in;
    int64_t oh, ow;
  };
  const RCase cases[] = {
      {{2, 3, 4, 3}, 6, 8},    // x2
      {{1, 3, 5, 2}, 12, 20},  // x4
      {{1, 2, 3, 2}, 16, 24},  // x8
      {{1, 9, 7, 3}, 4, 3},    // downsampling
      {{1, 5, 4, 2}, 7, 9},    // non-integer up
      {{1, 1, 1, 3}, 5, 4},    // 1x1 input
      {{2, 6, 5, 2}, 1, 1},    // output 1x1
      {{1, 4, 4, 17}, 4, 4},   // same size
      {{1, 1, 6, 2}, 3, 11},   // one-row input, down in one axis and up in the other
  };
  for (ResizeMode m : {ResizeMode::align_corners, ResizeMode::half_pixel, ResizeMode::tf_legacy}) {
    for (const RCase& rc : cases) {
      INFO("mode " << static_cast<int>(m) << " " << rc.in.str() << " -> " << rc.oh << "x" << rc.ow);
      BilinearResize l(ResizeConfig::to_size(rc.oh, rc.ow, m));
      GradCheckOptions o;
      o.max_elements = 200;
      require_pass(check_gradients(l, {rc.in}, o));
    }
    BilinearResize s(ResizeConfig::by_scale(2.0, m));
    require_pass(check_gradients(s, {{1, 3, 5, 4}}, {}));
  }
}

TEST_CASE("pool output sizes: explicit padding and TF SAME", "[pool]") {
  MaxPool2d same(PoolConfig::tf_same(3, 2));
  REQUIRE(same.output_shape({{1, 1152, 768, 64}}) == Shape{1, 576, 384, 64});
  REQUIRE(same.output_shape({{1, 7, 9, 1}}) == Shape{1, 4, 5, 1});
  MaxPool2d torch_root(PoolConfig::explicit_pad(3, 2, 1));
  REQUIRE(torch_root.output_shape({{1, 7, 9, 1}}) == Shape{1, 4, 5, 1});
  MaxPool2d sub(PoolConfig::explicit_pad(1, 2));
  REQUIRE(sub.output_shape({{2, 7, 8, 3}}) == Shape{2, 4, 4, 3});
  AvgPool2d bad(PoolConfig::explicit_pad(3, 1, 2));
  REQUIRE_THROWS_WITH(bad.output_shape({{1, 5, 5, 1}}), Catch::Contains("at most half the window"));
  MaxPool2d big(PoolConfig::explicit_pad(17, 1));
  REQUIRE_THROWS_WITH(big.output_shape({{1, 20, 20, 1}}), Catch::Contains("256"));
  // TF SAME 3x3/2 on 8 rows: out 4, pad total 1 -> 0 on top, 1 at the bottom.
  REQUIRE(PoolConfig::tf_same(3, 2).geom({1, 8, 8, 1}, "t").pt == 0);
  REQUIRE(PoolConfig::tf_same(3, 2).geom({1, 7, 7, 1}, "t").pt == 1);
}

TEST_CASE("maxpool2d: ties go to the first maximum in window scan order, padding never wins", "[pool]") {
  // 1 x 4 x 4 x 1, all equal: every window's gradient goes to its first (top-left) image element.
  Tensor x = Tensor::empty({1, 4, 4, 1}, DType::f64);
  for (int64_t i = 0; i < 16; ++i) x.set_flat(i, -2.0);  // negative: a padded zero would win if padding counted
  MaxPool2d l(PoolConfig::explicit_pad(3, 2, 1));
  Tensor saved;
  Tensor y = run_forward(l, x, &saved);
  REQUIRE(y.shape() == Shape{1, 2, 2, 1});
  for (int64_t i = 0; i < 4; ++i) REQUIRE(y.get_flat(i) == -2.0);
  Tensor dy = Tensor::empty(y.shape(), DType::f64);
  for (int64_t i = 0; i < 4; ++i) dy.set_flat(i, 1.0 + i);
  Tensor dx = run_backward(l, x, saved, dy);
  // Windows start at (-1,-1), (-1,1), (1,-1), (1,1): first image elements (0,0), (0,1), (1,0), (1,1).
  for (int64_t h = 0; h < 4; ++h)
    for (int64_t w = 0; w < 4; ++w) {
      double want = 0;
      if (h == 0 && w == 0) want = 1;
      if (h == 0 && w == 1) want = 2;
      if (h == 1 && w == 0) want = 3;
      if (h == 1 && w == 1) want = 4;
      INFO("dx at " << h << "," << w);
      REQUIRE(dx.get(0, h, w, 0) == want);
    }
  // Overlapping windows sharing one maximum: both route to it (gather sums them).
  Tensor x2 = Tensor::zeros({1, 3, 3, 1}, DType::f64, Device::cpu);
  x2.set(0, 1, 1, 0, 5.0);
  MaxPool2d l2(PoolConfig::explicit_pad(2, 1));
  Tensor y2 = run_forward(l2, x2, &saved);
  Tensor dy2 = Tensor::empty(y2.shape(), DType::f64);
  for (int64_t i = 0; i < 4; ++i) dy2.set_flat(i, 1.0);
  Tensor dx2 = run_backward(l2, x2, saved, dy2);
  REQUIRE(dx2.get(0, 1, 1, 0) == 4.0);
  REQUIRE(dx2.get(0, 0, 0, 0) == 0.0);
}

TEST_CASE("maxpool2d propagates NaN (PyTorch semantics) and routes its gradient to the first NaN", "[pool]") {
  Tensor x = Tensor::zeros({1, 2, 2, 1}, DType::f64, Device::cpu);
  x.set(0, 0, 0, 0, 3.0);
  x.set(0, 0, 1, 0, std::nan(""));
  x.set(0, 1, 0, 0, 7.0);
  x.set(0, 1, 1, 0, std::nan(""));
  MaxPool2d l(PoolConfig::explicit_pad(2, 2));
  Tensor saved;
  Tensor y = run_forward(l, x, &saved);
  REQUIRE(std::isnan(y.get_flat(0)));
  Tensor dy = Tensor::empty(y.shape(), DType::f64);
  dy.set_flat(0, 1.0);
  Tensor dx = run_backward(l, x, saved, dy);
  REQUIRE(dx.get(0, 0, 1, 0) == 1.0);
  REQUIRE(dx.get(0, 1, 0, 0) == 0.0);
  REQUIRE(dx.get(0, 1, 1, 0) == 0.0);
}

TEST_CASE("maxpool2d 1x1 / stride 2 is plain subsampling", "[pool]") {
  Tensor x = random_f64({2, 7, 6, 3}, 7);
  MaxPool2d l(PoolConfig::explicit_pad(1, 2));
  Tensor y = run_forward(l, x);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t h = 0; h < 4; ++h)
      for (int64_t w = 0; w < 3; ++w)
        for (int64_t c = 0; c < 3; ++c) REQUIRE(y.get(n, h, w, c) == x.get(n, 2 * h, 2 * w, c));
}

TEST_CASE("avgpool2d divisors: count_include_pad vs image elements only", "[pool]") {
  Tensor x = Tensor::empty({1, 2, 2, 1}, DType::f64);
  for (int64_t i = 0; i < 4; ++i) x.set_flat(i, 1.0);
  PoolConfig inc = PoolConfig::explicit_pad(3, 2, 1);
  PoolConfig exc = inc;
  exc.count_include_pad = false;
  AvgPool2d a(inc), b(exc);
  Tensor ya = run_forward(a, x), yb = run_forward(b, x);
  REQUIRE(ya.shape() == Shape{1, 1, 1, 1});
  REQUIRE(ya.get_flat(0) == Approx(4.0 / 9.0));  // PyTorch default
  REQUIRE(yb.get_flat(0) == 1.0);                // TF SAME / count_include_pad=False
  // TF SAME 3x3/2 on 2x2: pad total 1 -> bottom/right only, the window covers the 4 image elements.
  AvgPool2d s(PoolConfig::tf_same(3, 2));
  REQUIRE(run_forward(s, x).get_flat(0) == 1.0);
}

TEST_CASE("global average pool is the mean over pixels", "[pool]") {
  // One chunk, and 64 chunks of 313 pixels with a short last one (the blocked order of kernels/cpu/pool.h).
  for (Shape s : {Shape{2, 5, 3, 4}, Shape{2, 100, 200, 3}}) {
    Tensor x = random_f64(s, 3);
    GlobalAvgPool l;
    Tensor y = run_forward(l, x);
    REQUIRE(y.shape() == Shape{s.n, 1, 1, s.c});
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t c = 0; c < s.c; ++c) {
        double sum = 0;
        for (int64_t h = 0; h < s.h; ++h)
          for (int64_t w = 0; w < s.w; ++w) sum += x.get(n, h, w, c);
        REQUIRE(y.get(n, 0, 0, c) == Approx(sum / static_cast<double>(s.h * s.w)).margin(1e-15).epsilon(1e-12));
      }
  }
  // fp32: the blocked sum stays close to the double mean over a whole 1152 x 768 image (a sequential fp32 sum of
  // 884736 values drifts by 1e-5 relative or more).
  const Shape big{1, 1152, 768, 1};
  Tensor xd = Tensor::empty(big, DType::f64);
  for (int64_t i = 0; i < xd.numel(); ++i) xd.set_flat(i, 1.0 + philox_uniform(9, 0, static_cast<uint64_t>(i)));
  Tensor xf = xd.cast(DType::f32);
  double ref = 0;
  for (int64_t i = 0; i < xf.numel(); ++i) ref += xf.get_flat(i);
  ref /= static_cast<double>(xf.numel());
  GlobalAvgPool l;
  Tensor yf = run_forward(l, xf);
  REQUIRE(yf.get_flat(0) == Approx(ref).epsilon(1e-6));
}

TEST_CASE("bilinear resize coordinate rules", "[resize]") {
  using cpu::resize_coord;
  // align_corners: 3 -> 5, src = d * 2 / 4.
  auto r = resize_coord(3, 3, 5, ResizeMode::align_corners);
  REQUIRE(r.i0 == 1);
  REQUIRE(r.i1 == 2);
  REQUIRE(r.lambda == 0.5);
  REQUIRE(resize_coord(4, 3, 5, ResizeMode::align_corners).i0 == 2);
  REQUIRE(resize_coord(4, 3, 5, ResizeMode::align_corners).i1 == 2);
  // half pixel: 2 -> 4, src = (d + 0.5) / 2 - 0.5 = -0.25 (clamped), 0.25, 0.75, 1.25.
  REQUIRE(resize_coord(0, 2, 4, ResizeMode::half_pixel).lambda == 0.0);
  REQUIRE(resize_coord(1, 2, 4, ResizeMode::half_pixel).lambda == 0.25);
  REQUIRE(resize_coord(3, 2, 4, ResizeMode::half_pixel).i0 == 1);
  REQUIRE(resize_coord(3, 2, 4, ResizeMode::half_pixel).i1 == 1);
  // tf legacy: 2 -> 4, src = d / 2: 0, 0.5, 1, 1.5 (clamped to the last row, weights on the same pixel).
  REQUIRE(resize_coord(1, 2, 4, ResizeMode::tf_legacy).lambda == 0.5);
  REQUIRE(resize_coord(3, 2, 4, ResizeMode::tf_legacy).i0 == 1);
  REQUIRE(resize_coord(3, 2, 4, ResizeMode::tf_legacy).i1 == 1);
  // A constant image stays constant in every mode, up or down.
  for (ResizeMode m : {ResizeMode::align_corners, ResizeMode::half_pixel, ResizeMode::tf_legacy}) {
    Tensor x = Tensor::empty({1, 3, 4, 2}, DType::f64);
    for (int64_t i = 0; i < x.numel(); ++i) x.set_flat(i, 0.75);
    for (auto [oh, ow] : {std::pair<int64_t, int64_t>{7, 9}, {2, 1}, {1, 1}}) {
      BilinearResize l(ResizeConfig::to_size(oh, ow, m));
      Tensor y = run_forward(l, x);
      for (int64_t i = 0; i < y.numel(); ++i) REQUIRE(y.get_flat(i) == Approx(0.75).epsilon(1e-15));
    }
  }
  // align_corners keeps the corners exactly.
  Tensor x = random_f64({1, 3, 4, 1}, 5);
  BilinearResize ac(ResizeConfig::to_size(7, 10, ResizeMode::align_corners));
  Tensor y = run_forward(ac, x);
  REQUIRE(y.get(0, 0, 0, 0) == x.get(0, 0, 0, 0));
  REQUIRE(y.get(0, 6, 9, 0) == x.get(0, 2, 3, 0));
  // The inverse mapping: every output index lies in the sampled range of its taps, and the ranges are tight.
  for (ResizeMode m : {ResizeMode::align_corners, ResizeMode::half_pixel, ResizeMode::tf_legacy})
    for (auto [in, out] : {std::pair<int64_t, int64_t>{3, 7}, {7, 3}, {1, 5}, {5, 1}, {4, 32}, {13, 13}, {2, 3}}) {
      for (int64_t i = 0; i < in; ++i) {
        const int64_t a = cpu::resize_first_out(i - 1, in, out, m), b = cpu::resize_first_out(i + 1, in, out, m);
        for (int64_t d = 0; d < out; ++d) {
          const auto c = resize_coord(d, in, out, m);
          const bool samples = c.i0 == i || c.i1 == i;
          INFO("mode " << static_cast<int>(m) << " in " << in << " out " << out << " i " << i << " d " << d);
          if (samples) REQUIRE((d >= a && d < b));
          if (d < a || d >= b) REQUIRE_FALSE(samples);
        }
      }
    }
}

TEST_CASE("bilinear resize: gather-form backward equals the scatter form (double)", "[resize]") {
  const Tolerance& t = tol::cpu_same_ops_f64;
  struct Sz {
    Shape in;
    int64_t oh, ow;
  };
  const Sz sizes[] = {{{2, 5, 7, 3}, 10, 14}, {{1, 3, 4, 5}, 24, 32}, {{1, 2, 3, 2}, 16, 24},
                      {{1, 17, 13, 2}, 5, 4}, {{1, 6, 5, 3}, 7, 11},  {{1, 1, 1, 2}, 3, 3},
                      {{2, 4, 6, 1}, 1, 1},   {{1, 9, 9, 4}, 9, 9}};
  for (ResizeMode m : {ResizeMode::align_corners, ResizeMode::half_pixel, ResizeMode::tf_legacy}) {
    for (const Sz& s : sizes) {
      INFO("mode " << static_cast<int>(m) << " " << s.in.str() << " -> " << s.oh << "x" << s.ow);
      cpu::ResizeGeom g{s.in.n, s.in.h, s.in.w, s.in.c, s.oh, s.ow, m};
      Tensor dy = random_f64({s.in.n, s.oh, s.ow, s.in.c}, 11);
      Tensor gather = Tensor::empty(s.in, DType::f64), scatter = Tensor::empty(s.in, DType::f64);
      cpu::resize_bwd<double>(g, dy.data_as<double>(), s.in.c, gather.data_as<double>(), s.in.c, false);
      cpu::resize_bwd_scatter<double>(g, dy.data_as<double>(), s.in.c, scatter.data_as<double>(), s.in.c);
      CS_REQUIRE_CLOSE(gather, scatter, t.atol, t.rtol);
    }
  }
}

// ---- inside a planned Net: saved argmax and workspaces from the arena, outputs written into concat slices ------

TEST_CASE("pool and resize layers in a planned Net: whole-graph gradients match finite differences (fp64)",
          "[grad][pool][resize][net]") {
  // A DeepLabv3+-like miniature: root max pool (TF SAME), ASPP image-level branch (global pool -> 1x1 -> TF1
  // legacy resize), an average-pool branch, a zero-copy concat that the pool/resize layers write into, and a x2
  // half-pixel decoder upsampling.
  Net net;
  auto x = net.input("x", {2, 9, 11, 4});
  auto a = net.add("conv_a", std::make_unique<PointwiseConv>(6), {x});
  auto p = net.add("pool", std::make_unique<MaxPool2d>(PoolConfig::tf_same(3, 2)), {a});
  auto gp = net.add("gap", std::make_unique<GlobalAvgPool>(), {p});
  auto gc = net.add("gap_conv", std::make_unique<PointwiseConv>(3), {gp});
  auto r1 = net.add("gap_up", std::make_unique<BilinearResize>(ResizeConfig::to_size(5, 6, ResizeMode::tf_legacy)),
                    {gc});
  auto a2 = net.add("avg", std::make_unique<AvgPool2d>(PoolConfig::explicit_pad(3, 1, 1)), {p});
  auto c = net.add("cat", std::make_unique<Concat>(), {r1, a2, p});
  auto up = net.add("up", std::make_unique<BilinearResize>(ResizeConfig::by_scale(2.0, ResizeMode::half_pixel)),
                    {c});
  net.add("head", std::make_unique<PointwiseConv>(2), {up});
  net.compile(NetOptions{.dtype = DType::f64, .input_grads = true});
  REQUIRE(net.output().shape() == Shape{2, 10, 12, 2});
  INFO("concat inputs written in place: " << net.stats().concat_inputs_aliased << ", copied: "
                                          << net.stats().concat_inputs_copied);
  REQUIRE(net.stats().concat_inputs_aliased >= 2);  // the resize and the average pool write into their slices
  net.init_params(5);
  ExecContext ctx;
  auto fill = [](const Tensor& t, uint64_t stream, double scale) {
    for (int64_t i = 0; i < t.numel(); ++i)
      t.set_flat(i, scale * (2.0 * philox_uniform(41, stream, static_cast<uint64_t>(i)) - 1.0));
  };
  fill(net.param_buffer(), 1, 0.5);
  fill(net.input_tensor(x), 2, 1.0);
  Tensor r = Tensor::empty(net.output().shape(), DType::f64, Device::cpu);
  fill(r, 3, 1.0);
  auto loss = [&] {
    double s = 0;
    Tensor y = net.output();
    for (int64_t i = 0; i < y.numel(); ++i) s += y.get_flat(i) * r.get_flat(i);
    return s;
  };
  net.forward(ctx);
  net.output_grad().copy_from(r);
  net.backward(ctx);
  Tensor g = net.grad_buffer().clone();
  Tensor gx = net.input_grad(x).clone();
  const double h = 1e-6;
  int checked = 0;
  auto check = [&](const Tensor& target, int64_t i, double analytic, const std::string& what) {
    const double v = target.get_flat(i);
    target.set_flat(i, v + h);
    net.forward(ctx);
    const double lp = loss();
    target.set_flat(i, v - h);
    net.forward(ctx);
    const double lm = loss();
    target.set_flat(i, v);
    const double numeric = (lp - lm) / (2 * h);
    INFO(what << "[" << i << "]: analytic " << analytic << " numeric " << numeric);
    REQUIRE(std::fabs(analytic - numeric) <=
            tol::gradcheck_f64.rtol * std::max({1.0, std::fabs(analytic), std::fabs(numeric)}));
    ++checked;
  };
  for (const Net::Param& prm : net.params())
    for (int64_t j = 0; j < prm.spec.shape.numel(); j += 2)
      check(net.param_buffer(), prm.offset + j, g.get_flat(prm.offset + j), prm.name);
  for (int64_t i = 0; i < gx.numel(); i += 3) check(net.input_tensor(x), i, gx.get_flat(i), "input");
  REQUIRE(checked > 100);
}
