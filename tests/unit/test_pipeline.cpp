// io/pipeline: per-epoch shuffling (a permutation, different per epoch, the same for the same seed), shards (disjoint;
// evaluation covers everything), the CPU loader's batches against direct reads, the normalisation kernel against
// io::normalize, exact resumption from a cursor, bad-file skipping and its threshold, and that thread and buffer
// counts do not change the batches. Sample files are written here with the HDF5 C API.
#include <hdf5.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/pinned_memory.h"
#include "io/dataset_stats.h"
#include "io/hdf5_sample.h"
#include "io/pipeline.h"
#include "kernels/cpu/normalize.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using namespace climseg::io;
using Catch::Contains;
using climseg::test::TempDir;

namespace {

constexpr int64_t kC = kNumChannels;

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

// A DeepCAM-layout sample: float32 (H,W,16) data around per-channel offsets, uint8 labels. `bad_label` puts a 7 in
// the labels (read_sample refuses it).
void write_sample(const std::string& path, int64_t H, int64_t W, uint32_t seed, bool bad_label = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> data(static_cast<size_t>(H * W * kC));
  for (size_t i = 0; i < data.size(); ++i) data[i] = 100.0f * static_cast<float>(i % kC) + 10.0f * normal(rng);
  std::vector<uint8_t> labels(static_cast<size_t>(H * W));
  for (auto& l : labels) l = static_cast<uint8_t>(rng() % 3);
  if (bad_label) labels[labels.size() / 2] = 7;
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  REQUIRE(f >= 0);
  put(f, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {hsize_t(H), hsize_t(W), hsize_t(kC)}, data.data());
  put(f, "climate/labels_0", H5T_STD_U8LE, H5T_NATIVE_UINT8, {hsize_t(H), hsize_t(W)}, labels.data());
  H5Fclose(f);
}

struct Files {
  TempDir dir;
  Dataset ds;
  std::string stats;
};

// n good files data-000.h5 .. of H x W, and stats.h5 with per-channel ranges that cover them.
void make_files(Files& f, int64_t n, int64_t H = 6, int64_t W = 10) {
  std::vector<std::string> names;
  for (int64_t i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "data-%03lld.h5", static_cast<long long>(i));
    names.push_back(f.dir.file(name));
    write_sample(names.back(), H, W, static_cast<uint32_t>(1000 + i));
  }
  Stats st;
  for (int64_t c = 0; c < kC; ++c) {
    st.minval.push_back(100.0 * c - 50.0);
    st.maxval.push_back(100.0 * c + 50.0 + c);
  }
  f.stats = f.dir.file("stats.h5");
  write_stats(f.stats, st);
  f.ds = Dataset::from_directory(f.dir.path().string());
}

// One delivered batch, copied out (the loader reuses its memory).
struct Got {
  std::vector<int64_t> indices;
  std::vector<uint8_t> data;  // bytes of Batch::data
  std::vector<int32_t> labels;
  int64_t epoch = 0;
  Cursor begin, next;
  Shape shape;
};

Got copy_out(const Batch& b) {
  Got g;
  g.indices = b.indices;
  g.epoch = b.epoch;
  g.begin = b.begin;
  g.next = b.next;
  g.shape = b.data.shape();
  REQUIRE(b.data.device() == Device::cpu);
  const auto* d = static_cast<const uint8_t*>(b.data.data());
  g.data.assign(d, d + b.data.nbytes());
  const auto* l = b.labels.data_as<int32_t>();
  g.labels.assign(l, l + b.labels.numel());
  return g;
}

std::vector<Got> run_all(const Dataset& ds, const LoaderOptions& o) {
  ExecContext ctx(Device::cpu);
  Loader loader(ds, o);
  std::vector<Got> out;
  while (std::optional<Batch> b = loader.next(ctx)) {
    out.push_back(copy_out(*b));
    REQUIRE(loader.cursor() == b->next);
  }
  return out;
}

