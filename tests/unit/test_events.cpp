// analysis/components, analysis/sphere and analysis/events (`climseg events`, docs/events.md) on hand-made masks:
//   - components: the longitude seam joins (periodic only, diagonals included), the poles never do, classes stay
//     apart, numbering in raster order of the first pixel, the run layout; random masks against a flood fill here;
//   - sphere: cell areas sum to 4 pi R^2 (cell-centred and pole-point grids), latitude bands against the analytic
//     area, explicit bounds, great-circle distances, wrap_lon;
//   - objects: centroids across the seam / dateline and at a pole, the longitude range across the seam, the minimum
//     area in km^2, intensities from a fields buffer against values computed here, class 3 refused;
//   - tracking: overlap continuation, split, merge, gaps, crossing cyclones linked by distance, too-fast jumps,
//     minimum duration with renumbering, and the consistency of events[] with object_event.
// Expected values are computed here from the documented formulas, never with the library's own helpers.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "analysis/components.h"
#include "analysis/events.h"
#include "analysis/sphere.h"
#include "io/cf_grid.h"

using namespace climseg;
using namespace climseg::analysis;

namespace {

constexpr double kR = 6371.0;
constexpr double kPiT = 3.14159265358979323846;
constexpr double kD = kPiT / 180.0;

struct Mask {
  int64_t H = 0, W = 0;
  std::vector<uint8_t> v;
  Mask(int64_t h, int64_t w) : H(h), W(w), v(static_cast<size_t>(h * w), 0) {}
  uint8_t& at(int64_t r, int64_t c) { return v[static_cast<size_t>(r * W + c)]; }
  uint8_t at(int64_t r, int64_t c) const { return v[static_cast<size_t>(r * W + c)]; }
  // Rows r0..r1, columns c0..c1 inclusive; columns wrap (c1 < c0 goes across the seam).
  void rect(int64_t r0, int64_t r1, int64_t c0, int64_t c1, uint8_t k) {
    for (int64_t r = r0; r <= r1; ++r)
      for (int64_t c = c0;; c = (c + 1) % W) {
        at(r, c) = k;
        if (c == c1) break;
      }
  }
};

// rows[0] is row 0 (south). '.' background, digits class values.
Mask from_rows(const std::vector<std::string>& rows) {
  Mask m(static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size()));
  for (int64_t r = 0; r < m.H; ++r)
    for (int64_t c = 0; c < m.W; ++c) {
      const char ch = rows[static_cast<size_t>(r)][static_cast<size_t>(c)];
      m.at(r, c) = ch == '.' ? 0 : static_cast<uint8_t>(ch - '0');
    }
  return m;
}

// Reference labelling: flood fill with 8-neighbours (columns wrap when periodic, rows never), components numbered in
// the order their first pixel is met in a raster scan.
std::vector<int32_t> reference_labels(const Mask& m, bool periodic, int32_t* count = nullptr) {
  std::vector<int32_t> lab(m.v.size(), 0);
  int32_t n = 0;
  std::vector<std::pair<int64_t, int64_t>> stack;
  for (int64_t r = 0; r < m.H; ++r)
    for (int64_t c = 0; c < m.W; ++c) {
      if (m.at(r, c) == 0 || lab[static_cast<size_t>(r * m.W + c)] != 0) continue;
      const uint8_t k = m.at(r, c);
      ++n;
      lab[static_cast<size_t>(r * m.W + c)] = n;
      stack.assign(1, {r, c});
      while (!stack.empty()) {
        auto [y, x] = stack.back();
        stack.pop_back();
        for (int64_t dy = -1; dy <= 1; ++dy)
          for (int64_t dx = -1; dx <= 1; ++dx) {
            const int64_t yy = y + dy;
            int64_t xx = x + dx;
            if (yy < 0 || yy >= m.H) continue;
            if (xx < 0 || xx >= m.W) {
              if (!periodic) continue;
              xx = (xx + m.W) % m.W;
            }
            const size_t i = static_cast<size_t>(yy * m.W + xx);
            if (m.v[i] == k && lab[i] == 0) {
              lab[i] = n;
              stack.push_back({yy, xx});
            }
          }
      }
    }
  if (count) *count = n;
  return lab;
}

// Every invariant of Components documented in components.h, and the label image against the reference.
void check_components(const Components& c, const Mask& m, bool periodic) {
  REQUIRE(c.height == m.H);
  REQUIRE(c.width == m.W);
  REQUIRE(c.first.size() == static_cast<size_t>(c.count) + 1);
  REQUIRE(c.cls.size() == static_cast<size_t>(c.count));
  REQUIRE(c.first.front() == 0);
  REQUIRE(c.first.back() == static_cast<int64_t>(c.runs.size()));
  int64_t covered = 0;
  std::tuple<int32_t, int32_t> prev_first{-1, -1};
  for (int32_t k = 1; k <= c.count; ++k) {
    const int64_t b = c.first[static_cast<size_t>(k) - 1], e = c.first[static_cast<size_t>(k)];
    REQUIRE(b < e);  // a component has at least one run
    const uint8_t cls = c.cls[static_cast<size_t>(k) - 1];
    REQUIRE(cls != 0);
    for (int64_t i = b; i < e; ++i) {
      const Run& r = c.runs[static_cast<size_t>(i)];
      REQUIRE(r.row >= 0);
      REQUIRE(r.row < m.H);
      REQUIRE(0 <= r.c0);
      REQUIRE(r.c0 <= r.c1);
      REQUIRE(r.c1 < m.W);
      if (i > b) {  // sorted by row, then column, disjoint
        const Run& p = c.runs[static_cast<size_t>(i) - 1];
        REQUIRE((p.row < r.row || (p.row == r.row && p.c1 + 1 < r.c0)));
      }
      for (int64_t x = r.c0; x <= r.c1; ++x) REQUIRE(m.at(r.row, x) == cls);
      // maximal: the run is all of its stretch of this class in its row
      if (r.c0 > 0) REQUIRE(m.at(r.row, r.c0 - 1) != cls);
      if (r.c1 < m.W - 1) REQUIRE(m.at(r.row, r.c1 + 1) != cls);
      covered += r.c1 - r.c0 + 1;
    }
    // numbering: raster order of the first run
    const Run& f = c.runs[static_cast<size_t>(b)];
    REQUIRE(std::make_tuple(f.row, f.c0) > prev_first);
    prev_first = std::make_tuple(f.row, f.c0);
  }
  REQUIRE(covered == static_cast<int64_t>(std::count_if(m.v.begin(), m.v.end(), [](uint8_t x) { return x != 0; })));
  int32_t n = 0;
  const std::vector<int32_t> want = reference_labels(m, periodic, &n);
  REQUIRE(c.count == n);
  REQUIRE(label_image(c) == want);
}

Components label(const Mask& m, bool periodic) {
  Components c;
  label_components(m.v.data(), m.H, m.W, periodic, c);
  check_components(c, m, periodic);
  return c;
}

