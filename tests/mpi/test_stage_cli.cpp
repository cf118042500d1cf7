// `climseg data stage` as a user runs it: `mpirun -np 4 climseg data stage ...` started from this (non-MPI) test
// process. The staged folders must hold byte-identical copies that `climseg data check` accepts, the printed report
// must add up, and a corrupt source file must end every rank with a non-zero exit, within a time limit (no hang).
// Also: the same command without mpirun (a singleton MPI process) works, since MPI starts only in `data stage`.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/dataset_stats.h"
#include "tests/util/h5_write.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using Catch::Contains;
using climseg::test::TempDir;

namespace fs = std::filesystem;

namespace {

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

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<std::string> samples_in(const fs::path& dir) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".h5" && e.path().filename() != "stats.h5") v.push_back(e.path().filename());
  return v;
}

void make_shared(const fs::path& shared, int n) {
  fs::create_directories(shared);
  for (int i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "data-%03d.h5", i);
    test::write_good_sample((shared / name).string(), 6, 8, i);
  }
  io::Stats s;
  for (int c = 0; c < 16; ++c) {
    s.minval.push_back(100.0 * c);
    s.maxval.push_back(100.0 * c + n);
  }
  io::write_stats((shared / "stats.h5").string(), s);
}

// mpirun under `timeout`: exit 124 means the job hung.
std::string mpirun(int np) {
  return "timeout 120 " + std::string(CLIMSEG_MPIEXEC) + " -np " + std::to_string(np) + " " + CLIMSEG_CLI;
}

}  // namespace

TEST_CASE("mpirun -np 4 climseg data stage: 10 files, 5 per rank", "[staging][mpi][cli]") {
  TempDir dir;
  const fs::path shared = dir.path() / "shared";
  make_shared(shared, 10);
  const std::string args = " data stage --from " + shared.string() + " --per-rank 5";
  std::string out;
  const int rc = run(mpirun(4) + args + " --to " + (dir.path() / "node%n").string(), out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Contains("climseg data stage: " + shared.string()) && Contains("4 ranks, 1 per node"));
  CHECK_THAT(out, Contains("listed 10 sample files; staging 10 of them"));
  CHECK_THAT(out, Contains("shared folder: 10 reads (") && Contains("for 10 files; 10 files read exactly once; "
                                                                    "stats.h5 read 1 time\n"));
  CHECK_THAT(out, Contains("over MPI: 10 files"));
  for (int r = 0; r < 4; ++r) {
    const fs::path local = dir.path() / ("node" + std::to_string(r));
    const std::vector<std::string> files = samples_in(local);
    CHECK(files.size() == 5);
    for (const std::string& f : files) CHECK(slurp(local / f) == slurp(shared / f));
    CHECK(slurp(local / "stats.h5") == slurp(shared / "stats.h5"));
    std::string check;
    CHECK(run(std::string(CLIMSEG_CLI) + " data check " + local.string(), check) == 0);
    CHECK_THAT(check, Contains("good: 5 samples") && Contains("stats.h5: good"));
  }

  SECTION("without mpirun: one rank stages its 5 files") {
    const std::string one = (dir.path() / "single").string();
    REQUIRE(run(std::string(CLIMSEG_CLI) + " data stage --from " + shared.string() + " --to " + one +
                    " --per-rank 5 --seed 3",
                out) == 0);
    CHECK_THAT(out, Contains("1 rank, 1 per node") && Contains("staging 5 of them") && Contains("over MPI: 0 files"));
    CHECK(samples_in(one).size() == 5);
  }
  SECTION("a corrupt source file: non-zero exit, the owner names the file, no hang") {
    const fs::path bad = shared / "data-007.h5";
    { std::ofstream(bad, std::ios::binary | std::ios::trunc) << "not hdf5 at all"; }
    const int rc2 = run(mpirun(4) + args + " --to " + (dir.path() / "again%r").string(), out);
    INFO(out);
    CHECK(rc2 != 0);
    CHECK(rc2 != 124);  // timeout's exit code: the job hung
    CHECK_THAT(out, Contains("climseg data stage: error: staging failed while copying from the shared folder on 1 of "
                             "4 ranks"));
    CHECK_THAT(out, Contains(": error: ") && Contains(bad.string() + ": not an HDF5 file"));
  }
}