void require_same(const std::vector<Got>& a, const std::vector<Got>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("batch " << i);
    REQUIRE(a[i].indices == b[i].indices);
    REQUIRE(a[i].epoch == b[i].epoch);
    REQUIRE(a[i].begin == b[i].begin);
    REQUIRE(a[i].next == b[i].next);
    REQUIRE(a[i].data == b[i].data);
    REQUIRE(a[i].labels == b[i].labels);
  }
}

// The sample as read and normalised directly (the reference for the loader's batches).
Sample direct(const Dataset& ds, int64_t i, const std::string& stats) {
  Sample s = read_sample(ds.files[static_cast<size_t>(i)]);
  if (!stats.empty()) normalize(s.data, read_stats(stats));
  return s;
}

}  // namespace

TEST_CASE("epoch_permutation is a permutation, fixed by (seed, epoch), different across epochs", "[pipeline]") {
  for (int64_t n : {0, 1, 2, 7, 100, 1000}) {
    const std::vector<int64_t> p = epoch_permutation(n, 42, 3);
    std::vector<int64_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> iota(static_cast<size_t>(n));
    std::iota(iota.begin(), iota.end(), 0);
    REQUIRE(sorted == iota);
    REQUIRE(epoch_permutation(n, 42, 3) == p);  // deterministic
  }
  const std::vector<int64_t> e0 = epoch_permutation(100, 42, 0), e1 = epoch_permutation(100, 42, 1);
  REQUIRE(e0 != e1);
  REQUIRE(epoch_permutation(100, 43, 0) != e0);
  std::vector<int64_t> iota(100);
  std::iota(iota.begin(), iota.end(), 0);
  REQUIRE(e0 != iota);
  // Rough uniformity: over 6000 epochs of n = 6, each value lands first about 1000 times (binomial sd ~29; a
  // biased shuffle such as "swap with any position" skews this by far more than the 150 allowed).
  std::vector<int> first(6, 0);
  for (int64_t e = 0; e < 6000; ++e) first[static_cast<size_t>(epoch_permutation(6, 7, e)[0])]++;
  for (int c : first) REQUIRE(std::abs(c - 1000) < 150);
  REQUIRE_THROWS_WITH(epoch_permutation(5, 1, -1), Contains("epoch = -1"));
}

TEST_CASE("training shards: disjoint, equal sizes, the remainder left out differs per epoch", "[pipeline]") {
  for (int64_t n : {10, 13, 17}) {
    for (int nranks = 1; nranks <= 5; ++nranks) {
      std::set<int64_t> covered_over_epochs;
      for (int64_t epoch = 0; epoch < 8; ++epoch) {
        std::set<int64_t> seen;
        for (int r = 0; r < nranks; ++r) {
          ShardSpec s{r, nranks, ShardMode::train, true, 99};
          const std::vector<int64_t> mine = shard_indices(n, s, epoch);
          REQUIRE(static_cast<int64_t>(mine.size()) == n / nranks);
          REQUIRE(shard_size(n, s) == n / nranks);
          for (int64_t i : mine) {
            REQUIRE(i >= 0);
            REQUIRE(i < n);
            REQUIRE(seen.insert(i).second);  // no file on two ranks (or twice on one)
          }
        }
        REQUIRE(static_cast<int64_t>(seen.size()) == n / nranks * nranks);
        covered_over_epochs.insert(seen.begin(), seen.end());
      }
      // Different files are left out in different epochs: over 8 epochs everything was used.
      REQUIRE(static_cast<int64_t>(covered_over_epochs.size()) == n);
    }
  }
  // Rank r takes positions r, r + nranks, ... of the epoch's permutation.
  const std::vector<int64_t> perm = epoch_permutation(10, 5, 2);
  const std::vector<int64_t> r1 = shard_indices(10, ShardSpec{1, 3, ShardMode::train, true, 5}, 2);
  REQUIRE(r1 == std::vector<int64_t>{perm[1], perm[4], perm[7]});
  REQUIRE_THROWS_WITH(shard_size(10, ShardSpec{3, 3}), Contains("rank 3 outside 0..2"));
}

