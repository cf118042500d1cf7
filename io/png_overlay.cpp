#include "io/png_overlay.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace climseg::io {

namespace {

// Class indices of one sample as bytes, validated to 0..2.
std::vector<uint8_t> classes_of(const Tensor& t, const char* what, const Shape& field, int64_t sample) {
  CS_CHECK(t.device() == Device::cpu, "overlay: ", what, " must be on the host, got ", t.str());
  const Shape& s = t.shape();
  CS_CHECK(s.n > sample && s.h == field.h && s.w == field.w && s.c == 1, "overlay: ", what, " ", s.str(),
           " does not match the data ", field.str(), " (expected (N,H,W,1) with sample ", sample, " in range)");
  const int64_t hw = s.h * s.w;
  std::vector<uint8_t> out(static_cast<size_t>(hw));
  for (int64_t i = 0; i < hw; ++i) {
    int64_t v = 0;
    const int64_t y = i / s.w, x = i % s.w;
    switch (t.dtype()) {
      case DType::u8:
      case DType::i32:
      case DType::i64:
        v = static_cast<int64_t>(t.get(sample, y, x, 0));
        break;
      default:
        CS_THROW("overlay: ", what, " must hold class indices (uint8, int32 or int64), got ", t.str());
    }
    CS_CHECK(v >= 0 && v <= 2, "overlay: ", what, " has value ", v, " at row ", y, ", column ", x,
             "; expected 0 (background), 1 (TC) or 2 (AR)");
    out[static_cast<size_t>(i)] = static_cast<uint8_t>(v);
  }
  return out;
}

uint8_t blend(uint8_t grey, uint8_t colour, float alpha) {
  return static_cast<uint8_t>(std::lround((1.0f - alpha) * static_cast<float>(grey) + alpha * colour));
}

}  // namespace

RgbImage render_overlay(const Tensor& data, const Tensor& mask, const Tensor& labels, const OverlayOptions& opt) {
  CS_CHECK(data.defined() && data.device() == Device::cpu && data.dtype() == DType::f32,
           "overlay: data must be a host float32 tensor, got ", data.defined() ? data.str() : "an undefined tensor");
  CS_CHECK(data.is_pixel_strided(), "overlay: data channels must be contiguous, got ", data.str());
  const Shape& ds = data.shape();
  CS_CHECK(opt.sample >= 0 && opt.sample < ds.n, "overlay: sample ", opt.sample, " out of range for data ", ds.str());
  CS_CHECK(opt.channel >= 0 && opt.channel < ds.c, "overlay: channel ", opt.channel, " out of range for data ",
           ds.str());
  CS_CHECK(opt.alpha >= 0.0f && opt.alpha <= 1.0f, "overlay: alpha ", opt.alpha, " is not in 0..1");
  CS_CHECK(ds.h > 0 && ds.w > 0, "overlay: data ", ds.str(), " is empty");
  const std::vector<uint8_t> m = mask.defined() ? classes_of(mask, "mask", ds, opt.sample) : std::vector<uint8_t>{};
  const std::vector<uint8_t> l =
      labels.defined() ? classes_of(labels, "labels", ds, opt.sample) : std::vector<uint8_t>{};

  // The field: (N,H,W,C) pixel-strided, so pixel (y,x) of the sample is at base + (y*W + x) * pixel_stride.
  const int64_t H = ds.h, W = ds.w, ps = data.pixel_stride();
  const float* base = static_cast<const float*>(data.data()) + opt.sample * data.strides()[0] + opt.channel;
  auto field = [&](int64_t y, int64_t x) { return base[(y * W + x) * ps]; };
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const float v = field(y, x);
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }

  RgbImage img(H, W);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const float v = field(y, x);
      const uint8_t g = std::isfinite(v) && hi > lo
                            ? static_cast<uint8_t>(std::lround(255.0 * (double(v) - lo) / (double(hi) - lo)))
                            : 0;
      uint8_t* p = img.at(H - 1 - y, x);  // north up: row 0 (the south) is the image's bottom line
      p[0] = p[1] = p[2] = g;
      const size_t k = static_cast<size_t>(y * W + x);
      if (!m.empty() && m[k] != 0) {
        const std::array<uint8_t, 3>& c = m[k] == 1 ? kTcColour : kArColour;
        for (int i = 0; i < 3; ++i) p[i] = blend(g, c[i], opt.alpha);
      }
      if (opt.label_contour && !l.empty() && l[k] != 0) {
        const uint8_t c0 = l[k];
        const bool edge = (y > 0 && l[k - W] != c0) || (y + 1 < H && l[k + W] != c0) || (x > 0 && l[k - 1] != c0) ||
                          (x + 1 < W && l[k + 1] != c0);
        if (edge) {
          const std::array<uint8_t, 3>& c = c0 == 1 ? kTcContour : kArContour;
          p[0] = c[0];
          p[1] = c[1];
          p[2] = c[2];
        }
      }
    }
  return img;
}

void write_overlay_png(const std::string& path, const Tensor& data, const Tensor& mask, const Tensor& labels,
                       const OverlayOptions& opt) {
  write_png(path, render_overlay(data, mask, labels, opt));
}

}  // namespace climseg::io
