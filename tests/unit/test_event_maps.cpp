// analysis/event_maps: frequency and track maps as PNG. Pixels are checked at positions computed here from the
// equirectangular geometry (not from the renderer's own helpers): a TC blob at a known latitude and longitude is red
// where it should be (north up), an AR blob blue, both blended; the background grey follows the field; a track that
// crosses the map's edge is cut there instead of being drawn across the map; the PNG decodes to the rendered image.
#include <png.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "analysis/event_maps.h"
#include "engine/check.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using namespace climseg::analysis;
using climseg::test::TempDir;

namespace {

io::RgbImage read_png(const std::string& path) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  REQUIRE(png_image_begin_read_from_file(&png, path.c_str()) != 0);
  png.format = PNG_FORMAT_RGB;
  io::RgbImage img(png.height, png.width);
  REQUIRE(png_image_finish_read(&png, nullptr, img.pixels.data(), static_cast<png_int_32>(png.width * 3), nullptr) !=
          0);
  png_image_free(&png);
  return img;
}

// Cell-centred global grid, as io::global_grid (0..360) or shifted to -180..180.
io::CfGrid grid_of(int64_t H, int64_t W, double lon0 = 0.0) {
  io::CfGrid g;
  for (int64_t i = 0; i < H; ++i)
    g.lat.push_back(-90.0 + (static_cast<double>(i) + 0.5) * 180.0 / static_cast<double>(H));
  for (int64_t j = 0; j < W; ++j) g.lon.push_back(lon0 + static_cast<double>(j) * 360.0 / static_cast<double>(W));
  return g;
}

// Where (lat, lon) lands in the image, from first principles: the map spans the cells' edges, west edge = first
// longitude minus half a spacing, 360 degrees over map_w pixels and 180 over map_h, north at the top.
struct Pos {
  int64_t x, y;
};
Pos pixel_of(const MapLayout& L, const io::CfGrid& g, double lat, double lon) {
  const double west = g.lon[0] - 0.5 * (g.lon[1] - g.lon[0]);
  const double x = (lon - west) / 360.0 * static_cast<double>(L.map_w);
  const double y = (90.0 - lat) / 180.0 * static_cast<double>(L.map_h);
  return {L.map_x0 + static_cast<int64_t>(std::floor(x)), L.map_y0 + static_cast<int64_t>(std::floor(y))};
}

// (Test points avoid the graticule's columns and rows, at multiples of 30 degrees, which are lightened.)
uint8_t blend(double under, double over, double alpha) {
  return static_cast<uint8_t>(std::lround((1.0 - alpha) * under + alpha * over));
}

// Pixels of one colour in image row y within the map.
int64_t count_in_row(const io::RgbImage& img, const MapLayout& L, int64_t y, const Rgb& c) {
  int64_t n = 0;
  for (int64_t x = L.map_x0; x < L.map_x0 + L.map_w; ++x) n += img.rgb(y, x) == c;
  return n;
}

}  // namespace

TEST_CASE("event maps: layout of a 96x144 and a 768x1152 grid", "[analysis][png]") {
  const MapLayout a = map_layout(grid_of(96, 144));
  CHECK(a.map_w == 1152);  // 144 columns x 8
  CHECK(a.map_h == 576);   // equal degrees per pixel: 180/360 of the width
  CHECK(a.map_x0 > 0);
  CHECK(a.map_y0 > 0);
  CHECK(a.image_width >= a.map_x0 + a.map_w);
  CHECK(a.image_height > a.map_y0 + a.map_h + 60);  // room for labels and legend
  const MapLayout b = map_layout(grid_of(768, 1152));
  CHECK(b.map_w == 1152);
  CHECK(b.map_h == 576);
  CHECK(map_layout(grid_of(90, 180)).map_w == 1260);   // the nearest whole factor: 7
  const MapLayout c = map_layout(grid_of(768, 2400));  // wider than 1200: averaged down
  CHECK(c.map_w == 1200);
  CHECK(c.map_h == 600);
}

