// A quick-look picture of a prediction: one input channel in grey, the predicted classes tinted over it, and
// optionally the outline of the labelled regions, written as an 8-bit RGB PNG.
//
//   grey      the channel min-max scaled over the image to 0..255 (a constant channel is black)
//   mask      TC pixels blended with red (255,0,0), AR pixels with blue (0,0,255): (1 - alpha) * grey + alpha * colour
//   contour   labelled pixels with a 4-neighbour of another class, drawn opaque: TC yellow (255,255,0), AR cyan
//             (0,255,255), so the label's outline stays visible over the prediction's tint
// North up: row 0 (the southernmost latitude, climseg's one orientation: docs/data.md) is the image's bottom line.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "engine/tensor.h"
#include "io/rgb_image.h"

namespace climseg::io {

constexpr std::array<uint8_t, 3> kTcColour{255, 0, 0};
constexpr std::array<uint8_t, 3> kArColour{0, 0, 255};
constexpr std::array<uint8_t, 3> kTcContour{255, 255, 0};
constexpr std::array<uint8_t, 3> kArContour{0, 255, 255};

struct OverlayOptions {
  int64_t sample = 0;         // which sample of (N,...) tensors
  int64_t channel = 0;        // background field; 0 is TMQ (water vapour), in which rivers and cyclones stand out
  float alpha = 0.5f;         // opacity of the class tint, 0..1
  bool label_contour = true;  // outline the labels' regions (when labels are given)
};

// data: host float32 (N,H,W,C), any pixel-strided view. mask and labels: host (N,H,W,1) uint8, int32 or int64 class
// indices 0..2, each optional (undefined Tensor: not drawn).
RgbImage render_overlay(const Tensor& data, const Tensor& mask, const Tensor& labels = {},
                        const OverlayOptions& opt = {});
void write_overlay_png(const std::string& path, const Tensor& data, const Tensor& mask, const Tensor& labels = {},
                       const OverlayOptions& opt = {});

}  // namespace climseg::io
