#include "io/prediction_writer.h"

#include "engine/atomic_file.h"
#include "io/hdf5_util.h"

namespace climseg::io {

using h5::H5Id;

namespace {

// A variable-length UTF-8 string type (h5py's str); fixed-length strings would come back as bytes.
H5Id vlen_string_type(const std::string& path) {
  H5Id t(IO_H5_CHECK(H5Tcopy(H5T_C_S1), path, ": string type"), H5Tclose);
  IO_H5_CHECK(H5Tset_size(t, H5T_VARIABLE), path, ": string type");
  IO_H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8), path, ": string type");
  return t;
}

void write_string_attr(hid_t loc, const std::string& path, const std::string& name, const std::string& value) {
  H5Id type = vlen_string_type(path);
  H5Id space(IO_H5_CHECK(H5Screate(H5S_SCALAR), path, ": attribute ", name), H5Sclose);
  H5Id attr(IO_H5_CHECK(H5Acreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), path,
                        ": creating attribute ", name),
            H5Aclose);
  const char* p = value.c_str();
  IO_H5_CHECK(H5Awrite(attr, type, &p), path, ": writing attribute ", name);
}

void write_string_array_attr(hid_t loc, const std::string& path, const std::string& name,
                             const std::vector<std::string>& values) {
  H5Id type = vlen_string_type(path);
  const hsize_t n = values.size();
  H5Id space(IO_H5_CHECK(H5Screate_simple(1, &n, nullptr), path, ": attribute ", name), H5Sclose);
  H5Id attr(IO_H5_CHECK(H5Acreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), path,
                        ": creating attribute ", name),
            H5Aclose);
  if (values.empty()) return;  // an empty array attribute: nothing to write (H5Awrite refuses a null buffer)
  std::vector<const char*> p;
  for (const std::string& v : values) p.push_back(v.c_str());
  IO_H5_CHECK(H5Awrite(attr, type, p.data()), path, ": writing attribute ", name);
}

void write_dataset(hid_t group, const std::string& path, const std::string& name, hid_t file_type, hid_t mem_type,
                   const std::vector<hsize_t>& dims, const void* src) {
  H5Id space(IO_H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), path, ": ", name),
             H5Sclose);
  H5Id ds(IO_H5_CHECK(H5Dcreate2(group, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), path,
                      ": creating prediction/", name),
          H5Dclose);
  IO_H5_CHECK(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, src), path, ": writing prediction/", name);
}

}  // namespace

void write_prediction(const std::string& path, const Tensor& logits, const Tensor& mask, const PredictionAttrs& attrs) {
  CS_CHECK(logits.defined() && logits.device() == Device::cpu && logits.dtype() == DType::f32, path,
           ": logits must be a host float32 tensor, got ", logits.defined() ? logits.str() : "an undefined tensor");
  CS_CHECK(mask.defined() && mask.device() == Device::cpu && mask.dtype() == DType::u8, path,
           ": mask must be a host uint8 tensor, got ", mask.defined() ? mask.str() : "an undefined tensor");
  const Shape& ls = logits.shape();
  const Shape& ms = mask.shape();
  CS_CHECK(ls.numel() > 0, path, ": logits ", ls.str(), " are empty");
  CS_CHECK(ms.n == ls.n && ms.h == ls.h && ms.w == ls.w && ms.c == 1, path, ": mask ", ms.str(),
           " does not match logits ", ls.str(), " (expected (N,H,W,1))");
  CS_CHECK(attrs.sources.empty() || static_cast<int64_t>(attrs.sources.size()) == ls.n, path, ": ",
           attrs.sources.size(), " source files for ", ls.n, " samples");
  // Contiguous copies for H5Dwrite (views of a batch or of a Net's arena are pixel-strided, not contiguous).
  const Tensor lc = logits.is_contiguous() ? logits : logits.clone();
  const Tensor mc = mask.is_contiguous() ? mask : mask.clone();
  const uint8_t* m = mc.data_as<uint8_t>();
  for (int64_t i = 0; i < mc.numel(); ++i)
    CS_CHECK(m[i] < ls.c, path, ": mask value ", int(m[i]), " at pixel ", i, " is not a class of the ", ls.c,
             "-channel logits");

  h5::QuietHdf5Errors quiet;
  AtomicFile out(path);
  {
    H5Id file(IO_H5_CHECK(H5Fcreate(out.tmp_path().c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), path,
                          ": creating ", out.tmp_path()),
              H5Fclose);
    H5Id group(IO_H5_CHECK(H5Gcreate2(file, "prediction", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), path,
                           ": creating group prediction"),
               H5Gclose);
    const auto N = static_cast<hsize_t>(ls.n), H = static_cast<hsize_t>(ls.h), W = static_cast<hsize_t>(ls.w),
               K = static_cast<hsize_t>(ls.c);
    write_dataset(group, path, "logits", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {N, H, W, K}, lc.data());
    write_dataset(group, path, "mask", H5T_STD_U8LE, H5T_NATIVE_UINT8, {N, H, W}, mc.data());
    write_string_attr(group, path, "model", attrs.model);
    write_string_attr(group, path, "weights", attrs.weights);
    write_string_array_attr(group, path, "sources", attrs.sources);
    for (const auto& [name, value] : attrs.extra) write_string_attr(group, path, name, value);
    group.reset();
    // Closing flushes: check it, so a full disk is an error here and not a damaged file after the rename.
    IO_H5_CHECK(file.close(), path, ": closing ", out.tmp_path());
  }
  out.commit();
}

}  // namespace climseg::io
