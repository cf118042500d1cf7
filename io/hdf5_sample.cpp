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
#include <type_traits>

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
[[gnu::noinline]] bool any_non_finite(const float* p, int64_t n) {
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

// Rows per block of the blocked reads: about 1 MiB, so a block is still in cache when it is checked (and normalised).
hsize_t rows_per_block(const Window& win, const SampleInfo& info) {
  const auto row = static_cast<hsize_t>(win.w * info.channels);
  return std::max<hsize_t>(1, (hsize_t{1} << 20) / (row * sizeof(float)));
}

// Whole rows of a contiguous, unfiltered little-endian float32 climate/data (DeepCAM's files): the bytes of the
// window are one run in the file, read with pread() outside HDF5 (whose global lock would serialise concurrent
// readers), block by block. For each block of rows [r0, r0 + rb): dest(r0) says where its rb * w * C floats go, and
// land(block, r0, rb) is called once they are there; it returns false to stop early. Returns false, reading
// nothing, when the dataset or the window does not allow it (the caller then reads through HDF5).
template <class Dest, class Land>
bool read_rows_direct(hid_t ds, const SampleInfo& info, const Window& win, Dest&& dest, Land&& land) {
  if (info.layout != SampleLayout::deepcam || win.step != 1 || win.x0 != 0 || win.w != info.width) return false;
  if (!direct_read_ok(ds)) return false;
  const auto y0 = static_cast<hsize_t>(win.y0), h = static_cast<hsize_t>(win.h);
  const auto row = static_cast<hsize_t>(win.w * info.channels);
  const hsize_t rpb = rows_per_block(win, info);
  const haddr_t base = H5Dget_offset(ds);
  const int fd = ::open(info.path.c_str(), O_RDONLY | O_CLOEXEC);
  CS_CHECK(fd >= 0, info.path, ": cannot open for reading: ", std::strerror(errno));
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } close_fd{fd};
  for (hsize_t r0 = 0; r0 < h; r0 += rpb) {
    const hsize_t rb = std::min(rpb, h - r0);
    float* fblock = dest(static_cast<int64_t>(r0));
    char* block = reinterpret_cast<char*>(fblock);
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
    if (!land(fblock, static_cast<int64_t>(r0), static_cast<int64_t>(rb))) break;
  }
  return true;
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
    const hsize_t row = w * C, rpb = rows_per_block(win, info);
    *non_finite = false;
    if (read_rows_direct(
            ds, info, win, [&](int64_t r0) { return dst + r0 * static_cast<int64_t>(row); },
            [&](const float* b, int64_t, int64_t rb) {
              *non_finite = *non_finite || any_non_finite(b, rb * static_cast<int64_t>(row));
              return true;
            }))
      return t;
    H5Id fspace(IO_H5_CHECK(H5Dget_space(ds), info.path, ": dataspace of climate/data"), H5Sclose);
    for (hsize_t r0 = 0; r0 < h; r0 += rpb) {
      const hsize_t rb = std::min(rpb, h - r0);
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

namespace {

// The checks both read functions make before reading: labels present when required, the window, the label variant.
Window prepare_read(const OpenSample& o, const std::string& path, const ReadOptions& opt, bool labels_required) {
  if (o.info.labels_dataset.empty() && labels_required)
    CS_THROW(path, ": no labels: the file has neither climate/labels_0 (DeepCAM) nor climate/labels (2018)");
  const Window win = window_of(o.info, opt);
  if (!o.info.labels_dataset.empty() && (opt.label_variant < 0 || opt.label_variant >= o.info.label_variants))
    CS_THROW(path, ": label variant ", opt.label_variant, " requested but ", o.info.labels_dataset, " has ",
             o.info.label_variants, o.info.label_variants == 1 ? " (2-D labels)" : "");
  return win;
}

// P pixels of raw fp32 x (C channels, dense) into t.data from pixel p0 on: normalised with t's coefficients, or
// converted as they are.
void store_pixels(const SampleTarget& t, int64_t C, const float* x, int64_t p0, int64_t P) {
  std::vector<float> identity;  // (0..., 1...) when t has no coefficients and a conversion is needed
  const float *shift = t.shift, *scale = t.scale;
  auto go = [&](auto* y) {
    using T = std::remove_pointer_t<decltype(y)>;
    y += p0 * C;
    if (shift == nullptr) {
      if constexpr (std::is_same_v<T, float>) {
        if (y != x) std::memcpy(y, x, static_cast<size_t>(P * C) * sizeof(float));
        return;
      }
      identity.assign(static_cast<size_t>(2 * C), 0.0f);
      std::fill(identity.begin() + C, identity.end(), 1.0f);
      shift = identity.data();
      scale = identity.data() + C;
    }
    cpu::minmax_normalize<T>(P, C, x, C, y, C, shift, scale);
  };
  switch (t.data.dtype()) {
    case DType::f32:
      return go(t.data.data_as<float>());
    case DType::f64:
      return go(t.data.data_as<double>());
    case DType::f16:
      return go(static_cast<Half*>(t.data.data()));
    case DType::bf16:
      return go(static_cast<BFloat16*>(t.data.data()));
    default:
      CS_THROW("read_sample_to: no target of dtype ", dtype_name(t.data.dtype()), " (fp32, fp64, fp16, bf16)");
  }
}

// store_pixels fused with the finite check (x dense, not overlapping the target): false when x holds a NaN or inf.
bool store_pixels_checked(const SampleTarget& t, int64_t C, const float* x, int64_t p0, int64_t P) {
  std::vector<float> identity;
  const float *shift = t.shift, *scale = t.scale;
  if (shift == nullptr) {
    identity.assign(static_cast<size_t>(2 * C), 0.0f);
    std::fill(identity.begin() + C, identity.end(), 1.0f);
    shift = identity.data();
    scale = identity.data() + C;
  }
  const int64_t off = p0 * C;
  switch (t.data.dtype()) {
    case DType::f32:
      return cpu::minmax_normalize_finite<float>(P, C, x, t.data.data_as<float>() + off, shift, scale);
    case DType::f64:
      return cpu::minmax_normalize_finite<double>(P, C, x, t.data.data_as<double>() + off, shift, scale);
    case DType::f16:
      return cpu::minmax_normalize_finite<Half>(P, C, x, static_cast<Half*>(t.data.data()) + off, shift, scale);
    case DType::bf16:
      return cpu::minmax_normalize_finite<BFloat16>(P, C, x, static_cast<BFloat16*>(t.data.data()) + off, shift, scale);
    default:
      CS_THROW("read_sample_to: no target of dtype ", dtype_name(t.data.dtype()), " (fp32, fp64, fp16, bf16)");
  }
}

}  // namespace

void read_sample_into(const std::string& path, const ReadOptions& opt, Sample& s) {
  QuietHdf5Errors quiet;
  OpenSample o = open_sample(path, opt.channels);
  const Window win = prepare_read(o, path, opt, opt.labels_required);
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

SampleInfo read_sample_to(const std::string& path, const ReadOptions& opt, const SampleTarget& t, Sample& scratch) {
  const DType dt = t.data.defined() ? t.data.dtype() : DType::f32;
  CS_CHECK(t.data.defined() && t.data.device() == Device::cpu && t.data.is_contiguous() &&
               (dt == DType::f32 || dt == DType::f64 || dt == DType::f16 || dt == DType::bf16),
           "read_sample_to: the data target must be a contiguous host fp32, fp64, fp16 or bf16 tensor");
  CS_CHECK(t.labels.defined() && t.labels.device() == Device::cpu && t.labels.is_contiguous() &&
               t.labels.dtype() == DType::i32,
           "read_sample_to: the labels target must be a contiguous host int32 tensor");
  CS_CHECK((t.shift == nullptr) == (t.scale == nullptr), "read_sample_to: give both shift and scale, or neither");
  QuietHdf5Errors quiet;
  OpenSample o = open_sample(path, opt.channels);
  const Window win = prepare_read(o, path, opt, true);
  const int64_t C = o.info.channels, row = win.w * C;
  const Shape want{1, win.h, win.w, C};
  if (!(t.data.shape() == want) || !(t.labels.shape() == Shape{1, win.h, win.w, 1}))
    CS_THROW(path, ": the sample reads as ", want.str(), ", but ", t.holder, " ", t.data.shape().str());

  bool non_finite = false, direct = false;
  {
    H5Id ds(IO_H5_CHECK(H5Dopen2(o.file, "climate/data", H5P_DEFAULT), path, ": opening climate/data"), H5Dclose);
    // Into one block-sized buffer that stays in cache (the kernel's copy into it is cheaper than into a large buffer),
    // then checked, normalised and rounded into the target in one pass (streaming stores for fp32: the target is
    // large and not read again soon). Without coefficients the pass is an exact copy (1 * (x - 0) == x).
    thread_local std::vector<float> block;
    block.resize(static_cast<size_t>(static_cast<int64_t>(rows_per_block(win, o.info)) * row));
    direct = read_rows_direct(
        ds, o.info, win, [&](int64_t) { return block.data(); },
        [&](const float* b, int64_t r0, int64_t rb) {
          return !(non_finite = !store_pixels_checked(t, C, b, r0 * win.w, rb * win.w));
        });
  }
  if (!direct || non_finite) {
    // Through HDF5 into the scratch buffer (also after a direct read that met a NaN/inf: the data in the target is
    // partly normalised, so the message is made from a plain read of the raw values).
    scratch.data = read_data(o.file, o.info, win, scratch.data, &non_finite);
    if (non_finite) throw_non_finite(scratch.data, o.info, win);
    CS_CHECK(!direct, path, ": climate/data held a NaN or inf on one read and none on the next (was the file being",
             " written?)");
    store_pixels(t, C, scratch.data.data_as<float>(), 0, win.h * win.w);
  }
  const Tensor labels = read_labels(o.file, o.info, o.labels_rank, win, opt.label_variant, t.labels);
  CS_CHECK(labels.data() == t.labels.data(), "read_sample_to: internal error: the labels were not read in place");
  return std::move(o.info);
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
