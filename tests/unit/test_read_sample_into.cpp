// io::read_sample_into: reading into a reader's reused buffers gives what read_sample gives, without allocating
// again, and still catches non-finite values and out-of-range labels (the vectorised scans' slow path).
#include <hdf5.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/philox.h"
#include "io/hdf5_sample.h"
#include "kernels/cpu/normalize.h"
#include "tests/util/h5_write.h"
#include "tests/util/temp_dir.h"

using namespace climseg;

namespace {
void write_deepcam(const std::string& path, int64_t H, int64_t W, uint64_t seed, float poison = 0.0f,
                   int64_t poison_at = -1, int label_poison = -1) {
  std::vector<float> d(static_cast<size_t>(H * W * 16));
  for (size_t i = 0; i < d.size(); ++i) d[i] = 100.0f * philox_uniform(seed, 1, i) - 50.0f;
  if (poison_at >= 0) d[static_cast<size_t>(poison_at)] = poison;
  std::vector<uint8_t> l(static_cast<size_t>(H * W));
  for (size_t i = 0; i < l.size(); ++i) l[i] = static_cast<uint8_t>(3.0f * philox_uniform(seed, 2, i));
  if (label_poison >= 0) l[l.size() / 2] = static_cast<uint8_t>(label_poison);
  test::H5Out f(path);
  const auto h = static_cast<hsize_t>(H), w = static_cast<hsize_t>(W);
  test::h5_put(f.id, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {h, w, 16}, d.data());
  test::h5_put(f.id, "climate/labels_0", H5T_STD_U8LE, H5T_NATIVE_UINT8, {h, w}, l.data());
}
}  // namespace

TEST_CASE("read_sample_into reuses the buffers and equals read_sample", "[io][hdf5]") {
  test::TempDir t;
  write_deepcam(t.file("a.h5"), 12, 20, 1);
  write_deepcam(t.file("b.h5"), 12, 20, 2);
  io::Sample buf;
  io::read_sample_into(t.file("a.h5"), {}, buf);
  const void* data_ptr = buf.data.data();
  const void* label_ptr = buf.labels.data();
  io::read_sample_into(t.file("b.h5"), {}, buf);
  CHECK(buf.data.data() == data_ptr);  // the same memory, refilled
  CHECK(buf.labels.data() == label_ptr);
  const io::Sample ref = io::read_sample(t.file("b.h5"));
  REQUIRE(ref.data.shape() == buf.data.shape());
  for (int64_t i = 0; i < ref.data.numel(); ++i) REQUIRE(ref.data.get_flat(i) == buf.data.get_flat(i));
  for (int64_t i = 0; i < ref.labels.numel(); ++i) REQUIRE(ref.labels.get_flat(i) == buf.labels.get_flat(i));
  // Another size: new buffers of the new shape.
  io::ReadOptions half;
  half.reduce = io::Reduce::stride;
  half.stride = 2;
  io::read_sample_into(t.file("a.h5"), half, buf);
  CHECK(buf.data.shape() == (Shape{1, 6, 10, 16}));
}

TEST_CASE("the vectorised scans still find every kind of bad value", "[io][hdf5]") {
  test::TempDir t;
  const int64_t last = 12 * 20 * 16 - 1;
  for (float v : {NAN, INFINITY, -INFINITY}) {
    for (int64_t at : {int64_t{0}, int64_t{77}, last}) {
      write_deepcam(t.file("bad.h5"), 12, 20, 3, v, at);
      INFO("value " << v << " at " << at);
      io::Sample s;
      CHECK_THROWS_WITH(io::read_sample_into(t.file("bad.h5"), {}, s),
                        Catch::Contains("bad.h5") && Catch::Contains("non-finite"));
    }
  }
  // The largest finite float and denormals are fine.
  write_deepcam(t.file("edge.h5"), 12, 20, 4, 3.4028235e38f, 5);
  CHECK_NOTHROW(io::read_sample(t.file("edge.h5")));
  write_deepcam(t.file("den.h5"), 12, 20, 4, 1e-42f, 5);
  CHECK_NOTHROW(io::read_sample(t.file("den.h5")));
  for (int lp : {3, 255}) {
    write_deepcam(t.file("lab.h5"), 12, 20, 5, 0.0f, -1, lp);
    CHECK_THROWS_WITH(io::read_sample(t.file("lab.h5")), Catch::Contains("labels_0 has value " + std::to_string(lp)));
  }
}

namespace {
// read_sample, then the min-max kernel (or none), in dtype dt: what read_sample_to must write, byte for byte.
Tensor expected(const std::string& path, const io::ReadOptions& opt, DType dt, const float* shift, const float* scale) {
  const io::Sample s = io::read_sample(path, opt);
  const int64_t C = s.data.shape().c, P = s.data.shape().pixels();
  std::vector<float> id(static_cast<size_t>(2 * C), 0.0f);
  std::fill(id.begin() + C, id.end(), 1.0f);
  if (shift == nullptr) {
    shift = id.data();
    scale = id.data() + C;
  }
  Tensor out = Tensor::empty(s.data.shape(), dt);
  const float* x = s.data.data_as<float>();
  switch (dt) {
    case DType::f32:
      cpu::minmax_normalize<float>(P, C, x, C, out.data_as<float>(), C, shift, scale);
      break;
    case DType::f64:
      cpu::minmax_normalize<double>(P, C, x, C, out.data_as<double>(), C, shift, scale);
      break;
    case DType::f16:
      cpu::minmax_normalize<Half>(P, C, x, C, static_cast<Half*>(out.data()), C, shift, scale);
      break;
    default:
      cpu::minmax_normalize<BFloat16>(P, C, x, C, static_cast<BFloat16*>(out.data()), C, shift, scale);
  }
  return out;
}
}  // namespace

