// SoftmaxXent, CUDA vs the CPU path: the loss, the argmax mask, the per-sample TP/FP/FN counts and dlogits, in
// fp32, fp16 and bf16 logits, for every reduction, with class weights and ignore_index, i32/i64/u8 labels,
// contiguous and channel-slice views, overwrite and accumulate modes. The reference is the CPU path in fp32 on the
// values the device sees (logits rounded to the tested dtype first), so the argmax and the counts must match
// exactly; the loss and the gradients use the "reductions" rows of tests/util/tolerances.h (the loss is a sum over
// pixels; the gradient goes through expf and a division, a few ulps apart from the host's libm).
// Also: bit-identical results on repeated runs (no atomics), labels outside [0, K) reported by read_metrics() and
// by validate_labels, and a full 768x1152 sample.
//
// Needs a CUDA device: tests/util/cuda_main.cpp exits 77 (skipped) without one.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/philox.h"
#include "layers/softmax_xent.h"
#include "tests/util/compare.h"
#include "tests/util/cuda_parity.h"
#include "tests/util/device_operand.h"
#include "tests/util/tolerances.h"

using namespace climseg;
using climseg::test::Tolerance;
using test::rounded;
namespace tol = climseg::test::tol;

namespace {

// The loss and the gradients are reductions (tests/util/cuda_parity.h picks the row).
const Tolerance& tolerance(DType dt) { return test::cuda_tolerance(dt, test::CudaKind::reduction); }

Tensor random_logits(Shape s, uint64_t seed) {
  Tensor t = Tensor::empty(s, DType::f32, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, 6.0 * philox_uniform(seed, 0, static_cast<uint64_t>(i)) - 3.0);
  return t;
}
Tensor random_labels(Shape s, int64_t K, int64_t ignore, DType dt, uint64_t seed) {
  Tensor t = Tensor::empty(Shape{s.n, s.h, s.w, 1}, dt, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t l = std::min<int64_t>(K - 1, static_cast<int64_t>(philox_uniform(seed, 1, static_cast<uint64_t>(i)) * K));
    if (ignore >= 0 && philox_uniform(seed, 2, static_cast<uint64_t>(i)) < 0.1) l = ignore;
    t.set_flat(i, static_cast<double>(l));
  }
  return t;
}

double round_to(double v, DType dt) {
  Tensor t = Tensor::empty(Shape{1, 1, 1, 1}, DType::f32, Device::cpu);
  t.set_flat(0, v);
  return rounded(t, dt).get_flat(0);
}

// `ref` on the device, contiguous or as channels [3, 3 + C) of a wider buffer.
Tensor to_device(const Tensor& ref, DType dt, bool strided) {
  if (!strided) return ref.cast(dt).to(Device::cuda);
  Shape ws = ref.shape();
  ws.c += 5;
  Tensor wide = Tensor::zeros(ws, dt, Device::cpu);
  wide.channel_slice(3, ref.shape().c).copy_from(ref.cast(dt));
  return wide.to(Device::cuda).channel_slice(3, ref.shape().c);
}

struct Result {
  Tensor y, saved, dx;  // y and dx on the host (fp32); saved on the layer's device
};

Result run(ExecContext& ctx, SoftmaxXent& l, const Tensor& x, const Tensor& lab, double dy_value, DType dt,
           GradMode mode, const Tensor& dx_init, bool strided) {
  const Device d = ctx.device();
  MemoryNeeds m = l.memory_needs({x.shape(), lab.shape()}, dt);
  auto bytes = [&](size_t n) {
    return n ? Tensor::zeros(Shape{1, 1, 1, static_cast<int64_t>(n)}, DType::u8, d, &ctx) : Tensor();
  };
  Result r;
  Tensor xd = d == Device::cpu ? x : to_device(x, dt, strided);
  Tensor ld = d == Device::cpu ? lab : (strided ? to_device(lab, lab.dtype(), true) : lab.to(Device::cuda));
  Tensor y = d == Device::cpu ? Tensor::zeros(Shape{1, 1, 1, 1}, dt, d) : Tensor::zeros(Shape{1, 1, 1, 1}, dt, d, &ctx);
  r.saved = bytes(m.saved_bytes);
  ForwardArgs fa;
  fa.x = {xd, ld};
  fa.y = y;
  fa.saved = r.saved;
  fa.workspace = bytes(m.fwd_workspace);
  l.forward(ctx, fa);
  Tensor dy = Tensor::empty(Shape{1, 1, 1, 1}, DType::f32, Device::cpu);
  dy.set_flat(0, dy_value);
  Tensor dx = d == Device::cpu ? dx_init.clone() : to_device(dx_init, dt, strided);
  BackwardArgs ba;
  ba.x = {xd, ld};
  ba.y = y;
  ba.dy = d == Device::cpu ? dy : dy.cast(dt).to(Device::cuda);
  ba.dx = {dx, Tensor()};
  ba.dx_mode = {mode, GradMode::overwrite};
  ba.saved = r.saved;
  ba.workspace = bytes(m.bwd_workspace);
  l.backward(ctx, ba);
  ctx.synchronize();
  r.y = y.to(Device::cpu).cast(DType::f32);
  r.dx = dx.to(Device::cpu).cast(DType::f32);
  return r;
}

// multiplier: the loss-scale gradient multiplier (SoftmaxXent::set_grad_multiplier), the same on both devices.
void check_parity(const SoftmaxXentConfig& c, Shape s, DType dt, DType ldt, bool strided, GradMode mode,
                  double multiplier = 1.0) {
  INFO(xent_reduction_name(c.reduction) << " " << dtype_name(dt) << " labels " << dtype_name(ldt)
                                        << (strided ? " strided" : " contiguous")
                                        << (mode == GradMode::accumulate ? " accumulate" : " overwrite") << " "
                                        << s.str() << " multiplier " << multiplier);
  const Tolerance& t = tolerance(dt);
  INFO("tolerance row: " << t.name);
  ExecContext cpu, gpu(Device::cuda, 0);
  SoftmaxXent l(c);
  l.set_grad_multiplier(multiplier);
  Tensor x = rounded(random_logits(s, 17), dt);
  Tensor lab = random_labels(s, s.c, c.ignore_index, ldt, 18);
  Tensor dx0 = rounded(random_logits(s, 19), dt);
  // dy = 1 / grad_scale, so that dlogits are O(1) whatever the reduction's denominator (the budget is absolute
  // for small values); rounded to dt as the device sees it.
  Result probe = run(cpu, l, x, lab, 1.0, DType::f32, GradMode::overwrite, dx0, false);
  SoftmaxXentMetrics pm = SoftmaxXent::read_metrics(cpu, probe.saved, s);
  const double dyv = round_to(pm.denom != 0 ? pm.denom / c.scale : 1.0, dt);
  Result ref = run(cpu, l, x, lab, dyv, DType::f32, mode, dx0, false);
  Result got = run(gpu, l, x, lab, dyv, dt, mode, dx0, strided);
  {
    INFO("loss");
    Tensor ref_y = rounded(ref.y, dt);
    CS_REQUIRE_CLOSE(got.y, ref_y, t.atol, t.rtol);
  }
  SoftmaxXentMetrics mr = SoftmaxXent::read_metrics(cpu, ref.saved, s);
  SoftmaxXentMetrics mg = SoftmaxXent::read_metrics(gpu, got.saved, s);
  REQUIRE(mg.tp == mr.tp);
  REQUIRE(mg.fp == mr.fp);
  REQUIRE(mg.fn == mr.fn);
  REQUIRE(mg.valid_pixels == mr.valid_pixels);
  REQUIRE(mg.denom == Approx(mr.denom).epsilon(1e-6));
  Tensor mask_g = SoftmaxXent::argmax_mask(got.saved, s).to(Device::cpu);
  CS_REQUIRE_CLOSE(mask_g, SoftmaxXent::argmax_mask(ref.saved, s), 0.0, 0.0);
  {
    INFO("dlogits");
    Tensor ref_dx = rounded(ref.dx, dt);
    CS_REQUIRE_CLOSE(got.dx, ref_dx, t.atol, t.rtol);
  }
}

std::vector<SoftmaxXentConfig> configs() {
  std::vector<SoftmaxXentConfig> v{SoftmaxXentConfig::gb_deeplab(), SoftmaxXentConfig::gb_tiramisu(),
                                   SoftmaxXentConfig::deepcam()};
  SoftmaxXentConfig w;
  w.reduction = XentReduction::weighted_mean;
  w.class_weights = {0.3, 2.5, 1.25};
  w.ignore_index = 1;
  v.push_back(w);
  SoftmaxXentConfig u;  // unweighted mean with an ignore value outside the classes
  u.ignore_index = 200;
  v.push_back(u);
  return v;
}

}  // namespace

