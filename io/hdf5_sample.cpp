#include "io/hdf5_sample.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "io/hdf5_util.h"
#include "kernels/cpu/normalize.h"

namespace climseg::io {

using h5::h5_error_chain;
using h5::h5_exists;
using h5::h5_shape;
using h5::h5_type_name;
using h5::H5Id;
using h5::QuietHdf5Errors;
using h5::shape_str;

const char* layout_name(SampleLayout l) {
  switch (l) {
    case SampleLayout::deepcam:
      return "DeepCAM (H,W,C)";
    case SampleLayout::gb2018:
      return "2018 (C,H,W)";
  }
  return "?";
}

const char* channel_name(int64_t c) {
  static constexpr std::array<const char*, kNumChannels> names = {"TMQ",    "U850",  "V850", "UBOT", "VBOT",  "QREFHT",
                                                                  "PS",     "PSL",   "T200", "T500", "PRECT", "TS",
                                                                  "TREFHT", "Z1000", "Z200", "ZBOT"};
  return c >= 0 && c < kNumChannels ? names[static_cast<size_t>(c)] : "?";
}

namespace {

namespace fs = std::filesystem;

std::string channel_str(int64_t c) { return detail::concat("channel ", c, " (", channel_name(c), ")"); }

// ---- opening and validating ------------------------------------------------------------------------------------

H5Id open_file(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) CS_THROW(path, ": no such file");
  if (fs::is_directory(st)) CS_THROW(path, ": is a directory, not an HDF5 file");
#if H5_VERSION_GE(1, 12, 0)
  const htri_t is_hdf5 = H5Fis_accessible(path.c_str(), H5P_DEFAULT);
#else
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
#endif
  if (is_hdf5 < 0) CS_THROW(path, ": cannot read the file: ", h5_error_chain());
  if (is_hdf5 == 0) CS_THROW(path, ": not an HDF5 file (no HDF5 signature)");
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) CS_THROW(path, ": cannot open the HDF5 file (damaged or truncated?): ", h5_error_chain());
  return H5Id(f, H5Fclose);
}

// Opens an existing object that must be a dataset.
H5Id open_dataset(hid_t file, const std::string& path, const std::string& name) {
  if (!h5_exists(file, name)) CS_THROW(path, ": missing dataset ", name);
  H5O_info_t oinfo;
#if H5_VERSION_GE(1, 12, 0)
  IO_H5_CHECK(H5Oget_info_by_name3(file, name.c_str(), &oinfo, H5O_INFO_BASIC, H5P_DEFAULT), path, ": ", name);
#else
  IO_H5_CHECK(H5Oget_info_by_name2(file, name.c_str(), &oinfo, H5O_INFO_BASIC, H5P_DEFAULT), path, ": ", name);
#endif
  if (oinfo.type != H5O_TYPE_DATASET) CS_THROW(path, ": ", name, " is not a dataset (a group or named type)");
  return H5Id(IO_H5_CHECK(H5Dopen2(file, name.c_str(), H5P_DEFAULT), path, ": opening ", name), H5Dclose);
}

H5T_class_t type_class(hid_t dataset, const std::string& path, const std::string& name, std::string* type_name) {
  H5Id type(IO_H5_CHECK(H5Dget_type(dataset), path, ": type of ", name), H5Tclose);
  if (type_name) *type_name = h5_type_name(type);
  return H5Tget_class(type);
}

struct OpenSample {
  H5Id file;
  SampleInfo info;
  size_t labels_rank = 0;  // 2 or 3 (2018 label variants); 0 without labels
};

