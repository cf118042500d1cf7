// The latitude-longitude grid and time axis of CF-NetCDF climate files, as climseg reads and writes them.
//
// One orientation everywhere in climseg: row 0 is the southernmost latitude (as in CAM's own history files) and
// latitudes increase with the row; columns follow the file's longitudes in increasing order (0..360 or -180..180, as
// the file has them). A NetCDF input whose latitudes run north to south is flipped on reading (io/cf_reader.h), so
// every tensor, mask and output file has south at row 0 and carries the input's own coordinate values.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace climseg::io {

namespace nc {
class File;
}

struct CfGrid {
  std::vector<double> lat;  // degrees_north, strictly increasing (row 0 south)
  std::vector<double> lon;  // degrees_east, strictly increasing
  std::string lat_name = "lat", lon_name = "lon";
  int64_t height() const { return static_cast<int64_t>(lat.size()); }
  int64_t width() const { return static_cast<int64_t>(lon.size()); }
  // True when the longitudes cover the whole circle (spacing * count == 360 within 1e-6 of a spacing).
  bool periodic() const;
};

// A global grid of H x W cell centres: lat -90 + (i + 0.5) * 180 / H, lon j * 360 / W (CAM's finite-volume grid
// puts points on the poles; the synthetic data and DeepCAM's 768 x 1152 use cell centres).
CfGrid global_grid(int64_t height, int64_t width);

struct CfTimeAxis {
  std::string units = "days since 2000-01-01 00:00:00";
  std::string calendar = "noleap";
};

// Coordinates of a file being written: dims time (unlimited), lat, lon and their coordinate variables with CF
// attributes (units, standard_name, axis, calendar). define_cf_coords runs in define mode; put_cf_coord_values after
// enddef() writes lat and lon; put_cf_time writes one time value.
struct CfCoords {
  int time_dim = -1, lat_dim = -1, lon_dim = -1;
  int time_var = -1, lat_var = -1, lon_var = -1;
};
CfCoords define_cf_coords(nc::File& f, const CfGrid& grid, const CfTimeAxis& time);
void put_cf_coord_values(nc::File& f, const CfGrid& grid, const CfCoords& c);
void put_cf_time(nc::File& f, const CfCoords& c, size_t index, double value);

}  // namespace climseg::io
