// The time series of class masks `climseg events` reads (docs/events.md "Input"):
//   - CF-NetCDF mask files as `climseg predict --output X.nc` writes them (and `data generate --format netcdf`'s
//     labels/): a byte variable (default `mask`) over (time, lat, lon), one or many files (split over time), read
//     with io::CfReader (latitudes flipped to south first, times ordered, grids checked, --start/--end);
//   - HDF5 prediction files of `climseg predict` (prediction/mask (N,H,W)): the time of each sample comes from its
//     source file's DeepCAM name (data-YYYY-MM-DD-HH-R.h5, CAM5's noleap calendar), the grid is the global
//     cell-centred grid io::global_grid(H, W) (the HDF5 samples carry no coordinates).
// Files are told apart by content (io::is_netcdf_file and the HDF5 file's `prediction` group). Every value must be
// 0, 1 or 2; anything else is an error naming the file, the time and the cell.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/cf_grid.h"

namespace climseg::analysis {

struct MaskSeriesOptions {
  std::string var = "mask";  // the class variable in NetCDF files
  std::string start, end;    // ISO dates (inclusive); empty: no bound
};

class MaskSeries {
 public:
  MaskSeries(const std::vector<std::string>& files, const MaskSeriesOptions& opt);
  ~MaskSeries();
  MaskSeries(const MaskSeries&) = delete;
  MaskSeries& operator=(const MaskSeries&) = delete;

  int64_t steps() const;
  const io::CfGrid& grid() const;
  const io::CfTimeAxis& time_axis() const;
  // Cell bounds from the files (lat_bnds / lon_bnds named by the coordinates' `bounds` attribute), (H,2) / (W,2)
  // degrees with row 0 south; empty when the files have none.
  const std::vector<double>& lat_bounds() const;
  const std::vector<double>& lon_bounds() const;
  double time_value(int64_t t) const;         // in time_axis() units
  double hours(int64_t t) const;              // hours since the axis' reference date
  std::string time_iso(int64_t t) const;      // "2000-01-01T03:00:00"
  int year(int64_t t) const;
  const std::string& step_file(int64_t t) const;
  double days_per_year() const;               // of the calendar (365 noleap, 360, 366, else 365.2425)
  // Step t's classes into out (H*W bytes, row 0 south).
  void read(int64_t t, uint8_t* out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace climseg::analysis
