// SoftmaxXent against PyTorch (tests/torch/ops/softmax_xent.py): F.cross_entropy with class weights and
// ignore_index for reduction sum, PyTorch's weighted mean, DeepCAM's plain mean of the unreduced losses, and TF's
// SUM_BY_NONZERO_WEIGHTS (GB Tiramisu) written out in torch; the scale factor; the argmax against torch.argmax
// and the per-sample TP/FP/FN counts against a numpy confusion count. Forward and d loss / d logits, in double.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "engine/philox.h"
#include "layers/softmax_xent.h"
#include "tests/util/compare.h"
#include "tests/util/tolerances.h"
#include "tests/util/torch_oracle.h"

using namespace climseg;
using namespace climseg::test;

namespace {

Tensor logits_f64(Shape s, uint64_t seed) {
  Tensor t = Tensor::empty(s, DType::f64, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, 6.0 * philox_uniform(seed, 0, static_cast<uint64_t>(i)) - 3.0);
  return t;
}
Tensor labels_i64(Shape s, int64_t K, int64_t ignore, uint64_t seed) {
  Tensor t = Tensor::empty(Shape{s.n, s.h, s.w, 1}, DType::i64, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t l = std::min<int64_t>(K - 1, static_cast<int64_t>(philox_uniform(seed, 1, static_cast<uint64_t>(i)) * K));
    if (ignore >= 0 && philox_uniform(seed, 2, static_cast<uint64_t>(i)) < 0.15) l = ignore;
    // Pixel 0 is never ignored, so no denominator is empty (we give 0 there, PyTorch 0/0 = NaN).
    if (i == 0 && l == ignore) l = (ignore + 1) % K;
    t.set_flat(i, static_cast<double>(l));
  }
  return t;
}
Tensor bytes(size_t n) {
  return n ? Tensor::zeros(Shape{1, 1, 1, static_cast<int64_t>(n)}, DType::u8, Device::cpu) : Tensor();
}

void check_against_torch(const SoftmaxXentConfig& c, Shape s, uint64_t seed) {
  INFO(xent_reduction_name(c.reduction) << " scale " << c.scale << " ignore " << c.ignore_index << " weights "
                                        << c.class_weights.size() << " shape " << s.str());
  const Tolerance& t = tol::torch_f64;
  INFO("tolerance row: " << t.name);
  SoftmaxXent l(c);
  Tensor x = logits_f64(s, seed);
  Tensor lab = labels_i64(s, s.c, c.ignore_index, seed + 1);
  Tensor dy = Tensor::empty(Shape{1, 1, 1, 1}, DType::f64, Device::cpu);
  dy.set_flat(0, 1.7);

  ExecContext ctx(Device::cpu);
  MemoryNeeds m = l.memory_needs({x.shape(), lab.shape()}, DType::f64);
  Tensor y = Tensor::zeros(Shape{1, 1, 1, 1}, DType::f64, Device::cpu);
  Tensor saved = bytes(m.saved_bytes);
  ForwardArgs fa;
  fa.x = {x, lab};
  fa.y = y;
  fa.saved = saved;
  fa.workspace = bytes(m.fwd_workspace);
  l.forward(ctx, fa);
  Tensor dx = Tensor::zeros(s, DType::f64, Device::cpu);
  BackwardArgs ba;
  ba.x = {x, lab};
  ba.y = y;
  ba.dy = dy;
  ba.dx = {dx, Tensor()};
  ba.dx_mode = {GradMode::overwrite, GradMode::overwrite};
  ba.saved = saved;
  l.backward(ctx, ba);

  TorchCall call;
  call.op = "softmax_xent";
  call.attrs = {{"reduction", xent_reduction_name(c.reduction)},
                {"weights", c.class_weights},
                {"ignore_index", c.ignore_index},
                {"scale", c.scale}};
  call.inputs = {x, lab};
  call.dy = dy;
  TorchResult tr = torch_run(call);

  REQUIRE(tr.y.numel() == 1);
  {
    INFO("loss: ours " << y.get_flat(0) << ", torch " << tr.y.get_flat(0));
    REQUIRE(std::fabs(y.get_flat(0) - tr.y.get_flat(0)) <= t.atol + t.rtol * std::fabs(tr.y.get_flat(0)));
  }
  REQUIRE(tr.dx.size() == 2);
  CS_REQUIRE_CLOSE(dx, tr.dx[0], t.atol, t.rtol);
  REQUIRE(!tr.dx[1].defined());

  REQUIRE(tr.state.count("argmax") == 1);
  REQUIRE(tr.state.count("counts") == 1);
  CS_REQUIRE_CLOSE(SoftmaxXent::argmax_mask(saved, s), tr.state.at("argmax"), 0.0, 0.0);
  SoftmaxXentMetrics mt = SoftmaxXent::read_metrics(ctx, saved, s);
  const Tensor& tc = tr.state.at("counts");  // (N, 1, 1, 3K): TP[K], FP[K], FN[K]
  REQUIRE(tc.numel() == 3 * s.n * s.c);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t k = 0; k < s.c; ++k) {
      INFO("sample " << n << " class " << k);
      REQUIRE(mt.tp[static_cast<size_t>(n * s.c + k)] == static_cast<int64_t>(tc.get_flat(n * 3 * s.c + k)));
      REQUIRE(mt.fp[static_cast<size_t>(n * s.c + k)] == static_cast<int64_t>(tc.get_flat(n * 3 * s.c + s.c + k)));
      REQUIRE(mt.fn[static_cast<size_t>(n * s.c + k)] ==
              static_cast<int64_t>(tc.get_flat(n * 3 * s.c + 2 * s.c + k)));
    }
}

}  // namespace

TEST_CASE("softmax_xent matches PyTorch cross_entropy", "[torch]") {
  if (!torch_available()) {
    WARN("PyTorch is not importable by /usr/bin/python3: softmax_xent parity not checked");
    return;
  }
  std::vector<SoftmaxXentConfig> cs{SoftmaxXentConfig::gb_deeplab(), SoftmaxXentConfig::gb_tiramisu(),
                                    SoftmaxXentConfig::deepcam()};
  for (XentReduction r : {XentReduction::sum, XentReduction::mean, XentReduction::weighted_mean,
                          XentReduction::sum_by_nonzero_weights}) {
    SoftmaxXentConfig c;
    c.reduction = r;
    cs.push_back(c);  // unweighted
    c.class_weights = {0.3, 2.5, 1.25};
    c.ignore_index = 1;
    c.scale = 0.5;
    cs.push_back(c);  // weighted, with an ignored class
  }
  uint64_t seed = 100;
  for (size_t i = 0; i < cs.size(); ++i) {
    check_against_torch(cs[i], Shape{2, 5, 7, 3}, seed += 2);
    if (i < 3) {  // the reference systems: two more shapes (each call starts a Python process: ~2 s)
      check_against_torch(cs[i], Shape{1, 1, 1, 3}, seed += 2);
      check_against_torch(cs[i], Shape{3, 9, 4, 3}, seed += 2);
    }
  }
  // More classes, PyTorch's weighted mean.
  SoftmaxXentConfig c5;
  c5.num_classes = 5;
  c5.reduction = XentReduction::weighted_mean;
  c5.class_weights = {1.0, 0.5, 2.0, 0.0, 3.0};
  check_against_torch(c5, Shape{2, 6, 5, 5}, 7);
}
