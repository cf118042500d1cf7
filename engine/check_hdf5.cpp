#if defined(CLIMSEG_HAVE_HDF5)
#include "engine/check_hdf5.h"

namespace climseg::detail {

namespace {
// Every entry of the stack, outermost (the API call) to innermost (what is wrong with the file), joined by ": ",
// e.g. "unable to open file: unable to read superblock: truncated file: eof = 1000, ...". The first entry alone
// only says which call failed.
herr_t collect(unsigned /*n*/, const H5E_error2_t* err, void* client) {
  auto* out = static_cast<std::string*>(client);
  if (err && err->desc && *err->desc) {
    if (!out->empty()) *out += ": ";
    *out += err->desc;
  }
  return 0;
}
}  // namespace

std::string hdf5_error_stack_string() {
  std::string s;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect, &s);
  H5Eclear2(H5E_DEFAULT);
  return s.empty() ? "HDF5 call failed (no HDF5 error message)" : s;
}

}  // namespace climseg::detail
#endif