TEST_CASE("evaluation shards: disjoint and covering every file, sizes differ by at most one", "[pipeline]") {
  for (int64_t n : {1, 10, 13, 17}) {
    for (int nranks = 1; nranks <= 6; ++nranks) {
      for (bool shuffle : {false, true}) {
        std::vector<int> count(static_cast<size_t>(n), 0);
        int64_t lo = n, hi = 0;
        for (int r = 0; r < nranks; ++r) {
          ShardSpec s{r, nranks, ShardMode::eval, shuffle, 3};
          const std::vector<int64_t> mine = shard_indices(n, s, 4);
          REQUIRE(static_cast<int64_t>(mine.size()) == shard_size(n, s));
          lo = std::min<int64_t>(lo, static_cast<int64_t>(mine.size()));
          hi = std::max<int64_t>(hi, static_cast<int64_t>(mine.size()));
          for (int64_t i : mine) count[static_cast<size_t>(i)]++;
          if (!shuffle && r == 0) REQUIRE(mine.front() == 0);
        }
        for (int c : count) REQUIRE(c == 1);
        REQUIRE(hi - lo <= 1);
      }
    }
  }
}

TEST_CASE("cpu::minmax_normalize equals io::normalize bit for bit; 16-bit outputs round its fp32 result",
          "[pipeline]") {
  const int64_t P = 1000;
  Tensor x = Tensor::empty(Shape{1, 10, 100, kC}, DType::f32);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1e5f, 1e5f);
  for (int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = u(rng);
  Stats st;
  st.path = "test";
  for (int64_t c = 0; c < kC; ++c) {
    st.minval.push_back(-1e5 + 17.3 * c);
    st.maxval.push_back(1e5 / (c + 1) + 0.1);
  }
  std::vector<float> shift(kC), scale(kC);
  cpu::minmax_coefficients(kC, st.minval.data(), st.maxval.data(), shift.data(), scale.data());
  Tensor ref = x.clone();
  normalize(ref, st);
  std::vector<float> y(static_cast<size_t>(P * kC));
  cpu::minmax_normalize<float>(P, kC, x.data_as<float>(), kC, y.data(), kC, shift.data(), scale.data());
  REQUIRE(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)) == 0);
  // In place.
  Tensor z = x.clone();
  cpu::minmax_normalize<float>(P, kC, z.data_as<float>(), kC, z.data_as<float>(), kC, shift.data(), scale.data());
  REQUIRE(std::memcmp(z.data(), ref.data(), y.size() * sizeof(float)) == 0);
  // Other output types: the fp32 result rounded once.
  std::vector<Half> h(y.size());
  std::vector<BFloat16> b(y.size());
  std::vector<double> d(y.size());
  cpu::minmax_normalize<Half>(P, kC, x.data_as<float>(), kC, h.data(), kC, shift.data(), scale.data());
  cpu::minmax_normalize<BFloat16>(P, kC, x.data_as<float>(), kC, b.data(), kC, shift.data(), scale.data());
  cpu::minmax_normalize<double>(P, kC, x.data_as<float>(), kC, d.data(), kC, shift.data(), scale.data());
  for (size_t i = 0; i < y.size(); ++i) {
    REQUIRE(h[i].bits == float_to_half(y[i]).bits);
    REQUIRE(b[i].bits == float_to_bf16(y[i]).bits);
    REQUIRE(d[i] == static_cast<double>(y[i]));
  }
  // A pixel stride wider than C (a channel slice of a wider buffer) reads and writes only the C channels.
  std::vector<float> wide(static_cast<size_t>(P * (kC + 3)), -7.0f);
  cpu::minmax_normalize<float>(P, kC, x.data_as<float>(), kC, wide.data(), kC + 3, shift.data(), scale.data());
  for (int64_t p = 0; p < P; ++p) {
    REQUIRE(std::memcmp(&wide[static_cast<size_t>(p * (kC + 3))], &y[static_cast<size_t>(p * kC)],
                        kC * sizeof(float)) == 0);
    REQUIRE(wide[static_cast<size_t>(p * (kC + 3) + kC)] == -7.0f);
  }
}

