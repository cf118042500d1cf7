// io/hdf5_sample: sample files written here with the HDF5 C API (DeepCAM and 2018 layouts, several file dtypes)
// read back bit-exact, partial reads equal slices of the full read, and errors leave HDF5's error printing as it was.
// Malformed files (sample and stats.h5) are all in one place: test_malformed_corpus.cpp.
#include <hdf5.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <vector>

#include "io/hdf5_sample.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using namespace climseg::io;
using Catch::Contains;
using climseg::test::TempDir;

namespace {

// ---- writing test files with the plain C API -------------------------------------------------------------------

struct H5File {
  hid_t id;
  explicit H5File(const std::string& path) : id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) {
    REQUIRE(id >= 0);
  }
  ~H5File() { H5Fclose(id); }
};

// Writes dataset `name` (intermediate groups created) of shape dims and file type ftype from memory of type mtype.
void put(hid_t f, const std::string& name, hid_t ftype, hid_t mtype, const std::vector<hsize_t>& dims,
         const void* src) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t ds = H5Dcreate2(f, name.c_str(), ftype, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  REQUIRE(ds >= 0);
  REQUIRE(H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) >= 0);
  H5Dclose(ds);
  H5Sclose(space);
  H5Pclose(lcpl);
}

// IEEE binary16 as an HDF5 type (HDF5 1.10 has no predefined one; h5py builds the same).
hid_t make_f16_type() {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, 10, 5, 0, 10);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, 15);
  return t;
}

// A random field: values (H,W,C) as the reader must return them, and labels 0..2.
struct Field {
  int64_t h = 0, w = 0, c = 0;
  std::vector<float> hwc;
  std::vector<int32_t> labels;  // (H,W)
};

enum class DataType { f32, f32be, f64, f16 };

