// SoftmaxXent (weighted softmax cross-entropy + argmax + TP/FP/FN counts), CPU path in double:
// - central-difference gradient checks of d loss / d logits for every reduction, with and without class weights
//   and ignore_index, on several shapes (odd sizes, a single pixel), label dtypes i32/i64/u8;
// - accumulate mode, channel-slice views of logits, labels and dlogits (nothing outside the slices written);
// - the loss value, argmax mask and counts against a naive reference written here;
// - the loss does not depend on the OpenMP thread count (fixed-order blocks);
// - bad labels throw with the value and position; the reference systems' class weights.
// tests/util/gradcheck.h feeds fp64 to every input, so it cannot drive a layer with a class-index input: this file
// has its own small checker with the same test (|a - n| <= tol * max(1, |a|, |n|), row "gradcheck fp64").
#include <catch2/catch.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/philox.h"
#include "layers/softmax_xent.h"
#include "train/metrics.h"
#include "tests/util/compare.h"
#include "tests/util/tolerances.h"

using namespace climseg;
using namespace climseg::test;

namespace {

double uni(uint64_t seed, uint64_t stream, uint64_t i) { return philox_uniform(seed, stream, i); }

// Logits in U(-2, 2); labels uniform in [0, K), with about 1/8 of them set to `ignore` when ignore >= 0.
Tensor make_logits(Shape s, uint64_t seed) {
  Tensor t = Tensor::empty(s, DType::f64, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, 4.0 * uni(seed, 1, static_cast<uint64_t>(i)) - 2.0);
  return t;
}
Tensor make_labels(Shape s, int64_t K, int64_t ignore, DType dt, uint64_t seed) {
  Tensor t = Tensor::empty(Shape{s.n, s.h, s.w, 1}, dt, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t l = std::min<int64_t>(K - 1, static_cast<int64_t>(uni(seed, 2, static_cast<uint64_t>(i)) * K));
    if (ignore >= 0 && uni(seed, 3, static_cast<uint64_t>(i)) < 0.125) l = ignore;
    t.set_flat(i, static_cast<double>(l));
  }
  return t;
}

Tensor bytes(size_t n) {
  return n ? Tensor::zeros(Shape{1, 1, 1, static_cast<int64_t>(n)}, DType::u8, Device::cpu) : Tensor();
}

struct Run {
  Tensor y, saved, dx;
};

// Forward (and backward with dy = r unless dx_mode is unset) on the CPU in the logits' dtype.
Run run(SoftmaxXent& l, const Tensor& x, const Tensor& lab, double r, bool do_backward = true,
        GradMode mode = GradMode::overwrite, Tensor dx = Tensor()) {
  ExecContext ctx(Device::cpu);
  MemoryNeeds m = l.memory_needs({x.shape(), lab.shape()}, x.dtype());
  Run out;
  out.y = Tensor::zeros(Shape{1, 1, 1, 1}, x.dtype(), Device::cpu);
  out.saved = bytes(m.saved_bytes);
  ForwardArgs fa;
  fa.x = {x, lab};
  fa.y = out.y;
  fa.saved = out.saved;
  fa.workspace = bytes(m.fwd_workspace);
  l.forward(ctx, fa);
  if (!do_backward) return out;
  out.dx = dx.defined() ? dx : Tensor::zeros(x.shape(), x.dtype(), Device::cpu);
  Tensor dy = Tensor::zeros(Shape{1, 1, 1, 1}, x.dtype(), Device::cpu);
  dy.set_flat(0, r);
  BackwardArgs ba;
  ba.x = {x, lab};
  ba.y = out.y;
  ba.dy = dy;
  ba.dx = {out.dx, Tensor()};
  ba.dx_mode = {mode, GradMode::overwrite};
  ba.saved = out.saved;
  ba.workspace = bytes(m.bwd_workspace);
  l.backward(ctx, ba);
  return out;
}

// Naive double reference of the loss and the counts.
struct Ref {
  double loss = 0;
  std::vector<int64_t> counts;  // (N, 3, K)
  std::vector<int> argmax;
};
Ref reference(const SoftmaxXentConfig& c, const Tensor& x, const Tensor& lab) {
  const Shape s = x.shape();
  const int64_t K = s.c, HW = s.h * s.w;
  std::vector<double> w = c.class_weights.empty() ? std::vector<double>(static_cast<size_t>(K), 1.0) : c.class_weights;
  Ref r;
  r.counts.assign(static_cast<size_t>(3 * s.n * K), 0);
  double sum = 0, wsum = 0;
  int64_t nz = 0;
  for (int64_t p = 0; p < s.pixels(); ++p) {
    const int64_t n = p / HW, hh = (p % HW) / s.w, ww = p % s.w;
    std::vector<double> v(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) v[static_cast<size_t>(k)] = x.get(n, hh, ww, k);
    int am = static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
    r.argmax.push_back(am);
    const int64_t l = static_cast<int64_t>(lab.get(n, hh, ww, 0));
    if (c.ignore_index >= 0 && l == c.ignore_index) continue;
    double m = *std::max_element(v.begin(), v.end()), se = 0;
    for (double e : v) se += std::exp(e - m);
    const double wl = w[static_cast<size_t>(l)];
    sum += wl * (m + std::log(se) - v[static_cast<size_t>(l)]);
    wsum += wl;
    nz += wl != 0;
    int64_t* cn = r.counts.data() + n * 3 * K;
    if (am == l) {
      cn[l]++;
    } else {
      cn[K + am]++;
      cn[2 * K + l]++;
    }
  }
  double denom = xent_denominator(c.reduction, s.pixels(), wsum, nz);
  r.loss = denom != 0 ? c.scale * sum / denom : 0.0;
  return r;
}

// Central differences on up to 64 logits; returns the max relative error and fails with details.
void check_grad(SoftmaxXent& l, const Tensor& x, const Tensor& lab, double r) {
  Run a = run(l, x, lab, r);
  const double h = 1e-5;
  const int64_t n = x.numel();
  const int64_t stride = std::max<int64_t>(1, n / 64);
  double worst = 0;
  int checked = 0;
  for (int64_t i = 0; i < n; i += stride) {
    const double v = x.get_flat(i);
    x.set_flat(i, v + h);
    const double lp = run(l, x, lab, r, false).y.get_flat(0) * r;
    x.set_flat(i, v - h);
    const double lm = run(l, x, lab, r, false).y.get_flat(0) * r;
    x.set_flat(i, v);
    const double num = (lp - lm) / (2 * h), an = a.dx.get_flat(i);
    const double rel = std::fabs(an - num) / std::max({1.0, std::fabs(an), std::fabs(num)});
    worst = std::max(worst, rel);
    ++checked;
    INFO("d loss / d logits[" << i << "]: analytic " << an << ", numeric " << num);
    REQUIRE(rel <= tol::gradcheck_f64.rtol);
  }
  REQUIRE(checked > 0);
}

const Shape kShapes[] = {{2, 5, 7, 3}, {1, 1, 1, 3}, {3, 4, 2, 3}, {1, 7, 5, 3}};

std::vector<SoftmaxXentConfig> configs() {
  std::vector<SoftmaxXentConfig> v;
  for (XentReduction red : {XentReduction::sum, XentReduction::mean, XentReduction::weighted_mean,
                            XentReduction::sum_by_nonzero_weights}) {
    for (int variant = 0; variant < 3; ++variant) {
      SoftmaxXentConfig c;
      c.reduction = red;
      if (variant >= 1) c.class_weights = {0.3, 2.5, 1.25};
      if (variant == 2) {
        c.ignore_index = 2;  // a valid class index: those pixels drop out
        c.scale = 0.1;
      }
      v.push_back(c);
    }
  }
  v.push_back(SoftmaxXentConfig::gb_deeplab());
  v.push_back(SoftmaxXentConfig::gb_tiramisu());
  v.push_back(SoftmaxXentConfig::deepcam());
  return v;
}

std::string describe(const SoftmaxXentConfig& c) {
  std::string s = std::string(xent_reduction_name(c.reduction)) + " scale " + std::to_string(c.scale) +
                  " ignore " + std::to_string(c.ignore_index) + " weights";
  for (double w : c.class_weights) s += " " + std::to_string(w);
  return s;
}

}  // namespace

