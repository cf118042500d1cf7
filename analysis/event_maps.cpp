#include "analysis/event_maps.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "analysis/sphere.h"
#include "engine/check.h"

namespace climseg::analysis {

namespace {

// ---- the 5x7 bitmap font ----------------------------------------------------------------------------------------
// Each glyph: up to 9 rows of 5 columns ('#' set); rows 0..6 sit on the line, rows 7..8 are descenders (g j p q y ,).
struct Glyph {
  char c;
  const char* rows[9];
};

// clang-format off
constexpr Glyph kFont[] = {
  {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
  {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
  {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
  {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
  {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
  {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
  {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
  {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
  {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
  {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
  {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
  {'A', {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
  {'B', {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}},
  {'C', {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}},
  {'D', {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."}},
  {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
  {'F', {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
  {'G', {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
  {'H', {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
  {'I', {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
  {'J', {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
  {'K', {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
  {'L', {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}},
  {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
  {'N', {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}},
  {'O', {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
  {'P', {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
  {'Q', {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}},
  {'R', {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
  {'S', {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
  {'T', {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
  {'U', {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
  {'V', {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
  {'W', {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}},
  {'X', {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}},
  {'Y', {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
  {'Z', {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}},
  {'a', {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"}},
  {'b', {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."}},
  {'c', {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."}},
  {'d', {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"}},
  {'e', {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."}},
  {'f', {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."}},
  {'g', {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."}},
  {'h', {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
  {'i', {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."}},
  {'j', {"...#.", ".....", "..##.", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
  {'k', {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."}},
  {'l', {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
  {'m', {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#"}},
  {'n', {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
  {'o', {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."}},
  {'p', {".....", ".....", "####.", "#...#", "#...#", "#...#", "####.", "#....", "#...."}},
  {'q', {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", "....#"}},
  {'r', {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."}},
  {'s', {".....", ".....", ".####", "#....", ".###.", "....#", "####."}},
  {'t', {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."}},
  {'u', {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"}},
  {'v', {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
  {'w', {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."}},
  {'x', {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"}},
  {'y', {".....", ".....", "#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###."}},
  {'z', {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"}},
  {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
  {',', {".....", ".....", ".....", ".....", ".....", ".##..", ".##..", "..#..", ".#..."}},
  {'-', {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
  {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
  {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
  {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
  {';', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "..#..", ".#..."}},
  {'%', {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}},
  {'/', {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}},
  {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
  {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
  {'[', {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."}},
  {']', {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."}},
  {'\'', {"..#..", "..#..", ".#...", ".....", ".....", ".....", "....."}},
  {'?', {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}},
  {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
  {'<', {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."}},
  {'>', {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."}},
  {'*', {".....", "#.#.#", ".###.", "#####", ".###.", "#.#.#", "....."}},
};
// clang-format on

const Glyph* find_glyph(char c) {
  for (const Glyph& g : kFont)
    if (g.c == c) return &g;
  return nullptr;
}

// ---- pixels -------------------------------------------------------------------------------------------------------
constexpr Rgb kWhite{255, 255, 255};
constexpr Rgb kInk{20, 20, 20};
constexpr Rgb kOutline{15, 15, 15};

uint8_t mix(double a, double b, double t) {
  return static_cast<uint8_t>(std::clamp(std::lround((1.0 - t) * a + t * b), 0L, 255L));
}

struct Rect {  // [x0, x1) x [y0, y1)
  int64_t x0, y0, x1, y1;
  bool contains(int64_t x, int64_t y) const { return x >= x0 && x < x1 && y >= y0 && y < y1; }
};

void put(io::RgbImage& img, int64_t x, int64_t y, const Rgb& c) {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
  uint8_t* p = img.at(y, x);
  p[0] = c[0];
  p[1] = c[1];
  p[2] = c[2];
}

void fill_rect(io::RgbImage& img, int64_t x0, int64_t y0, int64_t w, int64_t h, const Rgb& c) {
  for (int64_t y = y0; y < y0 + h; ++y)
    for (int64_t x = x0; x < x0 + w; ++x) put(img, x, y, c);
}

void frame_rect(io::RgbImage& img, int64_t x0, int64_t y0, int64_t w, int64_t h, const Rgb& c) {
  for (int64_t x = x0; x < x0 + w; ++x) {
    put(img, x, y0, c);
    put(img, x, y0 + h - 1, c);
  }
  for (int64_t y = y0; y < y0 + h; ++y) {
    put(img, x0, y, c);
    put(img, x0 + w - 1, y, c);
  }
}

// A filled disc of radius r around the continuous point (cx, cy), only inside clip.
void disc(io::RgbImage& img, double cx, double cy, double r, const Rgb& c, const Rect& clip) {
  if (!(std::abs(cx) < 1e7 && std::abs(cy) < 1e7)) return;  // far off the image (and no overflow below)
  const int64_t xa = static_cast<int64_t>(std::floor(cx - r)), xb = static_cast<int64_t>(std::ceil(cx + r));
  const int64_t ya = static_cast<int64_t>(std::floor(cy - r)), yb = static_cast<int64_t>(std::ceil(cy + r));
  for (int64_t y = ya; y <= yb; ++y)
    for (int64_t x = xa; x <= xb; ++x) {
      const double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
      if (dx * dx + dy * dy <= r * r && clip.contains(x, y)) put(img, x, y, c);
    }
}

// Liang-Barsky: clips the segment to [xa, xb] x [ya, yb]; false when nothing is left.
bool clip_segment(double& x0, double& y0, double& x1, double& y1, double xa, double ya, double xb, double yb) {
  double t0 = 0.0, t1 = 1.0;
  const double dx = x1 - x0, dy = y1 - y0;
  const double p[4] = {-dx, dx, -dy, dy}, q[4] = {x0 - xa, xb - x0, y0 - ya, yb - y0};
  for (int i = 0; i < 4; ++i) {
    if (p[i] == 0.0) {
      if (q[i] < 0.0) return false;
      continue;
    }
    const double t = q[i] / p[i];
    if (p[i] < 0.0)
      t0 = std::max(t0, t);
    else
      t1 = std::min(t1, t);
    if (t0 > t1) return false;
  }
  const double nx0 = x0 + t0 * dx, ny0 = y0 + t0 * dy;
  x1 = x0 + t1 * dx;
  y1 = y0 + t1 * dy;
  x0 = nx0;
  y0 = ny0;
  return true;
}

// A line of width 2r between continuous points, drawn as discs every half pixel; only inside clip.
void thick_line(io::RgbImage& img, double x0, double y0, double x1, double y1, double r, const Rgb& c,
                const Rect& clip) {
  if (!clip_segment(x0, y0, x1, y1, clip.x0 - r - 1, clip.y0 - r - 1, clip.x1 + r + 1, clip.y1 + r + 1)) return;
  const double len = std::hypot(x1 - x0, y1 - y0);
  const int64_t n = static_cast<int64_t>(std::ceil(len * 2.0));
  for (int64_t i = 0; i <= n; ++i) {
    const double t = n == 0 ? 0.0 : static_cast<double>(i) / static_cast<double>(n);
    disc(img, x0 + t * (x1 - x0), y0 + t * (y1 - y0), r, c, clip);
  }
}

// ---- numbers ------------------------------------------------------------------------------------------------------
// Ticks for a colour bar from 0 to fmax (a fraction): 0 and multiples of a round step (1, 2, 2.5 or 5 times a power
// of ten, in percent) up to fmax, at most 5, labelled in percent; and fmax itself at the end when there is room.
std::vector<std::pair<double, std::string>> percent_ticks(double fmax) {
  const double pmax = 100.0 * fmax;
  const double raw = pmax / 4.0, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double m = 10.0;
  for (double c : {1.0, 2.0, 2.5, 5.0})
    if (c * mag >= raw * (1.0 - 1e-9)) {
      m = c;
      break;
    }
  const double step = m * mag;
  // Decimals enough to show the step: 5 -> 0, 2.5 -> 1, 0.5 -> 1, 0.25 -> 2.
  const int dec = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)) + (m == 2.5 ? 1 : 0));
  std::vector<std::pair<double, std::string>> ticks;
  for (int k = 0; k * step <= pmax * (1.0 + 1e-9) && k <= 5; ++k) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f%%", dec, k * step);
    ticks.push_back({k * step / pmax, buf});
  }
  // The maximum at the bar's right end too, when the last round tick leaves room for it.
  if (ticks.back().first < 0.8) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f%%", dec + 1, pmax);
    ticks.push_back({1.0, buf});
  }
  return ticks;
}

std::string format_value(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string lat_label(int deg) {
  if (deg == 0) return "0";
  return std::to_string(std::abs(deg)) + (deg > 0 ? "N" : "S");
}

std::string lon_label(int deg) {
  int d = ((deg % 360) + 360) % 360;  // 0..359
  if (d > 180) d -= 360;              // -179..180
  if (d == 0) return "0";
  if (d == 180) return "180";
  return std::to_string(std::abs(d)) + (d > 0 ? "E" : "W");
}

// ---- the grid -----------------------------------------------------------------------------------------------------
void check_grid(const io::CfGrid& grid) {
  CS_CHECK(!grid.lat.empty() && !grid.lon.empty(), "event maps: empty grid (", grid.lat.size(), " latitudes, ",
           grid.lon.size(), " longitudes)");
  for (size_t i = 0; i < grid.lat.size(); ++i) {
    CS_CHECK(std::isfinite(grid.lat[i]) && std::abs(grid.lat[i]) <= 90.0, "event maps: latitude ", i, " is ",
             grid.lat[i]);
    CS_CHECK(i == 0 || grid.lat[i] > grid.lat[i - 1], "event maps: latitudes must increase (row 0 south), row ", i,
             " has ", grid.lat[i], " after ", grid.lat[i - 1]);
  }
  for (size_t i = 0; i < grid.lon.size(); ++i) {
    CS_CHECK(std::isfinite(grid.lon[i]), "event maps: longitude ", i, " is ", grid.lon[i]);
    CS_CHECK(i == 0 || grid.lon[i] > grid.lon[i - 1], "event maps: longitudes must increase, column ", i, " has ",
             grid.lon[i], " after ", grid.lon[i - 1]);
  }
}

void check_field(const std::vector<float>& v, const io::CfGrid& grid, const char* what) {
  CS_CHECK(v.empty() || static_cast<int64_t>(v.size()) == grid.height() * grid.width(), "event maps: ", what, " has ",
           v.size(), " values, expected ", grid.height(), " x ", grid.width(), " (or none)");
}

// For each of m pixels along an axis from lo to hi, the range [first, last] of cells it shows: the cell under the
// pixel's centre when upsampling (nearest neighbour), every cell it overlaps when downsampling (box average).
std::vector<std::pair<int64_t, int64_t>> axis_cells(const std::vector<double>& edges, double lo, double hi, int64_t m,
                                                    bool reversed) {
  const int64_t n = static_cast<int64_t>(edges.size()) - 1;
  auto cell_of = [&](double v) {
    const int64_t i = static_cast<int64_t>(std::upper_bound(edges.begin(), edges.end(), v) - edges.begin()) - 1;
    return std::clamp<int64_t>(i, 0, n - 1);
  };
  std::vector<std::pair<int64_t, int64_t>> out(static_cast<size_t>(m));
  const double span = hi - lo, eps = 1e-9 * span;
  for (int64_t i = 0; i < m; ++i) {
    const int64_t k = reversed ? m - 1 - i : i;  // reversed: pixel 0 at hi (north up)
    const double a = lo + span * static_cast<double>(k) / static_cast<double>(m);
    const double b = lo + span * static_cast<double>(k + 1) / static_cast<double>(m);
    if (m >= n) {
      const int64_t c = cell_of(0.5 * (a + b));
      out[static_cast<size_t>(i)] = {c, c};
    } else {
      out[static_cast<size_t>(i)] = {cell_of(a + eps), cell_of(b - eps)};
    }
  }
  return out;
}

// The map's pixels: the background grey and, per pixel, the mean of up to two per-cell fields.
struct Resampled {
  std::vector<Rgb> base;            // (map_h, map_w) background colour
  std::vector<float> f1, f2;        // (map_h, map_w) resampled fields (empty when the input was)
  double bg_lo = 0.0, bg_hi = 0.0;  // finite min..max of the background (equal: flat)
  bool bg_any = false;
};

Resampled resample(const io::CfGrid& grid, const MapLayout& L, const MapBackground& bg, const std::vector<float>& f1,
                   const std::vector<float>& f2) {
  const int64_t W = grid.width();
  const auto lat_e = [&] {
    std::vector<double> e = cell_edges(grid.lat);
    for (double& v : e) v = std::clamp(v, -90.0, 90.0);
    return e;
  }();
  const auto cols = axis_cells(cell_edges(grid.lon), L.lon_west, L.lon_east, L.map_w, false);
  const auto rows = axis_cells(lat_e, L.lat_south, L.lat_north, L.map_h, true);

  Resampled r;
  r.bg_lo = INFINITY;
  r.bg_hi = -INFINITY;
  for (float v : bg.values)
    if (std::isfinite(v)) {
      r.bg_lo = std::min(r.bg_lo, static_cast<double>(v));
      r.bg_hi = std::max(r.bg_hi, static_cast<double>(v));
    }
  r.bg_any = r.bg_lo <= r.bg_hi;
  const size_t npx = static_cast<size_t>(L.map_w * L.map_h);
  r.base.assign(npx, Rgb{kBgGreyFlat, kBgGreyFlat, kBgGreyFlat});
  if (!f1.empty()) r.f1.assign(npx, 0.0f);
  if (!f2.empty()) r.f2.assign(npx, 0.0f);

  auto clean = [](float v) { return std::isfinite(v) ? std::clamp(v, 0.0f, 1.0f) : 0.0f; };
  for (int64_t y = 0; y < L.map_h; ++y) {
    const auto [r0, r1] = rows[static_cast<size_t>(y)];
    for (int64_t x = 0; x < L.map_w; ++x) {
      const auto [c0, c1] = cols[static_cast<size_t>(x)];
      double sb = 0.0, s1 = 0.0, s2 = 0.0;
      int64_t nb = 0, n = 0;
      for (int64_t i = r0; i <= r1; ++i)
        for (int64_t j = c0; j <= c1; ++j) {
          const size_t k = static_cast<size_t>(i * W + j);
          if (!bg.values.empty() && std::isfinite(bg.values[k])) {
            sb += bg.values[k];
            ++nb;
          }
          if (!f1.empty()) s1 += clean(f1[k]);
          if (!f2.empty()) s2 += clean(f2[k]);
          ++n;
        }
      const size_t p = static_cast<size_t>(y * L.map_w + x);
      if (!bg.values.empty()) {
        if (nb == 0) {
          r.base[p] = kMissingColour;
        } else if (r.bg_hi > r.bg_lo) {
          const double t = std::clamp((sb / static_cast<double>(nb) - r.bg_lo) / (r.bg_hi - r.bg_lo), 0.0, 1.0);
          const uint8_t g = mix(kBgGreyLo, kBgGreyHi, t);
          r.base[p] = {g, g, g};
        }
      }
      if (!f1.empty()) r.f1[p] = static_cast<float>(s1 / static_cast<double>(n));
      if (!f2.empty()) r.f2[p] = static_cast<float>(s2 / static_cast<double>(n));
    }
  }
  return r;
}

// ---- the frame around the map: graticule, labels, title ------------------------------------------------------------
Rect map_rect(const MapLayout& L) { return {L.map_x0, L.map_y0, L.map_x0 + L.map_w, L.map_y0 + L.map_h}; }

void draw_graticule(io::RgbImage& img, const MapLayout& L) {
  const double a = 0.45;  // white, blended
  auto lighten = [&](int64_t x, int64_t y) {
    uint8_t* p = img.at(y, x);
    for (int i = 0; i < 3; ++i) p[i] = mix(p[i], 255, a);
  };
  for (int k = static_cast<int>(std::ceil(L.lat_south / 30.0)); k * 30 <= L.lat_north; ++k) {
    const double y = L.y_of(30.0 * k);
    const int64_t py = static_cast<int64_t>(std::floor(y));
    if (py <= L.map_y0 || py >= L.map_y0 + L.map_h - 1) continue;
    for (int64_t x = L.map_x0; x < L.map_x0 + L.map_w; ++x) lighten(x, py);
  }
  for (int k = static_cast<int>(std::ceil(L.lon_west / 30.0)); k * 30 <= L.lon_east; ++k) {
    const int64_t px = static_cast<int64_t>(std::floor(L.x_of(30.0 * k)));
    if (px <= L.map_x0 || px >= L.map_x0 + L.map_w - 1) continue;
    for (int64_t y = L.map_y0; y < L.map_y0 + L.map_h; ++y) lighten(px, y);
  }
}

// Largest scale <= s at which text fits in width (at least 1).
int fit_scale(const std::string& text, int s, int64_t width) {
  while (s > 1 && text_width(text, s) > width) --s;
  return s;
}

void draw_axes(io::RgbImage& img, const MapLayout& L, const MapOptions& opt, const std::string& title) {
  const int s = opt.text_scale;
  frame_rect(img, L.map_x0 - 1, L.map_y0 - 1, L.map_w + 2, L.map_h + 2, kInk);
  for (int k = static_cast<int>(std::ceil(L.lat_south / 30.0)); k * 30 <= L.lat_north; ++k) {
    const int64_t py =
        std::clamp<int64_t>(static_cast<int64_t>(std::floor(L.y_of(30.0 * k))), L.map_y0, L.map_y0 + L.map_h - 1);
    fill_rect(img, L.map_x0 - 7, py, 6, 1, kInk);
    const std::string t = lat_label(30 * k);
    draw_text(img, L.map_x0 - 10 - text_width(t, s), py - 7 * s / 2, t, s, kInk);
  }
  for (int k = static_cast<int>(std::ceil(L.lon_west / 30.0)); k * 30 <= L.lon_east; ++k) {
    const int64_t px =
        std::clamp<int64_t>(static_cast<int64_t>(std::floor(L.x_of(30.0 * k))), L.map_x0, L.map_x0 + L.map_w - 1);
    fill_rect(img, px, L.map_y0 + L.map_h + 1, 1, 6, kInk);
    const std::string t = lon_label(30 * k);
    draw_text(img, px - text_width(t, s) / 2, L.map_y0 + L.map_h + 10, t, s, kInk);
  }
  const int ts = fit_scale(title, s, L.image_width - L.map_x0);  // a long title shrinks rather than being cut
  draw_text(img, L.map_x0, std::max<int64_t>(4, L.map_y0 - 12 - 9 * ts), title, ts, kInk);
}

// The legend's geometry: three columns under the longitude labels.
struct LegendSlot {
  int64_t x, y, w;
};
LegendSlot legend_slot(const MapLayout& L, const MapOptions& opt, int column) {
  const int64_t w = L.map_w / 3;
  return {L.map_x0 + column * w, L.map_y0 + L.map_h + 10 + 9 * opt.text_scale + 16, w - 40};
}
constexpr int64_t kBarHeight = 16;

// A horizontal bar of w pixels with its header above and ticks below: colour_at(t) for t in 0..1.
template <class ColourAt>
void colour_bar(io::RgbImage& img, const LegendSlot& slot, const MapOptions& opt, const std::string& header,
                ColourAt colour_at, const std::vector<std::pair<double, std::string>>& ticks) {
  const int s = fit_scale(header, opt.text_scale, slot.w);
  draw_text(img, slot.x, slot.y, header, s, kInk);
  const int64_t by = slot.y + 9 * opt.text_scale + 4, bw = slot.w;
  for (int64_t i = 0; i < bw; ++i) {
    const Rgb c = colour_at(bw > 1 ? static_cast<double>(i) / static_cast<double>(bw - 1) : 1.0);
    fill_rect(img, slot.x + i, by, 1, kBarHeight, c);
  }
  frame_rect(img, slot.x - 1, by - 1, bw + 2, kBarHeight + 2, kInk);
  const int ts = opt.text_scale;
  int64_t free_from = slot.x;  // labels never overlap: one that would touch the previous label is left out
  for (size_t i = 0; i < ticks.size(); ++i) {
    const auto& [t, label] = ticks[i];
    const int64_t x = slot.x + static_cast<int64_t>(std::lround(t * static_cast<double>(bw - 1)));
    fill_rect(img, x, by + kBarHeight + 1, 1, 5, kInk);
    int64_t tx = x - text_width(label, ts) / 2;
    tx = std::clamp<int64_t>(tx, slot.x, slot.x + bw - text_width(label, ts));  // labels stay under the bar
    if (tx < free_from) continue;
    draw_text(img, tx, by + kBarHeight + 9, label, ts, kInk);
    free_from = tx + text_width(label, ts) + 3 * ts;
  }
}

void background_legend(io::RgbImage& img, const MapLayout& L, const MapOptions& opt, const MapBackground& bg,
                       const Resampled& r) {
  const LegendSlot slot = legend_slot(L, opt, 2);
  std::string name = bg.name.empty() ? "background" : bg.name;
  if (!bg.units.empty()) name += " (" + bg.units + ")";
  if (bg.values.empty() || !r.bg_any) {
    draw_text(img, slot.x, slot.y,
              fit_scale(name + ": none", opt.text_scale, slot.w) == opt.text_scale ? name + ": none" : "no background",
              opt.text_scale, kInk);
    return;
  }
  const bool flat = !(r.bg_hi > r.bg_lo);
  colour_bar(img, slot, opt, name + " time mean",
             [&](double t) {
               const uint8_t g = flat ? kBgGreyFlat : mix(kBgGreyLo, kBgGreyHi, t);
               return Rgb{g, g, g};
             },
             {{0.0, format_value(r.bg_lo)}, {1.0, format_value(r.bg_hi)}});
}

}  // namespace

// ---- public -----------------------------------------------------------------------------------------------------
bool glyph_pixel(char c, int row, int col) {
  if (row < 0 || row > 8 || col < 0 || col > 4) return false;
  const Glyph* g = find_glyph(c);
  if (g == nullptr) g = find_glyph('?');
  const char* r = g->rows[row];
  return r != nullptr && r[col] == '#';
}

int64_t text_width(const std::string& text, int scale) {
  return text.empty() ? 0 : static_cast<int64_t>(text.size()) * 6 * scale - scale;
}

void draw_text(io::RgbImage& img, int64_t x, int64_t y, const std::string& text, int scale, const Rgb& colour) {
  for (size_t i = 0; i < text.size(); ++i) {
    const int64_t gx = x + static_cast<int64_t>(i) * 6 * scale;
    for (int row = 0; row < 9; ++row)
      for (int col = 0; col < 5; ++col)
        if (glyph_pixel(text[i], row, col)) fill_rect(img, gx + col * scale, y + row * scale, scale, scale, colour);
  }
}

int64_t MapLayout::px(double lon) const { return static_cast<int64_t>(std::floor(x_of(lon))); }
int64_t MapLayout::py(double lat) const { return static_cast<int64_t>(std::floor(y_of(lat))); }

MapLayout map_layout(const io::CfGrid& grid, const MapOptions& opt) {
  check_grid(grid);
  CS_CHECK(opt.width >= 16 && opt.width <= 20000, "event maps: width ", opt.width, " is not in 16..20000");
  CS_CHECK(opt.text_scale >= 1 && opt.text_scale <= 8, "event maps: text_scale ", opt.text_scale);
  MapLayout L;
  L.periodic = grid.periodic();
  const std::vector<double> lon_e = cell_edges(grid.lon), lat_e = cell_edges(grid.lat);
  L.lon_west = lon_e.front();
  L.lon_east = L.periodic ? L.lon_west + 360.0 : lon_e.back();
  L.lat_south = std::max(-90.0, lat_e.front());
  L.lat_north = std::min(90.0, lat_e.back());
  if (!(L.lat_north > L.lat_south)) L.lat_north = L.lat_south + 1.0;

  const int64_t W = grid.width();
  L.map_w = W <= opt.width ? W * std::max<int64_t>(1, std::lround(static_cast<double>(opt.width) / W)) : opt.width;
  const double aspect = (L.lat_north - L.lat_south) / (L.lon_east - L.lon_west);
  L.map_h = std::clamp<int64_t>(std::lround(static_cast<double>(L.map_w) * aspect), 1, 3 * L.map_w);

  const int s = opt.text_scale;
  L.map_x0 = text_width("90S", s) + 16;
  L.map_y0 = 12 + 9 * s + 14;
  const int64_t right = std::max<int64_t>(24, text_width("180", s) / 2 + 12);
  L.image_width = L.map_x0 + L.map_w + right;
  // Under the map: longitude labels, then the legend (header, bar, tick labels) and a margin.
  const int64_t legend = 9 * s + 4 + kBarHeight + 9 + 9 * s + 16;
  L.image_height = L.map_y0 + L.map_h + 10 + 9 * s + 16 + legend;
  return L;
}

io::RgbImage render_frequency_map(const io::CfGrid& grid, const MapBackground& bg, const std::vector<float>& tc,
                                  const std::vector<float>& ar, const std::string& title, const MapOptions& opt) {
  const MapLayout L = map_layout(grid, opt);
  check_field(bg.values, grid, "the background");
  check_field(tc, grid, "the TC frequency");
  check_field(ar, grid, "the AR frequency");
  CS_CHECK(opt.max_alpha >= 0.0f && opt.max_alpha <= 1.0f, "event maps: max_alpha ", opt.max_alpha, " not in 0..1");
  const Resampled r = resample(grid, L, bg, tc, ar);

  // Per-class maxima over the input cells (the colour bars' top), not the resampled pixels.
  auto max_of = [](const std::vector<float>& v) {
    double m = 0.0;
    for (float f : v)
      if (std::isfinite(f)) m = std::max(m, static_cast<double>(std::min(f, 1.0f)));
    return m;
  };
  const double tc_max = max_of(tc), ar_max = max_of(ar);

  io::RgbImage img(L.image_height, L.image_width);
  std::fill(img.pixels.begin(), img.pixels.end(), uint8_t{255});
  const double ma = opt.max_alpha;
  for (int64_t y = 0; y < L.map_h; ++y)
    for (int64_t x = 0; x < L.map_w; ++x) {
      const size_t p = static_cast<size_t>(y * L.map_w + x);
      const double a1 = r.f1.empty() || tc_max <= 0.0 ? 0.0 : ma * r.f1[p] / tc_max;
      const double a2 = r.f2.empty() || ar_max <= 0.0 ? 0.0 : ma * r.f2[p] / ar_max;
      const Rgb& g = r.base[p];
      Rgb out = g;
      if (a1 + a2 > 0.0) {
        const double a = 1.0 - (1.0 - a1) * (1.0 - a2);
        for (int i = 0; i < 3; ++i) {
          const double c = (a1 * kFreqTcColour[i] + a2 * kFreqArColour[i]) / (a1 + a2);
          out[i] = mix(g[i], c, a);
        }
      }
      put(img, L.map_x0 + x, L.map_y0 + y, out);
    }
  draw_graticule(img, L);
  draw_axes(img, L, opt, title);

  auto class_bar = [&](int column, const char* header, const Rgb& colour, double fmax, bool given) {
    const LegendSlot slot = legend_slot(L, opt, column);
    if (!given || fmax <= 0.0) {
      const std::string t = std::string(header) + ": none";
      draw_text(img, slot.x, slot.y, t, fit_scale(t, opt.text_scale, slot.w), kInk);
      return;
    }
    colour_bar(
        img, slot, opt, std::string(header) + " (% of steps)",
        [&](double t) {
          Rgb c;
          for (int i = 0; i < 3; ++i) c[i] = mix(kBgGreyFlat, colour[i], ma * t);
          return c;
        },
        percent_ticks(fmax));
  };
  class_bar(0, "TC frequency", kFreqTcColour, tc_max, !tc.empty());
  class_bar(1, "AR frequency", kFreqArColour, ar_max, !ar.empty());
  background_legend(img, L, opt, bg, r);
  return img;
}

void write_frequency_png(const std::string& path, const io::CfGrid& grid, const MapBackground& bg,
                         const std::vector<float>& tc, const std::vector<float>& ar, const std::string& title,
                         const MapOptions& opt) {
  io::write_png(path, render_frequency_map(grid, bg, tc, ar, title, opt));
}

io::RgbImage render_tracks_map(const io::CfGrid& grid, const MapBackground& bg, const std::vector<TrackLine>& tracks,
                               const std::string& title, const MapOptions& opt) {
  const MapLayout L = map_layout(grid, opt);
  check_field(bg.values, grid, "the background");
  CS_CHECK(opt.track_width >= 1 && opt.genesis_radius >= 0, "event maps: track_width ", opt.track_width,
           ", genesis_radius ", opt.genesis_radius);
  for (size_t i = 0; i < tracks.size(); ++i) {
    CS_CHECK(tracks[i].cls == 1 || tracks[i].cls == 2, "event maps: track ", i, " has class ", tracks[i].cls,
             "; expected 1 (TC) or 2 (AR)");
    CS_CHECK(tracks[i].lat.size() == tracks[i].lon.size(), "event maps: track ", i, " has ", tracks[i].lat.size(),
             " latitudes and ", tracks[i].lon.size(), " longitudes");
  }
  const Resampled r = resample(grid, L, bg, {}, {});

  io::RgbImage img(L.image_height, L.image_width);
  std::fill(img.pixels.begin(), img.pixels.end(), uint8_t{255});
  for (int64_t y = 0; y < L.map_h; ++y)
    for (int64_t x = 0; x < L.map_w; ++x)
      put(img, L.map_x0 + x, L.map_y0 + y, r.base[static_cast<size_t>(y * L.map_w + x)]);
  draw_graticule(img, L);

  const Rect clip = map_rect(L);
  // A longitude of any convention, moved by whole turns into the map's range when it can be.
  auto to_map = [&](double lon) {
    if (L.periodic) return L.lon_west + std::fmod(std::fmod(lon - L.lon_west, 360.0) + 360.0, 360.0);
    for (double k : {0.0, 360.0, -360.0})
      if (lon + k >= L.lon_west && lon + k <= L.lon_east) return lon + k;
    return lon;
  };
  const double lw = 0.5 * opt.track_width;
  // One pass over a track: each segment the short way round, drawn again a turn to each side so that a segment
  // leaving one edge of a periodic map comes back at the other (clipping keeps only what is on the map).
  auto draw_track = [&](const TrackLine& t, double radius, const Rgb& colour) {
    bool have = false;
    double plon = 0, plat = 0;
    for (size_t i = 0; i < t.lat.size(); ++i) {
      if (!std::isfinite(t.lat[i]) || !std::isfinite(t.lon[i])) {
        have = false;
        continue;
      }
      const double lon = to_map(t.lon[i]), lat = t.lat[i];
      if (have) {
        double d = std::fmod(lon - plon, 360.0);
        if (d > 180.0) d -= 360.0;
        if (d < -180.0) d += 360.0;
        for (double k : {-360.0, 0.0, 360.0})
          thick_line(img, L.x_of(plon + k), L.y_of(plat), L.x_of(plon + d + k), L.y_of(lat), radius, colour, clip);
      } else {
        disc(img, L.x_of(lon), L.y_of(lat), radius, colour, clip);  // a lone point still shows
      }
      have = true;
      plon = lon;
      plat = lat;
    }
  };
  auto genesis = [&](const TrackLine& t, const Rgb& colour) {
    for (size_t i = 0; i < t.lat.size(); ++i)
      if (std::isfinite(t.lat[i]) && std::isfinite(t.lon[i])) {
        const double x = L.x_of(to_map(t.lon[i])), y = L.y_of(t.lat[i]);
        disc(img, x, y, opt.genesis_radius + 1.0, kOutline, clip);
        disc(img, x, y, opt.genesis_radius, colour, clip);
        return;
      }
  };
  // ARs first (long and wide), TCs on top; every line with a dark outline; genesis dots last.
  int n_tc = 0, n_ar = 0;
  for (int cls : {2, 1})
    for (const TrackLine& t : tracks)
      if (t.cls == cls) {
        draw_track(t, lw + 1.0, kOutline);
        draw_track(t, lw, cls == 1 ? kTrackTcColour : kTrackArColour);
        (cls == 1 ? n_tc : n_ar) += 1;
      }
  for (int cls : {2, 1})
    for (const TrackLine& t : tracks)
      if (t.cls == cls) genesis(t, cls == 1 ? kGenesisTcColour : kGenesisArColour);
  draw_axes(img, L, opt, title);

  // Legend: a sample of each kind of track with its genesis dot, and the background.
  const int s = opt.text_scale;
  const Rect all{0, 0, img.width, img.height};
  auto sample = [&](int column, int cls, int n) {
    const LegendSlot slot = legend_slot(L, opt, column);
    const std::string header = cls == 1 ? "Tropical cyclones" : "Atmospheric rivers";
    draw_text(img, slot.x, slot.y, header, fit_scale(header, s, slot.w), kInk);
    const double y = static_cast<double>(slot.y + 9 * s + 4) + kBarHeight / 2.0;
    const double x0 = slot.x + opt.genesis_radius + 2.0, x1 = x0 + 70.0;
    const Rgb& c = cls == 1 ? kTrackTcColour : kTrackArColour;
    thick_line(img, x0, y, x1, y, lw + 1.0, kOutline, all);
    thick_line(img, x0, y, x1, y, lw, c, all);
    disc(img, x0, y, opt.genesis_radius + 1.0, kOutline, all);
    disc(img, x0, y, opt.genesis_radius, cls == 1 ? kGenesisTcColour : kGenesisArColour, all);
    const std::string count = std::to_string(n) + (n == 1 ? " track" : " tracks");
    draw_text(img, static_cast<int64_t>(x1) + 12, static_cast<int64_t>(y) - 7 * s / 2, count, s, kInk);
    const std::string note = "dot: genesis";
    draw_text(img, slot.x, slot.y + 9 * s + 4 + kBarHeight + 9, note, s, kInk);
  };
  sample(0, 1, n_tc);
  sample(1, 2, n_ar);
  background_legend(img, L, opt, bg, r);
  return img;
}

void write_tracks_png(const std::string& path, const io::CfGrid& grid, const MapBackground& bg,
                      const std::vector<TrackLine>& tracks, const std::string& title, const MapOptions& opt) {
  io::write_png(path, render_tracks_map(grid, bg, tracks, title, opt));
}

}  // namespace climseg::analysis
