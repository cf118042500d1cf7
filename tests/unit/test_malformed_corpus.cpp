// The malformed-file corpus: every way a sample file or stats.h5 can be broken that we know of, each written here
// (HDF5 C API or raw bytes) and each required to fail with its own error naming the file and the problem, without
// crashing (this test runs under ASan in the sanitizer build). This is the one place that lists them all; the
// readers' other tests (test_hdf5_sample.cpp) cover good files and read options. Then `climseg data check` runs on
// a dataset made of the corpus and of good files, and its summary counts are checked.
#include <hdf5.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "io/dataset_check.h"
#include "io/hdf5_sample.h"
#include "tests/util/h5_write.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using namespace climseg::io;
using Catch::Contains;
using climseg::test::good_label;
using climseg::test::good_value;
using climseg::test::h5_put;
using climseg::test::H5Out;
using climseg::test::TempDir;
using climseg::test::write_good_sample;

namespace fs = std::filesystem;

namespace {

enum class Kind { sample, stats };

struct Case {
  std::string file;  // the corpus file's name
  Kind kind;
  std::function<void(const std::string& path)> make;
  std::vector<std::string> problem;  // what the error must say (besides the path); problem[0] is its own
};

// ---- building blocks -----------------------------------------------------------------------------------------

const std::vector<float> kData(1024, 1.0f);        // enough for every shape below (the largest: (16,4,16))
const std::vector<int32_t> kLabels(2 * 4 * 5, 1);  // (4,5), or (2,4,5) for 2018 label variants

void data_hwc(hid_t f) { h5_put(f, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 5, 16}, kData.data()); }
void data_chw(hid_t f) { h5_put(f, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {16, 4, 5}, kData.data()); }
void labels0(hid_t f) { h5_put(f, "climate/labels_0", H5T_STD_U8LE, H5T_NATIVE_INT32, {4, 5}, kLabels.data()); }

// A sample written with the C API by `body`.
std::function<void(const std::string&)> h5(std::function<void(hid_t)> body) {
  return [body](const std::string& path) {
    H5Out f(path);
    body(f.id);
  };
}

// DeepCAM labels with one bad value at (2,3).
std::function<void(const std::string&)> labels_with(int64_t bad) {
  return h5([bad](hid_t f) {
    data_hwc(f);
    std::vector<int64_t> l(4 * 5, 0);
    l[2 * 5 + 3] = bad;
    h5_put(f, "climate/labels_0", H5T_STD_I64LE, H5T_NATIVE_INT64, {4, 5}, l.data());
  });
}

// Data with `bad` at (1,2) channel 6 and, when `twice`, at (3,4) channel 0; float32 in the file, or float64 (where
// values beyond the float32 range become inf on reading).
std::function<void(const std::string&)> data_with(double bad, bool twice, bool f64 = false) {
  return h5([bad, twice, f64](hid_t f) {
    std::vector<double> d(4 * 5 * 16, 1.0);
    d[(1 * 5 + 2) * 16 + 6] = bad;
    if (twice) d[(3 * 5 + 4) * 16 + 0] = bad;
    const std::vector<float> d32(d.begin(), d.end());
    if (f64)
      h5_put(f, "climate/data", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {4, 5, 16}, d.data());
    else
      h5_put(f, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 5, 16}, d32.data());
    labels0(f);
  });
}

void string_dataset(hid_t f, const std::string& name, const std::vector<hsize_t>& dims) {
  const hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, 4);
  size_t n = 1;
  for (hsize_t d : dims) n *= static_cast<size_t>(d);
  const std::vector<char> s(n * 4, 'x');
  h5_put(f, name, t, t, dims, s.data());
  H5Tclose(t);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A good 16x24 sample (about 29 kB) cut to `keep` bytes.
std::function<void(const std::string&)> truncated(uintmax_t keep) {
  return [=](const std::string& path) {
    write_good_sample(path, 16, 24, 0);
    REQUIRE(fs::file_size(path) > keep);
    fs::resize_file(path, keep);
  };
}