// The one place where a sample file's structure is checked (inspect_sample and read_sample both come here).
OpenSample open_sample(const std::string& path, int64_t channels) {
  CS_CHECK(channels >= 1, path, ": the expected channel count must be at least 1, got ", channels);
  OpenSample o{open_file(path), {}};
  SampleInfo& info = o.info;
  info.path = path;

  if (!h5_exists(o.file, "climate/data")) CS_THROW(path, ": missing dataset climate/data (not a climate sample?)");
  H5Id data = open_dataset(o.file, path, "climate/data");
  const std::vector<hsize_t> dd = h5_shape(data);
  if (dd.size() != 3)
    CS_THROW(path, ": climate/data has rank ", dd.size(), " (shape ", shape_str(dd),
             "); expected 3: (H,W,C) in the DeepCAM layout or (C,H,W) in the 2018 layout");

  // Layout: the labels' name decides when there are labels; otherwise the axis with `channels` entries.
  std::string why;
  if (h5_exists(o.file, "climate/labels_0")) {
    info.layout = SampleLayout::deepcam;
    info.labels_dataset = "climate/labels_0";
    why = "the file has climate/labels_0";
  } else if (h5_exists(o.file, "climate/labels")) {
    info.layout = SampleLayout::gb2018;
    info.labels_dataset = "climate/labels";
    why = "the file has climate/labels";
  } else {
    const auto c = static_cast<hsize_t>(channels);
    if (dd[0] == c && dd[2] == c)
      CS_THROW(path, ": cannot tell the layout of climate/data ", shape_str(dd), " in a file without labels: both its",
               " first and last axes have ", channels, " entries");
    if (dd[0] != c && dd[2] != c)
      CS_THROW(path, ": climate/data has shape ", shape_str(dd), ": expected ", channels,
               " channels on the last axis (DeepCAM layout, H,W,C) or on the first (2018 layout, C,H,W)");
    info.layout = dd[2] == c ? SampleLayout::deepcam : SampleLayout::gb2018;
    why = "decided from the shape: the file has no labels";
  }
  const bool hwc = info.layout == SampleLayout::deepcam;
  info.height = static_cast<int64_t>(hwc ? dd[0] : dd[1]);
  info.width = static_cast<int64_t>(hwc ? dd[1] : dd[2]);
  info.channels = static_cast<int64_t>(hwc ? dd[2] : dd[0]);
  if (info.channels != channels)
    CS_THROW(path, ": climate/data has ", info.channels, " channels, expected ", channels, " (shape ", shape_str(dd),
             ", read as ", layout_name(info.layout), " because ", why, ")");
  if (info.height == 0 || info.width == 0) CS_THROW(path, ": climate/data is empty (shape ", shape_str(dd), ")");
  if (type_class(data, path, "climate/data", &info.data_type) != H5T_FLOAT)
    CS_THROW(path, ": climate/data has dtype ", info.data_type, "; expected floating point (float16, float32 or",
             " float64)");

  if (info.labels_dataset.empty()) return o;
  const std::string& ln = info.labels_dataset;
  H5Id labels = open_dataset(o.file, path, ln);
  if (type_class(labels, path, ln, &info.labels_type) != H5T_INTEGER)
    CS_THROW(path, ": ", ln, " has dtype ", info.labels_type, "; expected integer class indices 0..2");
  const std::vector<hsize_t> ld = h5_shape(labels);
  if (hwc && ld.size() != 2)
    CS_THROW(path, ": ", ln, " has rank ", ld.size(), " (shape ", shape_str(ld), "); expected 2 (H,W)");
  if (!hwc && ld.size() != 2 && ld.size() != 3)
    CS_THROW(path, ": ", ln, " has rank ", ld.size(), " (shape ", shape_str(ld),
             "); expected 2 (H,W) or 3 (label variants,H,W)");
  const size_t r = ld.size();
  if (static_cast<int64_t>(ld[r - 2]) != info.height || static_cast<int64_t>(ld[r - 1]) != info.width)
    CS_THROW(path, ": ", ln, " has shape ", shape_str(ld), " but climate/data ", shape_str(dd), " is ", info.height,
             "x", info.width, " (HxW)");
  info.label_variants = r == 3 ? static_cast<int64_t>(ld[0]) : 1;
  o.labels_rank = r;
  if (info.label_variants == 0) CS_THROW(path, ": ", ln, " has no label variants (shape ", shape_str(ld), ")");
  return o;
}

// ---- reading ---------------------------------------------------------------------------------------------------

// Reads the hyperslab (start, stride, count) of `name` converted to `mem_type` into dst (count's product elements).
void read_hyperslab(hid_t file, const std::string& path, const std::string& name, hid_t mem_type,
                    const std::vector<hsize_t>& start, const std::vector<hsize_t>& stride,
                    const std::vector<hsize_t>& count, void* dst) {
  H5Id ds(IO_H5_CHECK(H5Dopen2(file, name.c_str(), H5P_DEFAULT), path, ": opening ", name), H5Dclose);
  H5Id fspace(IO_H5_CHECK(H5Dget_space(ds), path, ": dataspace of ", name), H5Sclose);
  IO_H5_CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start.data(), stride.data(), count.data(), nullptr), path,
              ": selecting a part of ", name);
  H5Id mspace(IO_H5_CHECK(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), path,
                          ": memory dataspace for ", name),
              H5Sclose);
  IO_H5_CHECK(H5Dread(ds, mem_type, mspace, fspace, H5P_DEFAULT, dst), path, ": reading ", name);
}