// Writes `field` in the given layout and file dtype. For f64 the file holds doubles that are not floats (the
// reader must round them as a C cast does); for f16 it holds binary16 values (exact in float).
void write_sample(const std::string& path, SampleLayout layout, Field& field, DataType dt, hid_t label_type,
                  uint32_t seed, int64_t label_variants = 0, bool with_labels = true) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 100.0);
  const int64_t H = field.h, W = field.w, C = field.c, n = H * W * C;
  const bool hwc = layout == SampleLayout::deepcam;
  // file order index of (y, x, c)
  auto fidx = [&](int64_t y, int64_t x, int64_t c) { return hwc ? (y * W + x) * C + c : (c * H + y) * W + x; };
  field.hwc.assign(static_cast<size_t>(n), 0.0f);
  const std::vector<hsize_t> dims = hwc ? std::vector<hsize_t>{hsize_t(H), hsize_t(W), hsize_t(C)}
                                        : std::vector<hsize_t>{hsize_t(C), hsize_t(H), hsize_t(W)};
  H5File f(path);
  if (dt == DataType::f64) {
    std::vector<double> file(static_cast<size_t>(n));
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int64_t c = 0; c < C; ++c) {
          const double v = normal(rng);
          file[fidx(y, x, c)] = v;
          field.hwc[(y * W + x) * C + c] = static_cast<float>(v);
        }
    put(f.id, "climate/data", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, dims, file.data());
  } else if (dt == DataType::f16) {
    std::vector<uint16_t> file(static_cast<size_t>(n));
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int64_t c = 0; c < C; ++c) {
          const Half hv = float_to_half(static_cast<float>(normal(rng)));
          file[fidx(y, x, c)] = hv.bits;
          field.hwc[(y * W + x) * C + c] = half_to_float(hv);
        }
    hid_t t = make_f16_type();
    put(f.id, "climate/data", t, t, dims, file.data());
    H5Tclose(t);
  } else {
    std::vector<float> file(static_cast<size_t>(n));
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int64_t c = 0; c < C; ++c) {
          const auto v = static_cast<float>(normal(rng));
          file[fidx(y, x, c)] = v;
          field.hwc[(y * W + x) * C + c] = v;
        }
    put(f.id, "climate/data", dt == DataType::f32be ? H5T_IEEE_F32BE : H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, dims,
        file.data());
  }
  if (!with_labels) return;
  std::uniform_int_distribution<int32_t> cls(0, 2);
  const int64_t V = std::max<int64_t>(label_variants, 1);
  std::vector<int32_t> all(static_cast<size_t>(V * H * W));
  for (auto& v : all) v = cls(rng);
  field.labels.assign(all.begin(), all.begin() + H * W);  // variant 0
  if (hwc) {
    put(f.id, "climate/labels_0", label_type, H5T_NATIVE_INT32, {hsize_t(H), hsize_t(W)}, all.data());
  } else if (label_variants == 0) {
    put(f.id, "climate/labels", label_type, H5T_NATIVE_INT32, {hsize_t(H), hsize_t(W)}, all.data());
  } else {
    put(f.id, "climate/labels", label_type, H5T_NATIVE_INT32, {hsize_t(V), hsize_t(H), hsize_t(W)}, all.data());
  }
}

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// The reader's output against `field`, sliced to rows y0 + i*s, columns x0 + j*s.
void require_matches(const Sample& s, const Field& field, int64_t y0, int64_t x0, int64_t h, int64_t w, int64_t step,
                     const std::vector<int32_t>* labels = nullptr) {
  REQUIRE(s.data.shape() == Shape{1, h, w, field.c});
  REQUIRE(s.data.dtype() == DType::f32);
  REQUIRE(s.data.is_contiguous());
  const float* d = s.data.data_as<float>();
  for (int64_t i = 0; i < h; ++i)
    for (int64_t j = 0; j < w; ++j) {
      const float* want = field.hwc.data() + ((y0 + i * step) * field.w + (x0 + j * step)) * field.c;
      REQUIRE(same_bits(d + (i * w + j) * field.c, want, static_cast<size_t>(field.c)));
    }
  const std::vector<int32_t>& lab = labels ? *labels : field.labels;
  if (lab.empty()) return;
  REQUIRE(s.labels.shape() == Shape{1, h, w, 1});
  REQUIRE(s.labels.dtype() == DType::i32);
  const int32_t* l = s.labels.data_as<int32_t>();
  for (int64_t i = 0; i < h; ++i)
    for (int64_t j = 0; j < w; ++j) REQUIRE(l[i * w + j] == lab[(y0 + i * step) * field.w + (x0 + j * step)]);
}

}  // namespace

TEST_CASE("DeepCAM layout: float32/64/16 data and uint8/int16/int64 labels read back bit-exact", "[io][hdf5]") {
  TempDir dir;
  const std::string p = dir.file("data-2106-01-01-00-1.h5");
  struct Case {
    DataType dt;
    hid_t lt;
    const char* data_type;
    const char* labels_type;
  };
  const std::vector<Case> cases = {{DataType::f32, H5T_STD_U8LE, "float32", "uint8"},
                                   {DataType::f64, H5T_STD_I16LE, "float64", "int16"},
                                   {DataType::f16, H5T_STD_I64LE, "float16", "int64"},
                                   {DataType::f32be, H5T_STD_I64BE, "float32", "int64"}};
  uint32_t seed = 1;
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.data_type << " data, " << c.labels_type << " labels") {
      Field field{7, 11, 16, {}, {}};
      write_sample(p, SampleLayout::deepcam, field, c.dt, c.lt, seed++);
      const SampleInfo info = inspect_sample(p);
      CHECK(info.layout == SampleLayout::deepcam);
      CHECK(detect_layout(p) == SampleLayout::deepcam);
      CHECK(info.height == 7);
      CHECK(info.width == 11);
      CHECK(info.channels == 16);
      CHECK(info.data_type == c.data_type);
      CHECK(info.labels_dataset == "climate/labels_0");
      CHECK(info.labels_type == c.labels_type);
      CHECK(info.label_variants == 1);
      const Sample s = read_sample(p);
      CHECK(s.info.path == p);
      require_matches(s, field, 0, 0, 7, 11, 1);
    }
  }
}