// A chunked dataset with HDF5's Fletcher-32 checksum filter, and one byte of its stored data changed afterwards.
void checksum_mismatch(const std::string& path) {
  const std::vector<float> d(4 * 5 * 16, 3.25f);  // 0x40500000: a pattern to find in the file
  {
    H5Out f(path);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    const hsize_t chunk[3] = {4, 5, 16};
    H5Pset_chunk(dcpl, 3, chunk);
    H5Pset_fletcher32(dcpl);
    h5_put(f.id, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 5, 16}, d.data(), dcpl);
    H5Pclose(dcpl);
    labels0(f.id);
  }
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string pattern;
  for (int i = 0; i < 64; ++i) pattern.append(reinterpret_cast<const char*>(&d[0]), sizeof(float));
  const size_t at = bytes.find(pattern);
  REQUIRE(at != std::string::npos);
  bytes[at + 100] ^= 0x01;  // the float stays finite (3.25 -> 3.2500002); only the checksum can tell
  write_bytes(path, bytes);
}

// stats.h5 files.
std::function<void(const std::string&)> stats_minmax(
    std::function<void(std::vector<double>&, std::vector<double>&)> edit, hid_t ftype = H5T_IEEE_F64LE) {
  return h5([edit, ftype](hid_t f) {
    std::vector<double> lo(16, 0.0), hi(16, 1.0);
    edit(lo, hi);
    h5_put(f, "climate/minval", ftype, H5T_NATIVE_DOUBLE, {lo.size()}, lo.data());
    h5_put(f, "climate/maxval", ftype, H5T_NATIVE_DOUBLE, {hi.size()}, hi.data());
  });
}

