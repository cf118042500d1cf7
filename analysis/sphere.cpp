#include "analysis/sphere.h"

#include <algorithm>
#include <cmath>

#include "engine/check.h"

namespace climseg::analysis {

std::vector<double> cell_edges(const std::vector<double>& c) {
  const size_t n = c.size();
  std::vector<double> e(n + 1);
  if (n == 1) {
    e[0] = c[0] - 0.5;
    e[1] = c[0] + 0.5;
    return e;
  }
  for (size_t i = 1; i < n; ++i) e[i] = 0.5 * (c[i - 1] + c[i]);
  e[0] = c[0] - 0.5 * (c[1] - c[0]);
  e[n] = c[n - 1] + 0.5 * (c[n - 1] - c[n - 2]);
  return e;
}

GridGeometry grid_geometry(const io::CfGrid& grid, const std::vector<double>& lat_bounds,
                           const std::vector<double>& lon_bounds) {
  GridGeometry g;
  g.height = grid.height();
  g.width = grid.width();
  CS_CHECK(g.height >= 1 && g.width >= 1, "grid of ", g.height, "x", g.width, " cells");
  g.periodic = grid.periodic();
  g.lat = grid.lat;
  g.lon = grid.lon;
  const size_t H = static_cast<size_t>(g.height), W = static_cast<size_t>(g.width);
  std::vector<double> ls(H), ln(H);  // south and north edge per row, degrees
  if (!lat_bounds.empty()) {
    CS_CHECK(lat_bounds.size() == 2 * H, "latitude bounds: ", lat_bounds.size(), " values for ", H, " rows");
    for (size_t i = 0; i < H; ++i) {
      ls[i] = std::min(lat_bounds[2 * i], lat_bounds[2 * i + 1]);
      ln[i] = std::max(lat_bounds[2 * i], lat_bounds[2 * i + 1]);
    }
  } else {
    const std::vector<double> e = cell_edges(grid.lat);
    for (size_t i = 0; i < H; ++i) {
      ls[i] = std::clamp(e[i], -90.0, 90.0);
      ln[i] = std::clamp(e[i + 1], -90.0, 90.0);
    }
  }
  g.row_factor.resize(H);
  g.cos_lat.resize(H);
  g.sin_lat.resize(H);
  for (size_t i = 0; i < H; ++i) {
    g.row_factor[i] = kEarthRadiusKm * kEarthRadiusKm * (std::sin(ln[i] * kDegToRad) - std::sin(ls[i] * kDegToRad));
    g.cos_lat[i] = std::cos(grid.lat[i] * kDegToRad);
    g.sin_lat[i] = std::sin(grid.lat[i] * kDegToRad);
  }
  g.lon_width.resize(W);
  if (!lon_bounds.empty()) {
    CS_CHECK(lon_bounds.size() == 2 * W, "longitude bounds: ", lon_bounds.size(), " values for ", W, " columns");
    for (size_t j = 0; j < W; ++j) {
      double d = std::fabs(lon_bounds[2 * j + 1] - lon_bounds[2 * j]);
      if (d > 180.0 && d < 360.0) d = 360.0 - d;  // a cell across the seam ([359, 1]); [0, 360] is the whole circle
      g.lon_width[j] = d * kDegToRad;
    }
  } else if (g.periodic) {
    for (size_t j = 0; j < W; ++j) g.lon_width[j] = 2.0 * kPi / static_cast<double>(W);
  } else {
    const std::vector<double> e = cell_edges(grid.lon);
    for (size_t j = 0; j < W; ++j) g.lon_width[j] = (e[j + 1] - e[j]) * kDegToRad;
  }
  g.cum_w.assign(W + 1, 0.0);
  g.cum_cos.assign(W + 1, 0.0);
  g.cum_sin.assign(W + 1, 0.0);
  for (size_t j = 0; j < W; ++j) {
    const double w = g.lon_width[j], l = grid.lon[j] * kDegToRad;
    g.cum_w[j + 1] = g.cum_w[j] + w;
    g.cum_cos[j + 1] = g.cum_cos[j] + w * std::cos(l);
    g.cum_sin[j + 1] = g.cum_sin[j] + w * std::sin(l);
  }
  return g;
}

double great_circle_km(double lat1, double lon1, double lat2, double lon2) {
  const double p1 = lat1 * kDegToRad, p2 = lat2 * kDegToRad;
  const double dp = p2 - p1, dl = (lon2 - lon1) * kDegToRad;
  const double a = std::sin(0.5 * dp) * std::sin(0.5 * dp) + std::cos(p1) * std::cos(p2) * std::sin(0.5 * dl) * std::sin(0.5 * dl);
  return 2.0 * kEarthRadiusKm * std::asin(std::min(1.0, std::sqrt(a)));
}

double wrap_lon(double lon, bool grid_starts_negative) {
  const double lo = grid_starts_negative ? -180.0 : 0.0;
  double x = std::fmod(lon - lo, 360.0);
  if (x < 0) x += 360.0;
  if (x >= 360.0) x -= 360.0;
  return lo + x;
}

double grid_lon(double lon, const GridGeometry& g) {
  if (g.lon.empty()) return lon;
  if (g.periodic) return wrap_lon(lon, g.lon.front() < -90.0);
  const double lo = g.lon.front(), hi = g.lon.back();
  double best = lon, best_d = 1e300;
  for (int k = -2; k <= 2; ++k) {
    const double v = lon + 360.0 * k;
    const double d = v < lo ? lo - v : (v > hi ? v - hi : 0.0);
    if (d < best_d) {
      best_d = d;
      best = v;
    }
  }
  return std::clamp(best, lo, hi);
}

}  // namespace climseg::analysis
