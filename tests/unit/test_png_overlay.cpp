// io/png_overlay: an overlay written as PNG and decoded again with libpng: size, format (8-bit RGB) and the colour of
// background, tinted and contour pixels.
#include <png.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include "io/png_overlay.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using namespace climseg::io;
using Catch::Contains;
using climseg::test::TempDir;

namespace {

// Decodes a PNG to 8-bit RGB with libpng's simplified API.
RgbImage read_png(const std::string& path, uint32_t* file_format) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  REQUIRE(png_image_begin_read_from_file(&png, path.c_str()) != 0);
  *file_format = png.format;
  png.format = PNG_FORMAT_RGB;
  RgbImage img(png.height, png.width);
  REQUIRE(png_image_finish_read(&png, nullptr, img.pixels.data(), static_cast<png_int_32>(png.width * 3), nullptr) !=
          0);
  png_image_free(&png);
  return img;
}

uint8_t blend(double grey, double colour, double alpha) {
  return static_cast<uint8_t>(std::lround((1 - alpha) * grey + alpha * colour));
}

using Rgb = std::array<uint8_t, 3>;

}  // namespace

TEST_CASE("overlay PNG: size, 8-bit RGB, grey field, tinted classes, label contour", "[io][png]") {
  TempDir dir;
  const int64_t H = 12, W = 20, C = 4;
  // Channel 2 is the field: a ramp from 10 (pixel 0) to 10 + 2*(H*W-1); other channels are noise that must not show.
  Tensor data = Tensor::empty(Shape{1, H, W, C}, DType::f32);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int64_t c = 0; c < C; ++c)
        data.set(0, y, x, c, c == 2 ? 10.0 + 2.0 * static_cast<double>(y * W + x) : 1e6 * static_cast<double>(c));
  auto grey = [&](int64_t y, int64_t x) {
    return 255.0 * static_cast<double>(y * W + x) / static_cast<double>(H * W - 1);
  };

  Tensor mask = Tensor::zeros(Shape{1, H, W, 1}, DType::u8, Device::cpu);
  mask.set(0, 3, 4, 0, 1);  // TC
  mask.set(0, 7, 9, 0, 2);  // AR
  // Labels (int32, as read_sample returns them): a 5x5 TC block at rows 1..5, columns 12..16, and AR along row 10.
  Tensor labels = Tensor::zeros(Shape{1, H, W, 1}, DType::i32, Device::cpu);
  for (int64_t y = 1; y <= 5; ++y)
    for (int64_t x = 12; x <= 16; ++x) labels.set(0, y, x, 0, 1);
  for (int64_t x = 0; x < W; ++x) labels.set(0, 10, x, 0, 2);

  OverlayOptions opt;
  opt.channel = 2;
  opt.alpha = 0.4f;
  const std::string p = dir.file("overlay.png");
  write_overlay_png(p, data, mask, labels, opt);
  CHECK(std::vector<std::filesystem::path>(std::filesystem::directory_iterator(dir.path()), {}).size() == 1);

  // IHDR straight from the file: width, height, bit depth 8, colour type 2 (RGB, no alpha).
  std::ifstream in(p, std::ios::binary);
  std::vector<unsigned char> head(26);
  in.read(reinterpret_cast<char*>(head.data()), 26);
  auto be32 = [&](int o) { return (uint32_t(head[o]) << 24) | (head[o + 1] << 16) | (head[o + 2] << 8) | head[o + 3]; };
  CHECK(be32(16) == W);
  CHECK(be32(20) == H);
  CHECK(int(head[24]) == 8);
  CHECK(int(head[25]) == 2);

  uint32_t format = 0;
  const RgbImage img = read_png(p, &format);
  CHECK((format & PNG_FORMAT_FLAG_COLOR) != 0);
  CHECK((format & PNG_FORMAT_FLAG_ALPHA) == 0);
  REQUIRE(img.height == H);
  REQUIRE(img.width == W);
  // The PNG is lossless: the decoded image is exactly what render_overlay drew.
  CHECK(img.pixels == render_overlay(data, mask, labels, opt).pixels);

  // Field min and max; a grey pixel in between.
  CHECK(img.rgb(H - 1, 0) == Rgb{0, 0, 0});
  CHECK(img.rgb(0, W - 1) == Rgb{255, 255, 255});
  const auto g = static_cast<uint8_t>(std::lround(grey(6, 3)));
  CHECK(img.rgb(H - 1 - 6, 3) == Rgb{g, g, g});
  // Predicted TC tinted red, AR blue: (1 - alpha) * grey + alpha * colour.
  const double g1 = std::lround(grey(3, 4)), g2 = std::lround(grey(7, 9));
  CHECK(img.rgb(H - 1 - 3, 4) == Rgb{blend(g1, 255, 0.4), blend(g1, 0, 0.4), blend(g1, 0, 0.4)});
  CHECK(img.rgb(H - 1 - 7, 9) == Rgb{blend(g2, 0, 0.4), blend(g2, 0, 0.4), blend(g2, 255, 0.4)});
  // TC label outline yellow, its interior untouched; the AR row is all outline (cyan): its neighbours differ.
  CHECK(img.rgb(H - 1 - 1, 12) == kTcContour);
  CHECK(img.rgb(H - 1 - 3, 16) == kTcContour);
  CHECK(img.rgb(H - 1 - 5, 14) == kTcContour);
  const auto gi = static_cast<uint8_t>(std::lround(grey(3, 14)));
  CHECK(img.rgb(H - 1 - 3, 14) == Rgb{gi, gi, gi});
  CHECK(img.rgb(H - 1 - 10, 0) == kArContour);
  CHECK(img.rgb(H - 1 - 10, 19) == kArContour);
  CHECK(kTcContour == Rgb{255, 255, 0});
  CHECK(kArContour == Rgb{0, 255, 255});

  SECTION("without contour, without labels, without a mask") {
    opt.label_contour = false;
    const RgbImage a = render_overlay(data, mask, labels, opt);
    CHECK(a.rgb(H - 1 - 1, 12) == Rgb{static_cast<uint8_t>(std::lround(grey(1, 12))),
                              static_cast<uint8_t>(std::lround(grey(1, 12))),
                              static_cast<uint8_t>(std::lround(grey(1, 12)))});
    CHECK(a.pixels == render_overlay(data, mask, Tensor{}, opt).pixels);
    const RgbImage b = render_overlay(data, Tensor{}, Tensor{}, opt);
    CHECK(b.rgb(H - 1 - 3, 4) == Rgb{static_cast<uint8_t>(g1), static_cast<uint8_t>(g1), static_cast<uint8_t>(g1)});
  }
  SECTION("a constant field is black; sample selection in a batch") {
    Tensor batch = Tensor::zeros(Shape{2, H, W, C}, DType::f32, Device::cpu);
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) batch.set(1, y, x, 2, data.get(0, y, x, 2));
    Tensor mask2 = Tensor::zeros(Shape{2, H, W, 1}, DType::u8, Device::cpu);
    mask2.set(1, 3, 4, 0, 1);
    mask2.set(1, 7, 9, 0, 2);
    opt.sample = 0;
    const RgbImage a = render_overlay(batch, mask2, Tensor{}, opt);
    CHECK(a.rgb(H - 1 - 5, 5) == Rgb{0, 0, 0});
    CHECK(a.rgb(H - 1 - 3, 4) == Rgb{0, 0, 0});  // sample 0's mask is all background
    const RgbImage single = render_overlay(data, mask, Tensor{}, opt);
    opt.sample = 1;
    CHECK(render_overlay(batch, mask2, Tensor{}, opt).pixels == single.pixels);
  }
}