TEST_CASE("softmax_xent gradient, every reduction, weights and ignore_index", "[grad]") {
  uint64_t seed = 7;
  for (const SoftmaxXentConfig& c : configs()) {
    for (Shape s : kShapes) {
      INFO(describe(c) << " shape " << s.str());
      SoftmaxXent l(c);
      Tensor x = make_logits(s, seed);
      Tensor lab = make_labels(s, 3, c.ignore_index, DType::i32, seed++);
      check_grad(l, x, lab, 0.75);
    }
  }
}

TEST_CASE("softmax_xent gradient, other class counts and label dtypes", "[grad]") {
  for (int64_t K : {1, 2, 5, 17}) {
    for (DType ld : {DType::i32, DType::i64, DType::u8}) {
      INFO("K " << K << " labels " << dtype_name(ld));
      SoftmaxXentConfig c;
      c.num_classes = K;
      c.reduction = XentReduction::weighted_mean;
      for (int64_t k = 0; k < K; ++k) c.class_weights.push_back(0.5 + 0.25 * static_cast<double>(k));
      SoftmaxXent l(c);
      Shape s{2, 3, 5, K};
      Tensor x = make_logits(s, 99);
      Tensor lab = make_labels(s, K, -1, ld, 99);
      check_grad(l, x, lab, -1.3);
    }
  }
}

