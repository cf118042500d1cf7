// io/staging under mpirun with 4 ranks (tests/CMakeLists.txt runs it so: CLIMSEG_MPI_NP4_TESTS): a shared folder
// of 10 small DeepCAM files, 5 per rank. Every rank must end with its files, byte-identical to the source; every
// source file is read exactly once over all ranks; stats.h5 is in every local folder; and failures (a corrupt
// source file, damage in transit, too few files, two ranks in one folder) fail every rank with the same error,
// without hanging. The pure part (the plan) is checked on every rank too; CRC-32C has its own test,
// tests/unit/test_crc32c.cpp.
//
// Every rank runs the same test cases in the same order. Collective calls come first in each case and only
// non-aborting CHECKs after them, so a failed check on one rank cannot leave the others waiting in a collective.
#define CATCH_CONFIG_RUNNER
#include <mpi.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "io/dataset_stats.h"
#include "io/staging.h"
#include "tests/util/h5_write.h"

using namespace climseg;
using namespace climseg::io;
using Catch::Contains;

namespace fs = std::filesystem;

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A directory made by rank 0 and known to all ranks; removed by rank 0 when the test case ends.
class SharedDir {
 public:
  SharedDir() {
    std::string p;
    if (world_rank() == 0) {
      char tmpl[] = "/tmp/climseg-stage-XXXXXX";
      CS_CHECK(mkdtemp(tmpl) != nullptr, "mkdtemp failed");
      p = tmpl;
    }
    int len = static_cast<int>(p.size());
    MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
    p.resize(static_cast<size_t>(len));
    MPI_Bcast(p.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
    path_ = p;
  }
  ~SharedDir() {
    MPI_Barrier(MPI_COMM_WORLD);
    std::error_code ec;
    if (world_rank() == 0) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The shared folder: `n` good 6x8 samples data-000.h5 ... and stats.h5 (rank 0 writes, everybody waits).
void make_shared(const fs::path& shared, int n) {
  if (world_rank() == 0) {
    fs::create_directories(shared);
    for (int i = 0; i < n; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "data-%03d.h5", i);
      test::write_good_sample((shared / name).string(), 6, 8, i);
    }
    Stats s;
    for (int c = 0; c < 16; ++c) {
      s.minval.push_back(100.0 * c);
      s.maxval.push_back(100.0 * c + n);
    }
    write_stats((shared / "stats.h5").string(), s);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// Sample files (*.h5 but stats.h5) in a folder, sorted.
std::vector<std::string> samples_in(const fs::path& dir) {
  std::vector<std::string> v;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".h5" && e.path().filename() != "stats.h5") v.push_back(e.path().filename());
  std::sort(v.begin(), v.end());
  return v;
}

// Leftover temporaries (AtomicFile's "<name>.tmp-<pid>-<n>") in a folder.
int64_t temporaries_in(const fs::path& dir) {
  int64_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    n += e.path().filename().string().find(".tmp-") != std::string::npos;
  return n;
}

// The shared folder's listing as rank 0 makes it (for computing the plan here).
std::vector<StageFile> listing_of(const fs::path& shared, int n) {
  std::vector<StageFile> listing;
  for (int i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "data-%03d.h5", i);
    listing.push_back({name, static_cast<uint64_t>(fs::file_size(shared / name))});
  }
  return listing;
}

// Runs stage_dataset and returns the error ("" on success) and this rank's own part of it.
struct Outcome {
  StageReport rep;
  std::string error, local;
};
Outcome stage(const StageOptions& opt) {
  Outcome o;
  try {
    o.rep = stage_dataset(MPI_COMM_WORLD, opt);
  } catch (const StageError& e) {
    o.error = e.what();
    o.local = e.local();
  }
  return o;
}

// The same string on every rank?
bool same_everywhere(const std::string& s) {
  const uint32_t h = crc32c(s.data(), s.size());
  uint32_t lo = h, hi = h;
  MPI_Allreduce(&h, &lo, 1, MPI_UINT32_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&h, &hi, 1, MPI_UINT32_T, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

}  // namespace

TEST_CASE("the staging plan: shuffled, trimmed, owner = index mod N, wanted files from others", "[staging]") {
  std::vector<StageFile> listing;
  for (int i = 0; i < 10; ++i) listing.push_back({"f" + std::to_string(i) + ".h5", static_cast<uint64_t>(100 + i)});
  std::vector<StageFile> reversed(listing.rbegin(), listing.rend());
  const StagePlan p = plan_staging(listing, 4, 5, 77);
  const StagePlan q = plan_staging(reversed, 4, 5, 77);  // the directory's order does not matter
  REQUIRE(p.files.size() == 10);
  std::vector<std::string> names, qnames;
  for (const StageFile& f : p.files) names.push_back(f.name);
  for (const StageFile& f : q.files) qnames.push_back(f.name);
  CHECK(names == qnames);
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
  CHECK(names != sorted);  // shuffled (10! orders; seed 77 does not give the sorted one)
  for (const StageFile& f : p.files) CHECK(f.size == 100 + std::stoul(f.name.substr(1)));
  const StagePlan other_seed = plan_staging(listing, 4, 5, 78);
  std::vector<std::string> onames;
  for (const StageFile& f : other_seed.files) onames.push_back(f.name);
  CHECK(onames != names);

  int64_t total_owned = 0;
  for (int r = 0; r < 4; ++r) {
    const std::vector<int64_t> own = p.owned(r), want = p.wanted(r);
    for (int64_t i : own) CHECK(i % 4 == r);
    total_owned += static_cast<int64_t>(own.size());
    CHECK(own.size() + want.size() == 5);
    CHECK(std::is_sorted(want.begin(), want.end()));
    for (int64_t i : want) CHECK(p.owner(i) != r);
    CHECK(std::set<int64_t>(want.begin(), want.end()).size() == want.size());
    CHECK(p.wanted(r) == want);  // deterministic
  }
  CHECK(total_owned == 10);
  // Enough files: trimmed to count x N, nobody wants anything.
  const StagePlan full = plan_staging(listing, 4, 2, 77);
  CHECK(full.files.size() == 8);
  for (int r = 0; r < 4; ++r) CHECK(full.wanted(r).empty());
  CHECK_THROWS_WITH(plan_staging(listing, 4, 11, 1), Contains("needs 11 distinct files") && Contains("only 10"));
  CHECK(expand_local_path("/l/node%n/rank%r/100%%", 3, 1) == "/l/node1/rank3/100%");
}

TEST_CASE("4 ranks, 10 files, 5 per rank: every rank has its files, each source file read once", "[staging][mpi]") {
  REQUIRE(world_size() == 4);
  SharedDir dir;
  const fs::path shared = dir.path() / "shared";
  make_shared(shared, 10);
  StageOptions opt;
  opt.from = shared.string();
  opt.to = (dir.path() / "local%r").string();
  opt.per_rank = 5;
  opt.seed = 2018;
  const Outcome o = stage(opt);
  const int rank = world_rank();
  MPI_Barrier(MPI_COMM_WORLD);
  REQUIRE(o.error == "");
  const StageReport& r = o.rep;
  const fs::path local = dir.path() / ("local" + std::to_string(rank));
  CHECK(r.local_dir == local.string());
  CHECK(r.listed == 10);
  CHECK(r.staging_ranks == 4);
  REQUIRE(r.plan.files.size() == 10);

  // This rank's folder: exactly 5 sample files, the ones it owns among them, each equal to its source.
  const std::vector<std::string> here = samples_in(local);
  CHECK(here.size() == 5);
  CHECK(here == r.local_files);
  for (int64_t i : r.plan.owned(rank))
    CHECK(std::find(here.begin(), here.end(), r.plan.files[static_cast<size_t>(i)].name) != here.end());
  for (int64_t i : r.plan.wanted(rank))
    CHECK(std::find(here.begin(), here.end(), r.plan.files[static_cast<size_t>(i)].name) != here.end());
  for (const std::string& f : here) {
    const std::string a = slurp(local / f), b = slurp(shared / f);
    CHECK(!a.empty());
    CHECK(a == b);
    CHECK(crc32c(a.data(), a.size()) == crc32c(b.data(), b.size()));
  }
  CHECK(slurp(local / "stats.h5") == slurp(shared / "stats.h5"));
  CHECK(temporaries_in(local) == 0);

  // Reads of the shared folder: once per file over all ranks, counted where they happen.
  CHECK(r.reads_per_file == std::vector<int64_t>(10, 1));
  CHECK(r.stats_reads == 1);
  int64_t reads = 0, sent = 0, received = 0, staged = 0, bytes = 0, listed_bytes = 0;
  REQUIRE(r.ranks.size() == 4);
  for (const StageRankReport& x : r.ranks) {
    CHECK(x.shared_reads == x.owned);
    CHECK(x.staged == 5);
    reads += x.shared_reads;
    sent += x.sent;
    received += x.received;
    staged += x.staged;
    bytes += x.shared_bytes;
  }
  for (const StageFile& f : r.plan.files) listed_bytes += static_cast<int64_t>(f.size);
  CHECK(reads == 10);
  CHECK(bytes == listed_bytes);
  CHECK(received == 4 * 5 - 10);  // what the shared folder lacked went over MPI
  CHECK(sent == received);
  CHECK(staged == 20);
  CHECK(r.ranks[static_cast<size_t>(rank)].received == static_cast<int64_t>(r.plan.wanted(rank).size()));
  // The same plan as the pure function computes from the listing.
  const StagePlan p = plan_staging(listing_of(shared, 10), 4, 5, 2018);
  for (size_t i = 0; i < p.files.size(); ++i) CHECK(p.files[i].name == r.plan.files[i].name);
}

TEST_CASE("enough files for everyone: no exchange; emulated nodes of 2 ranks share a folder", "[staging][mpi]") {
  SharedDir dir;
  const fs::path shared = dir.path() / "shared";
  make_shared(shared, 10);
  StageOptions opt;
  opt.from = shared.string();
  opt.per_rank = 2;
  SECTION("one rank per node, 8 of the 10 files staged, none sent") {
    opt.to = (dir.path() / "n%n").string();
    const Outcome o = stage(opt);
    REQUIRE(o.error == "");
    CHECK(o.rep.plan.files.size() == 8);
    CHECK(samples_in(dir.path() / ("n" + std::to_string(world_rank()))).size() == 2);
    for (const StageRankReport& x : o.rep.ranks) CHECK(x.received == 0);
    int64_t reads = 0;
    for (int64_t n : o.rep.reads_per_file) reads += n;
    CHECK(reads == 8);
  }
  SECTION("--ranks-per-node 2: two staging ranks, 4 files per node folder") {
    opt.to = (dir.path() / "node%n").string();
    opt.ranks_per_node = 2;
    opt.per_rank = 3;  // 6 per node, 12 > 10 files: some go over MPI
    const Outcome o = stage(opt);
    REQUIRE(o.error == "");
    const int node = world_rank() / 2;
    const fs::path mine = dir.path() / ("node" + std::to_string(node));
    CHECK(o.rep.local_dir == mine.string());
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(samples_in(mine).size() == 6);
    CHECK(fs::exists(mine / "stats.h5"));
    CHECK(!fs::exists(dir.path() / "node2"));
    if (world_rank() % 2 == 0) {
      CHECK(o.rep.staging_ranks == 2);
      CHECK(o.rep.ranks.size() == 2);
      int64_t reads = 0, received = 0;
      for (const StageRankReport& x : o.rep.ranks) {
        reads += x.shared_reads;
        received += x.received;
      }
      CHECK(reads == 10);
      CHECK(received == 2);
    }
    for (const std::string& f : samples_in(mine)) CHECK(slurp(mine / f) == slurp(shared / f));
  }
}

TEST_CASE("failures fail every rank with one message, and nobody hangs", "[staging][mpi]") {
  SharedDir dir;
  const fs::path shared = dir.path() / "shared";
  make_shared(shared, 10);
  StageOptions opt;
  opt.from = shared.string();
  opt.to = (dir.path() / "local%r").string();
  opt.per_rank = 5;
  opt.seed = 2018;
  const int rank = world_rank();
  const StagePlan p = plan_staging(listing_of(shared, 10), 4, 5, 2018);  // what staging will do

  SECTION("a corrupt source file: its owner says which and why") {
    int owner = -1;
    for (size_t i = 0; i < p.files.size(); ++i)
      if (p.files[i].name == "data-004.h5") owner = p.owner(static_cast<int64_t>(i));
    MPI_Barrier(MPI_COMM_WORLD);
    const std::string bad = (shared / "data-004.h5").string();
    if (rank == 0) {  // same size, not HDF5 any more: only validation can tell
      std::string bytes = slurp(bad);
      std::fill(bytes.begin(), bytes.begin() + 16, 'Z');
      std::ofstream(bad, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    const Outcome o = stage(opt);
    const bool same = same_everywhere(o.error);
    CHECK(same);
    CHECK_THAT(o.error, Contains("staging failed while copying from the shared folder on 1 of 4 ranks") &&
                            Contains("rank " + std::to_string(owner) + ": ") && Contains(bad) &&
                            Contains("not an HDF5 file"));
    if (rank == owner)
      CHECK_THAT(o.local, Contains(bad) && Contains("not an HDF5 file") && !Contains(".tmp-"));
    else
      CHECK(o.local == "");
    // The bad file never reached a local folder under its name, nor as a temporary.
    const fs::path local = dir.path() / ("local" + std::to_string(rank));
    CHECK(!fs::exists(local / "data-004.h5"));
    CHECK(temporaries_in(local) == 0);
  }
  SECTION("damage in transit: the receiver's CRC check catches it") {
    // The first file rank 0 wants from another rank (rank 0 owns 3 of the 10 and wants 2).
    const std::vector<int64_t> want0 = p.wanted(0);
    REQUIRE(want0.size() == 2);
    const std::string target = p.files[static_cast<size_t>(want0[0])].name;
    opt.test_corrupt_in_transit = target;
    const Outcome o = stage(opt);
    CHECK(same_everywhere(o.error));
    CHECK_THAT(o.error, Contains("staging failed while exchanging files between ranks") &&
                            Contains(target + ": received from rank " + std::to_string(p.owner(want0[0]))) &&
                            Contains("damaged in transit"));
    bool wants = false;
    for (int64_t i : p.wanted(rank)) wants |= p.files[static_cast<size_t>(i)].name == target;
    if (wants) {
      CHECK_THAT(o.local, Contains("damaged in transit"));
      CHECK(!fs::exists(dir.path() / ("local" + std::to_string(rank)) / target));
    } else {
      CHECK(o.local == "");
    }
    CHECK(temporaries_in(dir.path() / ("local" + std::to_string(rank))) == 0);
  }
  SECTION("too few files for --per-rank") {
    opt.per_rank = 11;
    const Outcome o = stage(opt);
    CHECK(same_everywhere(o.error));
    CHECK_THAT(o.error, Contains("listing the shared folder on 1 of 4 ranks") && Contains("needs 11 distinct files") &&
                            Contains("only 10"));
  }
  SECTION("four ranks on one host, one folder without %r") {
    opt.to = (dir.path() / "same").string();
    const Outcome o = stage(opt);
    CHECK(same_everywhere(o.error));
    CHECK_THAT(o.error, Contains("on 3 of 4 ranks") && Contains("would both write into") && Contains("%r"));
  }
  SECTION("the shared folder as the local one") {
    opt.to = shared.string();
    const Outcome o = stage(opt);
    CHECK(same_everywhere(o.error));
    CHECK_THAT(o.error, Contains("on 4 of 4 ranks") && Contains("the copies would replace the sources"));
  }
  SECTION("a missing shared folder and a bad --ranks-per-node") {
    opt.from = (dir.path() / "nowhere").string();
    Outcome o = stage(opt);
    CHECK(same_everywhere(o.error));
    CHECK_THAT(o.error, Contains("nowhere") && Contains("not a directory"));
    opt.from = shared.string();
    opt.ranks_per_node = 3;
    o = stage(opt);
    CHECK_THAT(o.error, Contains("--ranks-per-node 3 does not divide the 4 ranks"));
  }
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const int rc = Catch::Session().run(argc, argv);
  int worst = 0;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