TEST_CASE("softmax_xent: CUDA matches the CPU path", "[cuda][parity][loss]") {
  // K = 32 is the CUDA kernel's largest class count (kXentCudaMaxClasses: its shared TP/FP/FN counters).
  const Shape s =
      GENERATE(Shape{2, 24, 36, 3}, Shape{1, 1, 1, 3}, Shape{3, 37, 29, 3}, Shape{2, 5, 7, 17}, Shape{1, 6, 5, 32});
  for (const SoftmaxXentConfig& c0 : configs()) {
    SoftmaxXentConfig c = c0;
    if (s.c != 3) {
      c.num_classes = s.c;
      c.class_weights.clear();
    }
    for (DType dt : {DType::f32, DType::f16, DType::bf16})
      for (bool strided : {false, true})
        for (GradMode mode : {GradMode::overwrite, GradMode::accumulate})
          check_parity(c, s, dt, strided ? DType::u8 : DType::i32, strided, mode);
  }
  check_parity(SoftmaxXentConfig::deepcam(), Shape{2, 24, 36, 3}, DType::f32, DType::i64, false, GradMode::overwrite);
}

TEST_CASE("softmax_xent: the loss-scale gradient multiplier on CUDA matches the CPU", "[cuda][parity][loss]") {
  // Dynamic loss scaling passes its scale as a host-side multiplier of the logits' gradient (dlogits are O(1) here,
  // so 2^10 keeps them inside fp16's range; 2^16 is checked in fp32 and bf16).
  for (const SoftmaxXentConfig& c : configs()) {
    for (DType dt : {DType::f32, DType::f16, DType::bf16})
      check_parity(c, Shape{2, 24, 36, 3}, dt, DType::u8, false, GradMode::overwrite, 1024.0);
    for (DType dt : {DType::f32, DType::bf16})
      check_parity(c, Shape{2, 24, 36, 3}, dt, DType::u8, true, GradMode::accumulate, 65536.0);
  }
}

