#include "io/hdf5_util.h"

#include "engine/check_hdf5.h"

namespace climseg::io::h5 {

std::string h5_error_chain() { return ::climseg::detail::hdf5_error_stack_string(); }

std::string h5_type_name(hid_t type) {
  const size_t bits = H5Tget_size(type) * 8;
  switch (H5Tget_class(type)) {
    case H5T_FLOAT:
      return ::climseg::detail::concat("float", bits);
    case H5T_INTEGER:
      return ::climseg::detail::concat(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int", bits);
    case H5T_STRING:
      return "string";
    case H5T_COMPOUND:
      return "compound";
    case H5T_ENUM:
      return "enum";
    case H5T_BITFIELD:
      return "bitfield";
    case H5T_OPAQUE:
      return "opaque";
    case H5T_REFERENCE:
      return "reference";
    case H5T_ARRAY:
      return "array";
    case H5T_VLEN:
      return "vlen";
    case H5T_TIME:
      return "time";
    default:
      return "unknown";
  }
}

std::vector<hsize_t> h5_shape(hid_t dataset) {
  H5Id space(IO_H5_CHECK(H5Dget_space(dataset), "getting a dataset's dataspace"), H5Sclose);
  const int rank = IO_H5_CHECK(H5Sget_simple_extent_ndims(space), "getting a dataset's rank");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) IO_H5_CHECK(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "getting a dataset's shape");
  return dims;
}

std::string shape_str(const std::vector<hsize_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + ")";
}

bool h5_exists(hid_t loc, const std::string& path) {
  size_t pos = 0;
  while (true) {
    const size_t slash = path.find('/', pos);
    const std::string prefix = path.substr(0, slash);
    const htri_t e = H5Lexists(loc, prefix.c_str(), H5P_DEFAULT);
    if (e <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    if (slash == std::string::npos) return true;
    pos = slash + 1;
  }
}

}  // namespace climseg::io::h5
