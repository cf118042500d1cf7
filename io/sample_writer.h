// Writing one climate sample in the DeepCAM layout (../shared/spec/reference-systems.md 1.2, synthetic-data.md):
//   climate/data      (H,W,C) float32 little-endian, channels last (C = 16 for DeepCAM's channel order)
//   climate/labels_0  (H,W)   uint8 little-endian, 0 background, 1 tropical cyclone, 2 atmospheric river
// The real files' label dtype is not known (the readers cast to int64); uint8 holds 0..2, is 1/4 of int32's bytes,
// and io::read_sample reads any integer type. Optional string attributes go on the root group (provenance, e.g.
// the generator's seed and sample index).
//
// The same tensors give the same bytes, on any machine with the same HDF5 file-format choices: the file format is
// pinned to HDF5 1.8 objects (H5Pset_libver_bounds(V18, V18): no library-version default decides it), objects carry
// no modification times (H5Pset_obj_track_times false for the groups and datasets), and nothing else in the file
// depends on the clock, the process or the path. gzip (off by default) stores chunks of whole rows; its bytes
// depend on zlib's version too. The file is written to a temporary beside the target and renamed into place
// (engine/atomic_file.h), so readers never see half a sample.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace climseg::io {

struct SampleWriteOptions {
  int gzip_level = 0;  // 0: contiguous, uncompressed (DeepCAM's files); 1..9: deflate, chunks of rows
  std::vector<std::pair<std::string, std::string>> attributes;  // root-group string attributes, in this order
};

// data: host float32 (1,H,W,C), any pixel-strided view; labels: host uint8 or int32 (1,H,W,1) with values 0..2.
// Throws naming the path on bad shapes, dtypes or label values, and on any HDF5 failure (no file is left behind).
void write_sample(const std::string& path, const Tensor& data, const Tensor& labels,
                  const SampleWriteOptions& opt = {});

}  // namespace climseg::io
