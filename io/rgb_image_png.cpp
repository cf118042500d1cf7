#include "io/rgb_image.h"

#include <png.h>

#include "engine/check.h"
#include "engine/atomic_file.h"

// The simplified API (png_image_*) reports errors in png_image::message instead of longjmp, so no setjmp crosses
// C++ frames here.
#if !defined(PNG_SIMPLIFIED_WRITE_SUPPORTED) || !defined(PNG_STDIO_SUPPORTED)
#error "climseg needs libpng >= 1.6 with the simplified write API"
#endif

namespace climseg::io {

bool have_png() { return true; }

void write_png(const std::string& path, const RgbImage& image) {
  CS_CHECK(image.height > 0 && image.width > 0, path, ": image is empty (", image.height, "x", image.width, ")");
  CS_CHECK(image.pixels.size() == static_cast<size_t>(image.height * image.width * 3), path, ": image holds ",
           image.pixels.size(), " bytes, expected ", image.height, "x", image.width, "x3");
  CS_CHECK(image.height <= INT32_MAX && image.width * 3 <= INT32_MAX, path, ": image ", image.height, "x", image.width,
           " is too large for PNG");
  AtomicFile out(path);
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = PNG_FORMAT_RGB;
  const int ok = png_image_write_to_file(&png, out.tmp_path().c_str(), 0, image.pixels.data(),
                                         static_cast<png_int_32>(image.width * 3), nullptr);
  const std::string message = png.message;
  png_image_free(&png);
  if (!ok) CS_THROW(path, ": writing the PNG failed: ", message);
  out.commit();
}

}  // namespace climseg::io
