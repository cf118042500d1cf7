// An 8-bit RGB image in memory and its PNG writer (libpng). Builds without libpng get a write_png that throws
// (io/rgb_image_nopng.cpp), so the rest of io/ and the apps build everywhere HDF5 does.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace climseg::io {

struct RgbImage {
  int64_t height = 0, width = 0;
  std::vector<uint8_t> pixels;  // row-major, 3 bytes (R,G,B) per pixel, rows top to bottom

  RgbImage() = default;
  RgbImage(int64_t h, int64_t w) : height(h), width(w), pixels(static_cast<size_t>(h * w * 3), 0) {}
  uint8_t* at(int64_t y, int64_t x) { return pixels.data() + (y * width + x) * 3; }
  std::array<uint8_t, 3> rgb(int64_t y, int64_t x) const {
    const uint8_t* p = pixels.data() + (y * width + x) * 3;
    return {p[0], p[1], p[2]};
  }
};

// Writes an 8-bit RGB PNG atomically (temporary + rename, engine/atomic_file.h).
void write_png(const std::string& path, const RgbImage& image);
bool have_png();  // false when built without libpng (write_png then throws)

}  // namespace climseg::io