TEST_CASE("softmax_xent loss, argmax and counts match a naive reference", "[grad]") {
  uint64_t seed = 41;
  for (const SoftmaxXentConfig& c : configs()) {
    for (Shape s : kShapes) {
      INFO(describe(c) << " shape " << s.str());
      SoftmaxXent l(c);
      Tensor x = make_logits(s, seed);
      Tensor lab = make_labels(s, 3, c.ignore_index, DType::i64, seed++);
      Run a = run(l, x, lab, 1.0, false);
      Ref r = reference(c, x, lab);
      REQUIRE(std::fabs(a.y.get_flat(0) - r.loss) <= 1e-12 * std::max(1.0, std::fabs(r.loss)));
      ExecContext ctx(Device::cpu);
      SoftmaxXentMetrics m = SoftmaxXent::read_metrics(ctx, a.saved, s);
      REQUIRE(std::fabs(m.loss - r.loss) <= 1e-12 * std::max(1.0, std::fabs(r.loss)));
      for (int64_t n = 0; n < s.n; ++n)
        for (int64_t k = 0; k < 3; ++k) {
          REQUIRE(m.tp[static_cast<size_t>(n * 3 + k)] == r.counts[static_cast<size_t>((n * 3 + 0) * 3 + k)]);
          REQUIRE(m.fp[static_cast<size_t>(n * 3 + k)] == r.counts[static_cast<size_t>((n * 3 + 1) * 3 + k)]);
          REQUIRE(m.fn[static_cast<size_t>(n * 3 + k)] == r.counts[static_cast<size_t>((n * 3 + 2) * 3 + k)]);
        }
      Tensor mask = SoftmaxXent::argmax_mask(a.saved, s);
      REQUIRE(mask.shape() == (Shape{s.n, s.h, s.w, 1}));
      for (int64_t p = 0; p < s.pixels(); ++p) REQUIRE(mask.get_flat(p) == r.argmax[static_cast<size_t>(p)]);
      // Every non-ignored pixel is a TP, or one FP and one FN.
      int64_t valid = 0;
      for (int64_t p = 0; p < s.pixels(); ++p)
        valid += !(c.ignore_index >= 0 && lab.get_flat(p) == static_cast<double>(c.ignore_index));
      REQUIRE(m.valid_pixels == valid);
      int64_t tot = 0;
      for (int64_t k = 0; k < 3; ++k) {
        tot += m.tp_total(k) + m.fn_total(k);
        REQUIRE(m.fp_total(k) >= 0);
      }
      REQUIRE(tot == valid);
    }
  }
}

