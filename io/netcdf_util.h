// NetCDF plumbing shared by io/*_netcdf.cpp (internal; not part of the io API): an owned file handle whose errors name
// the file, the variable and what was being done, and the small attribute/coordinate readers and writers the CF
// reader (io/cf_reader.h), the CF writer (io/cf_writer.h) and the synthetic NetCDF generator share. Include only
// where CLIMSEG_HAVE_NETCDF is defined. libnetcdf is not thread-safe: one thread at a time uses these handles.
#pragma once

#include <netcdf.h>

#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace climseg::io::nc {

// libnetcdf is not thread-safe: code that may call it from two threads (predict's reader thread and its writer)
// holds this lock around each use.
std::mutex& library_mutex();

// Throws "<path>: <what>: <nc_strerror(status)>" when status != NC_NOERR.
void check(int status, const std::string& path, const std::string& what);

class File {
 public:
  File() = default;
  static File open(const std::string& path);  // read-only; NetCDF-3 (classic, 64-bit offset, CDF5) and NetCDF-4
  // A new file (clobbering one of that name): NetCDF-4 (HDF5 storage, compression) unless classic.
  static File create(const std::string& path, bool netcdf4 = true);
  File(File&& o) noexcept : id_(std::exchange(o.id_, -1)), path_(std::move(o.path_)) {}
  File& operator=(File&& o) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();
  void close();  // throws on failure (closing a file being written flushes it)

  int id() const { return id_; }
  const std::string& path() const { return path_; }
  bool is_open() const { return id_ >= 0; }
  void check(int status, const std::string& what) const { nc::check(status, path_, what); }

  // ---- reading -------------------------------------------------------------------------------------------------
  std::optional<int> find_var(const std::string& name) const;  // variable id, or none
  int var(const std::string& name) const;                       // throws naming the file and the variable
  std::string var_name(int var) const;
  std::vector<std::string> var_names() const;
  nc_type var_type(int var) const;
  std::vector<std::string> dim_names(int var) const;
  std::vector<size_t> dim_sizes(int var) const;
  // Attribute of a variable (NC_GLOBAL for the file's own): text, or numbers converted to double.
  std::optional<std::string> att_text(int var, const std::string& name) const;
  std::optional<std::vector<double>> att_doubles(int var, const std::string& name) const;
  // A whole 1-D numeric variable as double (a coordinate); throws when it is not 1-D or not numeric.
  std::vector<double> read_1d(int var) const;

  // ---- writing ---------------------------------------------------------------------------------------------------
  int def_dim(const std::string& name, size_t len);  // len 0: NC_UNLIMITED
  int def_var(const std::string& name, nc_type type, const std::vector<int>& dims);
  void put_att(int var, const std::string& name, const std::string& text);
  void put_att(int var, const std::string& name, nc_type type, const std::vector<double>& values);
  void enddef();

 private:
  int id_ = -1;
  std::string path_;
};

// "variable 'NAME'" for messages.
inline std::string var_label(const std::string& name) { return "variable '" + name + "'"; }

}  // namespace climseg::io::nc