struct Window {
  int64_t y0 = 0, x0 = 0, h = 0, w = 0, step = 1;
};

Window window_of(const SampleInfo& info, const ReadOptions& opt) {
  const std::string& path = info.path;
  const int64_t H = info.height, W = info.width;
  Window win{0, 0, H, W, 1};
  switch (opt.reduce) {
    case Reduce::none:
      break;
    case Reduce::crop: {
      if (opt.crop_h < 1 || opt.crop_w < 1)
        CS_THROW(path, ": crop size ", opt.crop_h, "x", opt.crop_w, " must be at least 1x1");
      if (opt.crop_h > H || opt.crop_w > W)
        CS_THROW(path, ": crop ", opt.crop_h, "x", opt.crop_w, " is larger than the field ", H, "x", W);
      win.h = opt.crop_h;
      win.w = opt.crop_w;
      win.y0 = opt.crop_y < 0 ? (H - win.h) / 2 : opt.crop_y;
      win.x0 = opt.crop_x < 0 ? (W - win.w) / 2 : opt.crop_x;
      if (win.y0 + win.h > H || win.x0 + win.w > W)
        CS_THROW(path, ": crop ", win.h, "x", win.w, " at row ", win.y0, ", column ", win.x0,
                 " extends past the field ", H, "x", W);
      break;
    }
    case Reduce::stride:
      if (opt.stride < 1) CS_THROW(path, ": stride ", opt.stride, " must be at least 1");
      win.step = opt.stride;
      win.h = (H + win.step - 1) / win.step;
      win.w = (W + win.step - 1) / win.step;
      break;
  }
  return win;
}

// True when any value is NaN or +-inf: the exponent bits are all ones. Integer OR-reduction, which compilers
// vectorise (a float test with early exit does not), so the common all-finite case costs one pass at memory speed.
bool any_non_finite(const float* p, int64_t n) {
  uint32_t flag = 0;
  for (int64_t k = 0; k < n; ++k) {
    uint32_t u;
    std::memcpy(&u, p + k, sizeof u);
    flag |= ((u & 0x7f800000u) + 0x00800000u) & 0x80000000u;  // carries into bit 31 only for exponent 0xff
  }
  return flag != 0;
}

// A host tensor of `shape` and `dt` to read into: `reuse` when it already is one (contiguous), else a new one.
// Reusing matters at full size: a fresh 57 MB buffer is an mmap whose every page faults on first touch, which
// costs as much as the read itself.
Tensor buffer_for(const Tensor& reuse, const Shape& shape, DType dt) {
  if (reuse.defined() && reuse.device() == Device::cpu && reuse.dtype() == dt && reuse.shape() == shape &&
      reuse.is_contiguous())
    return reuse;
  return Tensor::empty(shape, dt);
}

// Whether climate/data can be read as raw bytes: contiguous storage that is allocated, no filters, and a file type
// equal to the native little-endian float32 we read into.
bool direct_read_ok(hid_t ds) {
  if constexpr (std::endian::native != std::endian::little) return false;
  H5Id dcpl(H5Dget_create_plist(ds), H5Pclose);
  H5Id type(H5Dget_type(ds), H5Tclose);
  if (dcpl.get() < 0 || type.get() < 0) return false;
  if (H5Pget_layout(dcpl) != H5D_CONTIGUOUS || H5Pget_nfilters(dcpl) != 0) return false;
  if (H5Tequal(type, H5T_IEEE_F32LE) <= 0) return false;
  return H5Dget_offset(ds) != HADDR_UNDEF;
}

