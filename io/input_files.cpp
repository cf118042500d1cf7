#include "io/input_files.h"

#include <glob.h>
#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "engine/check.h"

namespace climseg::io {

bool is_netcdf_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  CS_CHECK(in.good(), path, ": cannot open");
  char magic[8] = {0};
  in.read(magic, 8);
  if (in.gcount() >= 4 && std::memcmp(magic, "CDF", 3) == 0) return true;
  static const unsigned char hdf5[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if (in.gcount() < 8 || std::memcmp(magic, hdf5, 8) != 0) return false;  // neither: the HDF5 reader reports it
  H5E_auto2_t fn = nullptr;
  void* data = nullptr;
  H5Eget_auto2(H5E_DEFAULT, &fn, &data);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  bool climate = false;
  if (f >= 0) {
    climate = H5Lexists(f, "climate", H5P_DEFAULT) > 0;
    H5Fclose(f);
  }
  H5Eset_auto2(H5E_DEFAULT, fn, data);
  CS_CHECK(f >= 0, path, ": cannot open as HDF5");
  return !climate;
}

std::vector<std::string> expand_globs(const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  for (const std::string& s : inputs) {
    if (s.find_first_of("*?[") == std::string::npos) {
      out.push_back(s);
      continue;
    }
    glob_t g{};
    const int rc = glob(s.c_str(), 0, nullptr, &g);
    std::vector<std::string> m;
    if (rc == 0)
      for (size_t i = 0; i < g.gl_pathc; ++i) m.emplace_back(g.gl_pathv[i]);
    globfree(&g);
    CS_CHECK(!m.empty(), "input pattern '", s, "' matches no file");
    std::sort(m.begin(), m.end());
    out.insert(out.end(), m.begin(), m.end());
  }
  return out;
}

}  // namespace climseg::io
