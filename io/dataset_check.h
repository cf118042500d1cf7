// Checking a whole dataset before training on it: every sample file is read in full and validated
// (io/hdf5_sample.h read_sample: structure, dtypes, finite data, labels in 0..2, every 2018 label variant), the
// dataset's stats.h5 with read_stats, and what was read is summarised: per-channel min/max/mean
// (io/dataset_stats.h StatsAccumulator), class pixel fractions, and each bad file with its error.
//
// Used by `climseg data check DIR` (apps/data_check.cpp) and by `climseg data stage` to validate each staged file.
// Host only; not thread-safe (HDF5).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/dataset_stats.h"
#include "io/hdf5_sample.h"

namespace climseg::io {

struct SampleCheckOptions {
  int64_t channels = kNumChannels;
  bool labels_required = true;  // a training or validation file must have labels
};

// What one good file held.
struct SampleCheck {
  SampleInfo info;
  std::array<int64_t, kNumClasses> class_pixels{};  // over every label variant
};

// Reads `path` in full and validates it; throws climseg::Error naming the file and the problem. Adds to what
// read_sample checks: an empty (0-byte) file, and every label variant of a 2018 (V,H,W) labels dataset (read_sample
// reads one). When `stats` is given, the sample's raw field is added to it.
SampleCheck check_sample_file(const std::string& path, const SampleCheckOptions& opt = {},
                              StatsAccumulator* stats = nullptr);

// The sample files of a dataset directory: entries named *.h5 directly in DIR (except stats.h5) and in its split
// sub-folders train/, validation/ and test/, sorted by path. A directory or a dangling link named *.h5 is listed
// too (it is a bad file, not something to skip silently). Throws when DIR is not a directory.
std::vector<std::string> list_sample_files(const std::string& dir);

struct BadFile {
  std::string path;
  std::string error;  // the exception's message
};

struct DatasetCheck {
  std::string dir;
  int64_t files = 0;                                    // sample files looked at (stats.h5 not included)
  int64_t samples = 0;                                  // good sample files
  std::vector<BadFile> bad;                             // bad sample files, and stats.h5 when it is bad
  std::vector<std::pair<std::string, int64_t>> splits;  // ("train", 8), ("validation", 2), (".", 0) ...
  // Every distinct (layout, H, W) among the good files with its file count; more than one means batches of this
  // set cannot be formed without cropping.
  std::vector<std::pair<std::string, int64_t>> shapes;
  std::optional<StatsAccumulator> data_stats;  // over the good files; empty when there are none
  std::array<int64_t, kNumClasses> class_pixels{};
  std::string stats_path;  // DIR/stats.h5
  bool stats_present = false;
  std::optional<Stats> stats;   // when stats.h5 is present and good
  int64_t bad_samples() const;  // bad sample files (stats.h5 not counted)
};

// Checks every file of list_sample_files(dir) and DIR/stats.h5. Bad files are collected, not thrown; a missing
// stats.h5 is not an error here (the caller decides). `progress` (may be null) is called after each file.
DatasetCheck check_dataset(const std::string& dir, const SampleCheckOptions& opt = {},
                           void (*progress)(int64_t done, int64_t total) = nullptr);

}  // namespace climseg::io