TEST_CASE("softmax_xent: a full 768x1152 sample, bit-reproducible", "[cuda][parity][loss]") {
  const Shape s{1, 768, 1152, 3};
  // dy = 1 / grad_scale is 884736 for DeepCAM's mean here: beyond fp16's range (65504), so the full-size parity
  // runs in fp32 and bf16; fp16 is covered by the smaller shapes and by the reproducibility check below.
  check_parity(SoftmaxXentConfig::deepcam(), s, DType::f32, DType::u8, false, GradMode::overwrite);
  check_parity(SoftmaxXentConfig::gb_tiramisu(), s, DType::bf16, DType::u8, false, GradMode::accumulate);
  ExecContext gpu(Device::cuda, 0);
  SoftmaxXent l(SoftmaxXentConfig::deepcam());
  Tensor x = rounded(random_logits(s, 5), DType::f16);
  Tensor lab = random_labels(s, 3, -1, DType::u8, 6);
  Tensor dx0 = Tensor::zeros(s, DType::f32, Device::cpu);
  Result a = run(gpu, l, x, lab, 1.0, DType::f16, GradMode::overwrite, dx0, false);
  Result b = run(gpu, l, x, lab, 1.0, DType::f16, GradMode::overwrite, dx0, false);
  REQUIRE(a.y.get_flat(0) == b.y.get_flat(0));
  CS_REQUIRE_CLOSE(a.dx, b.dx, 0.0, 0.0);
  SoftmaxXentMetrics ma = SoftmaxXent::read_metrics(gpu, a.saved, s);
  SoftmaxXentMetrics mb = SoftmaxXent::read_metrics(gpu, b.saved, s);
  REQUIRE(ma.loss == mb.loss);
  REQUIRE(ma.tp == mb.tp);
}

TEST_CASE("softmax_xent: bad labels on CUDA are reported by read_metrics and validate_labels", "[cuda][parity][loss]") {
  const Shape s{2, 9, 11, 3};
  ExecContext gpu(Device::cuda, 0);
  Tensor x = random_logits(s, 3);
  Tensor lab = random_labels(s, 3, -1, DType::i32, 4);
  lab.set(1, 4, 7, 0, 9.0);
  lab.set(1, 8, 0, 0, -2.0);
  Tensor dx0 = Tensor::zeros(s, DType::f32, Device::cpu);
  SoftmaxXent l(SoftmaxXentConfig{});
  Result r = run(gpu, l, x, lab, 1.0, DType::f32, GradMode::overwrite, dx0, false);  // no throw: no sync
  try {
    SoftmaxXent::read_metrics(gpu, r.saved, s);
    FAIL("read_metrics did not report label 9");
  } catch (const Error& e) {
    INFO(e.what());
    REQUIRE(std::string(e.what()).find("label 9 at (n=1, h=4, w=7)") != std::string::npos);
  }
  SoftmaxXentConfig c;
  c.validate_labels = true;
  SoftmaxXent v(c);
  REQUIRE_THROWS_AS(run(gpu, v, x, lab, 1.0, DType::f32, GradMode::overwrite, dx0, false), Error);
}