TEST_CASE("cpu::minmax_normalize_finite equals minmax_normalize and finds every NaN and inf", "[pipeline]") {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1e5f, 1e5f);
  for (const int64_t C : {int64_t{16}, int64_t{3}, int64_t{20}}) {
    const int64_t P = 257;
    std::vector<float> x(static_cast<size_t>(P * C)), shift(static_cast<size_t>(C)), scale(static_cast<size_t>(C));
    for (float& v : x) v = u(rng);
    x[5] = 1e-42f;         // a denormal: finite
    x[6] = 3.4028235e38f;  // the largest float: finite
    for (int64_t c = 0; c < C; ++c) {
      shift[static_cast<size_t>(c)] = -1e5f + 3.0f * static_cast<float>(c);
      scale[static_cast<size_t>(c)] = 1.0f / (2e5f + static_cast<float>(c));
    }
    std::vector<float> ref(x.size());
    cpu::minmax_normalize<float>(P, C, x.data(), C, ref.data(), C, shift.data(), scale.data());
    // fp32 into 16-byte-aligned memory (C = 16: the streaming-store path) and one float off alignment (plain loop).
    std::vector<float> out(x.size() + 8);
    float* aligned = out.data();
    while (reinterpret_cast<uintptr_t>(aligned) % 16 != 0) ++aligned;
    for (float* y : {aligned, aligned + 1}) {
      INFO("C " << C << ", offset " << (y - aligned));
      REQUIRE(cpu::minmax_normalize_finite<float>(P, C, x.data(), y, shift.data(), scale.data()));
      REQUIRE(std::memcmp(y, ref.data(), ref.size() * sizeof(float)) == 0);
    }
    std::vector<Half> h(x.size()), hr(x.size());
    cpu::minmax_normalize<Half>(P, C, x.data(), C, hr.data(), C, shift.data(), scale.data());
    REQUIRE(cpu::minmax_normalize_finite<Half>(P, C, x.data(), h.data(), shift.data(), scale.data()));
    for (size_t i = 0; i < h.size(); ++i) REQUIRE(h[i].bits == hr[i].bits);
    // Any NaN or inf, anywhere (first, middle, last element), makes it return false.
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()}) {
      for (const int64_t at : {int64_t{0}, P * C / 2 + 1, P * C - 1}) {
        std::vector<float> xb = x;
        xb[static_cast<size_t>(at)] = bad;
        INFO("C " << C << ", value " << bad << " at " << at);
        REQUIRE_FALSE(cpu::minmax_normalize_finite<float>(P, C, xb.data(), aligned, shift.data(), scale.data()));
        REQUIRE_FALSE(cpu::minmax_normalize_finite<Half>(P, C, xb.data(), h.data(), shift.data(), scale.data()));
      }
    }
  }
}

