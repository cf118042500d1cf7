// The network's input contract carried in weights files and checkpoints: the channel names in order and the
// per-channel min-max normalisation the network was trained with (from stats.h5), so that `climseg predict` applies
// exactly the training normalisation without a stats.h5 (a network applied with other statistics silently finds
// nothing). Stored as safetensors metadata strings:
//   input.channels       "TMQ,U850,..."                 (comma-separated)
//   input.normalization  "minmax"                       x' = (x - min_c) / (max_c - min_c), as io::normalize
//   input.minval         "v0,v1,..." (%.17g: exact)     per channel
//   input.maxval         "v0,v1,..."
//   input.stats          the stats.h5 the values came from (informational)
// Weights without these keys (older files, PyTorch exports) still need --stats.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/hdf5_sample.h"

namespace climseg::io {

std::map<std::string, std::string> input_metadata(const Stats& stats, const std::vector<std::string>& channels);

struct InputContract {
  std::vector<std::string> channels;
  std::optional<Stats> stats;  // min-max statistics (minval, maxval; path = input.stats), when the file has them
};
// From a weights file's or checkpoint's metadata; `who` names the file in errors (malformed values throw). Missing
// keys give an empty contract.
InputContract input_contract(const std::map<std::string, std::string>& md, const std::string& who);

// True when both normalise identically (the same min and max per channel, bit for bit).
bool same_normalization(const Stats& a, const Stats& b);

// The DeepCAM channel names in order (io::channel_name 0..15), the default channel list.
std::vector<std::string> default_channel_names(int64_t channels = kNumChannels);

}  // namespace climseg::io