TEST_CASE("event maps: frequency blobs in red and blue at their place, north up", "[analysis][png]") {
  const int64_t H = 96, W = 144;
  const io::CfGrid g = grid_of(H, W);
  std::vector<float> tc(H * W, 0.0f), ar(H * W, 0.0f);
  auto at = [&](int64_t i, int64_t j) { return static_cast<size_t>(i * W + j); };
  // TC: a 3x3 block around row 71 (44.06N), column 37 (92.5E) at 0.2 (the TC maximum), its east neighbour at 0.1.
  for (int64_t i = 70; i <= 72; ++i)
    for (int64_t j = 36; j <= 38; ++j) tc[at(i, j)] = 0.2f;
  tc[at(71, 39)] = 0.1f;
  // AR: row 30 (33.28S), columns 100..110 (250..275E) at 0.4 (the AR maximum).
  for (int64_t j = 100; j <= 110; ++j) ar[at(30, j)] = 0.4f;
  // Both: row 60 (22.97N), column 10 (25E), each at its class maximum.
  tc[at(60, 10)] = 0.2f;
  ar[at(60, 10)] = 0.4f;

  TempDir dir;
  const std::string path = dir.file("freq.png");
  const MapBackground bg;  // no field: flat mid-grey
  write_frequency_png(path, g, bg, tc, ar, "TC and AR frequency");
  const io::RgbImage img = read_png(path);
  const MapLayout L = map_layout(g);
  REQUIRE(img.width == L.image_width);
  REQUIRE(img.height == L.image_height);
  CHECK(img.pixels == render_frequency_map(g, bg, tc, ar, "TC and AR frequency").pixels);

  const double ma = MapOptions{}.max_alpha, grey = kBgGreyFlat;
  const Rgb tc_full{blend(grey, kFreqTcColour[0], ma), blend(grey, kFreqTcColour[1], ma),
                    blend(grey, kFreqTcColour[2], ma)};
  const Rgb ar_full{blend(grey, kFreqArColour[0], ma), blend(grey, kFreqArColour[1], ma),
                    blend(grey, kFreqArColour[2], ma)};
  const Rgb plain{kBgGreyFlat, kBgGreyFlat, kBgGreyFlat};
  auto px = [&](double lat, double lon) {
    const Pos p = pixel_of(L, g, lat, lon);
    return img.rgb(p.y, p.x);
  };

  // The TC blob is red at 44N 92.5E (and across the block), not at its mirror image 44S, nor at 0E.
  CHECK(px(44.06, 92.5) == tc_full);
  CHECK(px(42.5, 90.5) == tc_full);
  CHECK(px(45.9, 94.6) == tc_full);
  CHECK(px(-44.06, 92.5) == plain);
  CHECK(px(44.06, 0.5) == plain);
  CHECK(px(44.06, 92.5)[0] > px(44.06, 92.5)[2] + 100);
  // Half the maximum: half the opacity.
  CHECK(px(44.06, 97.5) == Rgb{blend(grey, kFreqTcColour[0], ma / 2), blend(grey, kFreqTcColour[1], ma / 2),
                               blend(grey, kFreqTcColour[2], ma / 2)});
  // Just north of the block (row 73, 45.9..47.8N) and east of the half cell: untouched.
  CHECK(px(46.9, 92.5) == plain);
  CHECK(px(44.06, 101.0) == plain);

  // The AR blob is blue along 33.28S from 250E to 275E, not at 33.28N.
  CHECK(px(-33.28, 250.0) == ar_full);
  CHECK(px(-33.28, 262.5) == ar_full);
  CHECK(px(-33.28, 275.0) == ar_full);
  CHECK(px(-33.28, 245.0) == plain);
  CHECK(px(-33.28, 280.0) == plain);
  CHECK(px(33.28, 262.5) == plain);
  CHECK(px(-33.28, 262.5)[2] > px(-33.28, 262.5)[0] + 100);

  // Both classes at full strength: total alpha 1 - (1 - a)^2, the mean of the two colours.
  const double a2 = 1.0 - (1.0 - ma) * (1.0 - ma);
  Rgb both;
  for (int i = 0; i < 3; ++i) both[i] = blend(grey, 0.5 * (kFreqTcColour[i] + kFreqArColour[i]), a2);
  CHECK(px(22.97, 25.0) == both);

  // Outside the map: white margin; title ink at the top.
  CHECK(img.rgb(L.map_y0 + L.map_h / 2, L.map_x0 + L.map_w + 10) == Rgb{255, 255, 255});
  int64_t ink = 0;
  for (int64_t y = 0; y < L.map_y0; ++y)
    for (int64_t x = 0; x < img.width; ++x) ink += img.rgb(y, x)[0] < 100;
  CHECK(ink > 100);

  SECTION("one class absent: the other alone") {
    const io::RgbImage only = render_frequency_map(g, bg, tc, {}, "TC only");
    const Pos p = pixel_of(L, g, -33.28, 262.5), q = pixel_of(L, g, 22.97, 25.0);
    CHECK(only.rgb(p.y, p.x) == plain);
    CHECK(only.rgb(q.y, q.x) == tc_full);
  }
}

