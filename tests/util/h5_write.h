// Writing small HDF5 test files with the plain C API (no climseg code in the way): any dataset with any file type,
// and a valid DeepCAM sample whose statistics and class fractions are known in closed form. Errors throw
// climseg::Error (usable outside Catch, e.g. in MPI tests).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/check.h"

namespace climseg::test {

class H5Out {
 public:
  explicit H5Out(const std::string& path) : id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) {
    CS_CHECK(id >= 0, path, ": H5Fcreate failed");
  }
  ~H5Out() { H5Fclose(id); }
  H5Out(const H5Out&) = delete;
  H5Out& operator=(const H5Out&) = delete;
  hid_t id;
};

// Dataset `name` (intermediate groups created) of shape dims (empty: a scalar) and file type ftype, written from
// src in memory type mtype (nothing is written when dims has a zero). dcpl: dataset creation properties.
inline void h5_put(hid_t f, const std::string& name, hid_t ftype, hid_t mtype, const std::vector<hsize_t>& dims,
                   const void* src, hid_t dcpl = H5P_DEFAULT) {
  const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  const hid_t space =
      dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t ds = H5Dcreate2(f, name.c_str(), ftype, space, lcpl, dcpl, H5P_DEFAULT);
  CS_CHECK(ds >= 0, name, ": H5Dcreate2 failed");
  size_t n = 1;
  for (hsize_t d : dims) n *= static_cast<size_t>(d);
  if (n > 0) CS_CHECK(H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) >= 0, name, ": H5Dwrite failed");
  H5Dclose(ds);
  H5Sclose(space);
  H5Pclose(lcpl);
}

// The value of channel c at pixel k = y*W + x of good sample number `f`: 100c + f + k/(H*W). Over files 0..F-1 of
// one size, channel c has min 100c, max 100c + F-1 + (HW-1)/HW and mean 100c + (F-1)/2 + (HW-1)/(2HW).
inline float good_value(int64_t f, int64_t k, int64_t c, int64_t hw) {
  return static_cast<float>(100.0 * static_cast<double>(c) + static_cast<double>(f) +
                            static_cast<double>(k) / static_cast<double>(hw));
}
// The label at pixel k: 1 (TC) where k % 50 == 0, 2 (AR) where k % 10 == 0 otherwise, else 0.
inline int32_t good_label(int64_t k) { return k % 50 == 0 ? 1 : k % 10 == 0 ? 2 : 0; }

// A valid DeepCAM sample: climate/data (H,W,16) float32 of good_value, climate/labels_0 (H,W) uint8 of good_label.
inline void write_good_sample(const std::string& path, int64_t h, int64_t w, int64_t f) {
  constexpr int64_t C = 16;
  std::vector<float> data(static_cast<size_t>(h * w * C));
  std::vector<int32_t> labels(static_cast<size_t>(h * w));
  for (int64_t k = 0; k < h * w; ++k) {
    for (int64_t c = 0; c < C; ++c) data[static_cast<size_t>(k * C + c)] = good_value(f, k, c, h * w);
    labels[static_cast<size_t>(k)] = good_label(k);
  }
  H5Out out(path);
  const auto H = static_cast<hsize_t>(h), W = static_cast<hsize_t>(w);
  h5_put(out.id, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {H, W, hsize_t{C}}, data.data());
  h5_put(out.id, "climate/labels_0", H5T_STD_U8LE, H5T_NATIVE_INT32, {H, W}, labels.data());
}

}  // namespace climseg::test
