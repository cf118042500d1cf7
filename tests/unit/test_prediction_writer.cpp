// io/prediction_writer: datasets, dtypes, values and attributes read back with the HDF5 C API; the output appears
// atomically (a failed write leaves no file, no temporary, and an existing output untouched).
#include <hdf5.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "io/prediction_writer.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using namespace climseg::io;
using Catch::Contains;
using climseg::test::TempDir;

namespace {

std::vector<hsize_t> shape_of(hid_t ds) {
  hid_t sp = H5Dget_space(ds);
  std::vector<hsize_t> d(static_cast<size_t>(H5Sget_simple_extent_ndims(sp)));
  H5Sget_simple_extent_dims(sp, d.data(), nullptr);
  H5Sclose(sp);
  return d;
}

std::vector<std::string> string_attr(hid_t loc, const char* name) {
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  REQUIRE(a >= 0);
  hid_t ft = H5Aget_type(a);
  CHECK(H5Tget_class(ft) == H5T_STRING);
  CHECK(H5Tis_variable_str(ft) > 0);
  CHECK(H5Tget_cset(ft) == H5T_CSET_UTF8);
  hid_t sp = H5Aget_space(a);
  const hssize_t n = H5Sget_simple_extent_npoints(sp);
  hid_t mt = H5Tcopy(H5T_C_S1);
  H5Tset_size(mt, H5T_VARIABLE);
  H5Tset_cset(mt, H5T_CSET_UTF8);
  std::vector<char*> p(static_cast<size_t>(n));
  if (n > 0) REQUIRE(H5Aread(a, mt, p.data()) >= 0);
  std::vector<std::string> out(p.begin(), p.end());
  if (n > 0) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, p.data());
  H5Tclose(mt);
  H5Sclose(sp);
  H5Tclose(ft);
  H5Aclose(a);
  return out;
}

// Files in dir other than the expected ones (a leftover temporary would show up here).
std::vector<std::string> files_in(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

}  // namespace

TEST_CASE("write_prediction: datasets, dtypes, values and string attributes", "[io][hdf5]") {
  TempDir dir;
  const std::string p = dir.file("pred.h5");
  const int64_t N = 2, H = 5, W = 7, K = 3;
  Tensor logits = Tensor::empty(Shape{N, H, W, K}, DType::f32);
  Tensor mask = Tensor::empty(Shape{N, H, W, 1}, DType::u8);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (int64_t i = 0; i < logits.numel(); ++i) logits.data_as<float>()[i] = nd(rng);
  for (int64_t i = 0; i < mask.numel(); ++i) mask.data_as<uint8_t>()[i] = static_cast<uint8_t>(i % 3);
  PredictionAttrs attrs;
  attrs.model = "deeplabv3plus";
  attrs.weights = "/weights/dlv3p.bin";
  attrs.sources = {"/data/data-2106-01-01-00-1.h5", "/data/data-2106-01-01-01-1.h5"};
  attrs.extra = {{"precision", "fp32"}, {"note", "caf\xc3\xa9"}};
  write_prediction(p, logits, mask, attrs);
  CHECK(files_in(dir.path()) == std::vector<std::string>{"pred.h5"});

  hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t ds = H5Dopen2(f, "prediction/logits", H5P_DEFAULT);
  REQUIRE(ds >= 0);
  CHECK(shape_of(ds) == std::vector<hsize_t>{2, 5, 7, 3});
  hid_t t = H5Dget_type(ds);
  CHECK(H5Tequal(t, H5T_IEEE_F32LE) > 0);
  H5Tclose(t);
  std::vector<float> lr(static_cast<size_t>(logits.numel()));
  REQUIRE(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, lr.data()) >= 0);
  CHECK(std::memcmp(lr.data(), logits.data(), logits.nbytes()) == 0);
  H5Dclose(ds);

  ds = H5Dopen2(f, "prediction/mask", H5P_DEFAULT);
  REQUIRE(ds >= 0);
  CHECK(shape_of(ds) == std::vector<hsize_t>{2, 5, 7});
  t = H5Dget_type(ds);
  CHECK(H5Tequal(t, H5T_STD_U8LE) > 0);
  H5Tclose(t);
  std::vector<uint8_t> mr(static_cast<size_t>(mask.numel()));
  REQUIRE(H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, mr.data()) >= 0);
  CHECK(std::memcmp(mr.data(), mask.data(), mask.nbytes()) == 0);
  H5Dclose(ds);

  hid_t g = H5Gopen2(f, "prediction", H5P_DEFAULT);
  CHECK(string_attr(g, "model") == std::vector<std::string>{"deeplabv3plus"});
  CHECK(string_attr(g, "weights") == std::vector<std::string>{"/weights/dlv3p.bin"});
  CHECK(string_attr(g, "sources") == attrs.sources);
  CHECK(string_attr(g, "precision") == std::vector<std::string>{"fp32"});
  CHECK(string_attr(g, "note") == std::vector<std::string>{"caf\xc3\xa9"});
  H5Gclose(g);
  H5Fclose(f);
}