TEST_CASE("softmax_xent accumulate mode and channel-slice views", "[grad]") {
  SoftmaxXentConfig c = SoftmaxXentConfig::deepcam();
  c.ignore_index = 1;
  SoftmaxXent l(c);
  const Shape s{2, 5, 7, 3};
  Tensor x = make_logits(s, 5);
  Tensor lab = make_labels(s, 3, 1, DType::i32, 5);
  Run base = run(l, x, lab, 2.0);

  // Accumulate: noise + the overwrite result.
  Tensor noise = make_logits(s, 6);
  Tensor acc = noise.clone();
  run(l, x, lab, 2.0, true, GradMode::accumulate, acc);
  for (int64_t i = 0; i < acc.numel(); ++i)
    REQUIRE(std::fabs(acc.get_flat(i) - (noise.get_flat(i) + base.dx.get_flat(i))) <= 1e-12);

  // Slices: logits channels [2, 5) of 8, labels channel 1 of 3, dx channels [1, 4) of 6, sentinels elsewhere.
  const double kSent = 12345.678;
  Tensor xw = Tensor::empty(Shape{s.n, s.h, s.w, 8}, DType::f64, Device::cpu);
  for (int64_t i = 0; i < xw.numel(); ++i) xw.set_flat(i, kSent);
  Tensor xv = xw.channel_slice(2, 3);
  xv.copy_from(x);
  Tensor lw = Tensor::empty(Shape{s.n, s.h, s.w, 3}, DType::i32, Device::cpu);
  for (int64_t i = 0; i < lw.numel(); ++i) lw.set_flat(i, 77);
  Tensor lv = lw.channel_slice(1, 1);
  lv.copy_from(lab);
  Tensor dw = Tensor::empty(Shape{s.n, s.h, s.w, 6}, DType::f64, Device::cpu);
  for (int64_t i = 0; i < dw.numel(); ++i) dw.set_flat(i, kSent);
  Tensor dv = dw.channel_slice(1, 3);
  Run sl = run(l, xv, lv, 2.0, true, GradMode::overwrite, dv);
  REQUIRE(sl.y.get_flat(0) == base.y.get_flat(0));
  CS_REQUIRE_CLOSE(dv, base.dx, 0.0, 0.0);
  for (int64_t i = 0; i < dw.numel(); ++i) {
    int64_t ch = i % 6;
    if (ch < 1 || ch >= 4) REQUIRE(dw.get_flat(i) == kSent);
  }
}

TEST_CASE("softmax_xent loss does not depend on the thread count", "[grad]") {
  // 3 samples of 100x90 pixels: several kXentBlock blocks per sample, so threads split the work differently.
  const Shape s{3, 100, 90, 3};
  Tensor x = make_logits(s, 11).cast(DType::f32);
  Tensor lab = make_labels(s, 3, -1, DType::u8, 11);
  SoftmaxXent l(SoftmaxXentConfig::gb_tiramisu());
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  Run one = run(l, x, lab, 1.0);
  omp_set_num_threads(3);
  Run three = run(l, x, lab, 1.0);
  omp_set_num_threads(before);
  REQUIRE(one.y.get_flat(0) == three.y.get_flat(0));
  CS_REQUIRE_CLOSE(three.dx, one.dx, 0.0, 0.0);
  // fp32 against the double path on the same values.
  Run d = run(l, x.cast(DType::f64), lab, 1.0);
  CS_REQUIRE_CLOSE(one.y, d.y, tol::cpu_f32_vs_f64.atol, tol::cpu_f32_vs_f64.rtol);
  CS_REQUIRE_CLOSE(one.dx, d.dx, tol::cpu_f32_vs_f64.atol, tol::cpu_f32_vs_f64.rtol);
}