TEST_CASE("the CPU loader's batches equal direct reads, normalised as io::normalize does", "[pipeline]") {
  Files f;
  make_files(f, 7);
  REQUIRE(f.ds.size() == 7);  // stats.h5 is not a sample
  ExecContext ctx(Device::cpu);

  SECTION("evaluation order: every file once, the partial last batch kept") {
    LoaderOptions o;
    o.shard.mode = ShardMode::eval;
    o.shard.shuffle = false;
    o.batch = 3;
    o.epochs = 1;
    o.stats = f.stats;
    Loader loader(f.ds, o);
    REQUIRE(loader.batch_shape() == Shape{3, 6, 10, kC});
    std::vector<int64_t> all;
    int64_t number = 0;
    while (std::optional<Batch> b = loader.next(ctx)) {
      REQUIRE(b->number == number++);
      REQUIRE(b->data.dtype() == DType::f32);
      REQUIRE(b->labels.dtype() == DType::i32);
      REQUIRE(b->data.shape().n == static_cast<int64_t>(b->indices.size()));
      for (size_t k = 0; k < b->indices.size(); ++k) {
        const Sample s = direct(f.ds, b->indices[k], f.stats);
        const size_t nd = static_cast<size_t>(s.data.numel()), nl = static_cast<size_t>(s.labels.numel());
        REQUIRE(std::memcmp(b->data.data_as<float>() + k * nd, s.data.data(), nd * sizeof(float)) == 0);
        REQUIRE(std::memcmp(b->labels.data_as<int32_t>() + k * nl, s.labels.data(), nl * sizeof(int32_t)) == 0);
        all.push_back(b->indices[k]);
      }
    }
    REQUIRE(all == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6});
    REQUIRE(number == 3);  // 3 + 3 + 1
    REQUIRE(loader.cursor() == Cursor{1, 0});
    REQUIRE_FALSE(loader.next(ctx).has_value());  // stays at the end
    const LoaderStats st = loader.stats();
    REQUIRE(st.samples == 7);
    REQUIRE(st.batches == 3);
    REQUIRE(st.file_bytes == std::accumulate(f.ds.bytes.begin(), f.ds.bytes.end(), int64_t{0}));
  }

  SECTION("training order: the shuffled shard, the partial batch dropped; fp16 batches round the fp32 result") {
    LoaderOptions o;
    o.shard.seed = 11;
    o.batch = 2;
    o.epochs = 2;
    o.stats = f.stats;
    o.dtype = DType::f16;
    Loader loader(f.ds, o);
    std::vector<std::vector<int64_t>> got(2);
    while (std::optional<Batch> b = loader.next(ctx)) {
      REQUIRE(b->data.dtype() == DType::f16);
      REQUIRE(b->data.shape().n == 2);
      for (size_t k = 0; k < b->indices.size(); ++k) {
        const Sample s = direct(f.ds, b->indices[k], f.stats);
        const int64_t nd = s.data.numel();
        const Half* h = b->data.data_as<Half>() + static_cast<int64_t>(k) * nd;
        for (int64_t i = 0; i < nd; ++i) REQUIRE(h[i].bits == float_to_half(s.data.data_as<float>()[i]).bits);
        got[static_cast<size_t>(b->epoch)].push_back(b->indices[k]);
      }
    }
    for (int64_t e = 0; e < 2; ++e) {
      std::vector<int64_t> expect = shard_indices(7, o.shard, e);
      expect.resize(6);  // 3 batches of 2; the 7th file waits for another epoch
      REQUIRE(got[static_cast<size_t>(e)] == expect);
    }
    REQUIRE(got[0] != got[1]);
  }

  SECTION("without stats the data is used as read") {
    LoaderOptions o;
    o.shard.mode = ShardMode::eval;
    o.shard.shuffle = false;
    o.batch = 7;
    o.epochs = 1;
    Loader loader(f.ds, o);
    std::optional<Batch> b = loader.next(ctx);
    REQUIRE(b.has_value());
    const Sample s = direct(f.ds, 4, "");
    const size_t nd = static_cast<size_t>(s.data.numel());
    REQUIRE(std::memcmp(b->data.data_as<float>() + 4 * nd, s.data.data(), nd * sizeof(float)) == 0);
  }
}

TEST_CASE("thread count, buffer count and serialised reads do not change the batches", "[pipeline]") {
  Files f;
  make_files(f, 9);
  LoaderOptions o;
  o.shard.seed = 3;
  o.batch = 2;
  o.epochs = 3;
  o.stats = f.stats;
  o.threads = 1;
  o.buffers = 1;
  const std::vector<Got> ref = run_all(f.ds, o);
  REQUIRE(ref.size() == 12);  // 4 batches of 2 per epoch
  for (int threads : {2, 4}) {
    for (int buffers : {2, 3}) {
      o.threads = threads;
      o.buffers = buffers;
      o.serialize_reads = threads == 4;
      require_same(run_all(f.ds, o), ref);
    }
  }
}

