// Dataset statistics as DeepCAM computes them (reference-systems.md 1.2, REF `src/utils/summarize_data.py`): per
// channel the pixel count, mean, mean of squares, minimum and maximum over the training split, merged file by file
// with count-weighted means; and writing them as stats.h5 (climate/{count,mean,sqmean,minval,maxval}, float64,
// one value per channel), which read_stats (io/hdf5_sample.h) reads back.
//
// Used by `climseg data generate` (the synthetic set's stats.h5), `climseg data stats DIR` and `climseg data check`.
// Sums are in double in a fixed order (pixels in file order, files in the order added), so the same inputs give the
// same bytes; merge() combines accumulators (threads, MPI ranks) in the caller's order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "io/hdf5_sample.h"

namespace climseg::io {

class StatsAccumulator {
 public:
  explicit StatsAccumulator(int64_t channels = kNumChannels);

  // One sample's raw (unnormalised) field: host float32 (N,H,W,C), any pixel-strided view; C == channels().
  // Non-finite values are refused (naming `what`, e.g. the file).
  void add(const Tensor& data, const std::string& what = "data");
  // Folds another accumulator in, as DeepCAM merges per-file results: count-weighted means, min of minima, max of
  // maxima.
  void merge(const StatsAccumulator& other);

  int64_t channels() const { return static_cast<int64_t>(count_.size()); }
  int64_t samples() const { return samples_; }
  // DeepCAM layout Stats (count, mean, sqmean, minval, maxval; stddev and the path empty). Throws when nothing was
  // added.
  Stats result() const;

  // Flat form for MPI reductions: [samples, then per channel count, mean, sqmean, min, max]; from_packed inverts.
  std::vector<double> packed() const;
  static StatsAccumulator from_packed(const std::vector<double>& p);

 private:
  std::vector<double> count_, mean_, sqmean_, min_, max_;
  int64_t samples_ = 0;
};

// Writes stats.h5 in the DeepCAM layout atomically (engine/atomic_file.h). Throws when a channel's max <= min,
// which read_stats would refuse: a constant channel cannot be min-max normalised.
void write_stats(const std::string& path, const Stats& stats);

}  // namespace climseg::io