TEST_CASE("softmax_xent rejects labels outside [0, K) with their value and position", "[grad]") {
  const Shape s{2, 3, 4, 3};
  Tensor x = make_logits(s, 3);
  Tensor lab = make_labels(s, 3, -1, DType::i64, 3);
  lab.set(1, 2, 1, 0, 7.0);
  lab.set(1, 2, 3, 0, -4.0);
  SoftmaxXent l(SoftmaxXentConfig{});
  l.set_name("loss");
  try {
    run(l, x, lab, 1.0, false);
    FAIL("no error for label 7");
  } catch (const Error& e) {
    std::string msg = e.what();
    INFO(msg);
    REQUIRE(msg.find("loss") != std::string::npos);
    REQUIRE(msg.find("label 7 at (n=1, h=2, w=1)") != std::string::npos);
  }
  // -1 with ignore_index -1 ("none") is a bad label too; 255 is ignored when it is the ignore_index.
  Tensor u = make_labels(s, 3, -1, DType::u8, 4);
  u.set(0, 0, 0, 0, 255.0);
  SoftmaxXentConfig c;
  c.ignore_index = 255;
  SoftmaxXent ok(c);
  REQUIRE_NOTHROW(run(ok, x, u, 1.0));
  SoftmaxXent strict(SoftmaxXentConfig{});
  REQUIRE_THROWS_AS(run(strict, x, u, 1.0, false), Error);
  // Shapes: wrong class count, wrong label shape.
  SoftmaxXentConfig c4;
  c4.num_classes = 4;
  SoftmaxXent l4(c4);
  REQUIRE_THROWS_AS(l4.output_shape({s, Shape{2, 3, 4, 1}}), Error);
  REQUIRE_THROWS_AS(l.output_shape({s, Shape{2, 3, 5, 1}}), Error);
}

TEST_CASE("softmax_xent reference-system class weights", "[grad]") {
  std::vector<double> gb = gb2018_class_weights();
  REQUIRE(gb.size() == 3);
  REQUIRE(gb[0] == Approx(0.0218).margin(5e-5));
  REQUIRE(gb[1] == Approx(0.8120).margin(5e-5));
  REQUIRE(gb[2] == Approx(0.1662).margin(5e-5));
  REQUIRE(gb[0] + gb[1] + gb[2] == Approx(1.0));
  std::vector<double> dc = deepcam_class_weights();
  REQUIRE(dc[0] == Approx(1.00173).margin(5e-6));
  REQUIRE(dc[1] == Approx(2.61461).margin(5e-6));
  REQUIRE(dc[2] == Approx(1.71642).margin(5e-6));
  // The generic rule on GB's unrounded frequencies is close to the scripts' rounded numbers.
  std::vector<double> g2 = inverse_sqrt_frequency_weights({0.982, 0.00071, 0.017});
  for (int i = 0; i < 3; ++i) REQUIRE(g2[static_cast<size_t>(i)] == Approx(gb[static_cast<size_t>(i)]).epsilon(2e-3));
  REQUIRE(SoftmaxXentConfig::gb_deeplab().reduction == XentReduction::sum);
  REQUIRE(SoftmaxXentConfig::gb_deeplab().scale == 0.1);
  REQUIRE(SoftmaxXentConfig::gb_tiramisu().reduction == XentReduction::sum_by_nonzero_weights);
  REQUIRE(SoftmaxXentConfig::deepcam().reduction == XentReduction::mean);
}

TEST_CASE("softmax_xent with every pixel ignored gives loss 0 and gradient 0", "[grad]") {
  const Shape s{1, 2, 3, 3};
  Tensor x = make_logits(s, 8);
  Tensor lab = Tensor::empty(Shape{1, 2, 3, 1}, DType::i32, Device::cpu);
  for (int64_t i = 0; i < lab.numel(); ++i) lab.set_flat(i, 0);
  SoftmaxXentConfig c;
  c.ignore_index = 0;
  c.reduction = XentReduction::weighted_mean;
  SoftmaxXent l(c);
  Run a = run(l, x, lab, 1.0);
  REQUIRE(a.y.get_flat(0) == 0.0);
  for (int64_t i = 0; i < a.dx.numel(); ++i) REQUIRE(a.dx.get_flat(i) == 0.0);
}