std::vector<Case> corpus() {
  std::vector<Case> c;
  auto sample = [&](std::string file, std::function<void(const std::string&)> make, std::vector<std::string> p) {
    c.push_back({std::move(file), Kind::sample, std::move(make), std::move(p)});
  };
  auto stats = [&](std::string file, std::function<void(const std::string&)> make, std::vector<std::string> p) {
    c.push_back({std::move(file), Kind::stats, std::move(make), std::move(p)});
  };

  // -- not HDF5 at all
  sample("zero_bytes.h5", [](const std::string& p) { write_bytes(p, ""); }, {"empty file (0 bytes)"});
  sample("random_bytes.h5",
         [](const std::string& p) {
           std::mt19937 rng(7);
           std::string b(4096, '\0');
           for (char& ch : b) ch = static_cast<char>(rng() & 0xFF);
           write_bytes(p, b);
         },
         {"not an HDF5 file (no HDF5 signature)"});
  sample("directory.h5", [](const std::string& p) { fs::create_directory(p); }, {"is a directory, not an HDF5 file"});
  sample("dangling_link.h5", [](const std::string& p) { fs::create_symlink(p + ".gone", p); }, {"no such file"});
  sample("truncated_in_data.h5", truncated(8192),
         {"truncated file: eof = 8192", "cannot open the HDF5 file (damaged or truncated?)"});
  sample("truncated_in_superblock.h5", truncated(40), {"truncated_in_superblock.h5: cannot"});
  sample("checksum_mismatch.h5", checksum_mismatch, {"reading climate/data", "checksum"});

  // -- structure of climate/data
  sample("missing_data.h5", h5(labels0), {"missing dataset climate/data"});
  sample("data_is_group.h5", h5([](hid_t f) {
           const hid_t g = H5Gcreate2(f, "climate", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
           H5Gclose(H5Gcreate2(g, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
           H5Gclose(g);
           labels0(f);
         }),
         {"climate/data is not a dataset"});
  sample("data_rank2.h5", h5([](hid_t f) {
           h5_put(f, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {20, 16}, kData.data());
           labels0(f);
         }),
         {"climate/data has rank 2 (shape (20,16)); expected 3"});
  sample("data_rank4.h5", h5([](hid_t f) {
           h5_put(f, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {1, 4, 5, 16}, kData.data());
           labels0(f);
         }),
         {"climate/data has rank 4 (shape (1,4,5,16)); expected 3"});
  sample("data_scalar.h5", h5([](hid_t f) {
           h5_put(f, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {}, kData.data());
           labels0(f);
         }),
         {"climate/data has rank 0 (shape ())"});
  sample("data_20_channels.h5", h5([](hid_t f) {
           h5_put(f, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 4, 20}, kData.data());
           h5_put(f, "climate/labels_0", H5T_STD_U8LE, H5T_NATIVE_INT32, {4, 4}, kLabels.data());
         }),
         {"climate/data has 20 channels, expected 16", "because the file has climate/labels_0"});
  sample("data_empty.h5", h5([](hid_t f) {
           h5_put(f, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {0, 5, 16}, nullptr);
           h5_put(f, "climate/labels_0", H5T_STD_U8LE, H5T_NATIVE_INT32, {0, 5}, nullptr);
         }),
         {"climate/data is empty (shape (0,5,16))"});
  sample("ambiguous_no_labels.h5", h5([](hid_t f) {
           h5_put(f, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {16, 4, 16}, kData.data());
         }),
         {"cannot tell the layout of climate/data (16,4,16)"});
  sample("no_labels_15_channels.h5", h5([](hid_t f) {
           h5_put(f, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 6, 15}, kData.data());
         }),
         {"climate/data has shape (4,6,15): expected 16 channels on the last axis (DeepCAM layout, H,W,C) or on the "
          "first (2018 layout, C,H,W)"});
  sample("no_labels.h5", h5(data_hwc), {"no labels: the file has neither climate/labels_0"});

  // -- dtypes
  sample("data_int16.h5", h5([](hid_t f) {
           const std::vector<int16_t> d(4 * 5 * 16, 1);
           h5_put(f, "climate/data", H5T_STD_I16LE, H5T_NATIVE_INT16, {4, 5, 16}, d.data());
           labels0(f);
         }),
         {"climate/data has dtype int16; expected floating point"});
  sample("data_string.h5", h5([](hid_t f) {
           string_dataset(f, "climate/data", {4, 5, 16});
           labels0(f);
         }),
         {"climate/data has dtype string; expected floating point"});
  sample("labels_float32.h5", h5([](hid_t f) {
           data_hwc(f);
           const std::vector<float> l(4 * 5, 1.0f);
           h5_put(f, "climate/labels_0", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {4, 5}, l.data());
         }),
         {"climate/labels_0 has dtype float32; expected integer class indices"});
  sample("labels_string.h5", h5([](hid_t f) {
           data_hwc(f);
           string_dataset(f, "climate/labels_0", {4, 5});
         }),
         {"climate/labels_0 has dtype string; expected integer class indices"});

  // -- labels: shape and values
  sample("labels_rank3_deepcam.h5", h5([](hid_t f) {
           data_hwc(f);
           h5_put(f, "climate/labels_0", H5T_STD_U8LE, H5T_NATIVE_INT32, {1, 4, 5}, kLabels.data());
         }),
         {"climate/labels_0 has rank 3 (shape (1,4,5)); expected 2 (H,W)"});
  sample("labels_other_hw.h5", h5([](hid_t f) {
           data_hwc(f);
           h5_put(f, "climate/labels_0", H5T_STD_U8LE, H5T_NATIVE_INT32, {5, 4}, kLabels.data());
         }),
         {"climate/labels_0 has shape (5,4) but climate/data (4,5,16) is 4x5"});
  sample("labels_value_3.h5", labels_with(3),
         {"climate/labels_0 has value 3 at row 2, column 3", "expected class indices 0 (background), 1 (TC), 2 (AR)"});
  sample("labels_negative.h5", labels_with(-1), {"climate/labels_0 has value -1 at row 2, column 3"});
  sample("labels_beyond_int32.h5", labels_with(int64_t{1} << 40),
         {"(or beyond: saturated to int32) at row 2, column 3"});

  // -- values of the data
  sample("data_nan.h5", data_with(std::nan(""), true),
         {"climate/data has 2 non-finite values; the first (nan) at row 1, column 2, channel 6 (PS)"});
  sample("data_inf.h5", data_with(HUGE_VAL, false),
         {"climate/data has a non-finite value (inf) at row 1, column 2, channel 6 (PS)"});
  sample("data_minus_inf.h5", data_with(-HUGE_VAL, true), {"climate/data has 2 non-finite values; the first (-inf)"});
  sample("data_float64_overflow.h5", data_with(1e300, true, true),
         {"(float64 values beyond the float32 range read as inf)"});

  // -- the 2018 layout, and the two layouts mixed up
  sample("gb2018_labels_with_hwc_data.h5", h5([](hid_t f) {
           data_hwc(f);
           h5_put(f, "climate/labels", H5T_STD_I32LE, H5T_NATIVE_INT32, {4, 5}, kLabels.data());
         }),
         {"climate/data has 4 channels, expected 16 (shape (4,5,16), read as 2018 (C,H,W) because the file has "
          "climate/labels)"});
  sample("deepcam_labels_with_chw_data.h5", h5([](hid_t f) {
           data_chw(f);
           labels0(f);
         }),
         {"climate/data has 5 channels, expected 16 (shape (16,4,5), read as DeepCAM (H,W,C) because the file has "
          "climate/labels_0)"});
  sample("gb2018_labels_rank4.h5", h5([](hid_t f) {
           data_chw(f);
           const std::vector<int32_t> l(2 * 2 * 4 * 5, 1);
           h5_put(f, "climate/labels", H5T_STD_U8LE, H5T_NATIVE_INT32, {2, 2, 4, 5}, l.data());
         }),
         {"climate/labels has rank 4 (shape (2,2,4,5)); expected 2 (H,W) or 3"});
  sample("gb2018_labels_other_hw.h5", h5([](hid_t f) {
           data_chw(f);
           h5_put(f, "climate/labels", H5T_STD_U8LE, H5T_NATIVE_INT32, {2, 5, 4}, kLabels.data());
         }),
         {"climate/labels has shape (2,5,4) but climate/data (16,4,5) is 4x5"});
  sample("gb2018_no_label_variants.h5", h5([](hid_t f) {
           data_chw(f);
           h5_put(f, "climate/labels", H5T_STD_U8LE, H5T_NATIVE_INT32, {0, 4, 5}, nullptr);
         }),
         {"climate/labels has no label variants (shape (0,4,5))"});
  sample("gb2018_bad_second_variant.h5", h5([](hid_t f) {
           data_chw(f);
           std::vector<int32_t> l(2 * 4 * 5, 0);
           l[4 * 5 + 1 * 5 + 2] = 7;  // variant 1, row 1, column 2: read_sample of variant 0 alone would pass
           h5_put(f, "climate/labels", H5T_STD_U8LE, H5T_NATIVE_INT32, {2, 4, 5}, l.data());
         }),
         {"climate/labels has value 7 at row 1, column 2"});

  // -- stats.h5
  stats("stats_constant_channel.h5", stats_minmax([](auto& lo, auto& hi) { hi[3] = lo[3]; }),
        {"channel 3 (UBOT) has max == min (0)", "constant channel"});
  stats("stats_max_below_min.h5", stats_minmax([](auto&, auto& hi) { hi[10] = -1.0; }),
        {"channel 10 (PRECT) has max -1 < min 0"});
  stats("stats_nan.h5", stats_minmax([](auto& lo, auto&) { lo[5] = std::nan(""); }),
        {"climate/minval has a non-finite value (nan) at index 5"});
  stats("stats_wrong_length.h5", stats_minmax([](auto& lo, auto&) { lo.resize(8); }),
        {"climate/minval has shape (8); expected (16)"});
  stats("stats_missing_maxval.h5", h5([](hid_t f) {
          const std::vector<double> lo(16, 0.0);
          h5_put(f, "climate/minval", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {16}, lo.data());
        }),
        {"missing dataset climate/maxval"});
  stats("stats_string_minval.h5", h5([](hid_t f) {
          string_dataset(f, "climate/minval", {16});
          const std::vector<double> hi(16, 1.0);
          h5_put(f, "climate/maxval", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {16}, hi.data());
        }),
        {"climate/minval has dtype string; expected numbers"});
  stats("stats_2018_transposed.h5", h5([](hid_t f) {
          const std::vector<double> s(16 * 4, 0.0);
          h5_put(f, "climate/stats", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {4, 16}, s.data());
        }),
        {"climate/stats has shape (4,16); expected (16,4)"});
  stats("stats_not_statistics.h5", h5(data_hwc), {"not a statistics file"});
  return c;
}

// The error of checking `path` as what `kind` says it is ("no error" when it passes).
std::string error_of(const std::string& path, Kind kind) {
  try {
    if (kind == Kind::sample)
      check_sample_file(path);
    else
      read_stats(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Runs a command line; returns its exit status and fills `out` with stdout and stderr.
int run(const std::string& cmd, std::string& out) {
  out.clear();
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string fixed6(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.6f", v);
  return b;
}

}  // namespace

TEST_CASE("every malformed file gives its own error naming the file and the problem", "[io][corpus]") {
  const std::vector<Case> cases = corpus();
  REQUIRE(cases.size() >= 20);
  TempDir dir;
  std::vector<std::string> errors;
  for (const Case& c : cases) {
    const std::string p = dir.file(c.file);
    c.make(p);
    errors.push_back(error_of(p, c.kind));
    const std::string& e = errors.back();
    INFO(c.file << ": " << e);
    CHECK_THAT(e, Contains(p));
    for (const std::string& want : c.problem) CHECK_THAT(e, Contains(want));
  }
  // Each error is told apart from the others by its own problem text.
  for (size_t i = 0; i < cases.size(); ++i)
    for (size_t j = 0; j < cases.size(); ++j) {
      if (i == j) continue;
      INFO(cases[i].file << "'s error: " << errors[i] << "\nmatches the problem of " << cases[j].file);
      CHECK_FALSE(Contains(cases[j].problem[0]).match(errors[i]));
    }
  // The sample checks are also the readers' checks: read_sample alone fails on the same files (except where
  // check_sample_file adds one: an empty file, a bad second label variant).
  for (const Case& c : cases) {
    if (c.kind != Kind::sample || c.file == "gb2018_bad_second_variant.h5") continue;
    INFO(c.file);
    CHECK_THROWS_WITH(read_sample(dir.file(c.file)), Contains(dir.file(c.file)));
  }
  // The input pipeline's reader (read_sample_to, straight into a batch slot) gives read_sample's own message.
  for (const Case& c : cases) {
    if (c.kind != Kind::sample || c.file == "gb2018_bad_second_variant.h5") continue;
    INFO(c.file);
    const std::string p = dir.file(c.file);
    std::string want = "no error", got = "no error";
    try {
      read_sample(p);
    } catch (const Error& e) {
      want = e.what();
    }
    Shape sh{1, 6, 8, 16};  // the file's own size where its metadata reads, so that the size check passes
    try {
      const SampleInfo info = inspect_sample(p);
      sh = Shape{1, info.height, info.width, info.channels};
    } catch (const Error&) {
    }
    SampleTarget t;
    t.data = Tensor::empty(sh, DType::f32);
    t.labels = Tensor::empty(Shape{1, sh.h, sh.w, 1}, DType::i32);
    Sample scratch;
    try {
      read_sample_to(p, {}, t, scratch);
    } catch (const Error& e) {
      got = e.what();
    }
    CHECK(got == want);
  }
  SECTION("a good file passes and a missing path names itself") {
    const std::string good = dir.file("good.h5");
    write_good_sample(good, 6, 8, 0);
    CHECK(error_of(good, Kind::sample) == "no error");
    const SampleCheck sc = check_sample_file(good);
    CHECK(sc.class_pixels[0] + sc.class_pixels[1] + sc.class_pixels[2] == 48);
    CHECK(sc.class_pixels[1] == 1);  // k = 0
    CHECK(sc.class_pixels[2] == 4);  // k = 10, 20, 30, 40
    CHECK_THAT(error_of(dir.file("nope.h5"), Kind::sample), Contains(dir.file("nope.h5")) && Contains("no such file"));
  }
}

TEST_CASE("list_sample_files: the top level and train/validation/test, stats.h5 left out", "[io][corpus]") {
  TempDir dir;
  fs::create_directories(dir.path() / "train");
  fs::create_directories(dir.path() / "validation");
  fs::create_directories(dir.path() / "other");
  for (const char* f :
       {"a.h5", "stats.h5", "train/b.h5", "train/stats.h5", "validation/c.h5", "other/d.h5", "train/notes.txt"})
    std::ofstream(dir.file(f)) << "x";
  const std::vector<std::string> files = list_sample_files(dir.path().string());
  CHECK(files == std::vector<std::string>{dir.file("a.h5"), dir.file("train/b.h5"), dir.file("train/stats.h5"),
                                          dir.file("validation/c.h5")});
  CHECK_THROWS_WITH(list_sample_files(dir.file("a.h5")), Contains(dir.file("a.h5")) && Contains("not a directory"));
}

TEST_CASE("climseg data check: summary of a good dataset, then of one with the corpus in it", "[io][corpus][cli]") {
  TempDir dir;
  const std::string root = dir.path().string();
  fs::create_directories(dir.path() / "train");
  fs::create_directories(dir.path() / "validation");
  constexpr int64_t H = 6, W = 8, F = 4;
  for (int64_t f = 0; f < F; ++f)
    write_good_sample(dir.file(f < 3 ? "train/good_" + std::to_string(f) + ".h5" : "validation/good_3.h5"), H, W, f);
  {  // stats.h5 as `data stats` would write it: a range that holds every value
    Stats s;
    for (int64_t c = 0; c < 16; ++c) {
      s.minval.push_back(100.0 * c - 1);
      s.maxval.push_back(100.0 * c + F);
    }
    write_stats(dir.file("stats.h5"), s);
  }
  const std::string cli = std::string(CLIMSEG_CLI) + " data check ";
  std::string out;

  SECTION("a good dataset: exit 0, counts, class fractions and channel statistics") {
    REQUIRE(run(cli + root, out) == 0);
    INFO(out);
    CHECK_THAT(out, Contains("files: 4 sample files (train 3, validation 1)"));
    CHECK_THAT(out, Contains("good: 4 samples"));
    CHECK_THAT(out, Contains("DeepCAM (H,W,C) 6x8: 4 files"));
    CHECK_THAT(out, Contains("bad: 0 sample files"));
    CHECK_THAT(out, Contains("stats.h5: good (DeepCAM layout, 16 channels)"));
    // 48 pixels per file: 1 TC (k = 0), 4 AR (k = 10, 20, 30, 40), 43 background.
    CHECK_THAT(out, Contains("class pixel fractions: background " + fixed6(43.0 / 48) + ", TC " + fixed6(1.0 / 48) +
                             ", AR " + fixed6(4.0 / 48) + " (192 labelled pixels)"));
    // Channel 2 (V850): min 200, max 200 + F-1 + 47/48, mean 200 + (F-1)/2 + 47/96 (tests/util/h5_write.h).
    char row[256];
    std::snprintf(row, sizeof row, "   2 %-7s %14.6g %14.6g %14.6g %14.6g %14.6g", "V850", 200.0,
                  static_cast<double>(good_value(F - 1, H * W - 1, 2, H * W)), 200.0 + (F - 1) / 2.0 + 47.0 / 96, 199.0,
                  200.0 + F);
    CHECK_THAT(out, Contains(row));
    CHECK_THAT(out, Contains("result: OK"));
    CHECK_THAT(out, !Contains("outside"));
  }

  // The corpus: sample cases into train/, the constant-channel stats.h5 as the dataset's stats.h5.
  const std::vector<Case> cases = corpus();
  int64_t nsample = 0;
  for (const Case& c : cases) {
    if (c.kind == Kind::sample) {
      c.make(dir.file("train/" + c.file));
      ++nsample;
    } else if (c.file == "stats_constant_channel.h5") {
      fs::remove(dir.file("stats.h5"));
      c.make(dir.file("stats.h5"));
    }
  }
  const int64_t nbad = nsample + 1;

  SECTION("bad files: exit 1, every bad file listed with its problem, counts") {
    REQUIRE(run(cli + root, out) == 1);
    INFO(out);
    CHECK_THAT(out, Contains("files: " + std::to_string(nsample + F) + " sample files (train " +
                             std::to_string(nsample + 3) + ", validation 1)"));
    CHECK_THAT(out, Contains("good: 4 samples"));
    CHECK_THAT(out, Contains("bad: " + std::to_string(nsample) + " sample files"));
    CHECK_THAT(out, Contains("stats.h5: bad (listed below)"));
    CHECK_THAT(out, Contains("bad files (" + std::to_string(nbad) + "):"));
    for (const Case& c : cases) {
      if (c.kind == Kind::stats && c.file != "stats_constant_channel.h5") continue;
      const std::string p = c.kind == Kind::sample ? dir.file("train/" + c.file) : dir.file("stats.h5");
      // The line of this file: "  <path>: <problem>" (the source location is left out of the list).
      const size_t at = out.find("\n  " + p + ":");
      INFO(c.file);
      REQUIRE(at != std::string::npos);
      const std::string line = out.substr(at + 1, out.find('\n', at + 1) - at - 1);
      CHECK_THAT(line, Contains(c.problem[0]));
      CHECK_THAT(line, !Contains(".cpp:"));
    }
    CHECK_THAT(out, Contains("result: FAILED: " + std::to_string(nbad) + " bad files"));
  }
  SECTION("--skip-bad-files: exit 0 unless more than --max-bad are bad") {
    REQUIRE(run(cli + root + " --skip-bad-files", out) == 0);
    CHECK_THAT(out, Contains("result: OK with " + std::to_string(nbad) + " bad files skipped"));
    CHECK_THAT(out, Contains("bad files (" + std::to_string(nbad) + "):"));
    CHECK(run(cli + root + " --skip-bad-files --max-bad " + std::to_string(nbad), out) == 0);
    CHECK(run(cli + root + " --skip-bad-files --max-bad " + std::to_string(nbad - 1), out) == 1);
    CHECK_THAT(out, Contains("more than --max-bad " + std::to_string(nbad - 1)));
    CHECK(run(cli + root + " --max-bad 3", out) != 0);  // --max-bad needs --skip-bad-files
    CHECK_THAT(out, Contains("--skip-bad-files"));
  }
  SECTION("an empty directory and a missing one are errors") {
    CHECK(run(cli + dir.file("train/directory.h5"), out) == 1);
    CHECK_THAT(out, Contains("no sample files"));
    CHECK(run(cli + dir.file("nowhere"), out) == 1);
    CHECK_THAT(out, Contains(dir.file("nowhere")) && Contains("not a directory"));
  }
}
