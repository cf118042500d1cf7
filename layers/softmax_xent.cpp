#include "layers/softmax_xent.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/dispatch.h"
#include "kernels/cpu/loss.h"

namespace climseg {

std::vector<double> inverse_sqrt_frequency_weights(const std::vector<double>& freq) {
  std::vector<double> w;
  double s = 0;
  for (double f : freq) {
    CS_CHECK(f > 0, "inverse_sqrt_frequency_weights: frequencies must be positive, got ", f);
    w.push_back(1.0 / std::sqrt(f));
    s += w.back();
  }
  for (double& v : w) v /= s;
  return w;
}

std::vector<double> frequency_power_weights(const std::vector<double>& freq, double power) {
  std::vector<double> w;
  for (double f : freq) {
    CS_CHECK(f > 0, "frequency_power_weights: frequencies must be positive, got ", f);
    w.push_back(std::pow(f, power));
  }
  return w;
}

std::vector<double> gb2018_class_weights() {
  // GB's scripts pass the square roots already rounded (--frequencies 0.991 0.0266 0.13) and take 1/f', normalized
  // to sum 1; we use those exact numbers rather than recomputing sqrt(0.982, 0.00071, 0.017).
  const double fprime[3] = {0.991, 0.0266, 0.13};
  std::vector<double> w;
  double s = 0;
  for (double f : fprime) s += 1.0 / f;
  for (double f : fprime) w.push_back((1.0 / f) / s);
  return w;
}

std::vector<double> deepcam_class_weights() {
  return frequency_power_weights({0.986267818, 0.000457871, 0.013274311}, -0.125);
}

SoftmaxXentConfig SoftmaxXentConfig::gb_deeplab() {
  SoftmaxXentConfig c;
  c.class_weights = gb2018_class_weights();
  c.reduction = XentReduction::sum;
  c.scale = 0.1;
  return c;
}

SoftmaxXentConfig SoftmaxXentConfig::gb_tiramisu() {
  SoftmaxXentConfig c = gb_deeplab();
  c.reduction = XentReduction::sum_by_nonzero_weights;
  return c;
}

SoftmaxXentConfig SoftmaxXentConfig::deepcam() {
  SoftmaxXentConfig c;
  c.class_weights = deepcam_class_weights();
  c.reduction = XentReduction::mean;
  return c;
}

double SoftmaxXentConfig::initial_loss_scale(int64_t pixels) const {
  CS_CHECK(pixels > 0, "initial_loss_scale: pixel count ", pixels, " must be positive");
  constexpr double kBase = 65536.0;
  if (reduction != XentReduction::sum) return kBase;
  double p2 = 1.0;
  while (p2 < static_cast<double>(pixels)) p2 *= 2.0;  // 2^ceil(log2(pixels)), exact
  return std::max(1.0, kBase / p2);
}

int64_t SoftmaxXentMetrics::tp_total(int64_t c) const {
  int64_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += tp[static_cast<size_t>(i * k + c)];
  return s;
}
int64_t SoftmaxXentMetrics::fp_total(int64_t c) const {
  int64_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += fp[static_cast<size_t>(i * k + c)];
  return s;
}
int64_t SoftmaxXentMetrics::fn_total(int64_t c) const {
  int64_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += fn[static_cast<size_t>(i * k + c)];
  return s;
}

SoftmaxXent::SoftmaxXent(SoftmaxXentConfig cfg) : cfg_(std::move(cfg)) {
  CS_CHECK(cfg_.num_classes >= 1 && cfg_.num_classes <= 256, "softmax_xent: num_classes must be in [1, 256] (the "
           "argmax mask is u8), got ", cfg_.num_classes);
  if (cfg_.class_weights.empty()) {
    w_.assign(static_cast<size_t>(cfg_.num_classes), 1.0);
  } else {
    CS_CHECK(static_cast<int64_t>(cfg_.class_weights.size()) == cfg_.num_classes, "softmax_xent: ",
             cfg_.class_weights.size(), " class weights for ", cfg_.num_classes, " classes");
    for (double v : cfg_.class_weights)
      CS_CHECK(std::isfinite(v) && v >= 0, "softmax_xent: class weights must be finite and >= 0, got ", v);
    w_ = cfg_.class_weights;
  }
  CS_CHECK(std::isfinite(cfg_.scale), "softmax_xent: scale must be finite, got ", cfg_.scale);
  CS_CHECK(cfg_.ignore_index >= -1, "softmax_xent: ignore_index must be -1 (none) or a label value, got ",
           cfg_.ignore_index);
}

Shape SoftmaxXent::output_shape(const std::vector<Shape>& in) const {
  CS_CHECK(in.size() == 2, name(), ": expected logits and labels, got ", in.size(), " inputs");
  const Shape& x = in[0];
  const Shape& l = in[1];
  CS_CHECK(x.c == cfg_.num_classes, name(), ": logits ", x.str(), " have ", x.c, " channels, expected ",
           cfg_.num_classes, " classes");
  CS_CHECK(l.n == x.n && l.h == x.h && l.w == x.w && l.c == 1, name(), ": labels are ", l.str(), ", expected (",
           x.n, ",", x.h, ",", x.w, ",1)");
  return Shape{1, 1, 1, 1};
}

MemoryNeeds SoftmaxXent::memory_needs(const std::vector<Shape>& in, DType) const {
  const Shape& x = in.at(0);
  MemoryNeeds m;
  m.saved_bytes = xent_saved_layout(x.n, x.h * x.w, x.c).total;
  // The CUDA path's per-block partial sums (kernels/cuda/loss.h). memory_needs does not know the device, so the
  // (small: about 1/20 of the argmax mask) amount is declared for both.
  m.fwd_workspace = xent_cuda_workspace_bytes(x.n, x.h * x.w, x.c);
  return m;
}

LayerCost SoftmaxXent::forward_cost(const std::vector<Shape>& in, DType t) const {
  const double P = static_cast<double>(in.at(0).pixels()), K = static_cast<double>(in.at(0).c);
  // max, K subtractions and exponentials (counted as 1 each), the sum, log, and the weighted add.
  return {P * (4.0 * K + 4.0), P * (K * static_cast<double>(dtype_size(t)) + 8.0 + 1.0)};
}

LayerCost SoftmaxXent::backward_cost(const std::vector<Shape>& in, DType t) const {
  const double P = static_cast<double>(in.at(0).pixels()), K = static_cast<double>(in.at(0).c);
  return {P * (7.0 * K + 2.0), P * (2.0 * K * static_cast<double>(dtype_size(t)) + 8.0)};
}

void SoftmaxXent::check_saved(const Tensor& saved, const Shape& x) const {
  const size_t need = xent_saved_layout(x.n, x.h * x.w, x.c).total;
  CS_CHECK(saved.defined() && saved.dtype() == DType::u8 && saved.is_contiguous() && saved.nbytes() >= need, name(),
           ": saved state must be a contiguous u8 tensor of at least ", need, " bytes, got ",
           saved.defined() ? saved.str() : std::string("undefined"));
  CS_CHECK(reinterpret_cast<uintptr_t>(saved.data()) % alignof(XentHeader) == 0, name(),
           ": saved state must be 8-byte aligned");
}

namespace {
template <class F>
void dispatch_labels(DType t, const char* who, F&& f) {
  switch (t) {
    case DType::i32: f(int32_t{}); return;
    case DType::i64: f(int64_t{}); return;
    case DType::u8: f(uint8_t{}); return;
    default: CS_THROW(who, ": labels must be i32, i64 or u8, not ", dtype_name(t));
  }
}

[[noreturn]] void throw_bad_label(const std::string& who, const XentHeader& h, const Shape& x, int64_t K) {
  const int64_t HW = x.h * x.w;
  const int64_t n = h.bad_index / HW, r = h.bad_index % HW;
  CS_THROW(who, ": label ", h.bad_value, " at (n=", n, ", h=", r / x.w, ", w=", r % x.w,
           ") is outside [0, ", K, ") and is not the ignore_index");
}
}  // namespace

void SoftmaxXent::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  const Tensor& lab = a.x[1];
  const Shape& s = x.shape();
  check_saved(a.saved, s);
  const XentSavedLayout lay = xent_saved_layout(s.n, s.h * s.w, s.c);
  uint8_t* base = static_cast<uint8_t*>(a.saved.data());
  auto* hdr = reinterpret_cast<XentHeader*>(base);
  dispatch_cpu_float(x.dtype(), "softmax_xent", [&](auto tag) {
    using T = decltype(tag);
    dispatch_labels(lab.dtype(), "softmax_xent", [&](auto ltag) {
      using L = decltype(ltag);
      cpu::softmax_xent_fwd<T, L>(s.n, s.h * s.w, s.c, x.data_as<T>(), x.pixel_stride(), lab.data_as<L>(),
                                  lab.pixel_stride(), w_.data(), cfg_.ignore_index, cfg_.reduction, cfg_.scale,
                                  a.y.data_as<T>(), base + lay.mask, reinterpret_cast<int64_t*>(base + lay.counts),
                                  hdr);
    });
  });
  if (hdr->bad_index >= 0) throw_bad_label(name(), *hdr, s, s.c);
}