TEST_CASE("softmax_xent IoU: GB's confusion-matrix mean and DeepCAM's per-sample mean with 0/0 = 1", "[grad]") {
  // Two samples of 2x2 pixels, K = 3. Logits are one-hot on the predicted class.
  const Shape s{2, 2, 2, 3};
  const int pred[8] = {0, 0, 1, 2, 0, 0, 0, 0};
  const int label[8] = {0, 1, 1, 2, 0, 0, 0, 0};
  Tensor x = Tensor::zeros(s, DType::f64, Device::cpu);
  Tensor lab = Tensor::empty(Shape{2, 2, 2, 1}, DType::u8, Device::cpu);
  for (int p = 0; p < 8; ++p) {
    x.set_flat(p * 3 + pred[p], 5.0);
    lab.set_flat(p, label[p]);
  }
  SoftmaxXent l(SoftmaxXentConfig{});
  Run a = run(l, x, lab, 1.0, false);
  ExecContext ctx(Device::cpu);
  SoftmaxXentMetrics m = SoftmaxXent::read_metrics(ctx, a.saved, s);
  // Sample 0: class 0 TP 1 FP 1 -> 1/2; class 1 TP 1 FN 1 -> 1/2; class 2 TP 1 -> 1. Mean 2/3.
  REQUIRE(sample_iou_deepcam(m, 0) == Approx(2.0 / 3.0));
  // Sample 1: class 0 TP 4 -> 1; classes 1 and 2 absent in both: 0/0 = 1. Mean 1.
  REQUIRE(sample_iou_deepcam(m, 1) == Approx(1.0));
  // Batch confusion: class 0 TP 5 FP 1 -> 5/6; class 1 TP 1 FN 1 -> 1/2; class 2 TP 1 -> 1. Mean (5/6+1/2+1)/3.
  EvalTotals t;
  t.add(m, 2);
  REQUIRE(t.mean_iou_gb() == Approx((5.0 / 6.0 + 0.5 + 1.0) / 3.0));
  REQUIRE(t.mean_iou_deepcam() == Approx((2.0 / 3.0 + 1.0) / 2.0));
  REQUIRE_THROWS_AS(sample_iou_deepcam(m, 2), Error);
}

TEST_CASE("softmax_xent initial loss scale: 2^16 for losses divided by the pixel count, less for 'sum'", "[grad]") {
  // docs/training.md, "Loss scaling": the 2018 DeepLabv3+ sum loss has gradients pixel-count times larger than a
  // mean loss; starting it at 2^16 skipped 7 of the first 12 fp16 steps of the small DeepLabv3+ (measured).
  SoftmaxXentConfig c = SoftmaxXentConfig::deepcam();
  REQUIRE(c.initial_loss_scale(3072) == 65536.0);
  REQUIRE(SoftmaxXentConfig::gb_tiramisu().initial_loss_scale(3072) == 65536.0);  // divides by its pixel count
  c.reduction = XentReduction::weighted_mean;
  REQUIRE(c.initial_loss_scale(1) == 65536.0);
  const SoftmaxXentConfig gb = SoftmaxXentConfig::gb_deeplab();
  REQUIRE(gb.initial_loss_scale(1) == 65536.0);
  REQUIRE(gb.initial_loss_scale(2 * 32 * 48) == 16.0);      // 3072 -> 2^12
  REQUIRE(gb.initial_loss_scale(4096) == 16.0);             // a power of 2 is not rounded up further
  REQUIRE(gb.initial_loss_scale(4097) == 8.0);
  REQUIRE(gb.initial_loss_scale(2 * 768 * 1152) == 1.0);    // never below the scaler's floor
  REQUIRE_THROWS_AS(gb.initial_loss_scale(0), Error);
}
