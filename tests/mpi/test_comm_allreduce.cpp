// comm/allreduce under mpirun (tests/CMakeLists.txt starts it at 1 to 8 ranks; oversubscribed on
// small machines). For every algorithm (ring, tree, halving_doubling, hierarchical, mpi, auto) x dtype (fp32, fp16,
// bf16) x count {0, 1, 2, 3, 7, 1023, 1025, 2^20+3} x in-place/out-of-place:
//   - exactly summable integer inputs (|x| <= 8, so every partial sum of up to 8 ranks is exact even in bf16):
//     #wrong == 0 against the integer sum, and the send buffer of an out-of-place call is untouched;
//   - random inputs U(-1, 1) rounded to the dtype: |got - ref| <= (ranks-1) * eps * sum|x| against the fp64 sum
//     (tests/util/tolerances.h, allreduce rows), and every rank holds identical bytes.
// Hierarchical runs on several emulated node layouts: consecutive pairs (--ranks-per-node 2), and unequal nodes
// (3 ranks as 2,1; 4 as 3,1; 5 as 2,2,1; 6 as 1,4,1; 7 as 3,3,1; 8 as 3,3,2), with 1 and 3 ports. The count
// 2^20+3 runs at every rank count from 2 (about 60 s for all rank counts together on 2 cores; the fp64 references
// are computed once per (ranks, dtype, count)), at 2-3 ranks only in the sanitizer build; the pure schedule test
// (tests/unit/test_comm_schedule.cpp) covers every layout up to 9 ranks at smaller counts.
//
// Every rank runs the same cases in the same order; only non-aborting CHECKs, so a failure on one rank never
// leaves the others waiting in a collective.
#define CATCH_CONFIG_RUNNER
#include <mpi.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "comm/allreduce.h"
#include "comm/world.h"
#include "engine/philox.h"
#include "tests/util/tolerances.h"

using namespace climseg;
using namespace climseg::comm;