TEST_CASE("write_prediction: views are written as their elements; checks name the output", "[io][hdf5]") {
  TempDir dir;
  const std::string p = dir.file("pred.h5");
  // Logits as a channel slice of a wider buffer (as a Net's concat or arena view would be).
  Tensor wide = Tensor::empty(Shape{1, 2, 3, 5}, DType::f32);
  for (int64_t i = 0; i < wide.numel(); ++i) wide.data_as<float>()[i] = static_cast<float>(i);
  const Tensor logits = wide.channel_slice(1, 3);
  Tensor mask = Tensor::zeros(Shape{1, 2, 3, 1}, DType::u8, Device::cpu);
  write_prediction(p, logits, mask, {});
  hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t ds = H5Dopen2(f, "prediction/logits", H5P_DEFAULT);
  std::vector<float> lr(18);
  REQUIRE(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, lr.data()) >= 0);
  for (int64_t i = 0; i < 18; ++i) CHECK(lr[static_cast<size_t>(i)] == logits.get_flat(i));
  H5Dclose(ds);
  hid_t g = H5Gopen2(f, "prediction", H5P_DEFAULT);
  CHECK(string_attr(g, "sources").empty());
  H5Gclose(g);
  H5Fclose(f);

  const Tensor l3 = Tensor::zeros(Shape{2, 4, 4, 3}, DType::f32, Device::cpu);
  const Tensor m3 = Tensor::zeros(Shape{2, 4, 4, 1}, DType::u8, Device::cpu);
  REQUIRE_THROWS_WITH(write_prediction(p, l3, Tensor::zeros(Shape{2, 4, 5, 1}, DType::u8, Device::cpu), {}),
                      Contains(p) && Contains("does not match logits"));
  REQUIRE_THROWS_WITH(write_prediction(p, l3, Tensor::zeros(Shape{2, 4, 4, 1}, DType::i32, Device::cpu), {}),
                      Contains(p) && Contains("mask must be a host uint8 tensor"));
  REQUIRE_THROWS_WITH(write_prediction(p, l3.cast(DType::f64), m3, {}),
                      Contains(p) && Contains("logits must be a host float32 tensor"));
  PredictionAttrs a;
  a.sources = {"one.h5"};
  REQUIRE_THROWS_WITH(write_prediction(p, l3, m3, a), Contains(p) && Contains("1 source files for 2 samples"));
  Tensor bad = m3.clone();
  bad.data_as<uint8_t>()[5] = 3;
  REQUIRE_THROWS_WITH(write_prediction(p, l3, bad, {}), Contains(p) && Contains("mask value 3 at pixel 5"));
  REQUIRE_THROWS_WITH(write_prediction(dir.file("no/such/dir/pred.h5"), l3, m3, {}), Contains("does not exist"));
}

TEST_CASE("write_prediction is atomic: a failed write leaves no partial file and keeps the old one", "[io][hdf5]") {
  TempDir dir;
  const std::string p = dir.file("pred.h5");
  const Tensor logits = Tensor::zeros(Shape{1, 4, 4, 3}, DType::f32, Device::cpu);
  const Tensor mask = Tensor::zeros(Shape{1, 4, 4, 1}, DType::u8, Device::cpu);
  PredictionAttrs bad;
  bad.extra = {{"model", "again"}};  // a second attribute named "model": HDF5 fails after the datasets are written
  REQUIRE_THROWS_WITH(write_prediction(p, logits, mask, bad), Contains(p) && Contains("creating attribute model"));
  CHECK(files_in(dir.path()).empty());  // neither the output nor the temporary

  std::ofstream(p) << "previous output";
  REQUIRE_THROWS(write_prediction(p, logits, mask, bad));
  CHECK(files_in(dir.path()) == std::vector<std::string>{"pred.h5"});
  std::ifstream in(p);
  std::string content;
  std::getline(in, content);
  CHECK(content == "previous output");

  write_prediction(p, logits, mask, {});  // replaces it
  CHECK(files_in(dir.path()) == std::vector<std::string>{"pred.h5"});
  CHECK(H5Fis_hdf5(p.c_str()) > 0);
}
