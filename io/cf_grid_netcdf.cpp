#include <cmath>

#include "engine/check.h"
#include "io/cf_grid.h"
#include "io/netcdf_util.h"

namespace climseg::io {

CfCoords define_cf_coords(nc::File& f, const CfGrid& grid, const CfTimeAxis& time) {
  CfCoords c;
  c.time_dim = f.def_dim("time", 0);
  c.lat_dim = f.def_dim(grid.lat_name, grid.lat.size());
  c.lon_dim = f.def_dim(grid.lon_name, grid.lon.size());
  c.time_var = f.def_var("time", NC_DOUBLE, {c.time_dim});
  f.put_att(c.time_var, "standard_name", "time");
  f.put_att(c.time_var, "long_name", "time");
  f.put_att(c.time_var, "units", time.units);
  f.put_att(c.time_var, "calendar", time.calendar);
  f.put_att(c.time_var, "axis", "T");
  c.lat_var = f.def_var(grid.lat_name, NC_DOUBLE, {c.lat_dim});
  f.put_att(c.lat_var, "standard_name", "latitude");
  f.put_att(c.lat_var, "long_name", "latitude");
  f.put_att(c.lat_var, "units", "degrees_north");
  f.put_att(c.lat_var, "axis", "Y");
  c.lon_var = f.def_var(grid.lon_name, NC_DOUBLE, {c.lon_dim});
  f.put_att(c.lon_var, "standard_name", "longitude");
  f.put_att(c.lon_var, "long_name", "longitude");
  f.put_att(c.lon_var, "units", "degrees_east");
  f.put_att(c.lon_var, "axis", "X");
  return c;
}

void put_cf_coord_values(nc::File& f, const CfGrid& grid, const CfCoords& c) {
  f.check(nc_put_var_double(f.id(), c.lat_var, grid.lat.data()), "writing " + grid.lat_name);
  f.check(nc_put_var_double(f.id(), c.lon_var, grid.lon.data()), "writing " + grid.lon_name);
}

void put_cf_time(nc::File& f, const CfCoords& c, size_t index, double value) {
  const size_t start = index, count = 1;
  f.check(nc_put_vara_double(f.id(), c.time_var, &start, &count, &value), "writing time");
}

}  // namespace climseg::io
