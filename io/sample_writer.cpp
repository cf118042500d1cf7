#include "io/sample_writer.h"

#include <algorithm>

#include "engine/atomic_file.h"
#include "io/hdf5_util.h"

namespace climseg::io {

using h5::H5Id;

namespace {

void write_string_attr(hid_t loc, const std::string& path, const std::string& name, const std::string& value) {
  H5Id type(IO_H5_CHECK(H5Tcopy(H5T_C_S1), path, ": string type"), H5Tclose);
  IO_H5_CHECK(H5Tset_size(type, H5T_VARIABLE), path, ": string type");
  IO_H5_CHECK(H5Tset_cset(type, H5T_CSET_UTF8), path, ": string type");
  H5Id space(IO_H5_CHECK(H5Screate(H5S_SCALAR), path, ": attribute ", name), H5Sclose);
  H5Id attr(IO_H5_CHECK(H5Acreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), path,
                        ": creating attribute ", name),
            H5Aclose);
  const char* p = value.c_str();
  IO_H5_CHECK(H5Awrite(attr, type, &p), path, ": writing attribute ", name);
}

// Creation properties shared by the group and the datasets: no modification times in the object headers.
H5Id no_times(hid_t cls, const std::string& path) {
  H5Id p(IO_H5_CHECK(H5Pcreate(cls), path, ": property list"), H5Pclose);
  IO_H5_CHECK(H5Pset_obj_track_times(p, false), path, ": track times");
  return p;
}

void write_dataset(hid_t group, const std::string& path, const char* name, hid_t file_type, hid_t mem_type,
                   const std::vector<hsize_t>& dims, int gzip_level, const void* src) {
  H5Id dcpl = no_times(H5P_DATASET_CREATE, path);
  if (gzip_level > 0) {
    // Chunks of whole rows, about 1 MiB each (the row is the unit every reader's crop or stride touches).
    hsize_t row_bytes = 1;
    for (size_t d = 1; d < dims.size(); ++d) row_bytes *= dims[d];
    row_bytes *= H5Tget_size(file_type);
    std::vector<hsize_t> chunk = dims;
    chunk[0] = std::clamp<hsize_t>((hsize_t{1} << 20) / std::max<hsize_t>(row_bytes, 1), 1, dims[0]);
    IO_H5_CHECK(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), path, ": chunking climate/", name);
    IO_H5_CHECK(H5Pset_shuffle(dcpl), path, ": shuffle filter for climate/", name);
    IO_H5_CHECK(H5Pset_deflate(dcpl, static_cast<unsigned>(gzip_level)), path, ": gzip for climate/", name);
  }
  H5Id space(IO_H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), path,
                         ": dataspace of climate/", name),
             H5Sclose);
  H5Id ds(IO_H5_CHECK(H5Dcreate2(group, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), path,
                      ": creating climate/", name),
          H5Dclose);
  IO_H5_CHECK(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, src), path, ": writing climate/", name);
}

}  // namespace

void write_sample(const std::string& path, const Tensor& data, const Tensor& labels, const SampleWriteOptions& opt) {
  CS_CHECK(data.defined() && data.device() == Device::cpu && data.dtype() == DType::f32, path,
           ": climate/data must come from a host float32 tensor, got ",
           data.defined() ? data.str() : "an undefined tensor");
  CS_CHECK(labels.defined() && labels.device() == Device::cpu &&
               (labels.dtype() == DType::u8 || labels.dtype() == DType::i32),
           path, ": climate/labels_0 must come from a host uint8 or int32 tensor, got ",
           labels.defined() ? labels.str() : "an undefined tensor");
  const Shape& ds = data.shape();
  const Shape& ls = labels.shape();
  CS_CHECK(ds.n == 1 && ds.h > 0 && ds.w > 0 && ds.c > 0, path, ": data ", ds.str(), " must be one sample (1,H,W,C)");
  CS_CHECK(ls.n == 1 && ls.h == ds.h && ls.w == ds.w && ls.c == 1, path, ": labels ", ls.str(), " do not match data ",
           ds.str(), " (expected (1,H,W,1))");
  CS_CHECK(opt.gzip_level >= 0 && opt.gzip_level <= 9, path, ": gzip level ", opt.gzip_level, " is not in 0..9");

  const Tensor dc = data.is_contiguous() ? data : data.clone();
  // Labels as uint8, checked against the classes (an int32 label tensor is narrowed only after its range check).
  const Tensor lc = labels.is_contiguous() ? labels : labels.clone();
  std::vector<uint8_t> lab(static_cast<size_t>(ls.pixels()));
  const uint8_t* l8 = lc.dtype() == DType::u8 ? lc.data_as<uint8_t>() : nullptr;
  const int32_t* l32 = lc.dtype() == DType::i32 ? lc.data_as<int32_t>() : nullptr;
  for (int64_t p = 0; p < ls.pixels(); ++p) {
    const int64_t v = l8 ? l8[p] : l32[p];
    CS_CHECK(v >= 0 && v <= 2, path, ": label ", v, " at pixel ", p, " (row ", p / ls.w, ", column ", p % ls.w,
             ") is not a class 0..2");
    lab[static_cast<size_t>(p)] = static_cast<uint8_t>(v);
  }

  h5::QuietHdf5Errors quiet;
  AtomicFile out(path);
  {
    H5Id fapl(IO_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS), path, ": property list"), H5Pclose);
    IO_H5_CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18), path, ": library version bounds");
    H5Id fcpl = no_times(H5P_FILE_CREATE, path);  // the root group too
    H5Id file(
        IO_H5_CHECK(H5Fcreate(out.tmp_path().c_str(), H5F_ACC_EXCL, fcpl, fapl), path, ": creating ", out.tmp_path()),
        H5Fclose);
    H5Id gcpl = no_times(H5P_GROUP_CREATE, path);
    H5Id group(
        IO_H5_CHECK(H5Gcreate2(file, "climate", H5P_DEFAULT, gcpl, H5P_DEFAULT), path, ": creating group climate"),
        H5Gclose);
    const auto H = static_cast<hsize_t>(ds.h), W = static_cast<hsize_t>(ds.w), C = static_cast<hsize_t>(ds.c);
    write_dataset(group, path, "data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {H, W, C}, opt.gzip_level, dc.data());
    write_dataset(group, path, "labels_0", H5T_STD_U8LE, H5T_NATIVE_UINT8, {H, W}, opt.gzip_level, lab.data());
    for (const auto& [name, value] : opt.attributes) write_string_attr(file, path, name, value);
    group.reset();
    // Closing flushes: a full disk is an error here, not a damaged file after the rename.
    IO_H5_CHECK(file.close(), path, ": closing ", out.tmp_path());
  }
  out.commit();
}

}  // namespace climseg::io