TEST_CASE("2018 layout: (C,H,W) data transposed to NHWC; 2-D and 3-D labels", "[io][hdf5]") {
  TempDir dir;
  const std::string p = dir.file("sample.h5");
  SECTION("2-D labels, float64 data") {
    Field field{9, 5, 16, {}, {}};
    write_sample(p, SampleLayout::gb2018, field, DataType::f64, H5T_STD_I32LE, 7);
    const SampleInfo info = inspect_sample(p);
    CHECK(info.layout == SampleLayout::gb2018);
    CHECK(info.labels_dataset == "climate/labels");
    CHECK(info.label_variants == 1);
    require_matches(read_sample(p), field, 0, 0, 9, 5, 1);
  }
  SECTION("3-D labels: (variants,H,W), the variant chosen by ReadOptions") {
    Field field{6, 8, 16, {}, {}};
    write_sample(p, SampleLayout::gb2018, field, DataType::f32, H5T_STD_U8LE, 8, /*label_variants=*/3);
    CHECK(inspect_sample(p).label_variants == 3);
    require_matches(read_sample(p), field, 0, 0, 6, 8, 1);
    // Variant 2: read the file's labels independently with the C API.
    std::vector<uint8_t> all(3 * 6 * 8);
    hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "climate/labels", H5P_DEFAULT);
    REQUIRE(H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, all.data()) >= 0);
    H5Dclose(ds);
    H5Fclose(f);
    const std::vector<int32_t> v2(all.begin() + 2 * 48, all.end());
    ReadOptions opt;
    opt.label_variant = 2;
    require_matches(read_sample(p, opt), field, 0, 0, 6, 8, 1, &v2);
    opt.label_variant = 3;
    REQUIRE_THROWS_WITH(read_sample(p, opt), Contains(p) && Contains("label variant 3 requested but climate/labels "
                                                                     "has 3"));
  }
}

TEST_CASE("crop and stride reads equal the matching slice of the full read", "[io][hdf5]") {
  TempDir dir;
  const std::string p = dir.file("sample.h5");
  for (SampleLayout layout : {SampleLayout::deepcam, SampleLayout::gb2018}) {
    DYNAMIC_SECTION(layout_name(layout)) {
      Field field{13, 10, 16, {}, {}};
      write_sample(p, layout, field, DataType::f32, H5T_STD_U8LE, 11);
      const Sample full = read_sample(p);
      require_matches(full, field, 0, 0, 13, 10, 1);

      ReadOptions opt;
      opt.reduce = Reduce::crop;
      opt.crop_h = 4;
      opt.crop_w = 7;
      Sample s = read_sample(p, opt);  // centred: ((13-4)/2, (10-7)/2) = (4, 1)
      CHECK(s.y0 == 4);
      CHECK(s.x0 == 1);
      require_matches(s, field, 4, 1, 4, 7, 1);
      opt.crop_y = 9;
      opt.crop_x = 0;
      s = read_sample(p, opt);
      require_matches(s, field, 9, 0, 4, 7, 1);
      opt.crop_h = 13;
      opt.crop_w = 10;
      opt.crop_y = opt.crop_x = -1;
      require_matches(read_sample(p, opt), field, 0, 0, 13, 10, 1);

      opt = ReadOptions{};
      opt.reduce = Reduce::stride;
      for (int64_t k : {1, 2, 3, 5, 12, 20}) {
        opt.stride = k;
        s = read_sample(p, opt);
        CHECK(s.step == k);
        require_matches(s, field, 0, 0, (13 + k - 1) / k, (10 + k - 1) / k, k);
      }
    }
  }
}