void SoftmaxXent::backward_cpu(ExecContext&, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  const Tensor& x = a.x[0];
  const Tensor& lab = a.x[1];
  const Shape& s = x.shape();
  check_saved(a.saved, s);
  const auto* hdr = static_cast<const XentHeader*>(a.saved.data());
  const double g = a.dy.get_flat(0) * hdr->grad_scale * grad_multiplier_;
  dispatch_cpu_float(x.dtype(), "softmax_xent", [&](auto tag) {
    using T = decltype(tag);
    dispatch_labels(lab.dtype(), "softmax_xent", [&](auto ltag) {
      using L = decltype(ltag);
      cpu::softmax_xent_bwd<T, L>(s.pixels(), s.c, x.data_as<T>(), x.pixel_stride(), lab.data_as<L>(),
                                  lab.pixel_stride(), w_.data(), cfg_.ignore_index, g, a.dx[0].data_as<T>(),
                                  a.dx[0].pixel_stride(), a.dx_mode[0] == GradMode::accumulate);
    });
  });
}

SoftmaxXentMetrics SoftmaxXent::read_metrics(ExecContext& ctx, const Tensor& saved, const Shape& x) {
  const XentSavedLayout lay = xent_saved_layout(x.n, x.h * x.w, x.c);
  CS_CHECK(saved.defined() && saved.dtype() == DType::u8 && saved.is_contiguous() && saved.nbytes() >= lay.total,
           "softmax_xent read_metrics: saved state too small or not a contiguous u8 tensor for logits ", x.str());
  // Header and counts only (the mask stays where it is).
  Tensor head = Tensor::wrap(saved.data(), Shape{1, 1, 1, static_cast<int64_t>(lay.mask)}, DType::u8,
                             saved.device(), saved.buffer());
  Tensor host = saved.device() == Device::cpu ? head : head.to(Device::cpu, &ctx);
  if (saved.device() != Device::cpu) ctx.synchronize();
  XentHeader h;
  std::memcpy(&h, host.data(), sizeof h);
  if (h.bad_index >= 0) throw_bad_label("softmax_xent", h, x, x.c);
  SoftmaxXentMetrics m;
  m.n = x.n;
  m.k = x.c;
  m.loss = h.loss;
  m.denom = h.denom;
  m.valid_pixels = h.valid_pixels;
  const auto* c = reinterpret_cast<const int64_t*>(static_cast<const uint8_t*>(host.data()) + lay.counts);
  for (int64_t i = 0; i < x.n; ++i)
    for (int64_t j = 0; j < x.c; ++j) {
      m.tp.push_back(c[(i * 3 + 0) * x.c + j]);
      m.fp.push_back(c[(i * 3 + 1) * x.c + j]);
      m.fn.push_back(c[(i * 3 + 2) * x.c + j]);
    }
  return m;
}

Tensor SoftmaxXent::argmax_mask(const Tensor& saved, const Shape& x) {
  const XentSavedLayout lay = xent_saved_layout(x.n, x.h * x.w, x.c);
  CS_CHECK(saved.defined() && saved.dtype() == DType::u8 && saved.is_contiguous() && saved.nbytes() >= lay.total,
           "softmax_xent argmax_mask: saved state too small or not a contiguous u8 tensor for logits ", x.str());
  return Tensor::wrap(static_cast<uint8_t*>(saved.data()) + lay.mask, Shape{x.n, x.h, x.w, 1}, DType::u8,
                      saved.device(), saved.buffer());
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(SoftmaxXent)
#endif

}  // namespace climseg