int32_t label_at(const Components& c, int64_t r, int64_t col) {
  return label_image(c)[static_cast<size_t>(r * c.width + col)];
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// components

TEST_CASE("components: a blob across the 0/360 seam is one component on a periodic grid only", "[events][components]") {
  const Mask m = from_rows({
      "........",
      "11....11",
      "1......1",
      "........",
  });
  const Components p = label(m, true);
  CHECK(p.count == 1);
  CHECK(p.first.back() == 4);
  const Components n = label(m, false);
  CHECK(n.count == 2);
  CHECK(label_at(n, 1, 0) == 1);
  CHECK(label_at(n, 1, 7) == 2);
}

TEST_CASE("components: diagonal contact across the seam joins (both diagonals), not across classes",
          "[events][components]") {
  // row 1 col W-1 with row 2 col 0
  Mask a = from_rows({
      "......",
      ".....1",
      "1.....",
      "......",
  });
  CHECK(label(a, true).count == 1);
  CHECK(label(a, false).count == 2);
  // row 1 col 0 with row 2 col W-1
  Mask b = from_rows({
      "......",
      "2.....",
      ".....2",
      "......",
  });
  CHECK(label(b, true).count == 1);
  CHECK(label(b, false).count == 2);
  // the runs at the seam are not their row's only runs
  Mask c = from_rows({
      "..2.1.2.1",
      "1.2...2..",
      "..2.1.2.1",
  });
  const Components cc = label(c, true);
  CHECK(label_at(cc, 0, 8) == label_at(cc, 1, 0));
  CHECK(label_at(cc, 2, 8) == label_at(cc, 1, 0));
  CHECK(label_at(cc, 0, 2) == label_at(cc, 2, 2));
  CHECK(label_at(cc, 0, 6) != label_at(cc, 0, 2));
  // different classes across the seam (straight and diagonal) stay apart
  Mask d = from_rows({
      "1....2",
      ".....2",
      "2.....",
      "1....1",
  });
  const Components dd = label(d, true);
  CHECK(label_at(dd, 0, 0) != label_at(dd, 0, 5));
  CHECK(label_at(dd, 2, 0) == label_at(dd, 1, 5));  // 2 at (2,0) touches 2 at (1,5) diagonally across the seam
  CHECK(label_at(dd, 3, 0) == label_at(dd, 3, 5));
  CHECK(dd.count == 3);
  // W = 2 and W = 1: the seam neighbour is the other (or the same) column
  CHECK(label(from_rows({"1.", ".1"}), true).count == 1);
  CHECK(label(from_rows({"1.", ".1"}), false).count == 1);
  CHECK(label(from_rows({"1", ".", "1"}), true).count == 2);
}

TEST_CASE("components: the south and north pole rows are never joined", "[events][components]") {
  const Mask m = from_rows({
      "..1.2..1",
      "........",
      "........",
      "........",
      "1.1.2...",
  });
  for (bool periodic : {true, false}) {
    const Components c = label(m, periodic);
    CHECK(label_at(c, 0, 2) != label_at(c, 4, 2));
    CHECK(label_at(c, 0, 4) != label_at(c, 4, 4));
    CHECK(c.count == 6);
  }
  // full first and last rows: two components (one per pole)
  Mask full(6, 10);
  full.rect(0, 0, 0, 9, 1);
  full.rect(5, 5, 0, 9, 1);
  CHECK(label(full, true).count == 2);
  // H = 1: one row, the seam still joins
  CHECK(label(from_rows({"1..1"}), true).count == 1);
  CHECK(label(from_rows({"1..1"}), false).count == 2);
}

TEST_CASE("components: one-pixel objects, all one class, empty, touching classes", "[events][components]") {
  SECTION("one-pixel objects") {
    const Mask m = from_rows({
        "1.2.1",
        ".....",
        "2.1.2",
    });
    const Components c = label(m, false);
    REQUIRE(c.count == 6);
    for (int32_t k = 1; k <= 6; ++k) {
      REQUIRE(c.first[static_cast<size_t>(k)] - c.first[static_cast<size_t>(k) - 1] == 1);
      const Run& r = c.runs[static_cast<size_t>(k) - 1];
      CHECK(r.c0 == r.c1);
    }
    CHECK(c.cls == std::vector<uint8_t>{1, 2, 1, 2, 1, 2});
    // periodic: (0,4) and (0,0) are both class 1 and neighbours; (2,4) class 2 and (2,0) class 2 too
    CHECK(label(m, true).count == 4);
    const Mask single = from_rows({"2"});
    const Components s = label(single, true);
    CHECK(s.count == 1);
    CHECK(s.cls[0] == 2);
  }
  SECTION("a mask all of one class: one component, every pixel") {
    for (auto [h, w] : {std::pair<int64_t, int64_t>{7, 13}, {1, 9}, {9, 1}, {1, 1}, {64, 64}}) {
      Mask m(h, w);
      std::fill(m.v.begin(), m.v.end(), uint8_t{2});
      for (bool periodic : {true, false}) {
        const Components c = label(m, periodic);
        CHECK(c.count == 1);
        CHECK(c.runs.size() == static_cast<size_t>(h));
        const std::vector<int32_t> img = label_image(c);
        CHECK(std::all_of(img.begin(), img.end(), [](int32_t x) { return x == 1; }));
      }
    }
  }
  SECTION("an empty mask: no components") {
    for (bool periodic : {true, false}) {
      const Mask m(11, 17);
      Components c;
      c.count = 5;  // reused scratch: everything is replaced
      c.runs.resize(3);
      c.first = {0, 1, 2};
      c.cls = {1, 1};
      label_components(m.v.data(), m.H, m.W, periodic, c);
      CHECK(c.count == 0);
      CHECK(c.runs.empty());
      CHECK(c.cls.empty());
      CHECK(c.first == std::vector<int64_t>{0});
      const std::vector<int32_t> img = label_image(c);
      CHECK(img.size() == 11u * 17u);
      CHECK(std::all_of(img.begin(), img.end(), [](int32_t x) { return x == 0; }));
    }
  }
  SECTION("two classes touching stay separate") {
    const Mask m = from_rows({
        "1122..",
        "1122..",
        "..21..",
        ".2..1.",
    });
    const Components c = label(m, true);
    CHECK(c.count == 3);  // the 1 block; the 2 block with (2,2) and (3,1); (2,3) with (3,4)
    CHECK(label_at(c, 0, 0) != label_at(c, 0, 2));
    CHECK(label_at(c, 2, 3) != label_at(c, 1, 3));
    CHECK(label_at(c, 2, 3) == label_at(c, 3, 4));
    CHECK(label_at(c, 3, 1) == label_at(c, 0, 2));
  }
}

TEST_CASE("components: numbering is the raster order of the first pixel (row 0 first)", "[events][components]") {
  // A U whose arms start in row 0 at columns 1 and 5 is one component numbered by column 1; the blob starting at
  // (0, 3) is second; a blob starting in row 0 at column W-1 that crosses the seam in row 1 comes after (0, 3).
  const Mask m = from_rows({
      ".1.2.1...1",
      ".1.2.1..1.",
      ".11111....",
      "2.........",
      "1........2",
  });
  const Components c = label(m, true);
  REQUIRE(c.count == 5);
  CHECK(label_at(c, 0, 1) == 1);
  CHECK(label_at(c, 0, 5) == 1);
  CHECK(label_at(c, 0, 3) == 2);
  CHECK(label_at(c, 0, 9) == 3);
  CHECK(label_at(c, 1, 8) == 3);
  CHECK(label_at(c, 3, 0) == 4);
  CHECK(label_at(c, 4, 9) == 4);  // (3,0) class 2 with (4,9) class 2 diagonally across the seam
  CHECK(label_at(c, 4, 0) == 5);
  CHECK(c.cls == std::vector<uint8_t>{1, 2, 1, 2, 1});
  // a component whose first run is joined late (through a later row) keeps the number of its first pixel
  const Mask z = from_rows({
      "..1.2.3...",
      ".1...2....",
      "1.....2..1",
  });
  const Components cz = label(z, false);
  CHECK(label_at(cz, 0, 2) == 1);
  CHECK(label_at(cz, 2, 0) == 1);
  CHECK(label_at(cz, 0, 4) == 2);
  CHECK(label_at(cz, 2, 6) == 2);
  CHECK(label_at(cz, 0, 6) == 3);
  CHECK(label_at(cz, 2, 9) == 4);
}

TEST_CASE("components: random masks against a flood fill (periodic and not)", "[events][components]") {
  std::mt19937 rng(12345);
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{1, 1}, {1, 2}, {2, 1}, {1, 40}, {40, 1}, {2, 2},
                                                          {3, 5}, {17, 23}, {33, 64}, {70, 9}, {8, 129}};
  int cases = 0;
  for (auto [h, w] : sizes)
    for (double density : {0.05, 0.2, 0.45, 0.6, 0.9})
      for (int rep = 0; rep < 3; ++rep) {
        Mask m(h, w);
        std::uniform_real_distribution<double> u(0, 1);
        for (auto& x : m.v) x = u(rng) < density ? static_cast<uint8_t>(1 + (rep == 0 ? 0 : rng() % 2)) : 0;
        for (bool periodic : {true, false}) {
          INFO(h << "x" << w << " density " << density << " rep " << rep << " periodic " << periodic);
          label(m, periodic);
          ++cases;
        }
      }
  CHECK(cases == 330);
}