// *non_finite: whether the field holds a NaN or inf (scanned as it is read).
Tensor read_data(hid_t file, const SampleInfo& info, const Window& win, const Tensor& reuse, bool* non_finite) {
  using V = std::vector<hsize_t>;
  const auto y0 = static_cast<hsize_t>(win.y0), x0 = static_cast<hsize_t>(win.x0);
  const auto h = static_cast<hsize_t>(win.h), w = static_cast<hsize_t>(win.w), s = static_cast<hsize_t>(win.step);
  const auto C = static_cast<hsize_t>(info.channels);
  Tensor t = buffer_for(reuse, Shape{1, win.h, win.w, info.channels}, DType::f32);
  float* dst = t.data_as<float>();
  if (info.layout == SampleLayout::deepcam) {
    // In blocks of rows of about 1 MiB, each scanned for non-finite values right after it lands, while it is still
    // in cache: the scan of the whole 57 MB field afterwards cost as much as a third of the read.
    H5Id ds(IO_H5_CHECK(H5Dopen2(file, "climate/data", H5P_DEFAULT), info.path, ": opening climate/data"), H5Dclose);
    H5Id fspace(IO_H5_CHECK(H5Dget_space(ds), info.path, ": dataspace of climate/data"), H5Sclose);
    const hsize_t row = w * C, rows_per_block = std::max<hsize_t>(1, (hsize_t{1} << 20) / (row * sizeof(float)));
    *non_finite = false;
    // Whole rows of a contiguous, unfiltered little-endian float32 dataset (DeepCAM's files): the bytes are one run in
    // the file, so read them with pread() outside HDF5 (whose global lock would serialise concurrent readers).
    if (s == 1 && x0 == 0 && w == static_cast<hsize_t>(info.width) && direct_read_ok(ds)) {
      const haddr_t base = H5Dget_offset(ds);
      const int fd = ::open(info.path.c_str(), O_RDONLY | O_CLOEXEC);
      CS_CHECK(fd >= 0, info.path, ": cannot open for reading: ", std::strerror(errno));
      struct Close {
        int fd;
        ~Close() { ::close(fd); }
      } close_fd{fd};
      for (hsize_t r0 = 0; r0 < h; r0 += rows_per_block) {
        const hsize_t rb = std::min(rows_per_block, h - r0);
        char* block = reinterpret_cast<char*>(dst + r0 * row);
        const size_t bytes = static_cast<size_t>(rb * row * sizeof(float));
        const off_t at = static_cast<off_t>(base + ((y0 + r0) * row) * sizeof(float));
        size_t done = 0;
        while (done < bytes) {
          const ssize_t n = ::pread(fd, block + done, bytes - done, at + static_cast<off_t>(done));
          if (n < 0 && errno == EINTR) continue;
          CS_CHECK(n > 0, info.path, ": reading climate/data at byte ", at + static_cast<off_t>(done), ": ",
                   n == 0 ? std::string("unexpected end of file (truncated?)") : std::string(std::strerror(errno)));
          done += static_cast<size_t>(n);
        }
        *non_finite = *non_finite || any_non_finite(reinterpret_cast<float*>(block), static_cast<int64_t>(rb * row));
      }
      return t;
    }
    for (hsize_t r0 = 0; r0 < h; r0 += rows_per_block) {
      const hsize_t rb = std::min(rows_per_block, h - r0);
      const V start{y0 + r0 * s, x0, 0}, stride{s, s, 1}, count{rb, w, C};
      IO_H5_CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start.data(), stride.data(), count.data(), nullptr),
                  info.path, ": selecting rows of climate/data");
      H5Id mspace(IO_H5_CHECK(H5Screate_simple(3, count.data(), nullptr), info.path, ": memory dataspace"), H5Sclose);
      float* block = dst + r0 * row;
      IO_H5_CHECK(H5Dread(ds, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, block), info.path,
                  ": reading climate/data");
      *non_finite = *non_finite || any_non_finite(block, static_cast<int64_t>(rb * row));
    }
    return t;
  }
  // 2018: (C,h,w) from the file, transposed to (h,w,C). HDF5 cannot permute axes while reading.
  std::vector<float> chw(static_cast<size_t>(C * h * w));
  read_hyperslab(file, info.path, "climate/data", H5T_NATIVE_FLOAT, V{0, y0, x0}, V{1, s, s}, V{C, h, w}, chw.data());
  const int64_t H = win.h, W = win.w, Cn = info.channels;
  // One output row (W*C floats) stays in cache while every channel's row is copied into it.
#pragma omp parallel for if (H * W * Cn >= 32768)
  for (int64_t i = 0; i < H; ++i)
    for (int64_t c = 0; c < Cn; ++c) {
      const float* src = chw.data() + (c * H + i) * W;
      float* row = dst + i * W * Cn + c;
      for (int64_t j = 0; j < W; ++j) row[j * Cn] = src[j];
    }
  *non_finite = any_non_finite(dst, t.numel());
  return t;
}

