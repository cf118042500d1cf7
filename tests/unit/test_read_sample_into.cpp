// io::read_sample_into: reading into a reader's reused buffers gives what read_sample gives, without allocating
// again, and still catches non-finite values and out-of-range labels (the vectorised scans' slow path).
#include <hdf5.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "engine/philox.h"
#include "io/hdf5_sample.h"
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
