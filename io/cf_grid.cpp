// The pure parts of io/cf_grid.h (no libnetcdf): built in every build with io/, so analysis/ and the synthetic
// generator have them without NetCDF too.
#include "io/cf_grid.h"

#include <cmath>

#include "engine/check.h"

namespace climseg::io {

bool CfGrid::periodic() const {
  if (lon.size() < 2) return false;
  const double d = (lon.back() - lon.front()) / static_cast<double>(lon.size() - 1);
  return std::abs(d * static_cast<double>(lon.size()) - 360.0) <= 1e-6 * std::abs(d) * static_cast<double>(lon.size());
}

CfGrid global_grid(int64_t height, int64_t width) {
  CS_CHECK(height > 0 && width > 0, "global_grid: ", height, "x", width);
  CfGrid g;
  for (int64_t i = 0; i < height; ++i)
    g.lat.push_back(-90.0 + (static_cast<double>(i) + 0.5) * 180.0 / static_cast<double>(height));
  for (int64_t j = 0; j < width; ++j) g.lon.push_back(static_cast<double>(j) * 360.0 / static_cast<double>(width));
  return g;
}

}  // namespace climseg::io