// ---------------------------------------------------------------------------------------------------------------
// sphere

namespace {

// Area of the band between latitudes a and b (degrees) over the whole circle.
double band_area(double a, double b) { return 2 * kPiT * kR * kR * (std::sin(b * kD) - std::sin(a * kD)); }

double total_area(const GridGeometry& g) {
  double s = 0;
  for (int64_t r = 0; r < g.height; ++r)
    for (int64_t c = 0; c < g.width; ++c) s += g.area_km2(r, c);
  return s;
}

io::CfGrid grid_of(std::vector<double> lat, std::vector<double> lon) {
  io::CfGrid g;
  g.lat = std::move(lat);
  g.lon = std::move(lon);
  return g;
}

}  // namespace

TEST_CASE("sphere: cell areas of cell-centred global grids sum to 4 pi R^2; latitude bands", "[events][sphere]") {
  const double sphere = 4 * kPiT * kR * kR;
  for (auto [h, w] : {std::pair<int64_t, int64_t>{768, 1152}, {96, 144}, {2, 3}, {180, 360}, {7, 5}}) {
    INFO(h << "x" << w);
    const GridGeometry g = grid_geometry(io::global_grid(h, w));
    CHECK(g.periodic);
    CHECK(g.height == h);
    CHECK(g.width == w);
    CHECK(std::abs(total_area(g) / sphere - 1) < 1e-12);
    // each cell of a row has the same area: the band's area over W
    for (int64_t r = 0; r < h; r += std::max<int64_t>(1, h / 7)) {
      const double s = -90.0 + 180.0 * static_cast<double>(r) / static_cast<double>(h);
      const double n = -90.0 + 180.0 * static_cast<double>(r + 1) / static_cast<double>(h);
      CHECK(g.area_km2(r, 0) == Approx(band_area(s, n) / static_cast<double>(w)).epsilon(1e-11));
    }
  }
  // the band 0..30 N on a 1-degree grid: rows 90..119
  const GridGeometry g = grid_geometry(io::global_grid(180, 360));
  double band = 0;
  for (int64_t r = 90; r < 120; ++r)
    for (int64_t c = 0; c < 360; ++c) band += g.area_km2(r, c);
  CHECK(band == Approx(2 * kPiT * kR * kR * (std::sin(30 * kD) - 0)).epsilon(1e-12));
  // 60 S .. 10 S on a 1.5 x 2 degree grid (120 x 180): rows 20..53
  const GridGeometry g2 = grid_geometry(io::global_grid(120, 180));
  band = 0;
  for (int64_t r = 20; r < 54; ++r)
    for (int64_t c = 0; c < 180; ++c) band += g2.area_km2(r, c);
  CHECK(band == Approx(band_area(-60, -9)).epsilon(1e-12));
  CHECK(g2.lat == io::global_grid(120, 180).lat);
  CHECK(g2.lon == io::global_grid(120, 180).lon);
}

TEST_CASE("sphere: a grid with points on the poles has half-height polar cells and sums to 4 pi R^2",
          "[events][sphere]") {
  const double sphere = 4 * kPiT * kR * kR;
  for (int64_t h : {192, 19, 3}) {  // CAM FV 0.9x1.25: lat -90..90 inclusive, 192 rows
    std::vector<double> lat, lon;
    const double d = 180.0 / static_cast<double>(h - 1);
    for (int64_t i = 0; i < h; ++i) lat.push_back(-90.0 + d * static_cast<double>(i));
    for (int64_t j = 0; j < 288; ++j) lon.push_back(1.25 * static_cast<double>(j));
    const GridGeometry g = grid_geometry(grid_of(lat, lon));
    INFO(h << " rows");
    CHECK(g.periodic);
    CHECK(std::abs(total_area(g) / sphere - 1) < 1e-12);
    // south polar cap -90..-90+d/2, north d/2 below 90; an interior row d tall
    CHECK(g.area_km2(0, 0) * 288 == Approx(band_area(-90, -90 + d / 2)).epsilon(1e-11));
    CHECK(g.area_km2(h - 1, 7) * 288 == Approx(band_area(90 - d / 2, 90)).epsilon(1e-11));
    CHECK(g.area_km2(1, 3) * 288 == Approx(band_area(-90 + d / 2, -90 + 1.5 * d)).epsilon(1e-11));
  }
}

TEST_CASE("sphere: explicit lat/lon bounds are used", "[events][sphere]") {
  // An irregular regional grid whose bounds are not the midpoints of the centres; one longitude cell straddles the
  // 0/360 seam ([359, 1]: 2 degrees, not 358), one is given east-to-west.
  const io::CfGrid grid = grid_of({10, 12, 20}, {0, 2, 4});
  const std::vector<double> lat_b = {9, 11, 11, 15, 21, 15};  // the last pair reversed
  const std::vector<double> lon_b = {359, 1, 1, 3.5, 5, 3.5};
  const GridGeometry g = grid_geometry(grid, lat_b, lon_b);
  CHECK_FALSE(g.periodic);
  const double rows[3][2] = {{9, 11}, {11, 15}, {15, 21}};
  const double widths[3] = {2, 2.5, 1.5};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c)
      CHECK(g.area_km2(r, c) ==
            Approx(kR * kR * widths[c] * kD * (std::sin(rows[r][1] * kD) - std::sin(rows[r][0] * kD))).epsilon(1e-12));
  // without bounds: midpoints (11, 16) and outer edges 9 and 24; widths 2 each
  const GridGeometry h = grid_geometry(grid);
  CHECK(h.area_km2(0, 0) == Approx(kR * kR * 2 * kD * (std::sin(11 * kD) - std::sin(9 * kD))).epsilon(1e-12));
  CHECK(h.area_km2(2, 2) == Approx(kR * kR * 2 * kD * (std::sin(24 * kD) - std::sin(16 * kD))).epsilon(1e-12));
  // a wrong number of bounds is refused
  CHECK_THROWS_WITH(grid_geometry(grid, {1, 2}, {}), Catch::Contains("latitude bounds"));
  CHECK_THROWS_WITH(grid_geometry(grid, {}, {1, 2, 3}), Catch::Contains("longitude bounds"));
}

