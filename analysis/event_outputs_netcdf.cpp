// event_ids.nc and frequency.nc (analysis/event_outputs.h); without libnetcdf both throw.
#include <algorithm>

#include "analysis/event_outputs.h"
#include "engine/atomic_file.h"
#include "engine/check.h"
#if CLIMSEG_HAVE_NETCDF
#include "io/netcdf_util.h"
#endif

namespace climseg::analysis {

#if CLIMSEG_HAVE_NETCDF
namespace {

void put_global_attrs(io::nc::File& f, const std::string& title,
                      const std::vector<std::pair<std::string, std::string>>& attrs) {
  f.put_att(NC_GLOBAL, "Conventions", "CF-1.8");
  f.put_att(NC_GLOBAL, "title", title);
  for (const auto& [k, v] : attrs) f.put_att(NC_GLOBAL, k, v);
}

void deflate(io::nc::File& f, int var, const std::vector<size_t>& chunk) {
  f.check(nc_def_var_chunking(f.id(), var, NC_CHUNKED, chunk.data()), "chunking");
  f.check(nc_def_var_deflate(f.id(), var, 0, 1, 1), "compression");
}

}  // namespace

void write_event_ids_nc(const std::string& path, const SeriesInfo& s, const std::vector<Object>& objects,
                        const Tracking& tr, const std::vector<std::pair<std::string, std::string>>& attrs) {
  const int64_t H = s.grid.height(), W = s.grid.width();
  AtomicFile out(path);
  {
    std::lock_guard<std::mutex> lock(io::nc::library_mutex());
    io::nc::File f = io::nc::File::create(out.tmp_path());
    const io::CfCoords c = io::define_cf_coords(f, s.grid, s.axis);
    const int ev = f.def_var("event_id", NC_INT, {c.time_dim, c.lat_dim, c.lon_dim});
    f.put_att(ev, "long_name", "id of the event (row of events.csv) each pixel belongs to; 0: none");
    f.put_att(ev, "units", "1");
    f.put_att(ev, "_FillValue", NC_INT, {-1});
    deflate(f, ev, {1, static_cast<size_t>(H), static_cast<size_t>(W)});
    int count_var[kClasses] = {-1, -1, -1};
    for (int k = 1; k < kClasses; ++k) {
      count_var[k] = f.def_var(k == 1 ? "tc_count" : "ar_count", NC_INT, {c.time_dim});
      f.put_att(count_var[k], "long_name", std::string("number of catalogued ") +
                                               (k == 1 ? "tropical cyclones" : "atmospheric rivers") + " at this time");
      f.put_att(count_var[k], "units", "1");
    }
    put_global_attrs(f, "climseg events: event id of every pixel", attrs);
    f.enddef();
    io::put_cf_coord_values(f, s.grid, c);
    std::vector<int32_t> plane(static_cast<size_t>(H * W));
    size_t i = 0;
    for (int64_t t = 0; t < s.steps(); ++t) {
      std::fill(plane.begin(), plane.end(), 0);
      int counts[kClasses] = {0, 0, 0};
      for (; i < objects.size() && objects[i].step == t; ++i) {
        const int64_t id = tr.object_event[i];
        if (id == 0) continue;
        ++counts[objects[i].cls];
        for (const Run& r : objects[i].runs)
          std::fill(plane.begin() + r.row * W + r.c0, plane.begin() + r.row * W + r.c1 + 1, static_cast<int32_t>(id));
      }
      io::put_cf_time(f, c, static_cast<size_t>(t), s.time_values[static_cast<size_t>(t)]);
      const size_t start[3] = {static_cast<size_t>(t), 0, 0}, count[3] = {1, static_cast<size_t>(H),
                                                                          static_cast<size_t>(W)};
      f.check(nc_put_vara_int(f.id(), ev, start, count, plane.data()), "writing event_id");
      for (int k = 1; k < kClasses; ++k) {
        const size_t st = static_cast<size_t>(t), one = 1;
        f.check(nc_put_vara_int(f.id(), count_var[k], &st, &one, &counts[k]), "writing counts");
      }
    }
    f.close();
  }
  out.commit();
}

void write_frequency_nc(const std::string& path, const SeriesInfo& s, const FrequencyMaps& m,
                        const std::vector<std::pair<std::string, std::string>>& attrs) {
  const size_t H = static_cast<size_t>(s.grid.height()), W = static_cast<size_t>(s.grid.width());
  AtomicFile out(path);
  {
    std::lock_guard<std::mutex> lock(io::nc::library_mutex());
    io::nc::File f = io::nc::File::create(out.tmp_path());
    const int ld = f.def_dim(s.grid.lat_name, H), nd = f.def_dim(s.grid.lon_name, W);
    const int lv = f.def_var(s.grid.lat_name, NC_DOUBLE, {ld});
    f.put_att(lv, "standard_name", "latitude");
    f.put_att(lv, "units", "degrees_north");
    f.put_att(lv, "axis", "Y");
    const int nv = f.def_var(s.grid.lon_name, NC_DOUBLE, {nd});
    f.put_att(nv, "standard_name", "longitude");
    f.put_att(nv, "units", "degrees_east");
    f.put_att(nv, "axis", "X");
    struct V {
      const char* name;
      const char* long_name;
      const char* units;
      const std::vector<float>* data;
      int id;
    } vars[] = {
        {"tc_frequency", "fraction of time steps in which the cell is inside a catalogued tropical cyclone", "1", &m.tc, -1},
        {"ar_frequency", "fraction of time steps in which the cell is inside a catalogued atmospheric river", "1", &m.ar, -1},
        {"tc_genesis_density", "tropical cyclone geneses (first centroid of an event) within 500 km, per year",
         "year-1", &m.genesis, -1},
    };
    for (V& v : vars) {
      v.id = f.def_var(v.name, NC_FLOAT, {ld, nd});
      f.put_att(v.id, "long_name", v.long_name);
      f.put_att(v.id, "units", v.units);
      deflate(f, v.id, {H, W});
    }
    put_global_attrs(f, "climseg events: frequency maps", attrs);
    f.put_att(NC_GLOBAL, "time_steps", std::to_string(s.steps()));
    if (s.steps() > 0) {
      f.put_att(NC_GLOBAL, "first_time", s.iso.front());
      f.put_att(NC_GLOBAL, "last_time", s.iso.back());
    }
    f.put_att(NC_GLOBAL, "years", NC_DOUBLE, {m.years});
    f.enddef();
    f.check(nc_put_var_double(f.id(), lv, s.grid.lat.data()), "writing lat");
    f.check(nc_put_var_double(f.id(), nv, s.grid.lon.data()), "writing lon");
    for (const V& v : vars) f.check(nc_put_var_float(f.id(), v.id, v.data->data()), std::string("writing ") + v.name);
    f.close();
  }
  out.commit();
}
#else
void write_event_ids_nc(const std::string& path, const SeriesInfo&, const std::vector<Object>&, const Tracking&,
                        const std::vector<std::pair<std::string, std::string>>&) {
  CS_CHECK(false, path, ": this build has no NetCDF support (install libnetcdf-dev and rerun cmake)");
}
void write_frequency_nc(const std::string& path, const SeriesInfo&, const FrequencyMaps&,
                        const std::vector<std::pair<std::string, std::string>>&) {
  CS_CHECK(false, path, ": this build has no NetCDF support (install libnetcdf-dev and rerun cmake)");
}
#endif

}  // namespace climseg::analysis
