#include "io/netcdf_util.h"

#include <hdf5.h>

#include "engine/check.h"

namespace climseg::io::nc {

std::mutex& library_mutex() {
  static std::mutex m;
  return m;
}

void check(int status, const std::string& path, const std::string& what) {
  if (status != NC_NOERR) CS_THROW(path, ": ", what, ": ", nc_strerror(status));
}

namespace {
// libnetcdf-4 probes HDF5 attributes that may not exist; HDF5's default handler would print each miss to stderr.
// climseg's own HDF5 code collects error chains itself (io/hdf5_util.h), so printing is off process-wide.
void quiet_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
}  // namespace

File File::open(const std::string& path) {
  quiet_hdf5();
  File f;
  f.path_ = path;
  int id = -1;
  nc::check(nc_open(path.c_str(), NC_NOWRITE, &id), path, "cannot open as NetCDF");
  f.id_ = id;
  return f;
}

File File::create(const std::string& path, bool netcdf4) {
  quiet_hdf5();
  File f;
  f.path_ = path;
  int id = -1;
  nc::check(nc_create(path.c_str(), NC_CLOBBER | (netcdf4 ? NC_NETCDF4 : NC_64BIT_OFFSET), &id), path,
            "cannot create");
  f.id_ = id;
  return f;
}

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (id_ >= 0) nc_close(id_);
    id_ = std::exchange(o.id_, -1);
    path_ = std::move(o.path_);
  }
  return *this;
}

File::~File() {
  if (id_ >= 0) nc_close(id_);
}

void File::close() {
  if (id_ < 0) return;
  const int id = std::exchange(id_, -1);
  check(nc_close(id), "closing");
}

std::optional<int> File::find_var(const std::string& name) const {
  int v = -1;
  if (nc_inq_varid(id_, name.c_str(), &v) != NC_NOERR) return std::nullopt;
  return v;
}

int File::var(const std::string& name) const {
  const std::optional<int> v = find_var(name);
  if (!v) CS_THROW(path_, ": no ", var_label(name));
  return *v;
}

std::string File::var_name(int var) const {
  char name[NC_MAX_NAME + 1] = {0};
  check(nc_inq_varname(id_, var, name), "variable name");
  return name;
}

std::vector<std::string> File::var_names() const {
  int n = 0;
  check(nc_inq_nvars(id_, &n), "number of variables");
  std::vector<std::string> out;
  for (int v = 0; v < n; ++v) out.push_back(var_name(v));
  return out;
}

nc_type File::var_type(int var) const {
  nc_type t = NC_NAT;
  check(nc_inq_vartype(id_, var, &t), var_label(var_name(var)) + ": type");
  return t;
}

std::vector<std::string> File::dim_names(int var) const {
  int nd = 0;
  check(nc_inq_varndims(id_, var, &nd), var_label(var_name(var)) + ": dimensions");
  std::vector<int> ids(static_cast<size_t>(nd));
  if (nd > 0) check(nc_inq_vardimid(id_, var, ids.data()), var_label(var_name(var)) + ": dimensions");
  std::vector<std::string> out;
  for (int d : ids) {
    char name[NC_MAX_NAME + 1] = {0};
    check(nc_inq_dimname(id_, d, name), "dimension name");
    out.emplace_back(name);
  }
  return out;
}

std::vector<size_t> File::dim_sizes(int var) const {
  int nd = 0;
  check(nc_inq_varndims(id_, var, &nd), var_label(var_name(var)) + ": dimensions");
  std::vector<int> ids(static_cast<size_t>(nd));
  if (nd > 0) check(nc_inq_vardimid(id_, var, ids.data()), var_label(var_name(var)) + ": dimensions");
  std::vector<size_t> out;
  for (int d : ids) {
    size_t len = 0;
    check(nc_inq_dimlen(id_, d, &len), "dimension length");
    out.push_back(len);
  }
  return out;
}

std::optional<std::string> File::att_text(int var, const std::string& name) const {
  nc_type t = NC_NAT;
  size_t len = 0;
  if (nc_inq_att(id_, var, name.c_str(), &t, &len) != NC_NOERR) return std::nullopt;
  if (t == NC_CHAR) {
    std::string s(len, '\0');
    if (len > 0) check(nc_get_att_text(id_, var, name.c_str(), s.data()), "attribute '" + name + "'");
    while (!s.empty() && s.back() == '\0') s.pop_back();
    return s;
  }
  if (t == NC_STRING && len == 1) {
    char* p = nullptr;
    check(nc_get_att_string(id_, var, name.c_str(), &p), "attribute '" + name + "'");
    std::string s = p != nullptr ? p : "";
    nc_free_string(1, &p);
    return s;
  }
  return std::nullopt;
}

std::optional<std::vector<double>> File::att_doubles(int var, const std::string& name) const {
  nc_type t = NC_NAT;
  size_t len = 0;
  if (nc_inq_att(id_, var, name.c_str(), &t, &len) != NC_NOERR) return std::nullopt;
  if (t == NC_CHAR || t == NC_STRING) return std::nullopt;
  std::vector<double> v(len);
  if (len > 0) check(nc_get_att_double(id_, var, name.c_str(), v.data()), "attribute '" + name + "'");
  return v;
}

std::vector<double> File::read_1d(int var) const {
  const std::vector<size_t> s = dim_sizes(var);
  const std::string label = var_label(var_name(var));
  CS_CHECK(s.size() == 1, path_, ": ", label, " has ", s.size(), " dimensions; a coordinate has 1");
  const nc_type t = var_type(var);
  CS_CHECK(t != NC_CHAR && t != NC_STRING, path_, ": ", label, " is not numeric");
  std::vector<double> v(s[0]);
  if (!v.empty()) check(nc_get_var_double(id_, var, v.data()), label + ": reading");
  return v;
}

int File::def_dim(const std::string& name, size_t len) {
  int d = -1;
  check(nc_def_dim(id_, name.c_str(), len == 0 ? NC_UNLIMITED : len, &d), "defining dimension '" + name + "'");
  return d;
}

int File::def_var(const std::string& name, nc_type type, const std::vector<int>& dims) {
  int v = -1;
  check(nc_def_var(id_, name.c_str(), type, static_cast<int>(dims.size()), dims.data(), &v),
        "defining " + var_label(name));
  return v;
}

void File::put_att(int var, const std::string& name, const std::string& text) {
  check(nc_put_att_text(id_, var, name.c_str(), text.size(), text.c_str()), "writing attribute '" + name + "'");
}

void File::put_att(int var, const std::string& name, nc_type type, const std::vector<double>& values) {
  check(nc_put_att_double(id_, var, name.c_str(), type, values.size(), values.data()),
        "writing attribute '" + name + "'");
}

void File::enddef() { check(nc_enddef(id_), "ending define mode"); }

}  // namespace climseg::io::nc