TEST_CASE("sphere: great-circle distances and wrap_lon", "[events][sphere]") {
  const double quarter = kPiT * kR / 2;
  CHECK(great_circle_km(0, 0, 0, 90) == Approx(quarter).epsilon(1e-12));
  CHECK(great_circle_km(0, 0, 90, 0) == Approx(quarter).epsilon(1e-12));
  CHECK(great_circle_km(-90, 123, 0, -45) == Approx(quarter).epsilon(1e-12));
  CHECK(great_circle_km(0, 0, 0, 180) == Approx(2 * quarter).epsilon(1e-12));
  CHECK(great_circle_km(90, 0, -90, 0) == Approx(2 * quarter).epsilon(1e-12));
  CHECK(great_circle_km(35, 20, -35, 200) == Approx(2 * quarter).epsilon(1e-7));   // antipodes
  CHECK(great_circle_km(35, 20, -35, -160) == Approx(2 * quarter).epsilon(1e-7));
  CHECK(great_circle_km(0, 179, 0, -179) == Approx(2 * kD * kR).epsilon(1e-9));  // across the dateline: 2 degrees
  CHECK(great_circle_km(0, 359, 0, 1) == Approx(2 * kD * kR).epsilon(1e-9));
  CHECK(great_circle_km(60, 10, 60, 10) == 0);
  CHECK(great_circle_km(60, 0, 60, 180) == Approx(60 * kD * kR).epsilon(1e-9));  // over the pole
  CHECK(great_circle_km(12, 34, 56, 78) == Approx(great_circle_km(56, 78, 12, 34)).epsilon(1e-14));

  CHECK(wrap_lon(-10, false) == Approx(350));
  CHECK(wrap_lon(360, false) == 0);
  CHECK(wrap_lon(725, false) == Approx(5));
  CHECK(wrap_lon(0, false) == 0);
  CHECK(wrap_lon(359.5, false) == 359.5);
  CHECK(wrap_lon(190, true) == Approx(-170));
  CHECK(wrap_lon(180, true) == -180);
  CHECK(wrap_lon(-180, true) == -180);
  CHECK(wrap_lon(-190, true) == Approx(170));
  CHECK(wrap_lon(10, true) == 10);
  CHECK(wrap_lon(-370, true) == Approx(-10));
  for (double x : {-1e-15, -1e-300, 360 - 1e-14, -360.0, 720.0, 1e6 + 0.25}) {
    const double a = wrap_lon(x, false), b = wrap_lon(x, true);
    INFO(x);
    CHECK(a >= 0);
    CHECK(a < 360);
    CHECK(b >= -180);
    CHECK(b < 180);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// objects

namespace {

std::vector<Object> objects_of(const Mask& m, const GridGeometry& g, const float* fields = nullptr,
                               const ObjectOptions& opt = {}, int64_t stride = kFieldCount) {
  Components scratch;
  std::vector<Object> out;
  find_objects(m.v.data(), g, 0, fields, opt, scratch, out, stride);
  return out;
}

// Centroid computed here: the normalised sum over cells of area times the unit vector of the cell's centre; areas
// from the cell-centred global grid formula.
std::pair<double, double> ref_centroid(const Mask& m, const std::vector<double>& lat, const std::vector<double>& lon,
                                       int32_t k, const std::vector<int32_t>& img) {
  double x = 0, y = 0, z = 0;
  const double H = static_cast<double>(m.H);
  for (int64_t r = 0; r < m.H; ++r)
    for (int64_t c = 0; c < m.W; ++c) {
      if (img[static_cast<size_t>(r * m.W + c)] != k) continue;
      const double s = -90 + 180 * static_cast<double>(r) / H, n = -90 + 180 * static_cast<double>(r + 1) / H;
      const double a = std::sin(n * kD) - std::sin(s * kD);
      const double la = lat[static_cast<size_t>(r)] * kD, lo = lon[static_cast<size_t>(c)] * kD;
      x += a * std::cos(la) * std::cos(lo);
      y += a * std::cos(la) * std::sin(lo);
      z += a * std::sin(la);
    }
  return {std::atan2(z, std::hypot(x, y)) / kD, std::atan2(y, x) / kD};
}

double lon_dist(double a, double b) {
  const double d = std::fmod(std::abs(a - b), 360.0);
  return std::min(d, 360 - d);
}

}  // namespace

TEST_CASE("objects: a blob across the seam has its centroid there, not at the other side", "[events][objects]") {
  const io::CfGrid grid = io::global_grid(90, 180);  // 2 degrees, lon 0..358
  const GridGeometry g = grid_geometry(grid);
  SECTION("symmetric about lon 0 on a 0..360 grid") {
    Mask m(90, 180);
    m.rect(40, 49, 179, 1, 1);  // lon 358, 0, 2; rows symmetric about the equator
    const std::vector<Object> o = objects_of(m, g);
    REQUIRE(o.size() == 1);
    CHECK(o[0].lon >= 0);
    CHECK(o[0].lon < 360);
    CHECK(lon_dist(o[0].lon, 0) < 1e-9);
    CHECK(std::abs(o[0].lat) < 1e-9);
    CHECK(o[0].lon_west == 358);
    CHECK(o[0].lon_east == 2);
    CHECK(o[0].pixels == 30);
    CHECK(o[0].lat_min == grid.lat[40]);
    CHECK(o[0].lat_max == grid.lat[49]);
  }
  SECTION("asymmetric across the seam") {
    Mask m(90, 180);
    m.rect(60, 62, 176, 1, 2);  // lon 352..358, 0, 2: 6 columns, centre 357
    const std::vector<Object> o = objects_of(m, g);
    REQUIRE(o.size() == 1);
    CHECK(o[0].lon == Approx(357).epsilon(1e-12));
    CHECK(o[0].lon_west == 352);
    CHECK(o[0].lon_east == 2);
    CHECK(o[0].lon_west > o[0].lon_east);
    const auto [la, lo] = ref_centroid(m, grid.lat, grid.lon, 1, label_image([&] {
                                         Components c;
                                         label_components(m.v.data(), 90, 180, true, c);
                                         return c;
                                       }()));
    CHECK(o[0].lat == Approx(la).epsilon(1e-12));
    CHECK(lon_dist(o[0].lon, lo) < 1e-9);
  }
  SECTION("across the dateline on a -180..180 grid") {
    std::vector<double> lon;
    for (int j = 0; j < 180; ++j) lon.push_back(-180.0 + 2.0 * j);
    const io::CfGrid gd = grid_of(grid.lat, lon);
    const GridGeometry g2 = grid_geometry(gd);
    REQUIRE(g2.periodic);
    Mask m(90, 180);
    m.rect(20, 24, 179, 1, 1);  // lon 178, -180, -178
    std::vector<Object> o = objects_of(m, g2);
    REQUIRE(o.size() == 1);
    CHECK(o[0].lon >= -180);
    CHECK(o[0].lon < 180);
    CHECK(lon_dist(o[0].lon, 180) < 1e-9);  // not 0
    CHECK(o[0].lon_west == 178);
    CHECK(o[0].lon_east == -178);
    // a blob not across the seam: west < east
    Mask n(90, 180);
    n.rect(20, 24, 100, 110, 2);
    o = objects_of(n, g2);
    REQUIRE(o.size() == 1);
    CHECK(o[0].lon_west == 20);
    CHECK(o[0].lon_east == 40);
    CHECK(o[0].lon == Approx(30).epsilon(1e-12));
  }
  SECTION("longitude range: the shortest range holding every column") {
    Mask m(90, 180);
    m.rect(10, 10, 150, 20, 1);  // one run across the seam: lon 300..358, 0..40
    std::vector<Object> o = objects_of(m, g);
    REQUIRE(o.size() == 1);
    CHECK(o[0].lon_west == 300);
    CHECK(o[0].lon_east == 40);
    // runs in two rows joined diagonally across the seam: columns 150..179 and 0..20
    Mask d(90, 180);
    d.rect(30, 30, 150, 179, 2);
    d.rect(31, 31, 0, 20, 2);
    o = objects_of(d, g);
    REQUIRE(o.size() == 1);
    CHECK(o[0].lon_west == 300);
    CHECK(o[0].lon_east == 40);
    // more than half the circle, not across the seam: columns 10..150 (the empty stretch 151..9 is the largest)
    Mask w(90, 180);
    w.rect(40, 40, 10, 80, 1);
    w.rect(41, 41, 80, 150, 1);
    o = objects_of(w, g);
    REQUIRE(o.size() == 1);
    CHECK(o[0].lon_west == 20);
    CHECK(o[0].lon_east == 300);
    // every column (a whole row, or rows that cover all columns together): west = first column, east = last
    Mask f(90, 180);
    f.rect(5, 5, 0, 179, 1);
    f.rect(50, 50, 0, 100, 2);
    f.rect(51, 51, 90, 179, 2);
    o = objects_of(f, g);
    REQUIRE(o.size() == 2);
    for (const Object& x : o) {
      CHECK(x.lon_west == 0);
      CHECK(x.lon_east == 358);
    }
  }
}

TEST_CASE("objects: a blob around a pole has its centroid at the pole", "[events][objects]") {
  const io::CfGrid grid = io::global_grid(36, 72);  // 5 degrees
  const GridGeometry g = grid_geometry(grid);
  Mask m(36, 72);
  m.rect(35, 35, 0, 71, 2);  // the northern cap (centres at 87.5 N)
  m.rect(34, 34, 10, 12, 2);
  m.rect(0, 1, 0, 71, 1);  // the southern cap, two rows
  std::vector<Object> o = objects_of(m, g);
  REQUIRE(o.size() == 2);
  CHECK(o[0].cls == 1);
  CHECK(o[0].lat < -89.999999);  // not -85: the mean of latitudes would be
  CHECK(o[0].lat_min == -87.5);
  CHECK(o[0].lat_max == -82.5);
  CHECK(o[0].area_km2 == Approx(band_area(-90, -80)).epsilon(1e-12));
  CHECK(o[1].cls == 2);
  CHECK(o[1].lat > 89);
  CHECK(o[1].lat < 90);
  CHECK(lon_dist(o[1].lon, 55) < 1e-6);  // the extra cells lean it towards lon 50..60
  const std::vector<int32_t> img = [&] {
    Components c;
    label_components(m.v.data(), 36, 72, true, c);
    return label_image(c);
  }();
  const auto [la, lo] = ref_centroid(m, grid.lat, grid.lon, 2, img);
  CHECK(o[1].lat == Approx(la).epsilon(1e-12));
  // half of the northern cap: lon 0..175, centroid at lon 87.5 and above the centres' latitude
  Mask h(36, 72);
  h.rect(35, 35, 0, 35, 1);
  o = objects_of(h, g);
  REQUIRE(o.size() == 1);
  CHECK(o[0].lon == Approx(87.5).epsilon(1e-12));
  CHECK(o[0].lat > 87.5);
  CHECK(o[0].lon_west == 0);
  CHECK(o[0].lon_east == 175);
}

TEST_CASE("objects: the minimum area is in km^2, not pixels, per class", "[events][objects]") {
  const io::CfGrid grid = io::global_grid(36, 72);
  const GridGeometry g = grid_geometry(grid);
  Mask m(36, 72);
  m.rect(34, 35, 10, 11, 1);  // 4 polar cells (80..90 N)
  m.rect(18, 18, 30, 30, 1);  // 1 equatorial cell (0..5 N)
  m.rect(34, 35, 40, 41, 2);  // 4 polar cells of the other class
  const double dl = 5 * kD;
  const double polar = kR * kR * dl * 2 * (1 - std::sin(80 * kD));
  const double equatorial = kR * kR * dl * std::sin(5 * kD);
  REQUIRE(polar < equatorial);
  std::vector<Object> all = objects_of(m, g);
  REQUIRE(all.size() == 3);
  CHECK(all[0].area_km2 == Approx(equatorial).epsilon(1e-12));
  CHECK(all[1].area_km2 == Approx(polar).epsilon(1e-12));
  CHECK(all[1].pixels == 4);
  ObjectOptions opt;
  opt.min_area_km2[1] = 0.5 * (polar + equatorial);
  std::vector<Object> kept = objects_of(m, g, nullptr, opt);
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].cls == 1);
  CHECK(kept[0].pixels == 1);  // one equatorial pixel kept, four polar ones dropped
  CHECK(kept[0].label == 1);
  CHECK(kept[1].cls == 2);     // the class-2 threshold is 0
  CHECK(kept[1].label == 3);   // labels stay the component numbers
  opt.min_area_km2[1] = all[0].area_km2;  // the boundary: an area equal to the minimum is kept
  CHECK(objects_of(m, g, nullptr, opt).size() == 2);
  opt.min_area_km2[2] = polar * 1.0001;
  CHECK(objects_of(m, g, nullptr, opt).size() == 1);
}

