// Reading CF-NetCDF climate model output (CAM/CESM history files, CMIP files) as network input: one variable per
// channel, found by name through a channel map, time step by time step (docs/data.md "NetCDF input").
//
//   io::CfReader r(files, opts);          // opens every file once: variables, grid, times, checks
//   std::vector<float> x(r.height() * r.width() * r.channels());
//   for (int64_t t = 0; t < r.steps(); ++t) r.read(t, x.data());   // (H,W,C) float32, row 0 south
//
// Files: one file with every variable, or one file per variable (CMIP style), and either split over time (many
// files, each a run of time steps). A channel's time steps are the union over the files holding its variable; every
// channel must have the same time steps, every file the same lat/lon grid. Variables are (time, lat, lon), or
// (time, plev, lat, lon) with a pressure level chosen by the map. NetCDF-3 (classic, 64-bit offset) and NetCDF-4.
//
// Values: packed integers and scale_factor/add_offset are unpacked (x * scale_factor + add_offset, in double), then
// the map's unit scale is applied. _FillValue / missing_value (or NaN) inside the field is an error naming the file,
// the variable, the time and the cell, unless fill_missing is set: then such cells get the mean of the field's valid
// cells and read() counts them. Latitudes running north to south are flipped (row 0 is always the southernmost);
// longitudes are kept in the file's order (strictly increasing, 0..360 or -180..180).
//
// Errors are climseg::Error naming the file and the variable. Not thread-safe (libnetcdf is not): one thread reads.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "io/cf_grid.h"

namespace climseg::io {

// Where one network channel comes from: the first of `alternatives` found in the files.
struct ChannelSource {
  struct Var {
    std::string name;                                          // NetCDF variable name
    double level_hpa = std::numeric_limits<double>::quiet_NaN();  // a 3-D variable's pressure level; NaN: 2-D
    double scale = 1.0;                                        // unit scale, applied after unpacking
  };
  std::string channel;  // the network's name for it (the DeepCAM channel names by default)
  std::vector<Var> alternatives;
};

// "CHANNEL=VAR[@LEVEL_HPA][*SCALE][|VAR...]", e.g. "U850=U850|ua@850", "PRECT=PRECT|pr*0.001"; `what` names the
// flag or file in errors.
ChannelSource parse_channel_source(const std::string& spec, const std::string& what);
std::string format_channel_source(const ChannelSource& s);
// The default map for the given channel names: the CAM variable of the same name, then its CMIP counterpart where one
// exists (TMQ|prw, U850|ua@850, V850|va@850, UBOT|uas, VBOT|vas, QREFHT|huss, PS|ps, PSL|psl, T200|ta@200,
// T500|ta@500, PRECT|pr*0.001 (kg m-2 s-1 of water to m s-1), TS|ts, TREFHT|tas, Z1000|zg@1000, Z200|zg@200; ZBOT has
// none). CMIP's near-surface fields (uas, vas at 10 m; huss, tas at 2 m) stand in for CAM's lowest-level and
// reference-height ones: close, not equal.
std::vector<ChannelSource> default_channel_map(const std::vector<std::string>& channels);
// Applies overrides (parsed specs) to a map by channel name; an override naming no channel of the map is an error.
void override_channel_map(std::vector<ChannelSource>& map, const std::vector<ChannelSource>& overrides,
                          const std::string& what);
// Reads a map file: one spec per line, '#' comments and blank lines ignored.
std::vector<ChannelSource> read_channel_map_file(const std::string& path);
// The map a command uses: default_channel_map(channels), then the specs of `map_file` (if not empty), then `specs`
// (the --channel flags), each overriding by channel name.
std::vector<ChannelSource> channel_map(const std::vector<std::string>& channels, const std::string& map_file,
                                       const std::vector<std::string>& specs);

struct CfReaderOptions {
  std::vector<ChannelSource> channels;  // in network order
  std::string start, end;               // ISO dates/times (inclusive); empty: no bound
  bool fill_missing = false;            // fill missing cells with the field's mean instead of failing
};

class CfReader {
 public:
  CfReader(const std::vector<std::string>& files, const CfReaderOptions& opt);
  ~CfReader();
  CfReader(const CfReader&) = delete;
  CfReader& operator=(const CfReader&) = delete;

  int64_t steps() const;
  int64_t height() const { return grid().height(); }
  int64_t width() const { return grid().width(); }
  int64_t channels() const;
  const CfGrid& grid() const;          // ascending latitudes (row 0 south), the files' longitudes
  bool lat_flipped() const;            // the files store latitudes north to south
  const CfTimeAxis& time_axis() const; // the first file's time units and calendar
  double time_value(int64_t step) const;   // in time_axis() units
  std::string time_iso(int64_t step) const;  // "2000-01-01T03:00:00"
  const std::string& step_file(int64_t step) const;  // the file holding the first channel at this step
  // "TMQ <- prw (3 files)" per channel, for logs and output attributes.
  std::vector<std::string> describe_channels() const;

  // One time step as (H,W,C) float32, row 0 south, into `out` (height() * width() * channels() floats). Returns the
  // number of cells filled (fill_missing); without fill_missing a missing cell throws.
  int64_t read(int64_t step, float* out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace climseg::io
