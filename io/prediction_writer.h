// Writing predictions to HDF5 (`climseg predict`). One file holds N samples:
//   prediction/logits  (N,H,W,K) float32   raw network outputs, NHWC as the engine computes them
//   prediction/mask    (N,H,W)   uint8     argmax class per pixel: 0 background, 1 TC, 2 AR
// and string attributes on the `prediction` group: model, weights, sources (one input file per sample, an array of
// N strings), plus any extra ones. Strings are variable-length UTF-8, which h5py reads as str.
// The file appears atomically (engine/atomic_file.h): a failed run leaves no partial output under `path`.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace climseg::io {

struct PredictionAttrs {
  std::string model;                                       // the architecture, e.g. "deeplabv3plus"
  std::string weights;                                     // the weights file the prediction came from
  std::vector<std::string> sources;                        // input file of each sample: N entries, or none
  std::vector<std::pair<std::string, std::string>> extra;  // further (name, value) string attributes
};

// logits: host float32 (N,H,W,K), any pixel-strided view. mask: host uint8 (N,H,W,1) with values < K.
void write_prediction(const std::string& path, const Tensor& logits, const Tensor& mask, const PredictionAttrs& attrs);

}  // namespace climseg::io