TEST_CASE("bad read options name the file and the problem", "[io][hdf5]") {
  TempDir dir;
  const std::string p = dir.file("sample.h5");
  Field field{6, 8, 16, {}, {}};
  write_sample(p, SampleLayout::deepcam, field, DataType::f32, H5T_STD_U8LE, 3);
  ReadOptions opt;
  opt.reduce = Reduce::crop;
  opt.crop_h = 7;
  opt.crop_w = 8;
  REQUIRE_THROWS_WITH(read_sample(p, opt), Contains(p) && Contains("crop 7x8 is larger than the field 6x8"));
  opt.crop_h = 0;
  REQUIRE_THROWS_WITH(read_sample(p, opt), Contains("crop size 0x8 must be at least 1x1"));
  opt.crop_h = 4;
  opt.crop_y = 3;
  REQUIRE_THROWS_WITH(read_sample(p, opt), Contains("crop 4x8 at row 3, column 0 extends past the field 6x8"));
  opt = ReadOptions{};
  opt.reduce = Reduce::stride;
  opt.stride = 0;
  REQUIRE_THROWS_WITH(read_sample(p, opt), Contains("stride 0 must be at least 1"));
  opt = ReadOptions{};
  opt.channels = 0;
  REQUIRE_THROWS_WITH(read_sample(p, opt), Contains("expected channel count must be at least 1"));
}

TEST_CASE("files without labels: an error when labels are required, else data only", "[io][hdf5]") {
  TempDir dir;
  const std::string p = dir.file("nolabels.h5");
  for (SampleLayout layout : {SampleLayout::deepcam, SampleLayout::gb2018}) {
    DYNAMIC_SECTION(layout_name(layout)) {
      Field field{5, 9, 16, {}, {}};
      write_sample(p, layout, field, DataType::f32, H5T_STD_U8LE, 4, 0, /*with_labels=*/false);
      const SampleInfo info = inspect_sample(p);
      CHECK(info.layout == layout);  // from the shape: the axis with 16 entries
      CHECK(info.labels_dataset.empty());
      CHECK(info.label_variants == 0);
      REQUIRE_THROWS_WITH(read_sample(p), Contains(p) && Contains("no labels: the file has neither climate/labels_0"));
      ReadOptions opt;
      opt.labels_required = false;
      const Sample s = read_sample(p, opt);
      CHECK_FALSE(s.labels.defined());
      require_matches(s, field, 0, 0, 5, 9, 1);
    }
  }
  SECTION("another channel count when the reader is told it") {
    Field field{4, 6, 15, {}, {}};
    write_sample(p, SampleLayout::deepcam, field, DataType::f32, H5T_STD_U8LE, 5, 0, false);  // (4,6,15)
    ReadOptions opt;
    opt.channels = 15;
    opt.labels_required = false;
    CHECK(read_sample(p, opt).data.shape() == Shape{1, 4, 6, 15});
  }
}

TEST_CASE("errors do not print HDF5's error stack, and HDF5's printing setting is restored", "[io][hdf5]") {
  TempDir dir;
  const std::string p = dir.file("truncated.h5");
  Field field{8, 8, 16, {}, {}};
  write_sample(p, SampleLayout::deepcam, field, DataType::f32, H5T_STD_U8LE, 9);
  std::filesystem::resize_file(p, std::filesystem::file_size(p) / 2);

  H5E_auto2_t func_before = nullptr;
  void* data_before = nullptr;
  H5Eget_auto2(H5E_DEFAULT, &func_before, &data_before);
  REQUIRE(func_before != nullptr);  // HDF5's default: print the stack on error

  // Capture stderr (fd 2) around the failing read.
  const std::string err_path = dir.file("stderr.txt");
  std::fflush(stderr);
  const int saved = dup(2);
  FILE* cap = std::fopen(err_path.c_str(), "w");
  REQUIRE(cap != nullptr);
  dup2(fileno(cap), 2);
  bool threw = false;
  try {
    read_sample(p);
  } catch (const Error&) {
    threw = true;
  }
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::fclose(cap);
  CHECK(threw);
  CHECK(std::filesystem::file_size(err_path) == 0);

  H5E_auto2_t func_after = nullptr;
  void* data_after = nullptr;
  H5Eget_auto2(H5E_DEFAULT, &func_after, &data_after);
  CHECK(func_after == func_before);
  CHECK(data_after == data_before);
}

// ---- statistics ------------------------------------------------------------------------------------------------

