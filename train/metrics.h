// Segmentation metrics of training and validation, computed once here from the loss layer's per-sample counts
// (layers/softmax_xent.h counts TP/FP/FN per sample and class in the forward pass; it computes no IoU itself).
//
// Both reference definitions (docs/reference-systems.md 3.1, 3.3):
// - DeepCAM (utils/metric.py): per sample, IoU_c = TP/(TP+FP+FN) with 0/0 counted as 1, averaged over the classes;
//   the validation metric is the mean of these over all samples.
// - GB 2018 (tf.metrics.mean_iou): one confusion matrix over all pixels; IoU_c per class, averaged over the classes
//   whose denominator is nonzero (0 when none is).
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/tensor.h"
#include "layers/softmax_xent.h"

namespace climseg {

// DeepCAM's IoU of one sample of a batch's counts.
double sample_iou_deepcam(const SoftmaxXentMetrics& m, int64_t sample);
// The sum of sample_iou_deepcam over the batch (sums over ranks and batches, divided by the sample count, give the
// validation metric).
double batch_iou_deepcam_sum(const SoftmaxXentMetrics& m);
// The counts of the "all background" prediction (class 0 everywhere) for host labels (N, H, W, 1) i32 in [0, k):
// TP_0 = pixels labelled 0, FP_0 = the others; class c > 0: FN_c = pixels labelled c.
SoftmaxXentMetrics background_counts(const Tensor& labels, int64_t k);

// Counts summed over batches (and ranks): the validation result.
struct EvalTotals {
  int64_t samples = 0, k = 0;
  std::vector<int64_t> tp, fp, fn;  // per class, over all pixels
  double iou_sum = 0;               // DeepCAM per-sample IoU, summed
  double loss_sum = 0;              // batch loss times batch size
  int64_t pixels = 0;

  void add(const SoftmaxXentMetrics& m, int64_t batch);
  // For sums across ranks: [samples, iou_sum, loss_sum, pixels, tp[K], fp[K], fn[K]].
  std::vector<double> pack(int64_t K) const;
  void unpack(const std::vector<double>& v, int64_t K);

  double iou_class(int64_t c) const;  // NaN when the class never occurs in labels or predictions
  double mean_iou_gb() const;
  double mean_iou_deepcam() const;
  double accuracy() const;
  double loss() const;
  nlohmann::json to_json() const;
  std::string line() const;  // "mean IoU ... (per sample, DeepCAM) / ... (confusion matrix, GB 2018); IoU ..."
};

// The "all background" prediction's scores on the same data: the baseline training must beat.
struct Baseline {
  double iou_deepcam = 0, iou_gb = 0;
};

}  // namespace climseg
