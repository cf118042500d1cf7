// Stand-in for io/rgb_image_png.cpp in builds without libpng.
#include "engine/check.h"
#include "io/rgb_image.h"

namespace climseg::io {

bool have_png() { return false; }

void write_png(const std::string& path, const RgbImage&) {
  CS_THROW(path, ": climseg was built without libpng, so it cannot write PNG images (install libpng-dev and",
           " reconfigure)");
}

}  // namespace climseg::io