TEST_CASE("objects: intensities from the fields buffer", "[events][objects]") {
  const int64_t H = 24, W = 32;
  const io::CfGrid grid = io::global_grid(H, W);
  const GridGeometry g = grid_geometry(grid);
  Mask m(H, W);
  m.rect(5, 8, 30, 2, 1);   // a cyclone across the seam
  m.at(9, 0) = 1;
  m.rect(14, 16, 10, 20, 2);  // a river
  m.at(17, 21) = 2;
  for (int64_t stride : {int64_t{kFieldCount}, int64_t{9}}) {
    INFO("stride " << stride);
    std::vector<float> f(static_cast<size_t>(H * W * stride));
    for (int64_t r = 0; r < H; ++r)
      for (int64_t c = 0; c < W; ++c) {
        float* v = &f[static_cast<size_t>((r * W + c) * stride)];
        const double a = static_cast<double>(r), b = static_cast<double>(c);
        v[kUbot] = static_cast<float>(20 * std::sin(0.7 * a + 1.3 * b));
        v[kVbot] = static_cast<float>(-15 * std::cos(0.4 * a - 0.9 * b));
        v[kPsl] = static_cast<float>(101000 - 300 * std::sin(0.5 * a + 0.25 * b));
        v[kPrect] = static_cast<float>(1e-5 * (1 + std::sin(1.1 * a * b)));
        v[kTmq] = static_cast<float>(30 + 20 * std::cos(0.3 * a + 0.8 * b));
        v[kU850] = static_cast<float>(10 * std::sin(0.2 * a * b + 1));
        v[kV850] = static_cast<float>(-12 * std::cos(0.6 * b - a));
        for (int64_t k = kFieldCount; k < stride; ++k) v[k] = 1e30f;  // must not be read
      }
    const std::vector<Object> o = objects_of(m, g, f.data(), {}, stride);
    REQUIRE(o.size() == 2);
    double wind = 0, psl = 1e300, prect = -1e300, tmq = -1e300, tmq_sum = 0, area = 0, ivt = -1e300;
    for (int64_t r = 0; r < H; ++r)
      for (int64_t c = 0; c < W; ++c) {
        const float* v = &f[static_cast<size_t>((r * W + c) * stride)];
        const double s = -90.0 + 180.0 * static_cast<double>(r) / H, n = -90.0 + 180.0 * static_cast<double>(r + 1) / H;
        const double a = kR * kR * (2 * kPiT / W) * (std::sin(n * kD) - std::sin(s * kD));
        if (m.at(r, c) == 1) {
          wind = std::max(wind, std::hypot(double(v[kUbot]), double(v[kVbot])));
          psl = std::min(psl, double(v[kPsl]));
          prect = std::max(prect, double(v[kPrect]));
        } else if (m.at(r, c) == 2) {
          tmq = std::max(tmq, double(v[kTmq]));
          tmq_sum += a * v[kTmq];
          area += a;
          ivt = std::max(ivt, double(v[kTmq]) * std::hypot(double(v[kU850]), double(v[kV850])));
        }
      }
    CHECK(o[0].cls == 1);
    CHECK(o[0].pixels == 4 * 5 + 1);
    CHECK(o[0].max_wind == Approx(wind).epsilon(1e-12));
    CHECK(o[0].min_psl == psl);
    CHECK(o[0].max_prect == prect);
    CHECK(std::isnan(o[0].max_tmq));
    CHECK(std::isnan(o[0].mean_tmq));
    CHECK(std::isnan(o[0].max_ivt_proxy));
    CHECK(o[1].cls == 2);
    CHECK(o[1].area_km2 == Approx(area).epsilon(1e-12));
    CHECK(o[1].max_tmq == tmq);
    CHECK(o[1].mean_tmq == Approx(tmq_sum / area).epsilon(1e-12));
    CHECK(o[1].max_ivt_proxy == Approx(ivt).epsilon(1e-12));
    CHECK(std::isnan(o[1].max_wind));
    CHECK(std::isnan(o[1].min_psl));
    CHECK(std::isnan(o[1].max_prect));
  }
  // without fields: every intensity NaN
  const std::vector<Object> o = objects_of(m, g);
  REQUIRE(o.size() == 2);
  for (const Object& x : o)
    for (double v : {x.max_wind, x.min_psl, x.max_prect, x.max_tmq, x.mean_tmq, x.max_ivt_proxy}) CHECK(std::isnan(v));
}