TEST_CASE("event maps: the background's grey increases with the field", "[analysis][png]") {
  const int64_t H = 96, W = 144;
  const io::CfGrid g = grid_of(H, W);
  MapBackground bg;
  bg.name = "TMQ";
  bg.units = "kg m-2";
  bg.values.resize(H * W);
  // Field = latitude + 0.1 * column: increases northwards and eastwards.
  for (int64_t i = 0; i < H; ++i)
    for (int64_t j = 0; j < W; ++j)
      bg.values[static_cast<size_t>(i * W + j)] = static_cast<float>(g.lat[i] + 0.1 * static_cast<double>(j));
  const io::RgbImage img = render_frequency_map(g, bg, {}, {}, "background only");
  const MapLayout L = map_layout(g);
  auto grey = [&](double lat, double lon) {
    const Pos p = pixel_of(L, g, lat, lon);
    const Rgb c = img.rgb(p.y, p.x);
    CHECK(c[0] == c[1]);
    CHECK(c[1] == c[2]);
    return static_cast<int>(c[0]);
  };
  const int s = grey(-75.0, 50.0), e = grey(0.5, 50.0), n = grey(75.0, 50.0);
  CHECK(s < e);
  CHECK(e < n);
  CHECK(grey(0.5, 11.0) < grey(0.5, 101.0));
  // The extremes map to the ends of the grey range: the field's min is the south-west cell, its max the north-east.
  CHECK(grey(-89.5, -1.0) == kBgGreyLo);
  CHECK(grey(89.5, 357.5) == kBgGreyHi);
  // A cell's grey: lo + (hi - lo) * (v - min) / (max - min).
  const double vmin = g.lat[0], vmax = g.lat[H - 1] + 0.1 * (W - 1), v = g.lat[48] + 0.1 * 20;
  CHECK(grey(g.lat[48], 50.0) == std::lround(kBgGreyLo + (kBgGreyHi - kBgGreyLo) * (v - vmin) / (vmax - vmin)));

  SECTION("a non-finite value is drawn as missing; an empty field is flat mid-grey") {
    bg.values[static_cast<size_t>(48 * W + 20)] = NAN;
    const io::RgbImage m = render_frequency_map(g, bg, {}, {}, "");
    const Pos p = pixel_of(L, g, g.lat[48], 50.0);
    CHECK(m.rgb(p.y, p.x) == kMissingColour);
    const io::RgbImage f = render_frequency_map(g, MapBackground{}, {}, {}, "");
    CHECK(f.rgb(p.y, p.x) == Rgb{kBgGreyFlat, kBgGreyFlat, kBgGreyFlat});
  }
}