TEST_CASE("overlay errors name the problem; a failed PNG write leaves nothing behind", "[io][png]") {
  TempDir dir;
  Tensor data = Tensor::zeros(Shape{1, 4, 6, 16}, DType::f32, Device::cpu);
  Tensor mask = Tensor::zeros(Shape{1, 4, 6, 1}, DType::u8, Device::cpu);
  mask.set(0, 2, 3, 0, 3);
  REQUIRE_THROWS_WITH(render_overlay(data, mask), Contains("mask has value 3 at row 2, column 3"));
  REQUIRE_THROWS_WITH(render_overlay(data, Tensor::zeros(Shape{1, 4, 5, 1}, DType::u8, Device::cpu)),
                      Contains("mask (1,4,5,1) does not match the data (1,4,6,16)"));
  REQUIRE_THROWS_WITH(render_overlay(data, Tensor::zeros(Shape{1, 4, 6, 1}, DType::f32, Device::cpu)),
                      Contains("mask must hold class indices"));
  OverlayOptions opt;
  opt.channel = 16;
  REQUIRE_THROWS_WITH(render_overlay(data, Tensor{}, Tensor{}, opt), Contains("channel 16 out of range"));
  REQUIRE_THROWS_WITH(write_overlay_png(dir.file("missing/o.png"), data, Tensor{}), Contains("does not exist"));
  RgbImage bad(2, 2);
  bad.pixels.resize(5);
  REQUIRE_THROWS_WITH(write_png(dir.file("o.png"), bad), Contains("holds 5 bytes, expected 2x2x3"));
  CHECK(std::filesystem::is_empty(dir.path()));
}
