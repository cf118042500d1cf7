// Geometry on the sphere for `climseg events` (docs/events.md): cell areas of a latitude-longitude grid, great-circle
// distances, and centroids of regions (correct across the dateline and near the poles).
//
// The Earth is a sphere of radius kEarthRadiusKm (the mean radius; the ellipsoid changes areas by under 0.5%).
// A cell's area is R^2 * (lon_e - lon_w) * (sin lat_n - sin lat_s) (exact on the sphere). Its bounds come from the
// file's lat_bnds/lon_bnds when it has them, else from the coordinates: the midpoints between neighbouring centres,
// the outer rows extended by half their neighbour's spacing and clamped to +-90 degrees (a cell-centred global grid
// gets bounds at exactly +-90; a grid with points on the poles gets half-height polar cells, as CAM's finite-volume
// grid has).
#pragma once

#include <cstdint>
#include <vector>

#include "io/cf_grid.h"

namespace climseg::analysis {

inline constexpr double kEarthRadiusKm = 6371.0;
inline constexpr double kPi = 3.14159265358979323846;
inline constexpr double kDegToRad = kPi / 180.0;

struct GridGeometry {
  int64_t height = 0, width = 0;
  bool periodic = false;               // columns 0 and W-1 are neighbours (the longitudes cover 360 degrees)
  std::vector<double> lat, lon;        // cell centres, degrees (row 0 south)
  std::vector<double> row_factor;      // R^2 (sin lat_n - sin lat_s), km^2 per radian of longitude, per row
  std::vector<double> lon_width;       // radians, per column
  // Per column, prefix sums over columns [0, c) of lon_width, lon_width cos(lon), lon_width sin(lon): a run of cells
  // in one row adds its area and its area-weighted unit vector in O(1).
  std::vector<double> cum_w, cum_cos, cum_sin;
  std::vector<double> cos_lat, sin_lat;  // per row, of the centre

  double area_km2(int64_t row, int64_t col) const { return row_factor[row] * lon_width[col]; }
};

// Bounds from the centres (see above). lat_bounds / lon_bounds, when not empty, are (H,2) / (W,2) in degrees.
GridGeometry grid_geometry(const io::CfGrid& grid, const std::vector<double>& lat_bounds = {},
                           const std::vector<double>& lon_bounds = {});

// Cell edges from cell centres (n + 1 values): midpoints between neighbours, the two outer edges half a neighbour
// spacing outside (a single cell: +-0.5). Not clamped: latitudes are clamped to +-90 by the caller where it matters.
std::vector<double> cell_edges(const std::vector<double>& centres);

// Haversine distance between two points given in degrees, km.
double great_circle_km(double lat1, double lon1, double lat2, double lon2);

// Wraps a longitude into [0, 360) when the grid's longitudes start at or above 0, else into [-180, 180).
double wrap_lon(double lon, bool grid_starts_negative);
// A longitude in the grid's own convention: on a periodic grid [-180, 180) when its first longitude is below -90,
// else [0, 360) (a staggered grid from -1.25 is a 0..360 grid); on a regional grid the shift by a multiple of 360
// that lands inside [first, last] longitude when one does, else the nearest one, clamped to the grid.
double grid_lon(double lon, const GridGeometry& g);

}  // namespace climseg::analysis