TEST_CASE("objects: a class value 3 in the mask is refused, naming it", "[events][objects]") {
  const GridGeometry g = grid_geometry(io::global_grid(8, 16));
  Mask m(8, 16);
  m.rect(1, 2, 3, 4, 1);
  m.rect(5, 5, 9, 9, 3);
  CHECK_THROWS_WITH(objects_of(m, g), Catch::Contains("class value 3"));
  m.rect(5, 5, 9, 9, 200);
  CHECK_THROWS_WITH(objects_of(m, g), Catch::Contains("class value 200"));
  CHECK(std::string(class_name(1)) == "tropical_cyclone");
  CHECK(std::string(class_name(2)) == "atmospheric_river");
  CHECK(std::string(field_name(kPsl)) == "PSL");
}

// ---------------------------------------------------------------------------------------------------------------
// tracking

namespace {

struct Series {
  io::CfGrid grid;
  GridGeometry geo;
  std::vector<Object> objects;
  std::vector<double> hours;
  Components scratch;
  ObjectOptions opt;
  Series(int64_t h, int64_t w) : grid(io::global_grid(h, w)), geo(grid_geometry(grid)) {}
  Mask blank() const { return Mask(geo.height, geo.width); }
  void add(const Mask& m, double hour) {
    find_objects(m.v.data(), geo, static_cast<int64_t>(hours.size()), nullptr, opt, scratch, objects);
    hours.push_back(hour);
  }
  // Index of the object of `step` covering (row, col).
  size_t at(int64_t step, int64_t row, int64_t col) const {
    for (size_t i = 0; i < objects.size(); ++i)
      if (objects[i].step == step && object_covers(objects[i], row, col)) return i;
    FAIL("no object at step " << step << " (" << row << ", " << col << ")");
    return 0;
  }
  Tracking track(const TrackOptions& t) const { return track_events(objects, hours, geo.height, geo.width, t); }
};

// events[] against object_event and the documented invariants.
void check_tracking(const Tracking& t, const Series& s) {
  REQUIRE(t.object_event.size() == s.objects.size());
  std::vector<int> seen(s.objects.size(), 0);
  int64_t prev_first = -1;
  for (size_t i = 0; i < t.events.size(); ++i) {
    const Event& e = t.events[i];
    REQUIRE(e.id == static_cast<int64_t>(i) + 1);
    REQUIRE(!e.objects.empty());
    REQUIRE((e.cls == 1 || e.cls == 2));
    REQUIRE(e.first_step == s.objects[e.objects.front()].step);
    REQUIRE(e.last_step == s.objects[e.objects.back()].step);
    REQUIRE(e.first_step >= prev_first);  // numbered in start order
    prev_first = e.first_step;
    for (size_t k = 0; k < e.objects.size(); ++k) {
      const size_t o = e.objects[k];
      REQUIRE(o < s.objects.size());
      REQUIRE(s.objects[o].cls == e.cls);
      REQUIRE(t.object_event[o] == e.id);
      if (k > 0) REQUIRE(s.objects[o].step > s.objects[e.objects[k - 1]].step);
      ++seen[o];
    }
    REQUIRE(e.duration_h == Approx(s.hours[static_cast<size_t>(e.last_step)] -
                                   s.hours[static_cast<size_t>(e.first_step)] + t.dt_hours));
    REQUIRE(e.split_from >= 0);
    REQUIRE(e.split_from <= static_cast<int64_t>(t.events.size()));
    REQUIRE(e.merged_into >= 0);
    REQUIRE(e.merged_into <= static_cast<int64_t>(t.events.size()));
    REQUIRE(e.split_from != e.id);
    REQUIRE(e.merged_into != e.id);
  }
  for (size_t o = 0; o < s.objects.size(); ++o) {
    REQUIRE(seen[o] == (t.object_event[o] != 0 ? 1 : 0));
    REQUIRE(t.object_event[o] >= 0);
  }
}

}  // namespace

TEST_CASE("tracking: a blob moving with overlap is one event", "[events][tracking]") {
  Series s(36, 72);
  for (int k = 0; k < 4; ++k) {
    Mask m = s.blank();
    m.rect(10, 12, (70 + k) % 72, (72 + k) % 72, 2);  // across the seam
    m.rect(25, 26, 20 + 3 * k, 21 + 3 * k, 1);   // a cyclone moving 15 degrees per step with no overlap: too far
    s.add(m, 3.0 * k);
  }
  TrackOptions opt;
  const Tracking t = s.track(opt);
  check_tracking(t, s);
  CHECK(t.dt_hours == 3);
  const int64_t river = t.object_event[s.at(0, 10, 70)];
  REQUIRE(river == 1);
  const Event& e = t.events[0];
  CHECK(e.cls == 2);
  CHECK(e.first_step == 0);
  CHECK(e.last_step == 3);
  CHECK(e.objects == std::vector<size_t>{s.at(0, 10, 70), s.at(1, 10, 71), s.at(2, 10, 0), s.at(3, 10, 1)});
  CHECK(e.duration_h == 12);
  CHECK(e.split_from == 0);
  CHECK(e.merged_into == 0);
  // the cyclone: 4 events of one step each (555 km per 3 h > 80 km/h)
  CHECK(t.events.size() == 5);
  for (size_t i = 1; i < t.events.size(); ++i) {
    CHECK(t.events[i].cls == 1);
    CHECK(t.events[i].objects.size() == 1);
    CHECK(t.events[i].duration_h == 3);
  }
}

TEST_CASE("tracking: a split continues the larger overlap; the other part is a new event", "[events][tracking]") {
  Series s(36, 72);
  Mask a = s.blank();
  a.rect(10, 12, 10, 22, 2);
  s.add(a, 0);
  Mask b = s.blank();
  b.rect(10, 12, 10, 12, 2);  // first in raster order, smaller overlap
  b.rect(10, 12, 14, 22, 2);  // larger overlap
  s.add(b, 6);
  s.add(b, 12);
  const Tracking t = s.track({});
  check_tracking(t, s);
  REQUIRE(t.events.size() == 2);
  const Event& big = t.events[0];
  const Event& small = t.events[1];
  CHECK(big.objects == std::vector<size_t>{s.at(0, 10, 10), s.at(1, 10, 14), s.at(2, 10, 14)});
  CHECK(small.objects == std::vector<size_t>{s.at(1, 10, 10), s.at(2, 10, 10)});
  CHECK(small.split_from == 1);
  CHECK(big.split_from == 0);
  CHECK(big.merged_into == 0);
  CHECK(small.merged_into == 0);
  CHECK(small.first_step == 1);
  CHECK(small.duration_h == 12);
  CHECK(big.duration_h == 18);
}