TEST_CASE("read_sample_to writes into the caller's memory what read_sample and the min-max kernel give", "[io][hdf5]") {
  test::TempDir t;
  // 40 rows of 1152 x 16 floats: about 14 rows per 1 MiB block, so the direct path reads three blocks.
  const int64_t H = 40, W = 1152;
  write_deepcam(t.file("a.h5"), H, W, 7);
  std::vector<float> shift(16), scale(16);
  for (int c = 0; c < 16; ++c) {
    shift[static_cast<size_t>(c)] = -50.0f + static_cast<float>(c);
    scale[static_cast<size_t>(c)] = 1.0f / (100.0f + static_cast<float>(c));
  }
  io::ReadOptions rows;  // a crop of whole rows: still the direct path, from a row offset
  rows.reduce = io::Reduce::crop;
  rows.crop_h = 17;
  rows.crop_w = W;
  rows.crop_y = 9;
  io::ReadOptions strided;  // through HDF5 and the scratch buffer
  strided.reduce = io::Reduce::stride;
  strided.stride = 3;
  io::ReadOptions window;  // a column window: through HDF5 as well
  window.reduce = io::Reduce::crop;
  window.crop_h = 8;
  window.crop_w = 100;
  for (const io::ReadOptions& opt : {io::ReadOptions{}, rows, strided, window}) {
    for (const DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
      for (const bool coeffs : {true, false}) {
        INFO("reduce " << static_cast<int>(opt.reduce) << ", dtype " << dtype_name(dt) << ", coefficients " << coeffs);
        const Tensor want =
            expected(t.file("a.h5"), opt, dt, coeffs ? shift.data() : nullptr, coeffs ? scale.data() : nullptr);
        io::SampleTarget tg;
        tg.data = Tensor::empty(want.shape(), dt);
        tg.labels = Tensor::empty(Shape{1, want.shape().h, want.shape().w, 1}, DType::i32);
        if (coeffs) {
          tg.shift = shift.data();
          tg.scale = scale.data();
        }
        io::Sample scratch;
        const io::SampleInfo info = io::read_sample_to(t.file("a.h5"), opt, tg, scratch);
        CHECK(info.height == H);
        REQUIRE(std::memcmp(tg.data.data(), want.data(), want.nbytes()) == 0);
        const io::Sample ref = io::read_sample(t.file("a.h5"), opt);
        REQUIRE(std::memcmp(tg.labels.data(), ref.labels.data(), ref.labels.nbytes()) == 0);
      }
    }
  }
}

TEST_CASE("read_sample_to: the same errors as read_sample_into, and a shape mismatch names the holder", "[io][hdf5]") {
  test::TempDir t;
  const int64_t H = 40, W = 1152, C = 16;
  io::SampleTarget tg;
  tg.data = Tensor::empty(Shape{1, H, W, C}, DType::f32);
  tg.labels = Tensor::empty(Shape{1, H, W, 1}, DType::i32);
  std::vector<float> shift(16, 0.0f), scale(16, 0.5f);
  tg.shift = shift.data();
  tg.scale = scale.data();
  io::Sample scratch;
  // A NaN or inf in the third block of the direct read: the message is read_sample_into's (from the raw values, though
  // the blocks before it were normalised in place already).
  for (float v : {NAN, -INFINITY}) {
    const int64_t at = (33 * W + 5) * C + 11;
    write_deepcam(t.file("bad.h5"), H, W, 3, v, at);
    io::Sample s;
    std::string want;
    try {
      io::read_sample_into(t.file("bad.h5"), {}, s);
    } catch (const Error& e) {
      want = e.what();
    }
    REQUIRE_THAT(want, Catch::Contains("row 33, column 5") && Catch::Contains("channel 11"));
    REQUIRE_THROWS_WITH(io::read_sample_to(t.file("bad.h5"), {}, tg, scratch), want);
  }
  write_deepcam(t.file("lab.h5"), H, W, 5, 0.0f, -1, 9);
  REQUIRE_THROWS_WITH(io::read_sample_to(t.file("lab.h5"), {}, tg, scratch), Catch::Contains("labels_0 has value 9"));
  // Another size than the target's.
  write_deepcam(t.file("small.h5"), 12, 20, 1);
  tg.holder = "the test's target holds";
  REQUIRE_THROWS_WITH(io::read_sample_to(t.file("small.h5"), {}, tg, scratch),
                      Catch::Contains("small.h5") && Catch::Contains("reads as (1,12,20,16)") &&
                          Catch::Contains("the test's target holds (1,40,1152,16)"));
  // Targets it cannot write.
  io::SampleTarget bad = tg;
  bad.data = Tensor::empty(Shape{1, H, W, C}, DType::i32);
  REQUIRE_THROWS_WITH(io::read_sample_to(t.file("small.h5"), {}, bad, scratch), Catch::Contains("data target"));
  bad = tg;
  bad.scale = nullptr;
  REQUIRE_THROWS_WITH(io::read_sample_to(t.file("small.h5"), {}, bad, scratch),
                      Catch::Contains("both shift and scale"));
}