namespace {

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

double to_double(const void* p, int64_t i, DType dt) {
  switch (dt) {
    case DType::f64:
      return static_cast<const double*>(p)[i];
    case DType::f16:
      return half_to_float(static_cast<const Half*>(p)[i]);
    case DType::bf16:
      return bf16_to_float(static_cast<const BFloat16*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}
void from_double(void* p, int64_t i, DType dt, double v) {
  switch (dt) {
    case DType::f64:
      static_cast<double*>(p)[i] = v;
      break;
    case DType::f16:
      static_cast<Half*>(p)[i] = float_to_half(static_cast<float>(v));
      break;
    case DType::bf16:
      static_cast<BFloat16*>(p)[i] = float_to_bf16(static_cast<float>(v));
      break;
    default:
      static_cast<float*>(p)[i] = static_cast<float>(v);
  }
}
double round_to(double v, DType dt) {
  std::vector<uint64_t> tmp(1);
  from_double(tmp.data(), 0, dt, v);
  return to_double(tmp.data(), 0, dt);
}

// Exactly summable: small integers that depend on rank and index (a misplaced chunk changes the sum).
double exact_value(int rank, int64_t i) { return static_cast<double>((rank * 7 + i * 3 + i / 17) % 17 - 8); }
// U(-1, 1); for fp64 with 48 random bits (two draws), so that fp64 sums round.
double random_value(int rank, int64_t i, DType dt) {
  const double hi = 2.0 * philox_uniform(2026, static_cast<uint64_t>(rank), static_cast<uint64_t>(i)) - 1.0;
  if (dt != DType::f64) return hi;
  return hi + 0x1p-24 * philox_uniform(2027, static_cast<uint64_t>(rank), static_cast<uint64_t>(i));
}

const test::Tolerance& tolerance(DType dt) {
  return dt == DType::f16    ? test::tol::allreduce_f16
         : dt == DType::bf16 ? test::tol::allreduce_bf16
         : dt == DType::f64  ? test::tol::allreduce_f64
                             : test::tol::allreduce_f32;
}

uint64_t fnv1a(const void* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 1099511628211ull;
  return h;
}

// The fp64 sum and sum of magnitudes of all ranks' inputs, computed once per (ranks, dtype, count, kind).
struct Reference {
  std::vector<double> sum, mag;
};
const Reference& reference(int n, DType dt, int64_t count, bool exact) {
  static std::map<std::tuple<int, DType, int64_t, bool>, Reference> cache;
  auto [it, fresh] = cache.try_emplace({n, dt, count, exact});
  if (fresh) {
    Reference& r = it->second;
    r.sum.assign(count, 0.0);
    r.mag.assign(count, 0.0);
    for (int rank = 0; rank < n; ++rank)
      for (int64_t i = 0; i < count; ++i) {
        const double x = exact ? exact_value(rank, i) : round_to(random_value(rank, i, dt), dt);
        r.sum[i] += x;
        r.mag[i] += std::fabs(x);
      }
  }
  return it->second;
}

struct Case {
  AllreduceAlgo algo;
  AllreduceOptions opt;
};

// One allreduce of `count` elements; returns the number of wrong elements on this rank (exact) or checks the bound
// (random). Collective.
void run_case(Communicator& comm, const Case& c, DType dt, int64_t count, bool in_place, bool exact) {
  const int n = comm.size(), me = comm.rank();
  const size_t es = dtype_size(dt);
  std::vector<std::byte> send(std::max<int64_t>(count, 1) * es), recv(std::max<int64_t>(count, 1) * es);
  for (int64_t i = 0; i < count; ++i) from_double(send.data(), i, dt, exact ? exact_value(me, i) : random_value(me, i, dt));
  const std::vector<std::byte> orig = send;
  void* out = in_place ? send.data() : recv.data();
  std::string error;
  try {
    allreduce(comm, send.data(), out, count, dt, c.algo, c.opt);
  } catch (const std::exception& e) {
    error = e.what();
  }
  INFO(algo_name(c.algo) << " " << dtype_name(dt) << " count=" << count << (in_place ? " in-place" : " out-of-place")
                         << (exact ? " exact" : " random") << " ports=" << c.opt.ports << " on "
                         << comm.topology().str() << " rank " << me);
  CHECK(error.empty());
  if (!in_place) CHECK(std::memcmp(send.data(), orig.data(), count * es) == 0);
  int64_t wrong = 0;
  double worst = 0;  // share of the budget used
  const Reference& rf = reference(n, dt, count, exact);
  for (int64_t i = 0; i < count; ++i) {
    const double ref = rf.sum[i], mag = rf.mag[i];
    const double got = to_double(out, i, dt);
    if (exact) {
      wrong += got != ref;
    } else {
      const double budget = (n - 1) * tolerance(dt).rtol * mag;
      const double err = std::fabs(got - ref);
      if (err > budget) ++wrong;
      if (budget > 0) worst = std::max(worst, err / budget);
    }
  }
  INFO("worst error " << 100 * worst << "% of the budget");
  CHECK(wrong == 0);
  // Every rank must hold the same bytes.
  uint64_t h = fnv1a(out, count * es);
  std::vector<uint64_t> all(n);
  MPI_Allgather(&h, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
  for (int r = 0; r < n; ++r) CHECK(all[r] == h);
}

std::vector<int64_t> counts() {
  std::vector<int64_t> c = {0, 1, 2, 3, 7, 1023, 1025};
#if defined(__SANITIZE_ADDRESS__)
  // The Debug + ASan build runs ~20x slower: the large count only at 2-3 ranks there, to stay within ctest's limit.
  const int max_ranks_for_large = 3;
#else
  const int max_ranks_for_large = 8;
#endif
  if (world_size() >= 2 && world_size() <= max_ranks_for_large) c.push_back((1 << 20) + 3);
  return c;
}

// Unequal emulated nodes for this rank count (empty: none).
std::vector<int> unequal_nodes(int n) {
  switch (n) {
    case 3:
      return {2, 1};
    case 4:
      return {3, 1};
    case 5:
      return {2, 2, 1};
    case 7:
      return {3, 3, 1};
    case 8:
      return {3, 3, 2};
    default:
      return {};
  }
}

void run_all(Communicator& comm, const std::vector<Case>& cases) {
  for (const Case& c : cases)
    for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16})
      for (int64_t count : counts())
        for (bool in_place : {false, true}) {
          run_case(comm, c, dt, count, in_place, /*exact=*/true);
          if (count >= 1023) run_case(comm, c, dt, count, in_place, /*exact=*/false);
        }
}

}  // namespace

TEST_CASE("flat algorithms and baselines on one node", "[comm][allreduce]") {
  Communicator comm;
  comm.set_logger({});
  AllreduceOptions small_chunks;
  small_chunks.chunk_bytes = 1000;  // several pipeline chunks for the tree already at 1023 elements
  run_all(comm, {{AllreduceAlgo::ring, {}},
                 {AllreduceAlgo::tree, small_chunks},
                 {AllreduceAlgo::tree, {}},
                 {AllreduceAlgo::halving_doubling, {}},
                 {AllreduceAlgo::mpi, {}},
                 {AllreduceAlgo::auto_, {}}});
}

TEST_CASE("hierarchical on emulated nodes, equal and unequal, with ports", "[comm][allreduce][hierarchical]") {
  AllreduceOptions three_ports;
  three_ports.ports = 3;
  {
    TopologyOptions t;
    t.ranks_per_node = 2;
    Communicator comm(MPI_COMM_WORLD, t);
    comm.set_logger({});
    run_all(
        comm,
        {{AllreduceAlgo::hierarchical, {}}, {AllreduceAlgo::hierarchical, three_ports}, {AllreduceAlgo::auto_, {}}});
  }
  const std::vector<int> sizes = unequal_nodes(world_size());
  if (!sizes.empty()) {
    TopologyOptions t;
    t.node_sizes = sizes;
    Communicator comm(MPI_COMM_WORLD, t);
    comm.set_logger({});
    run_all(comm, {{AllreduceAlgo::hierarchical, {}}, {AllreduceAlgo::hierarchical, three_ports}});
  }
}

TEST_CASE("the auto choice is logged once per algorithm and size class, on rank 0", "[comm][log]") {
  TopologyOptions t;
  t.ranks_per_node = 2;
  Communicator comm(MPI_COMM_WORLD, t);
  std::vector<std::string> lines;
  comm.set_logger([&](const std::string& s) { lines.push_back(s); });
  std::vector<float> x(1 << 16, 1.0f);
  for (int rep = 0; rep < 3; ++rep)
    for (int64_t count : {int64_t{100}, int64_t{120}, int64_t{1} << 16}) {
      allreduce(comm, x.data(), x.data(), count, DType::f32, AllreduceAlgo::auto_);
      std::fill(x.begin(), x.end(), 1.0f);
    }
  if (comm.rank() == 0) {
    // 100 and 120 floats share the 512 B class; 2^16 floats (256 KiB) is another.
    CHECK(lines.size() == 2);
    if (!lines.empty()) CHECK(lines[0].find(comm.size() == 1 ? "ring" : "halving_doubling") != std::string::npos);
  } else {
    CHECK(lines.empty());
  }
}

TEST_CASE("bad arguments throw before any traffic", "[comm][errors]") {
  Communicator comm;
  std::vector<int32_t> x(4);
  CHECK_THROWS_WITH(allreduce(comm, x.data(), x.data(), 4, DType::i32, AllreduceAlgo::ring),
                    Catch::Contains("unsupported dtype"));
  CHECK_THROWS_WITH(allreduce(comm, x.data(), x.data(), -1, DType::f32, AllreduceAlgo::ring),
                    Catch::Contains("negative count"));
  AllreduceOptions o;
  o.ports = 0;
  CHECK_THROWS(allreduce(comm, x.data(), x.data(), 4, DType::f32, AllreduceAlgo::hierarchical, o));
#if !defined(CLIMSEG_HAVE_NCCL)
  CHECK_THROWS_WITH(allreduce(comm, x.data(), x.data(), 4, DType::f32, AllreduceAlgo::nccl),
                    Catch::Contains("without NCCL"));
#else
  CHECK_THROWS_WITH(allreduce(comm, x.data(), x.data(), 4, DType::f32, AllreduceAlgo::nccl),
                    Catch::Contains("device buffers"));
#endif
  TopologyOptions t;
  t.node_sizes = {world_size() + 1};
  CHECK_THROWS_WITH(Communicator(MPI_COMM_WORLD, t), Catch::Contains("node sizes"));
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const int rc = Catch::Session().run(argc, argv);
  int worst = 0;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
