// Reading one climate sample from an HDF5 file, and the normalisation statistics (../shared/spec/
// reference-systems.md 1.2 and 1.3, engine.md section 9).
//
// Two layouts, one sample per file:
//   DeepCAM (2020, MLPerf)  climate/data (H,W,C) channels last, climate/labels_0 (H,W)
//   2018 (Gordon Bell)      climate/data (C,H,W) channels first, climate/labels (H,W) or (V,H,W) label variants
// Every file is validated before its contents are trusted (inspect_sample: datasets present, ranks, shapes, dtypes;
// read_sample adds finite data and labels in 0..2); errors are climseg::Error naming the file and the dataset.
// HDF5 converts any floating-point type in the file (float16/32/64, either byte order) to float32 and any integer
// label type to int32 (out-of-range values saturate, so they still fail the 0..2 check).
//
// All functions here are for the host and are not thread-safe (the serial HDF5 library is not).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace climseg::io {

enum class SampleLayout : uint8_t {
  deepcam,  // climate/data (H,W,C), climate/labels_0 (H,W)
  gb2018,   // climate/data (C,H,W), climate/labels (H,W) or (V,H,W)
};
const char* layout_name(SampleLayout l);  // "DeepCAM (H,W,C)" / "2018 (C,H,W)"

constexpr int64_t kNumClasses = 3;  // 0 background, 1 tropical cyclone (TC), 2 atmospheric river (AR)
constexpr int64_t kNumChannels = 16;
const char* channel_name(int64_t c);  // DeepCAM channel order (reference-systems.md 1.1): 0 "TMQ" .. 15 "ZBOT"; "?"

// What a sample file holds, from its metadata only (no data read).
struct SampleInfo {
  std::string path;
  SampleLayout layout = SampleLayout::deepcam;
  int64_t height = 0, width = 0, channels = 0;  // the full field in the file
  std::string data_type;                        // file dtype of climate/data: "float32", "float64", "float16"
  std::string labels_dataset;                   // "climate/labels_0", "climate/labels", or "" (no labels)
  std::string labels_type;                      // file dtype of the labels: "uint8", "int64", ...
  int64_t label_variants = 0;                   // 0 no labels, 1 for 2-D labels, V for 2018 (V,H,W) labels
};

// Opens the file and checks its structure. The layout is decided by the labels' dataset name when there is one
// (climate/labels_0: DeepCAM, climate/labels: 2018); in a file without labels, by which end of climate/data's
// shape has `channels` entries (ambiguous shapes such as (16,H,16) are an error).
SampleInfo inspect_sample(const std::string& path, int64_t channels = kNumChannels);
SampleLayout detect_layout(const std::string& path, int64_t channels = kNumChannels);

// Reading a part of the field. Only the selected rows and columns are read from the file (an HDF5 hyperslab).
enum class Reduce : uint8_t {
  none,    // the whole field
  crop,    // a crop_h x crop_w window; centred unless crop_y/crop_x give its top-left corner
  stride,  // every stride-th row and column from (0,0): ceil(H/stride) x ceil(W/stride)
};

struct ReadOptions {
  int64_t channels = kNumChannels;  // climate/data must have exactly this many channels
  bool labels_required = true;      // false: a file without labels reads with Sample::labels undefined (predict)
  int64_t label_variant = 0;        // 2018 (V,H,W) labels: which variant (the caller picks; no random choice here)
  Reduce reduce = Reduce::none;
  int64_t crop_h = 0, crop_w = 0;  // Reduce::crop: window size
  // Reduce::crop: top-left corner; -1 centres the window on that axis at ((H - crop_h) / 2, (W - crop_w) / 2). The
  // default is centred because rows run from pole to pole (90S..90N): a centred window keeps the tropics and mid-latitudes, where the
  // cyclones and rivers are, and drops polar rows.
  int64_t crop_y = -1, crop_x = -1;
  int64_t stride = 1;  // Reduce::stride: k >= 1
};

struct Sample {
  Tensor data;      // (1,H,W,C) float32 host, NHWC (2018 files are transposed from C,H,W)
  Tensor labels;    // (1,H,W,1) int32 host in 0..2; undefined when the file has none and they are not required
  SampleInfo info;  // of the file (full-size dimensions)
  int64_t y0 = 0, x0 = 0, step = 1;  // where the read came from: output (i,j) is file row y0+i*step, column x0+j*step
};

Sample read_sample(const std::string& path, const ReadOptions& opt = {});
// The same, reusing `s`'s tensors when they are host tensors of the right shape and dtype (a reader's buffers from
// the previous file: no new allocation, no page faults). On an error `s` holds partial data.
void read_sample_into(const std::string& path, const ReadOptions& opt, Sample& s);

// Where read_sample_to puts a sample: the caller's memory (the input pipeline's batch slots).
struct SampleTarget {
  // (1,H,W,C) host, contiguous: fp32, or fp64/fp16/bf16 (rounded once from the fp32 result). H,W: after the crop or
  // stride of ReadOptions; a file that reads to another shape is an error naming both shapes.
  Tensor data;
  Tensor labels;  // (1,H,W,1) int32 host, contiguous (the file must have labels)
  // Per-channel min-max coefficients (kernels/cpu/normalize.h: data = T(scale_c * (x - shift_c))), both or neither;
  // neither: the values as read (converted to data's dtype).
  const float* shift = nullptr;
  const float* scale = nullptr;
  // Who holds `data`, for the shape-mismatch message ("the loader's batches ...").
  std::string holder = "the destination";
};

// read_sample_into's validation and result, written into `t` and normalised on the way. For contiguous, unfiltered
// little-endian float32 DeepCAM data read as whole rows (DeepCAM's own files, read full size or with a row crop) the
// field goes from the file into t.data in blocks of about 1 MiB, each checked for NaN/inf and normalised while it is in
// cache: one pass over the data. Other files are read into `scratch`'s buffers (reused from call to call) and
// normalised from there. On an error t holds partial data; the message is the one read_sample_into gives.
SampleInfo read_sample_to(const std::string& path, const ReadOptions& opt, const SampleTarget& t, Sample& scratch);

// Normalisation statistics (stats.h5). DeepCAM: climate/minval and climate/maxval, and climate/count, mean and
// sqmean when present, one value per channel. 2018: climate/stats (C,4) with columns [mean, max, min, std].
// Only min and max are used (reference-systems.md 1.3); the others are kept for `data stats`.
struct Stats {
  std::string path;
  SampleLayout layout = SampleLayout::deepcam;
  std::vector<double> minval, maxval;  // per channel
  std::vector<double> mean;            // empty when the file has none
  std::vector<double> sqmean;          // DeepCAM only (mean of x^2); else empty
  std::vector<double> stddev;          // 2018 only; else empty
  std::vector<double> count;           // DeepCAM only; else empty
  int64_t channels() const { return static_cast<int64_t>(minval.size()); }
};

// Throws when a channel's max <= min (naming the channel), or a value is not finite.
Stats read_stats(const std::string& path, int64_t channels = kNumChannels);

// x' = (x - min_c) / (max_c - min_c) in place on a host float32 (N,H,W,C) tensor (any pixel-strided view), computed
// as the DeepCAM reference does: scale_c = float(1 / (max_c - min_c)) (in double), x' = scale_c * (x - float(min_c)).
void normalize(const Tensor& data, const Stats& stats);

}  // namespace climseg::io
