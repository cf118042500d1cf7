// io/dataset_stats: DeepCAM's per-channel statistics (count-weighted merge), stats.h5 written and read back.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

#include "engine/philox.h"
#include "io/dataset_stats.h"
#include "io/hdf5_sample.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using namespace climseg::io;

namespace {
Tensor field(int64_t h, int64_t w, uint64_t seed) {
  Tensor t = Tensor::empty(Shape{1, h, w, 16}, DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set_flat(i, static_cast<float>(100.0 * (i % 16) + 10.0 * philox_uniform(seed, 1, static_cast<uint64_t>(i))));
  return t;
}
std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

TEST_CASE("statistics of several fields equal the direct computation over all pixels", "[io][stats]") {
  const Tensor a = field(4, 6, 1), b = field(8, 3, 2);  // different pixel counts: the merge must weight them
  StatsAccumulator acc;
  acc.add(a, "a");
  acc.add(b, "b");
  const Stats s = acc.result();
  REQUIRE(acc.samples() == 2);
  for (int64_t c = 0; c < 16; ++c) {
    double n = 0, sum = 0, sq = 0, lo = 1e300, hi = -1e300;
    for (const Tensor* t : {&a, &b})
      for (int64_t p = 0; p < t->shape().pixels(); ++p) {
        const double v = t->get_flat(p * 16 + c);
        n += 1;
        sum += v;
        sq += v * v;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    const auto ci = static_cast<size_t>(c);
    CHECK(s.count[ci] == n);
    CHECK(s.mean[ci] == Approx(sum / n).epsilon(1e-14));
    CHECK(s.sqmean[ci] == Approx(sq / n).epsilon(1e-14));
    CHECK(s.minval[ci] == lo);
    CHECK(s.maxval[ci] == hi);
  }
  // Packing (for MPI reductions) round-trips, and merging accumulators equals adding the fields to one.
  StatsAccumulator x, y;
  x.add(a);
  y.add(b);
  x.merge(StatsAccumulator::from_packed(y.packed()));
  CHECK(x.packed() == acc.packed());
}

TEST_CASE("stats.h5: written atomically in the DeepCAM layout, read back, same bytes every time", "[io][stats]") {
  test::TempDir t;
  StatsAccumulator acc;
  acc.add(field(5, 7, 3));
  const Stats s = acc.result();
  write_stats(t.file("stats.h5"), s);
  write_stats(t.file("again.h5"), s);
  CHECK(slurp(t.file("stats.h5")) == slurp(t.file("again.h5")));
  const Stats r = read_stats(t.file("stats.h5"));
  CHECK(r.layout == SampleLayout::deepcam);
  CHECK(r.minval == s.minval);
  CHECK(r.maxval == s.maxval);
  CHECK(r.mean == s.mean);
  CHECK(r.sqmean == s.sqmean);
  CHECK(r.count == s.count);
}

TEST_CASE("statistics refuse constant channels, non-finite values and bad shapes", "[io][stats]") {
  test::TempDir t;
  Tensor f = field(3, 3, 4);
  for (int64_t p = 0; p < 9; ++p) f.set_flat(p * 16 + 7, 5.0);  // channel 7 (PSL) constant
  StatsAccumulator acc;
  acc.add(f);
  CHECK_THROWS_WITH(write_stats(t.file("s.h5"), acc.result()),
                    Catch::Contains("channel 7 (PSL) is constant") && Catch::Contains("s.h5"));
  CHECK_FALSE(std::ifstream(t.file("s.h5")).good());  // nothing left behind
  Tensor bad = field(2, 2, 5);
  bad.set_flat(3, NAN);
  CHECK_THROWS_WITH(StatsAccumulator().add(bad, "x.h5"), Catch::Contains("x.h5") && Catch::Contains("non-finite"));
  CHECK_THROWS_WITH(StatsAccumulator(4).add(field(2, 2, 6), "y.h5"), Catch::Contains("16 channels, expected 4"));
  CHECK_THROWS_WITH(StatsAccumulator().result(), Catch::Contains("no samples"));
}