// Called when the read found a non-finite value: locates the first one for the message.
void throw_non_finite(const Tensor& data, const SampleInfo& info, const Window& win) {
  const float* p = data.data_as<float>();
  const int64_t n = data.numel(), C = info.channels;
  int64_t first = -1, bad = 0;
  for (int64_t k = 0; k < n; ++k)
    if (!std::isfinite(p[k])) {
      if (first < 0) first = k;
      ++bad;
    }
  CS_CHECK(first >= 0, info.path, ": internal error: the read flagged a non-finite value that the scan cannot find");
  const int64_t c = first % C, j = (first / C) % win.w, i = first / C / win.w;
  const std::string what = bad == 1 ? ::climseg::detail::concat("a non-finite value (", p[first], ")")
                                    : ::climseg::detail::concat(bad, " non-finite values; the first (", p[first], ")");
  CS_THROW(info.path, ": climate/data has ", what, " at row ", win.y0 + i * win.step, ", column ",
           win.x0 + j * win.step, ", ", channel_str(c),
           info.data_type == "float64" && std::isinf(p[first])
               ? " (float64 values beyond the float32 range read as inf)"
               : "");
}

Tensor read_labels(hid_t file, const SampleInfo& info, size_t rank, const Window& win, int64_t variant,
                   const Tensor& reuse) {
  using V = std::vector<hsize_t>;
  const std::string& ln = info.labels_dataset;
  const auto y0 = static_cast<hsize_t>(win.y0), x0 = static_cast<hsize_t>(win.x0);
  const auto h = static_cast<hsize_t>(win.h), w = static_cast<hsize_t>(win.w), s = static_cast<hsize_t>(win.step);
  Tensor t = buffer_for(reuse, Shape{1, win.h, win.w, 1}, DType::i32);
  int32_t* dst = t.data_as<int32_t>();
  // H5T_NATIVE_INT32 from any integer type: HDF5 saturates values beyond int32, so they fail the range check below.
  if (rank == 3)
    read_hyperslab(file, info.path, ln, H5T_NATIVE_INT32, V{static_cast<hsize_t>(variant), y0, x0}, V{1, s, s},
                   V{1, h, w}, dst);
  else
    read_hyperslab(file, info.path, ln, H5T_NATIVE_INT32, V{y0, x0}, V{s, s}, V{h, w}, dst);

  const int64_t n = t.numel();
  // Branch-free scan first (vectorised), the located error only when something is out of range.
  uint32_t out_of_range = 0;
  for (int64_t k = 0; k < n; ++k) out_of_range |= static_cast<uint32_t>(dst[k]) >= static_cast<uint32_t>(kNumClasses);
  if (out_of_range == 0) return t;
  for (int64_t k = 0; k < n; ++k)
    if (dst[k] < 0 || dst[k] >= kNumClasses) {
      const int64_t i = k / win.w, j = k % win.w;
      const bool saturated = dst[k] == INT32_MAX || dst[k] == INT32_MIN;
      CS_THROW(info.path, ": ", ln, " has value ", dst[k], saturated ? " (or beyond: saturated to int32)" : "",
               " at row ", win.y0 + i * win.step, ", column ", win.x0 + j * win.step,
               "; expected class indices 0 (background), 1 (TC), 2 (AR)");
    }
  return t;
}

}  // namespace

SampleInfo inspect_sample(const std::string& path, int64_t channels) {
  QuietHdf5Errors quiet;
  return open_sample(path, channels).info;
}

SampleLayout detect_layout(const std::string& path, int64_t channels) { return inspect_sample(path, channels).layout; }

Sample read_sample(const std::string& path, const ReadOptions& opt) {
  Sample s;
  read_sample_into(path, opt, s);
  return s;
}

void read_sample_into(const std::string& path, const ReadOptions& opt, Sample& s) {
  QuietHdf5Errors quiet;
  OpenSample o = open_sample(path, opt.channels);
  if (o.info.labels_dataset.empty() && opt.labels_required)
    CS_THROW(path, ": no labels: the file has neither climate/labels_0 (DeepCAM) nor climate/labels (2018)");
  const Window win = window_of(o.info, opt);
  if (!o.info.labels_dataset.empty() && (opt.label_variant < 0 || opt.label_variant >= o.info.label_variants))
    CS_THROW(path, ": label variant ", opt.label_variant, " requested but ", o.info.labels_dataset, " has ",
             o.info.label_variants, o.info.label_variants == 1 ? " (2-D labels)" : "");
  bool non_finite = false;
  s.data = read_data(o.file, o.info, win, s.data, &non_finite);
  if (non_finite) throw_non_finite(s.data, o.info, win);
  s.labels = o.info.labels_dataset.empty()
                 ? Tensor()
                 : read_labels(o.file, o.info, o.labels_rank, win, opt.label_variant, s.labels);
  s.info = std::move(o.info);
  s.y0 = win.y0;
  s.x0 = win.x0;
  s.step = win.step;
}