TEST_CASE("event maps: tracks, genesis dots, and the map's edge", "[analysis][png]") {
  const int64_t H = 96, W = 144;
  const Rgb plain{kBgGreyFlat, kBgGreyFlat, kBgGreyFlat};

  SECTION("0..360 grid: a track across Greenwich is cut at the map's edges") {
    const io::CfGrid g = grid_of(H, W);
    const MapLayout L = map_layout(g);
    TrackLine tc;  // westward along 15S from 20E to 20W (= 340E), i.e. across the left/right edge of the map
    tc.cls = 1;
    tc.lat = {-15.0, -15.0, -15.0};
    tc.lon = {20.0, 0.0, -20.0};
    TrackLine ar;  // eastward along 40N from 150E to 130W given as -130
    ar.cls = 2;
    ar.lat = {40.0, 40.0};
    ar.lon = {150.0, -130.0};
    TrackLine west;  // given in -180..180: genesis at 100W = 260E
    west.cls = 1;
    west.lat = {5.0, 6.0};
    west.lon = {-100.0, -102.0};
    TempDir dir;
    const std::string path = dir.file("tracks.png");
    write_tracks_png(path, g, MapBackground{}, {tc, ar, west}, "tracks");
    const io::RgbImage img = read_png(path);
    CHECK(img.pixels == render_tracks_map(g, MapBackground{}, {tc, ar, west}, "tracks").pixels);
    auto px = [&](double lat, double lon) {
      const Pos p = pixel_of(L, g, lat, lon);
      return img.rgb(p.y, p.x);
    };
    // Genesis dot at 15S 20E; the line at 10E, at 1E (near the left edge) and at 350E, 359E (near the right edge).
    CHECK(px(-15.0, 20.0) == kGenesisTcColour);
    CHECK(px(-15.0, 10.0) == kTrackTcColour);
    CHECK(px(-15.0, 0.0) == kTrackTcColour);
    CHECK(px(-15.0, 350.0) == kTrackTcColour);
    CHECK(px(-15.0, 358.0) == kTrackTcColour);
    // Not across the map: the middle of the row is untouched, and the row holds only the two short pieces.
    CHECK(px(-15.0, 175.0) == plain);
    CHECK(px(-15.0, 100.0) == plain);
    CHECK(px(-15.0, 280.0) == plain);
    const int64_t row = pixel_of(L, g, -15.0, 0.0).y;
    CHECK(count_in_row(img, L, row, kTrackTcColour) < 40 * L.map_w / 360 + 20);  // 40 degrees of line, plus slack
    // Away from the line's row: nothing.
    CHECK(px(-25.0, 10.0) == plain);
    CHECK(px(-5.0, 10.0) == plain);
    // The AR: blue from 150E to 230E (the -130 point drawn at 230E), genesis at 150E, nothing west of it.
    CHECK(px(40.0, 150.0) == kGenesisArColour);
    CHECK(px(40.0, 190.0) == kTrackArColour);
    CHECK(px(40.0, 228.0) == kTrackArColour);
    CHECK(px(40.0, 245.0) == plain);
    CHECK(px(40.0, 100.0) == plain);
    CHECK(px(5.0, 260.0) == kGenesisTcColour);
    CHECK(px(5.0, -100.0 + 360.0 - 180.0) == plain);  // not at 80E
    // The line has a dark outline: just above the AR line (half width 1.5 px: 2 rows of colour above the centre line,
    // then 1 of outline), dark.
    const Pos p = pixel_of(L, g, 40.0, 190.0);
    const int64_t yc = static_cast<int64_t>(std::floor(L.map_y0 + (90.0 - 40.0) / 180.0 * L.map_h));
    CHECK(p.y == yc);
    CHECK(img.rgb(yc - 2, p.x) == kTrackArColour);
    CHECK(img.rgb(yc - 3, p.x)[2] < 40);
    CHECK(img.rgb(yc - 4, p.x) == plain);
  }

  SECTION("-180..180 grid: drawn as it is; a track across the dateline is cut at the edges") {
    const io::CfGrid g = grid_of(H, W, -180.0);
    const MapLayout L = map_layout(g);
    TrackLine tc;
    tc.cls = 1;
    tc.lat = {-20.0, -20.0, -20.0};
    tc.lon = {170.0, 180.0, 190.0};  // 190 = -170
    const io::RgbImage img = render_tracks_map(g, MapBackground{}, {tc}, "");
    auto px = [&](double lat, double lon) {
      const Pos p = pixel_of(L, g, lat, lon);
      return img.rgb(p.y, p.x);
    };
    // Left edge is 180W: 0 is the middle of the map.
    CHECK(pixel_of(L, g, 0.0, 0.0).x - L.map_x0 == L.map_w / 2 + 4);  // 0E sits 1.25 degrees right of the middle
    CHECK(px(-20.0, 170.0) == kGenesisTcColour);
    CHECK(px(-20.0, 176.0) == kTrackTcColour);
    CHECK(px(-20.0, -178.0) == kTrackTcColour);
    CHECK(px(-20.0, -172.0) == kTrackTcColour);
    CHECK(px(-20.0, 10.0) == plain);
    CHECK(px(-20.0, -100.0) == plain);
    CHECK(px(-20.0, 100.0) == plain);
    CHECK(count_in_row(img, L, pixel_of(L, g, -20.0, 0.0).y, kTrackTcColour) < 20 * L.map_w / 360 + 20);
  }

  SECTION("non-finite points break the line; invalid tracks are refused") {
    const io::CfGrid g = grid_of(H, W);
    const MapLayout L = map_layout(g);
    TrackLine t;
    t.cls = 1;
    t.lat = {10.0, 10.0, NAN, 10.0, 10.0};
    t.lon = {100.0, 110.0, 120.0, 130.0, 140.0};
    const io::RgbImage img = render_tracks_map(g, MapBackground{}, {t}, "");
    const Pos a = pixel_of(L, g, 10.0, 105.0), b = pixel_of(L, g, 10.0, 118.0), c = pixel_of(L, g, 10.0, 135.0);
    CHECK(img.rgb(a.y, a.x) == kTrackTcColour);
    CHECK(img.rgb(b.y, b.x) == plain);
    CHECK(img.rgb(c.y, c.x) == kTrackTcColour);
    t.cls = 3;
    CHECK_THROWS_AS(render_tracks_map(g, MapBackground{}, {t}, ""), Error);
    t.cls = 2;
    t.lon.pop_back();
    CHECK_THROWS_AS(render_tracks_map(g, MapBackground{}, {t}, ""), Error);
  }
}

