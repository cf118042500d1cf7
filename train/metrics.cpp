#include "train/metrics.h"

#include <cmath>
#include <cstdio>

#include "engine/check.h"

namespace climseg {

double sample_iou_deepcam(const SoftmaxXentMetrics& m, int64_t sample) {
  CS_CHECK(sample >= 0 && sample < m.n, "softmax_xent metrics: sample ", sample, " of ", m.n);
  double sum = 0;
  for (int64_t c = 0; c < m.k; ++c) {
    const size_t i = static_cast<size_t>(sample * m.k + c);
    const int64_t den = m.tp[i] + m.fp[i] + m.fn[i];
    sum += den == 0 ? 1.0 : static_cast<double>(m.tp[i]) / static_cast<double>(den);
  }
  return m.k ? sum / static_cast<double>(m.k) : 0.0;
}

double batch_iou_deepcam_sum(const SoftmaxXentMetrics& m) {
  double iou = 0;
  for (int64_t n = 0; n < m.n; ++n) iou += sample_iou_deepcam(m, n);
  return iou;
}

SoftmaxXentMetrics background_counts(const Tensor& labels, int64_t k) {
  CS_CHECK(labels.device() == Device::cpu && labels.dtype() == DType::i32, "background_counts: host i32 labels");
  const int64_t nb = labels.shape().n, HW = labels.shape().h * labels.shape().w;
  SoftmaxXentMetrics z;
  z.n = nb;
  z.k = k;
  z.tp.assign(static_cast<size_t>(nb * k), 0);
  z.fp = z.fn = z.tp;
  const int32_t* l = labels.data_as<int32_t>();
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t p = 0; p < HW; ++p) {
      const int32_t c = l[n * HW + p];
      CS_CHECK(c >= 0 && c < k, "background_counts: label ", c, " outside [0, ", k, ")");
      if (c == 0) {
        z.tp[static_cast<size_t>(n * k)]++;
      } else {
        z.fp[static_cast<size_t>(n * k)]++;
        z.fn[static_cast<size_t>(n * k + c)]++;
      }
    }
  z.valid_pixels = nb * HW;
  return z;
}

void EvalTotals::add(const SoftmaxXentMetrics& m, int64_t b) {
  if (k == 0) {
    k = m.k;
    tp.assign(static_cast<size_t>(k), 0);
    fp = fn = tp;
  }
  for (int64_t c = 0; c < k; ++c) {
    tp[c] += m.tp_total(c);
    fp[c] += m.fp_total(c);
    fn[c] += m.fn_total(c);
  }
  for (int64_t n = 0; n < m.n; ++n) iou_sum += sample_iou_deepcam(m, n);  // per sample, in order
  loss_sum += m.loss * static_cast<double>(b);
  samples += b;
  pixels += m.valid_pixels;
}

std::vector<double> EvalTotals::pack(int64_t K) const {
  std::vector<double> v = {static_cast<double>(samples), iou_sum, loss_sum, static_cast<double>(pixels)};
  for (const std::vector<int64_t>* a : {&tp, &fp, &fn})
    for (int64_t c = 0; c < K; ++c) v.push_back(c < k ? static_cast<double>((*a)[c]) : 0.0);
  return v;
}

void EvalTotals::unpack(const std::vector<double>& v, int64_t K) {
  CS_CHECK(static_cast<int64_t>(v.size()) == 4 + 3 * K, "EvalTotals::unpack: ", v.size(), " values for ", K,
           " classes");
  k = K;
  samples = static_cast<int64_t>(v[0]);
  iou_sum = v[1];
  loss_sum = v[2];
  pixels = static_cast<int64_t>(v[3]);
  tp.assign(static_cast<size_t>(K), 0);
  fp = fn = tp;
  for (int64_t c = 0; c < K; ++c) {
    tp[c] = static_cast<int64_t>(v[4 + c]);
    fp[c] = static_cast<int64_t>(v[4 + K + c]);
    fn[c] = static_cast<int64_t>(v[4 + 2 * K + c]);
  }
}

double EvalTotals::iou_class(int64_t c) const {
  const int64_t d = tp[c] + fp[c] + fn[c];
  return d > 0 ? static_cast<double>(tp[c]) / static_cast<double>(d) : std::nan("");
}

double EvalTotals::mean_iou_gb() const {
  double s = 0;
  int n = 0;
  for (int64_t c = 0; c < k; ++c)
    if (tp[c] + fp[c] + fn[c] > 0) {
      s += iou_class(c);
      ++n;
    }
  return n ? s / n : 0.0;
}

double EvalTotals::mean_iou_deepcam() const { return samples ? iou_sum / static_cast<double>(samples) : 0.0; }

double EvalTotals::accuracy() const {
  int64_t t = 0;
  for (int64_t c = 0; c < k; ++c) t += tp[c];
  return pixels ? static_cast<double>(t) / static_cast<double>(pixels) : 0.0;
}

double EvalTotals::loss() const { return samples ? loss_sum / static_cast<double>(samples) : 0.0; }

nlohmann::json EvalTotals::to_json() const {
  nlohmann::json j;
  j["samples"] = samples;
  j["loss"] = loss();
  j["mean_iou"] = mean_iou_deepcam();
  j["mean_iou_gb"] = mean_iou_gb();
  j["accuracy"] = accuracy();
  std::vector<double> per;
  for (int64_t c = 0; c < k; ++c) per.push_back(iou_class(c));
  j["iou_per_class"] = per;
  return j;
}

std::string EvalTotals::line() const {
  char b[256];
  std::snprintf(b, sizeof b,
                "mean IoU %.4f (per sample, DeepCAM) / %.4f (confusion matrix, GB 2018); IoU background %.4f, TC "
                "%.4f, AR %.4f; accuracy %.4f; loss %.5g; %lld samples",
                mean_iou_deepcam(), mean_iou_gb(), k > 0 ? iou_class(0) : 0.0, k > 1 ? iou_class(1) : 0.0,
                k > 2 ? iou_class(2) : 0.0, accuracy(), loss(), static_cast<long long>(samples));
  return b;
}

}  // namespace climseg