// ---- statistics ------------------------------------------------------------------------------------------------

namespace {

// Reads a numeric dataset of exactly `expect` shape as doubles.
std::vector<double> read_numeric(hid_t file, const std::string& path, const std::string& name,
                                 const std::vector<hsize_t>& expect) {
  H5Id ds = open_dataset(file, path, name);
  std::string tn;
  const H5T_class_t cls = type_class(ds, path, name, &tn);
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) CS_THROW(path, ": ", name, " has dtype ", tn, "; expected numbers");
  const std::vector<hsize_t> d = h5_shape(ds);
  if (d != expect) CS_THROW(path, ": ", name, " has shape ", shape_str(d), "; expected ", shape_str(expect));
  size_t n = 1;
  for (hsize_t e : d) n *= static_cast<size_t>(e);
  std::vector<double> v(n);
  IO_H5_CHECK(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), path, ": reading ", name);
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i])) CS_THROW(path, ": ", name, " has a non-finite value (", v[i], ") at index ", i);
  return v;
}

}  // namespace

Stats read_stats(const std::string& path, int64_t channels) {
  CS_CHECK(channels >= 1, path, ": the expected channel count must be at least 1, got ", channels);
  QuietHdf5Errors quiet;
  H5Id file = open_file(path);
  Stats st;
  st.path = path;
  const auto C = static_cast<hsize_t>(channels);
  if (h5_exists(file, "climate/minval") || h5_exists(file, "climate/maxval")) {
    st.layout = SampleLayout::deepcam;
    st.minval = read_numeric(file, path, "climate/minval", {C});
    st.maxval = read_numeric(file, path, "climate/maxval", {C});
    if (h5_exists(file, "climate/mean")) st.mean = read_numeric(file, path, "climate/mean", {C});
    if (h5_exists(file, "climate/sqmean")) st.sqmean = read_numeric(file, path, "climate/sqmean", {C});
    if (h5_exists(file, "climate/count")) st.count = read_numeric(file, path, "climate/count", {C});
  } else if (h5_exists(file, "climate/stats")) {
    st.layout = SampleLayout::gb2018;
    const std::vector<double> s = read_numeric(file, path, "climate/stats", {C, 4});  // rows: [mean, max, min, std]
    for (hsize_t c = 0; c < C; ++c) {
      st.mean.push_back(s[c * 4 + 0]);
      st.maxval.push_back(s[c * 4 + 1]);
      st.minval.push_back(s[c * 4 + 2]);
      st.stddev.push_back(s[c * 4 + 3]);
    }
  } else {
    CS_THROW(path, ": not a statistics file: it has neither climate/minval and climate/maxval (DeepCAM) nor",
             " climate/stats (2018)");
  }
  for (int64_t c = 0; c < channels; ++c) {
    const double lo = st.minval[static_cast<size_t>(c)], hi = st.maxval[static_cast<size_t>(c)];
    if (hi == lo)
      CS_THROW(path, ": ", channel_str(c), " has max == min (", lo,
               "): a constant channel cannot be min-max normalised (division by zero)");
    if (hi < lo) CS_THROW(path, ": ", channel_str(c), " has max ", hi, " < min ", lo);
  }
  return st;
}

void normalize(const Tensor& data, const Stats& stats) {
  CS_CHECK(data.device() == Device::cpu && data.dtype() == DType::f32,
           "normalize: expected a host float32 tensor, got ", data.str());
  CS_CHECK(data.shape().c == stats.channels(), "normalize: the tensor has ", data.shape().c, " channels but ",
           stats.path, " has statistics for ", stats.channels());
  CS_CHECK(data.is_pixel_strided(), "normalize: channels must be contiguous, got strides of ", data.str());
  const int64_t C = data.shape().c, P = data.shape().pixels(), ps = data.pixel_stride();
  // The pipeline's kernel (kernels/cpu/normalize.h), in place: one formula for every path.
  std::vector<float> shift(static_cast<size_t>(C)), scale(static_cast<size_t>(C));
  cpu::minmax_coefficients(C, stats.minval.data(), stats.maxval.data(), shift.data(), scale.data());
  float* x = static_cast<float*>(data.data());
  cpu::minmax_normalize<float>(P, C, x, ps, x, ps, shift.data(), scale.data());
}

}  // namespace climseg::io