TEST_CASE("resuming from any batch's cursor yields exactly the batches an uninterrupted run yields next",
          "[pipeline]") {
  Files f;
  make_files(f, 7);
  LoaderOptions o;
  o.shard.seed = 21;
  o.batch = 2;
  o.epochs = 3;
  o.stats = f.stats;
  o.threads = 3;
  o.buffers = 3;
  const std::vector<Got> full = run_all(f.ds, o);
  REQUIRE(full.size() == 9);  // 3 per epoch
  REQUIRE(full[0].begin == Cursor{0, 0});
  REQUIRE(full[2].next == Cursor{0, 6});  // the 7th file of the epoch is dropped with its partial batch
  REQUIRE(full[3].begin == Cursor{1, 0});
  for (size_t k = 0; k + 1 < full.size(); ++k) {
    INFO("resumed after batch " << k << " at " << full[k].next.str());
    LoaderOptions r = o;
    r.start = full[k].next;
    r.epochs = o.epochs - r.start.epoch;  // the same end: after epoch 2
    r.threads = 2;
    r.buffers = 2;
    const std::vector<Got> rest = run_all(f.ds, r);
    require_same(rest, std::vector<Got>(full.begin() + static_cast<std::ptrdiff_t>(k) + 1, full.end()));
  }
  // An unlimited loader resumed mid-epoch continues past the epoch boundary in the same order too.
  LoaderOptions r = o;
  r.start = full[4].next;
  r.epochs = 0;
  ExecContext ctx(Device::cpu);
  Loader loader(f.ds, r);
  for (size_t k = 5; k < full.size(); ++k) {
    std::optional<Batch> b = loader.next(ctx);
    REQUIRE(b.has_value());
    REQUIRE(b->indices == full[k].indices);
  }
  REQUIRE(loader.next(ctx).has_value());  // epoch 3 and on
}

TEST_CASE("shards of a sharded evaluation loader cover the dataset once", "[pipeline]") {
  Files f;
  make_files(f, 8);
  std::vector<int> count(8, 0);
  for (int r = 0; r < 3; ++r) {
    LoaderOptions o;
    o.shard = ShardSpec{r, 3, ShardMode::eval, true, 8};
    o.batch = 2;
    o.epochs = 1;
    o.stats = f.stats;
    for (const Got& g : run_all(f.ds, o))
      for (int64_t i : g.indices) count[static_cast<size_t>(i)]++;
  }
  for (int c : count) REQUIRE(c == 1);
}

