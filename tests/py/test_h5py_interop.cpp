// io/ against h5py and numpy (tests/py/h5py_interop.py): sample files written by h5py read bit-exact to what numpy
// makes of them, and prediction files written by climseg read in h5py with the expected datasets, dtypes and str
// attributes. Skipped (exit 77) when /usr/bin/python3 cannot import h5py and numpy.
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "io/hdf5_sample.h"
#include "io/prediction_writer.h"
#include "tests/util/npy.h"
#include "tests/util/python.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using namespace climseg::io;
using climseg::test::TempDir;

namespace {

const std::string kScript = std::string(CLIMSEG_SOURCE_DIR) + "/tests/py/h5py_interop.py";

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && a.dtype() == b.dtype() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

}  // namespace

TEST_CASE("h5py-written samples read bit-exact to numpy's values", "[io][hdf5][h5py]") {
  struct Case {
    const char* layout;
    const char* data_dtype;
    const char* label_dtype;
    const char* compression;
  };
  const std::vector<Case> cases = {{"deepcam", "float32", "uint8", ""}, {"deepcam", "float64", "int64", ""},
                                   {"deepcam", "float16", "uint8", ""}, {"deepcam", "float32", "int64", "gzip"},
                                   {"2018", "float32", "int64", ""},    {"2018", "float64", "uint8", "gzip"}};
  uint32_t seed = 100;
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.layout << " " << c.data_dtype << " data, " << c.label_dtype << " labels " << c.compression) {
      TempDir dir;
      const int64_t H = 24, W = 36;
      test::python_run(kScript + " write-sample " + dir.path().string() + " " + c.layout + " " + std::to_string(H) +
                       " " + std::to_string(W) + " " + c.data_dtype + " " + c.label_dtype + " " +
                       std::to_string(seed++) + " " + c.compression);
      const std::string p = dir.file("sample.h5");
      const Tensor want_data = test::npy_read(dir.file("data.npy"));      // (1,H,W,16) float32
      const Tensor want_labels = test::npy_read(dir.file("labels.npy"));  // (1,1,H,W) in the file's dtype
      REQUIRE(want_data.shape() == Shape{1, H, W, 16});
      REQUIRE(want_labels.numel() == H * W);

      const SampleInfo info = inspect_sample(p);
      CHECK(info.layout == (std::string(c.layout) == "deepcam" ? SampleLayout::deepcam : SampleLayout::gb2018));
      CHECK(info.data_type == c.data_dtype);
      CHECK(info.labels_type == c.label_dtype);

      const Sample s = read_sample(p);
      REQUIRE(s.data.shape() == want_data.shape());
      CHECK(same_bytes(s.data, want_data));
      REQUIRE(s.labels.shape() == Shape{1, H, W, 1});
      for (int64_t i = 0; i < H * W; ++i) REQUIRE(s.labels.get_flat(i) == want_labels.get_flat(i));

      // A strided read is the same slice of numpy's array.
      ReadOptions opt;
      opt.reduce = Reduce::stride;
      opt.stride = 5;
      const Sample r = read_sample(p, opt);
      const int64_t h = (H + 4) / 5, w = (W + 4) / 5;
      REQUIRE(r.data.shape() == Shape{1, h, w, 16});
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) {
          REQUIRE(std::memcmp(r.data.data_as<float>() + (i * w + j) * 16,
                              want_data.data_as<float>() + (i * 5 * W + j * 5) * 16, 16 * sizeof(float)) == 0);
          REQUIRE(r.labels.get(0, i, j, 0) == want_labels.get_flat(i * 5 * W + j * 5));
        }
    }
  }
}

TEST_CASE("write_prediction output reads in h5py: datasets, shapes, dtypes, values, str attributes",
          "[io][hdf5][h5py]") {
  TempDir dir;
  const std::string p = dir.file("prediction.h5");
  const int64_t N = 3, H = 8, W = 12, K = 3;
  Tensor logits = Tensor::empty(Shape{N, H, W, K}, DType::f32);
  Tensor mask = Tensor::empty(Shape{N, H, W, 1}, DType::u8);
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (int64_t i = 0; i < logits.numel(); ++i) logits.data_as<float>()[i] = nd(rng);
  for (int64_t q = 0; q < N * H * W; ++q) {  // argmax, as predict computes it
    const float* l = logits.data_as<float>() + q * K;
    mask.data_as<uint8_t>()[q] = static_cast<uint8_t>(l[1] > l[0] ? (l[2] > l[1] ? 2 : 1) : (l[2] > l[0] ? 2 : 0));
  }
  PredictionAttrs attrs;
  attrs.model = "tiramisu";
  attrs.weights = "runs/tiramisu/epoch-12.bin";
  attrs.sources = {"a.h5", "b.h5", "c.h5"};
  attrs.extra = {{"channels", "TMQ,U850,V850"}};
  write_prediction(p, logits, mask, attrs);

  test::python_run(kScript + " dump-prediction " + p + " " + dir.path().string());
  nlohmann::json info;
  std::ifstream(dir.file("info.json")) >> info;
  const auto& ds = info["datasets"];
  CHECK(ds["prediction/logits"]["shape"] == nlohmann::json::array({N, H, W, K}));
  CHECK(ds["prediction/logits"]["dtype"] == "float32");
  CHECK(ds["prediction/mask"]["shape"] == nlohmann::json::array({N, H, W}));
  CHECK(ds["prediction/mask"]["dtype"] == "uint8");
  const auto& at = info["attrs"];
  CHECK(at["model"]["type"] == "str");
  CHECK(at["model"]["value"] == "tiramisu");
  CHECK(at["weights"]["type"] == "str");
  CHECK(at["weights"]["value"] == "runs/tiramisu/epoch-12.bin");
  CHECK(at["channels"]["value"] == "TMQ,U850,V850");
  CHECK(at["sources"]["type"] == "array");
  CHECK(at["sources"]["items"] == nlohmann::json::array({"a.h5", "b.h5", "c.h5"}));
  CHECK(at["sources"]["item_types"] == nlohmann::json::array({"str"}));

  const Tensor l = test::npy_read(dir.file("logits.npy"));
  const Tensor m = test::npy_read(dir.file("mask.npy"));
  CHECK(l.shape() == Shape{N, H, W, K});
  CHECK(same_bytes(l, logits));
  CHECK(m.dtype() == DType::u8);
  CHECK(m.numel() == N * H * W);
  CHECK(std::memcmp(m.data(), mask.data(), mask.nbytes()) == 0);
}
