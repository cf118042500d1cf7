// Synthetic data as CAM-like NetCDF history files (io/synthetic.h "CAM-like NetCDF history files"; docs/data.md
// "NetCDF history files"). Coordinates come from io/cf_grid.h, so these files and `climseg predict`'s NetCDF masks
// share one layout.
#include <netcdf.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/check.h"
#include "io/cf_grid.h"
#include "io/hdf5_sample.h"
#include "io/netcdf_util.h"
#include "io/synthetic.h"

namespace climseg::io {

namespace {

// Checks that every step is a host (1,H,W,C) tensor of `dtype` on one grid; returns (H, W).
std::pair<int64_t, int64_t> check_steps(const std::string& path, const std::vector<Tensor>& steps,
                                        const std::vector<double>& time_days, int64_t channels, DType dtype) {
  CS_CHECK(!steps.empty(), path, ": no time steps to write");
  CS_CHECK(steps.size() == time_days.size(), path, ": ", steps.size(), " steps but ", time_days.size(), " times");
  const Shape s0 = steps.front().shape();
  const Shape want{1, s0.h, s0.w, channels};
  for (const Tensor& t : steps)
    CS_CHECK(t.defined() && t.device() == Device::cpu && t.dtype() == dtype && t.is_contiguous() && t.shape() == want,
             path, ": each step must be a contiguous host (1,H,W,", channels, ") ", dtype_name(dtype),
             " tensor on one grid, got ", t.defined() ? t.str() : "an undefined tensor");
  return {s0.h, s0.w};
}

// Opens `path` and writes what both kinds of file share: global attributes and the coordinates (define mode is left
// open for the caller's variables).
struct History {
  nc::File f;
  CfGrid grid;
  CfCoords coords;
};

History begin(const std::string& path, int64_t H, int64_t W, uint64_t seed, const std::string& title) {
  History h{nc::File::create(path, /*netcdf4=*/true), global_grid(H, W), {}};
  h.f.check(nc_set_fill(h.f.id(), NC_NOFILL, nullptr), "setting no-fill mode");  // every value is written
  h.f.put_att(NC_GLOBAL, "Conventions", "CF-1.8");
  h.f.put_att(NC_GLOBAL, "title", title);
  h.f.put_att(NC_GLOBAL, "source", "climseg data generate --format netcdf (synthetic)");
  h.f.put_att(NC_GLOBAL, "seed", std::to_string(seed));
  h.coords = define_cf_coords(h.f, h.grid, CfTimeAxis{});
  return h;
}

int def_field(History& h, const std::string& name, nc_type type) {
  const int v = h.f.def_var(name, type, {h.coords.time_dim, h.coords.lat_dim, h.coords.lon_dim});
  const size_t chunk[3] = {1, h.grid.lat.size(), h.grid.lon.size()};  // one time step per chunk
  h.f.check(nc_def_var_chunking(h.f.id(), v, NC_CHUNKED, chunk), "setting the chunks of " + nc::var_label(name));
  return v;
}

void finish_coords(History& h, const std::vector<double>& time_days) {
  h.f.enddef();
  put_cf_coord_values(h.f, h.grid, h.coords);
  for (size_t k = 0; k < time_days.size(); ++k) put_cf_time(h.f, h.coords, k, time_days[k]);
}

}  // namespace

void write_history_data(const std::string& path, const std::vector<Tensor>& steps, const std::vector<double>& time_days,
                        uint64_t seed) {
  const auto [H, W] = check_steps(path, steps, time_days, kNumChannels, DType::f32);
  History h = begin(path, H, W, seed, "climseg synthetic climate fields (CAM-like history file)");
  std::vector<int> vars;
  for (int64_t c = 0; c < kNumChannels; ++c) {
    const int v = def_field(h, channel_name(c), NC_FLOAT);
    h.f.put_att(v, "units", history_units(c));
    h.f.put_att(v, "long_name", history_long_name(c));
    vars.push_back(v);
  }
  finish_coords(h, time_days);
  const size_t HW = static_cast<size_t>(H * W);
  std::vector<float> plane(HW);
  for (size_t k = 0; k < steps.size(); ++k) {
    const float* x = steps[k].data_as<float>();  // (H, W, 16), channels last
    for (int64_t c = 0; c < kNumChannels; ++c) {
      for (size_t p = 0; p < HW; ++p) plane[p] = x[p * kNumChannels + static_cast<size_t>(c)];
      const size_t start[3] = {k, 0, 0}, count[3] = {1, static_cast<size_t>(H), static_cast<size_t>(W)};
      h.f.check(nc_put_vara_float(h.f.id(), vars[static_cast<size_t>(c)], start, count, plane.data()),
                "writing " + nc::var_label(channel_name(c)) + " at time index " + std::to_string(k));
    }
  }
  h.f.close();
}

void write_history_labels(const std::string& path, const std::vector<Tensor>& steps,
                          const std::vector<double>& time_days, uint64_t seed) {
  const auto [H, W] = check_steps(path, steps, time_days, 1, DType::u8);
  History h = begin(path, H, W, seed, "climseg synthetic truth labels (TECA-like rules, docs/data.md)");
  const int v = def_field(h, "mask", NC_BYTE);
  h.f.put_att(v, "long_name", "class of each cell");
  h.f.put_att(v, "flag_values", NC_BYTE, {0, 1, 2});
  h.f.put_att(v, "flag_meanings", "background tropical_cyclone atmospheric_river");
  finish_coords(h, time_days);
  const size_t HW = static_cast<size_t>(H * W);
  std::vector<signed char> plane(HW);
  for (size_t k = 0; k < steps.size(); ++k) {
    const uint8_t* l = steps[k].data_as<uint8_t>();
    for (size_t p = 0; p < HW; ++p) {
      CS_CHECK(l[p] <= 2, path, ": label ", int{l[p]}, " at time index ", k, ", row ", p / static_cast<size_t>(W),
               ", column ", p % static_cast<size_t>(W), " (classes are 0, 1, 2)");
      plane[p] = static_cast<signed char>(l[p]);
    }
    const size_t start[3] = {k, 0, 0}, count[3] = {1, static_cast<size_t>(H), static_cast<size_t>(W)};
    h.f.check(nc_put_vara_schar(h.f.id(), v, start, count, plane.data()),
              "writing " + nc::var_label("mask") + " at time index " + std::to_string(k));
  }
  h.f.close();
}

}  // namespace climseg::io