TEST_CASE("bad files: skipped and counted once, a threshold, or the reader's error without skipping", "[pipeline]") {
  Files f;
  make_files(f, 8);
  // Three bad files among the good ones: not HDF5, a label 7, a different size.
  { std::ofstream(f.dir.file("data-002.h5"), std::ios::trunc) << "not an HDF5 file"; }
  write_sample(f.dir.file("data-005.h5"), 6, 10, 5, /*bad_label=*/true);
  write_sample(f.dir.file("data-006.h5"), 8, 10, 6);
  f.ds = Dataset::from_directory(f.dir.path().string());
  const std::set<int64_t> bad{2, 5, 6};

  LoaderOptions o;
  o.shard.mode = ShardMode::eval;
  o.shard.shuffle = true;
  o.shard.seed = 4;
  o.batch = 2;
  o.epochs = 3;
  o.stats = f.stats;
  o.threads = 2;

  SECTION("skip_bad_files: only good files, each bad one reported once over three epochs") {
    o.skip_bad_files = true;
    o.max_bad_files = 3;
    std::atomic<int> reports{0};
    std::vector<std::string> messages;
    std::mutex mu;
    o.on_bad_file = [&](const std::string& path, const std::string& error) {
      reports++;
      std::lock_guard<std::mutex> g(mu);
      messages.push_back(path + " | " + error);
    };
    ExecContext ctx(Device::cpu);
    Loader loader(f.ds, o);
    std::vector<std::vector<int64_t>> got(3);
    while (std::optional<Batch> b = loader.next(ctx)) {
      for (size_t k = 0; k < b->indices.size(); ++k) {
        const int64_t i = b->indices[k];
        REQUIRE(bad.count(i) == 0);
        const Sample s = direct(f.ds, i, f.stats);
        const size_t nd = static_cast<size_t>(s.data.numel());
        REQUIRE(std::memcmp(b->data.data_as<float>() + k * nd, s.data.data(), nd * sizeof(float)) == 0);
        got[static_cast<size_t>(b->epoch)].push_back(i);
      }
    }
    for (int64_t e = 0; e < 3; ++e) {
      std::vector<int64_t> expect;
      for (int64_t i : shard_indices(8, o.shard, e))
        if (!bad.count(i)) expect.push_back(i);
      REQUIRE(got[static_cast<size_t>(e)] == expect);  // the good files, in shard order, none dropped (eval)
    }
    REQUIRE(reports == 3);
    REQUIRE(loader.bad_files().size() == 3);
    std::sort(messages.begin(), messages.end());
    REQUIRE_THAT(messages[0], Contains("data-002.h5") && Contains("not an HDF5 file"));
    REQUIRE_THAT(messages[1], Contains("data-005.h5") && Contains("has value 7"));
    REQUIRE_THAT(messages[2], Contains("data-006.h5") && Contains("all files must have one size"));
  }

  SECTION("skip_bad_files with resumption: the same batches after a bad file") {
    o.skip_bad_files = true;
    o.on_bad_file = [](const std::string&, const std::string&) {};
    o.shard.mode = ShardMode::train;
    const std::vector<Got> full = run_all(f.ds, o);
    REQUIRE(full.size() == 6);  // 5 good files per epoch: 2 batches of 2, the 5th dropped
    for (size_t k = 0; k + 1 < full.size(); ++k) {
      LoaderOptions r = o;
      r.start = full[k].next;
      r.epochs = o.epochs - r.start.epoch;
      require_same(run_all(f.ds, r), std::vector<Got>(full.begin() + static_cast<std::ptrdiff_t>(k) + 1, full.end()));
    }
  }

  SECTION("more bad files than max_bad_files stops the loader") {
    o.skip_bad_files = true;
    o.max_bad_files = 1;
    o.on_bad_file = [](const std::string&, const std::string&) {};
    ExecContext ctx(Device::cpu);
    Loader loader(f.ds, o);
    int64_t batches = 0;
    auto drain = [&] {
      while (loader.next(ctx)) ++batches;
    };
    REQUIRE_THROWS_WITH(drain(), Contains("2 bad files, more than max_bad_files = 1"));
    REQUIRE_THROWS_WITH(loader.next(ctx), Contains("more than max_bad_files"));  // stays failed
    REQUIRE(batches < 3);
  }

  SECTION("without skip_bad_files the first bad file stops the run with the reader's message, in order") {
    const std::vector<int64_t> order = shard_indices(8, o.shard, 0);
    const auto first_bad = std::find_if(order.begin(), order.end(), [&](int64_t i) { return bad.count(i) > 0; });
    const int64_t good_before = first_bad - order.begin();
    ExecContext ctx(Device::cpu);
    Loader loader(f.ds, o);
    int64_t delivered = 0;
    auto drain = [&] {
      while (std::optional<Batch> b = loader.next(ctx)) delivered += static_cast<int64_t>(b->indices.size());
    };
    REQUIRE_THROWS_WITH(drain(), Contains(f.ds.files[static_cast<size_t>(*first_bad)]));
    // Every full batch before the bad file's batch came first; the bad file's batch did not.
    REQUIRE(delivered == good_before / 2 * 2);
  }
}