TEST_CASE("stats.h5: DeepCAM and 2018 layouts; normalize", "[io][hdf5]") {
  TempDir dir;
  const std::string p = dir.file("stats.h5");
  std::vector<double> lo(16), hi(16), mean(16), sq(16), sd(16), count(16, 1000.0);
  for (int c = 0; c < 16; ++c) {
    lo[c] = -10.0 * c - 0.25;
    hi[c] = 100.0 + 37.5 * c;
    mean[c] = 0.5 * (lo[c] + hi[c]);
    sq[c] = mean[c] * mean[c] + 4.0;
    sd[c] = 2.0 + c;
  }
  SECTION("DeepCAM: climate/{minval,maxval,mean,sqmean,count}") {
    {
      H5File f(p);
      std::vector<float> lof(lo.begin(), lo.end());  // float32 in the file, as summarize_data.py writes
      put(f.id, "climate/minval", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {16}, lof.data());
      put(f.id, "climate/maxval", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {16}, hi.data());
      put(f.id, "climate/mean", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {16}, mean.data());
      put(f.id, "climate/sqmean", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {16}, sq.data());
      put(f.id, "climate/count", H5T_STD_I64LE, H5T_NATIVE_DOUBLE, {16}, count.data());
    }
    const Stats st = read_stats(p);
    CHECK(st.layout == SampleLayout::deepcam);
    CHECK(st.channels() == 16);
    CHECK(st.minval == lo);
    CHECK(st.maxval == hi);
    CHECK(st.mean == mean);
    CHECK(st.sqmean == sq);
    CHECK(st.count == count);
    CHECK(st.stddev.empty());
  }
  SECTION("2018: climate/stats (16,4) = [mean, max, min, std]") {
    {
      H5File f(p);
      std::vector<double> s(16 * 4);
      for (int c = 0; c < 16; ++c) {
        s[c * 4 + 0] = mean[c];
        s[c * 4 + 1] = hi[c];
        s[c * 4 + 2] = lo[c];
        s[c * 4 + 3] = sd[c];
      }
      put(f.id, "climate/stats", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {16, 4}, s.data());
    }
    const Stats st = read_stats(p);
    CHECK(st.layout == SampleLayout::gb2018);
    CHECK(st.minval == lo);
    CHECK(st.maxval == hi);
    CHECK(st.mean == mean);
    CHECK(st.stddev == sd);
    CHECK(st.sqmean.empty());
    CHECK(st.count.empty());

    // normalize: (x - min) / (max - min), computed as the DeepCAM reference does (scale * (x - shift) in float).
    Tensor t = Tensor::empty(Shape{2, 3, 5, 16}, DType::f32);
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-50.0f, 600.0f);
    for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = u(rng);
    const Tensor x = t.clone();
    normalize(t, st);
    for (int64_t i = 0; i < t.numel(); ++i) {
      const auto c = static_cast<size_t>(i % 16);
      const float xv = x.data_as<float>()[i];
      const float ref = static_cast<float>(1.0 / (hi[c] - lo[c])) * (xv - static_cast<float>(lo[c]));
      REQUIRE(t.data_as<float>()[i] == ref);
      REQUIRE(t.data_as<float>()[i] == Approx((xv - lo[c]) / (hi[c] - lo[c])).epsilon(1e-6).margin(1e-6));
    }
    // A channel slice of a wider tensor (pixel-strided view): only its channels change.
    Tensor wide = Tensor::zeros(Shape{1, 2, 2, 20}, DType::f32, Device::cpu);
    for (int64_t i = 0; i < wide.numel(); ++i) wide.data_as<float>()[i] = 7.0f;
    normalize(wide.channel_slice(2, 16), st);
    CHECK(wide.get(0, 1, 1, 0) == 7.0);
    CHECK(wide.get(0, 1, 1, 19) == 7.0);
    CHECK(wide.get(0, 1, 1, 2) == Approx((7.0 - lo[0]) / (hi[0] - lo[0])));
    REQUIRE_THROWS_WITH(normalize(Tensor::zeros(Shape{1, 2, 2, 15}, DType::f32, Device::cpu), st),
                        Contains("15 channels") && Contains(p));
    REQUIRE_THROWS_WITH(normalize(Tensor::zeros(Shape{1, 2, 2, 16}, DType::f64, Device::cpu), st),
                        Contains("host float32"));
  }
}
