// HDF5_CHECK (see engine/check.h). Include only where CLIMSEG_HAVE_HDF5 is defined.
// HDF5 calls return a negative herr_t/hid_t on failure; the message is HDF5's whole error stack, outermost to
// innermost (io/hdf5_util.h's IO_H5_CHECK uses the same text).
#pragma once

#include <hdf5.h>

#include <string>

#include "engine/check.h"

namespace climseg::detail {
std::string hdf5_error_stack_string();
template <class T>
T hdf5_check(T status, const char* file, int line, const char* expr, const std::string& what) {
  if (status < 0) [[unlikely]]
    throw_error(file, line, expr, what.empty() ? hdf5_error_stack_string() : what + ": " + hdf5_error_stack_string());
  return status;
}
}  // namespace climseg::detail

// Evaluates to the call's result (an id or status) so it can wrap H5Fopen and friends:
//   hid_t f = HDF5_CHECK(H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "opening ", path);
#define HDF5_CHECK(expr, ...) \
  ::climseg::detail::hdf5_check((expr), __FILE__, __LINE__, #expr, ::climseg::detail::concat(__VA_ARGS__))