TEST_CASE("readers read straight into the batch slots until a file fails, then through their own buffers",
          "[pipeline]") {
  Files f;
  make_files(f, 8);
  LoaderOptions o;
  o.shard.mode = ShardMode::eval;
  o.shard.seed = 4;
  o.batch = 2;
  o.epochs = 3;
  o.stats = f.stats;
  ExecContext ctx(Device::cpu);

  SECTION("good files: the first batches' slots are free at the start, so at least those reads are direct") {
    for (const DType dt : {DType::f32, DType::f16}) {
      o.dtype = dt;
      o.threads = 2;
      o.buffers = 3;
      Loader loader(f.ds, o);
      while (loader.next(ctx)) {
      }
      const LoaderStats st = loader.stats();
      REQUIRE(st.samples == 24);
      REQUIRE(st.direct >= 1);
      REQUIRE(st.direct <= st.samples);
      REQUIRE(st.reread == 0);  // nothing failed, so no place moved
    }
  }

  SECTION("bad files in the middle: contents stay exact over many runs with 4 readers (places that move are re-read)") {
    { std::ofstream(f.dir.file("data-002.h5"), std::ios::trunc) << "not an HDF5 file"; }
    write_sample(f.dir.file("data-005.h5"), 6, 10, 5, /*bad_label=*/true);
    f.ds = Dataset::from_directory(f.dir.path().string());
    o.skip_bad_files = true;
    o.on_bad_file = [](const std::string&, const std::string&) {};
    o.threads = 4;
    o.buffers = 3;
    int64_t rereads = 0;
    for (int run = 0; run < 12; ++run) {
      INFO("run " << run);
      o.shard.seed = static_cast<uint64_t>(run);
      Loader loader(f.ds, o);
      int64_t n = 0;
      while (std::optional<Batch> b = loader.next(ctx)) {
        for (size_t k = 0; k < b->indices.size(); ++k) {
          const int64_t i = b->indices[k];
          REQUIRE(i != 2);
          REQUIRE(i != 5);
          const Sample s = direct(f.ds, i, f.stats);
          const size_t nd = static_cast<size_t>(s.data.numel()), nl = static_cast<size_t>(s.labels.numel());
          REQUIRE(std::memcmp(b->data.data_as<float>() + k * nd, s.data.data(), nd * sizeof(float)) == 0);
          REQUIRE(std::memcmp(b->labels.data_as<int32_t>() + k * nl, s.labels.data(), nl * sizeof(int32_t)) == 0);
          ++n;
        }
      }
      REQUIRE(n == 18);  // 6 good files, 3 epochs, nothing dropped (evaluation)
      const LoaderStats st = loader.stats();
      REQUIRE(st.samples == 18);
      // Reads claimed 4 or more places after the first bad file are certain to start after it failed: never direct.
      REQUIRE(st.direct < st.samples);
      REQUIRE(st.reread <= st.direct);
      rereads += st.reread;
    }
    std::printf("pipeline test: %lld samples re-read after a bad file moved their place (12 runs)\n",
                static_cast<long long>(rereads));
  }
}

TEST_CASE("loader options are checked, with messages that name the problem", "[pipeline]") {
  Files f;
  make_files(f, 5);
  LoaderOptions o;
  o.batch = 6;
  REQUIRE_THROWS_WITH(Loader(f.ds, o), Contains("gets 5 files per epoch") && Contains("fewer than one batch of 6"));
  o.batch = 2;
  o.shard.nranks = 2;
  o.shard.rank = 0;
  o.start = Cursor{0, 3};
  REQUIRE_THROWS_WITH(Loader(f.ds, o), Contains("outside this rank's shard of 2 files"));
  o.start = Cursor{};
  o.stats = f.dir.file("missing.h5");
  REQUIRE_THROWS_WITH(Loader(f.ds, o), Contains("missing.h5"));
  o.stats.clear();
  o.dtype = DType::i32;
  REQUIRE_THROWS_WITH(Loader(f.ds, o), Contains("no CPU batches of dtype"));
  o.dtype = DType::f32;
  if (!have_cuda()) {
    o.device = Device::cuda;
    REQUIRE_THROWS_WITH(Loader(f.ds, o), Contains("no CUDA device"));
    o.device = Device::cpu;
  }
  REQUIRE_THROWS_WITH(Dataset::from_directory(f.dir.file("nope")), Contains("not a directory"));
  TempDir empty;
  REQUIRE_THROWS_WITH(Dataset::from_directory(empty.path().string()), Contains("no sample files"));
  // An evaluation rank with no files yields nothing (8 ranks, 5 files).
  LoaderOptions e;
  e.shard = ShardSpec{6, 8, ShardMode::eval, false, 0};
  e.epochs = 1;
  ExecContext ctx(Device::cpu);
  Loader loader(f.ds, e);
  REQUIRE(loader.shard_size() == 0);
  REQUIRE_FALSE(loader.next(ctx).has_value());
}

TEST_CASE("pinned_empty gives a usable host tensor (page-locked only with a CUDA device)", "[pipeline]") {
  Tensor t = pinned_empty(Shape{2, 3, 4, 5}, DType::f32);
  REQUIRE(t.device() == Device::cpu);
  REQUIRE(t.is_contiguous());
  REQUIRE(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, static_cast<double>(i));
  REQUIRE(t.get_flat(119) == 119.0);
  REQUIRE(is_pinned(t.data()) == pinned_memory_available());
}
