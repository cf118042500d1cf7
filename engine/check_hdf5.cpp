#if defined(CLIMSEG_HAVE_HDF5)
#include "engine/check_hdf5.h"

namespace climseg::detail {

namespace {
herr_t walk_innermost(unsigned n, const H5E_error2_t* err, void* client) {
  auto* out = static_cast<std::string*>(client);
  if (n == 0 && err && err->desc) *out = concat(err->func_name ? err->func_name : "?", "(): ", err->desc);
  return 0;
}
}  // namespace

std::string hdf5_error_stack_string() {
  std::string s;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_innermost, &s);
  H5Eclear2(H5E_DEFAULT);
  return s.empty() ? "HDF5 call failed" : s;
}

}  // namespace climseg::detail
#endif