TEST_CASE("tracking: a merge ends the smaller overlap with merged_into", "[events][tracking]") {
  Series s(36, 72);
  Mask a = s.blank();
  a.rect(10, 12, 10, 12, 2);  // label 1, overlaps 9 cells of the merged blob
  a.rect(10, 12, 14, 22, 2);  // label 2, overlaps 27
  s.add(a, 0);
  Mask b = s.blank();
  b.rect(10, 12, 10, 22, 2);
  s.add(b, 6);
  s.add(b, 12);
  s.add(s.blank(), 18);
  s.add(a, 24);  // max_gap 1 keeps the merged event open through the empty step 3
  const Tracking t = s.track({});
  check_tracking(t, s);
  REQUIRE(t.events.size() >= 2);
  const Event& left = t.events[0];
  const Event& right = t.events[1];
  CHECK(left.objects == std::vector<size_t>{s.at(0, 10, 10)});
  CHECK(left.merged_into == 2);
  CHECK(left.last_step == 0);
  CHECK(right.objects.front() == s.at(0, 10, 14));
  CHECK(right.objects[1] == s.at(1, 10, 10));
  CHECK(right.objects[2] == s.at(2, 10, 10));
  CHECK(right.merged_into == 0);
  // at step 4 the merged event (last seen at step 2, one missing step) continues into the larger part; the smaller
  // part splits from it; the event that merged stays ended
  REQUIRE(t.events.size() == 3);
  CHECK(right.objects.size() == 4);
  CHECK(right.objects[3] == s.at(4, 10, 14));
  CHECK(t.events[2].objects == std::vector<size_t>{s.at(4, 10, 10)});
  CHECK(t.events[2].split_from == 2);
}

TEST_CASE("tracking: an event that merged stays ended when its part reappears at the next step",
          "[events][tracking]") {
  Series s(36, 72);
  Mask a = s.blank();
  a.rect(10, 12, 10, 12, 2);
  a.rect(10, 12, 14, 22, 2);
  Mask b = s.blank();
  b.rect(10, 12, 10, 22, 2);
  s.add(a, 0);
  s.add(b, 6);
  s.add(a, 12);  // the small part is back: a new event split from the merged one, not the old event continued
  const Tracking t = s.track({});
  check_tracking(t, s);
  REQUIRE(t.events.size() == 3);
  CHECK(t.events[0].objects == std::vector<size_t>{s.at(0, 10, 10)});
  CHECK(t.events[0].merged_into == 2);
  CHECK(t.events[1].objects == std::vector<size_t>{s.at(0, 10, 14), s.at(1, 10, 10), s.at(2, 10, 14)});
  CHECK(t.events[2].objects == std::vector<size_t>{s.at(2, 10, 10)});
  CHECK(t.events[2].split_from == 2);
}

TEST_CASE("tracking: a missing step is bridged with max_gap 1, not 0", "[events][tracking]") {
  Series s(36, 72);
  Mask a = s.blank();
  a.rect(20, 22, 30, 34, 2);
  s.add(a, 0);
  s.add(s.blank(), 3);
  s.add(a, 6);
  s.add(s.blank(), 9);
  s.add(s.blank(), 12);
  s.add(a, 15);  // two steps missing
  TrackOptions opt;
  opt.max_gap = 1;
  Tracking t = s.track(opt);
  check_tracking(t, s);
  CHECK(t.dt_hours == 3);
  REQUIRE(t.events.size() == 2);
  CHECK(t.events[0].objects == std::vector<size_t>{0, 1});
  CHECK(t.events[0].duration_h == 9);
  CHECK(t.events[1].objects == std::vector<size_t>{2});
  CHECK(t.events[1].split_from == 0);
  CHECK(t.events[0].merged_into == 0);
  opt.max_gap = 0;
  t = s.track(opt);
  check_tracking(t, s);
  CHECK(t.events.size() == 3);
  opt.max_gap = 2;
  t = s.track(opt);
  check_tracking(t, s);
  REQUIRE(t.events.size() == 1);
  CHECK(t.events[0].duration_h == 18);
  opt.max_gap = -1;
  CHECK_THROWS_WITH(s.track(opt), Catch::Contains("gap"));
}

TEST_CASE("tracking: a hole in the times counts as missing steps; dt is the median step", "[events][tracking]") {
  Series s(36, 72);
  Mask a = s.blank();
  a.rect(20, 22, 30, 34, 2);
  for (double h : {0.0, 3.0, 12.0, 15.0, 18.0}) s.add(a, h);  // 3 -> 12: two 3-hourly steps missing
  TrackOptions opt;
  opt.max_gap = 1;
  Tracking t = s.track(opt);
  check_tracking(t, s);
  CHECK(t.dt_hours == 3);
  REQUIRE(t.events.size() == 2);
  CHECK(t.events[0].objects == std::vector<size_t>{0, 1});
  CHECK(t.events[0].duration_h == 6);
  CHECK(t.events[1].objects == std::vector<size_t>{2, 3, 4});
  CHECK(t.events[1].duration_h == 9);
  CHECK(t.events[1].split_from == 0);
  opt.max_gap = 2;
  t = s.track(opt);
  check_tracking(t, s);
  REQUIRE(t.events.size() == 1);
  CHECK(t.events[0].duration_h == 21);
}

TEST_CASE("tracking: links across a gap come after links between consecutive steps", "[events][tracking]") {
  Series s(36, 72);
  Mask a = s.blank();
  a.rect(10, 12, 10, 20, 2);  // event A
  s.add(a, 0);
  Mask b = s.blank();
  b.rect(10, 12, 30, 32, 2);  // event B (A missing)
  s.add(b, 6);
  Mask c = s.blank();
  c.rect(10, 12, 10, 32, 2);  // overlaps A by 33 cells across the gap, B by 9 without
  s.add(c, 12);
  const Tracking t = s.track({});
  check_tracking(t, s);
  REQUIRE(t.events.size() == 2);
  CHECK(t.events[1].objects == std::vector<size_t>{1, 2});  // B continues
  CHECK(t.events[0].objects == std::vector<size_t>{0});
  CHECK(t.events[0].merged_into == 2);
}

TEST_CASE("tracking: crossing cyclones are linked by the shorter distance", "[events][tracking]") {
  // 1-degree grid. A moves north-east one row and one column per step, B south-east; they pass 4 columns apart and
  // their raster order flips at step 5, where both objects are within reach of both events.
  Series s(180, 360);
  const int steps = 9;
  for (int k = 0; k < steps; ++k) {
    Mask m = s.blank();
    m.at(88 + k, 100 + k) = 1;  // A
    m.at(96 - k, 104 + k) = 1;  // B
    s.add(m, 6.0 * k);
  }
  TrackOptions opt;
  opt.tc_max_speed_kmh = 150;  // 900 km per step: the wrong pairing is a candidate too
  opt.max_gap = 0;
  const Tracking t = s.track(opt);
  check_tracking(t, s);
  REQUIRE(t.events.size() == 2);
  for (int k = 0; k < steps; ++k) {
    INFO("step " << k);
    CHECK(t.object_event[s.at(k, 88 + k, 100 + k)] == 1);
    CHECK(t.object_event[s.at(k, 96 - k, 104 + k)] == 2);
  }
  CHECK(t.events[0].split_from == 0);
  CHECK(t.events[1].split_from == 0);
  CHECK(t.events[0].merged_into == 0);
  CHECK(t.events[1].merged_into == 0);
  CHECK(t.events[0].duration_h == 54);
}

