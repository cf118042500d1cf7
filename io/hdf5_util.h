// HDF5 plumbing shared by io/*.cpp (internal; not part of the io API): owned ids, silencing HDF5's own error
// printing, and error messages that carry HDF5's whole error chain. Include only where CLIMSEG_HAVE_HDF5 is defined.
#pragma once

#include <hdf5.h>

#include <string>
#include <utility>
#include <vector>

#include "engine/check.h"

namespace climseg::io::h5 {

// One HDF5 id and the H5*close that matches its kind (files, groups, datasets, dataspaces, types, attributes and
// property lists each have their own).
class H5Id {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Id() = default;
  H5Id(hid_t id, Closer close) : id_(id), close_(close) {}
  H5Id(H5Id&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  H5Id& operator=(H5Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      close_ = o.close_;
    }
    return *this;
  }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  ~H5Id() { reset(); }

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: passes straight into the C API
  // Closes now and returns the status: closing a file being written flushes it, and that can fail.
  herr_t close() {
    herr_t s = id_ >= 0 ? close_(id_) : 0;
    id_ = H5I_INVALID_HID;
    return s;
  }
  void reset() {
    if (id_ >= 0) close_(id_);
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// Turns HDF5's automatic error-stack printing off for a scope and restores what was there before: our exceptions
// carry HDF5's messages (h5_error_chain), and a user should see one clear error, not a page of HDF5 traces first.
class QuietHdf5Errors {
 public:
  QuietHdf5Errors() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5Errors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  QuietHdf5Errors(const QuietHdf5Errors&) = delete;
  QuietHdf5Errors& operator=(const QuietHdf5Errors&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// HDF5's current error stack, outermost to innermost, joined with ": " ("unable to open file: unable to read
// superblock: truncated file: eof = 1000, ..."), and clears it. The innermost entry says what is wrong with the
// file; the outermost only which call failed (all that engine/check_hdf5.h's HDF5_CHECK reports).
std::string h5_error_chain();

template <class T>
T h5_check(T status, const char* file, int line, const char* expr, const std::string& what) {
  if (status < 0) [[unlikely]]
    ::climseg::detail::throw_error(file, line, expr, what + ": " + h5_error_chain());
  return status;
}

// HDF5 type description for messages and SampleInfo: "float32", "float16", "int64", "uint8", "string", ...
std::string h5_type_name(hid_t type);

// Shape of a dataset's (simple) dataspace.
std::vector<hsize_t> h5_shape(hid_t dataset);
std::string shape_str(const std::vector<hsize_t>& dims);  // "(768,1152,16)"

// True when `path` ("climate/data") names an object in `loc`; each intermediate group must exist too (H5Lexists on
// "a/b" fails, rather than returning false, when "a" is missing).
bool h5_exists(hid_t loc, const std::string& path);

}  // namespace climseg::io::h5

// Like HDF5_CHECK, with the whole error chain in the message. Evaluates to the call's result (an id or status).
#define IO_H5_CHECK(expr, ...) \
  ::climseg::io::h5::h5_check((expr), __FILE__, __LINE__, #expr, ::climseg::detail::concat(__VA_ARGS__))