TEST_CASE("event maps: the bitmap font and argument checks", "[analysis][png]") {
  // Every glyph of the documented set is drawn, and no two share a bitmap (a copy-paste slip in the table).
  const std::string set = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.,-+=:;%/()[]'?_<>*";
  std::set<std::string> seen;
  for (char ch : set) {
    std::string bits;
    for (int r = 0; r < 9; ++r)
      for (int c = 0; c < 5; ++c) bits += glyph_pixel(ch, r, c) ? '#' : '.';
    CHECK(bits.find('#') != std::string::npos);
    CHECK(seen.insert(bits).second);
  }
  // Descenders only for g j p q y , ;
  for (char ch : set) {
    const bool desc = glyph_pixel(ch, 7, 0) || glyph_pixel(ch, 7, 1) || glyph_pixel(ch, 7, 2) ||
                      glyph_pixel(ch, 7, 3) || glyph_pixel(ch, 7, 4);
    CHECK(desc == (std::string("gjpqy,;").find(ch) != std::string::npos));
  }
  // draw_text: scale 2 draws each set font pixel as a 2x2 block at (x + 12 i + 2 col, y + 2 row).
  io::RgbImage img(30, 40);
  draw_text(img, 3, 4, "7E", 2, Rgb{255, 0, 0});
  for (int i = 0; i < 2; ++i)
    for (int r = 0; r < 7; ++r)
      for (int c = 0; c < 5; ++c) {
        const bool on = glyph_pixel("7E"[i], r, c);
        for (int dy = 0; dy < 2; ++dy)
          for (int dx = 0; dx < 2; ++dx) CHECK((img.rgb(4 + 2 * r + dy, 3 + 12 * i + 2 * c + dx)[0] == 255) == on);
      }
  CHECK(text_width("7E", 2) == 22);
  CHECK(glyph_pixel('~', 0, 1) == glyph_pixel('?', 0, 1));  // unknown: '?'

  const io::CfGrid g = grid_of(8, 16);
  CHECK_THROWS_AS(render_frequency_map(g, MapBackground{}, std::vector<float>(5), {}, ""), Error);
  CHECK_THROWS_AS(render_frequency_map(g, MapBackground{{1.0f}, "x", ""}, {}, {}, ""), Error);
  io::CfGrid bad = g;
  std::swap(bad.lat[0], bad.lat[1]);
  CHECK_THROWS_AS(map_layout(bad), Error);
  CHECK_THROWS_AS(map_layout(io::CfGrid{}), Error);
}