TEST_CASE("tracking: a cyclone jumping farther than tc_max_speed * dt starts a new event", "[events][tracking]") {
  Series s(180, 360);
  const auto cyclone = [&](int64_t col) {
    Mask m = s.blank();
    m.at(90, col) = 1;
    m.at(60, col) = 2;  // a river pixel moving the same way: rivers are never linked by distance
    return m;
  };
  s.add(cyclone(100), 0);   // event 1
  s.add(cyclone(103), 6);   // 3 degrees = 333 km < 480: linked
  s.add(cyclone(108), 12);  // 5 degrees = 556 km > 480: new event
  s.add(s.blank(), 18);
  s.add(cyclone(114), 24);  // 6 degrees = 667 km over 12 h (one missing step): 960 km allowed, linked
  const Tracking t = s.track({});
  check_tracking(t, s);
  std::vector<Event> tc, ar;
  for (const Event& e : t.events) (e.cls == 1 ? tc : ar).push_back(e);
  REQUIRE(tc.size() == 2);
  CHECK(tc[0].objects == std::vector<size_t>{s.at(0, 90, 100), s.at(1, 90, 103)});
  CHECK(tc[1].objects == std::vector<size_t>{s.at(2, 90, 108), s.at(4, 90, 114)});
  CHECK(tc[1].split_from == 0);
  CHECK(tc[0].merged_into == 0);
  CHECK(ar.size() == 4);
  TrackOptions fast;
  fast.tc_max_speed_kmh = 100;  // 600 km per step: the jump is linked
  const Tracking u = s.track(fast);
  check_tracking(u, s);
  CHECK(u.object_event[s.at(2, 90, 108)] == u.object_event[s.at(0, 90, 100)]);
}

TEST_CASE("tracking: minimum duration drops short events and renumbers in start order", "[events][tracking]") {
  Series s(36, 72);
  std::vector<Mask> m(7, s.blank());
  for (int k : {0, 1}) m[k].rect(2, 3, 2, 4, 2);            // a: 6 h, dropped
  for (int k : {0, 1, 2}) m[k].rect(10, 11, 2, 4, 2);       // b: 9 h, kept (the boundary)
  for (int k : {1, 2, 3, 4}) m[k].rect(20, 21, 2, 4, 2);    // c: 12 h, kept
  m[2].rect(30, 30, 2, 4, 2);                               // d: 3 h, dropped
  m[2].rect(5, 6, 20, 30, 2);                               // X at step 2
  m[3].rect(5, 6, 20, 27, 2);                               // Y continues X: 6 h, dropped
  for (int k : {3, 4, 5}) m[k].rect(5, 6, 29, 30, 2);       // Z splits from X, kept: split_from becomes 0
  m[3].rect(1, 1, 50, 50, 1);                               // a one-step cyclone, first in raster order at step 3
  for (int k = 0; k < 7; ++k) s.add(m[static_cast<size_t>(k)], 3.0 * k);
  TrackOptions opt;
  opt.min_hours[2] = 9;
  opt.max_gap = 0;
  const Tracking t = s.track(opt);
  check_tracking(t, s);
  REQUIRE(t.events.size() == 4);
  CHECK(t.dropped[2] == 3);
  CHECK(t.dropped[1] == 0);
  CHECK(t.events[0].objects.front() == s.at(0, 10, 2));
  CHECK(t.events[0].duration_h == 9);
  CHECK(t.events[1].objects.front() == s.at(1, 20, 2));
  CHECK(t.events[2].objects == std::vector<size_t>{s.at(3, 1, 50)});
  CHECK(t.events[2].cls == 1);
  CHECK(t.events[2].duration_h == 3);
  CHECK(t.events[3].objects.front() == s.at(3, 5, 29));
  CHECK(t.events[3].split_from == 0);  // it split from X's event, which was dropped
  CHECK(t.object_event[s.at(0, 2, 2)] == 0);
  CHECK(t.object_event[s.at(2, 30, 2)] == 0);
  CHECK(t.object_event[s.at(2, 5, 20)] == 0);
  CHECK(t.object_event[s.at(3, 5, 20)] == 0);
  // without the minimum every event is kept, and Z names X's event
  const Tracking all = s.track(TrackOptions{{0, 0, 0}, 0, 80});
  check_tracking(all, s);
  CHECK(all.events.size() == 7);
  const int64_t z = all.object_event[s.at(3, 5, 29)];
  CHECK(all.events[static_cast<size_t>(z) - 1].split_from == all.object_event[s.at(2, 5, 20)]);
  // a cyclone minimum drops the cyclone only
  opt.min_hours[1] = 6;
  const Tracking u = s.track(opt);
  check_tracking(u, s);
  CHECK(u.events.size() == 3);
  CHECK(u.dropped[1] == 1);
}

TEST_CASE("tracking: a merged_into naming a dropped event becomes 0", "[events][tracking]") {
  Series s(36, 72);
  std::vector<Mask> m(5, s.blank());
  for (int k : {0, 1, 2}) m[k].rect(10, 11, 10, 12, 2);  // M1: 9 h, kept
  m[2].rect(10, 11, 14, 22, 2);                          // M2 starts at step 2
  m[3].rect(10, 11, 10, 22, 2);                          // one blob: overlaps M1 by 6 cells, M2 by 18
  for (int k = 0; k < 5; ++k) s.add(m[static_cast<size_t>(k)], 3.0 * k);
  TrackOptions opt;
  opt.min_hours[2] = 9;
  const Tracking t = s.track(opt);
  check_tracking(t, s);
  REQUIRE(t.events.size() == 1);  // M2 (steps 2..3, 6 h) is dropped
  CHECK(t.events[0].objects.size() == 3);
  CHECK(t.events[0].merged_into == 0);
  CHECK(t.dropped[2] == 1);
  const Tracking all = s.track({});
  check_tracking(all, s);
  REQUIRE(all.events.size() == 2);
  CHECK(all.events[0].merged_into == 2);
  CHECK(all.events[1].objects == std::vector<size_t>{s.at(2, 10, 14), s.at(3, 10, 10)});
}

TEST_CASE("tracking: inputs out of order are refused", "[events][tracking]") {
  Series s(8, 16);
  Mask a = s.blank();
  a.rect(1, 1, 1, 1, 1);
  a.rect(5, 5, 5, 5, 2);
  s.add(a, 0);
  s.add(a, 3);
  std::vector<Object> swapped = s.objects;
  std::swap(swapped[0], swapped[1]);
  CHECK_THROWS_WITH(track_events(swapped, s.hours, 8, 16, {}), Catch::Contains("not ordered"));
  CHECK_THROWS_WITH(track_events(s.objects, {3, 0}, 8, 16, {}), Catch::Contains("not increasing"));
  CHECK_THROWS_WITH(track_events(s.objects, {0}, 8, 16, {}), Catch::Contains("outside"));
}

TEST_CASE("objects: the centroid longitude is in the grid's own convention (staggered and regional grids)",
          "[events][objects]") {
  SECTION("a periodic grid starting at -1.25 (CAM's staggered slon) is a 0..360 grid") {
    std::vector<double> lon;
    for (int j = 0; j < 144; ++j) lon.push_back(-1.25 + 2.5 * j);
    const io::CfGrid grid = grid_of(io::global_grid(72, 144).lat, lon);
    const GridGeometry g = grid_geometry(grid);
    REQUIRE(g.periodic);
    Mask m(72, 144);
    m.rect(30, 32, 80, 82, 1);  // lon 198.75 .. 203.75
    const std::vector<Object> o = objects_of(m, g);
    REQUIRE(o.size() == 1);
    CHECK(o[0].lon == Approx(201.25));
    CHECK(o[0].lon_west == Approx(198.75));
  }
  SECTION("a regional grid from -20 to 200 degrees east keeps an object at 190 there") {
    std::vector<double> lon;
    for (int j = 0; j <= 220; ++j) lon.push_back(-20.0 + j);
    const io::CfGrid grid = grid_of({-10, -9, -8, -7, -6, -5}, lon);
    const GridGeometry g = grid_geometry(grid);
    REQUIRE(!g.periodic);
    Mask m(6, 221);
    m.rect(1, 3, 205, 215, 1);  // lon 185 .. 195
    const std::vector<Object> o = objects_of(m, g);
    REQUIRE(o.size() == 1);
    CHECK(o[0].lon == Approx(190).margin(1e-9));
  }
}
