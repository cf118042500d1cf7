// A rank that never joins the allreduce must not hang the others (tests/CMakeLists.txt runs this at 3 and 4 ranks).
// The last rank skips the call; every other rank calls allreduce with a 1 s deadline and must throw
// climseg::Error within a bounded time (deadline plus the time to reach the stuck step); at least one rank (the
// one that waits on the silent rank directly) names it ("waiting for rank N"); the others name the rank they
// were waiting on, which itself gave up. Messages are small (1 KiB), so sends to the silent rank complete eagerly
// and nothing is left half-done at MPI_Finalize. Each algorithm uses a fresh Communicator, so leftover messages
// cannot match a later case.
//
// A rank that is killed (SIGKILL; ctest mpi_test_comm_timeout_kill_np4 sets CLIMSEG_COMM_KILL_SILENT=1): Open MPI's
// mpirun then terminates the whole job itself within about a second ("mpirun noticed that process rank 3 ...
// exited on signal 9"), before any deadline of ours; that test passes when mpirun's output names the rank. The
// MPI_Allreduce baseline is left out: a timed-out MPI_Iallreduce cannot be cancelled.
#define CATCH_CONFIG_RUNNER
#include <mpi.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>
#include <vector>

#include "comm/allreduce.h"
#include "comm/world.h"
#include "engine/check.h"

using namespace climseg;
using namespace climseg::comm;

TEST_CASE("a silent rank makes the others fail within the deadline, naming it", "[comm][timeout]") {
  int size = 0, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  REQUIRE(size >= 2);
  const int silent = size - 1;
  for (AllreduceAlgo algo :
       {AllreduceAlgo::ring, AllreduceAlgo::tree, AllreduceAlgo::halving_doubling, AllreduceAlgo::hierarchical}) {
    TopologyOptions t;
    t.ranks_per_node = 2;
    Communicator comm(MPI_COMM_WORLD, t);
    comm.set_logger({});
    std::vector<float> x(256, 1.0f);
    AllreduceOptions opt;
    opt.timeout_s = 1.0;
    for (int p = 0; p < opt.ports; ++p) comm.port(p);  // collective: the silent rank takes part in setup only
    int threw = 0, named = 0;
    double seconds = 0;
    std::string what;
    // Manual experiment (docs/distributed.md): CLIMSEG_COMM_KILL_SILENT=1 makes the silent rank SIGKILL itself instead.
    if (rank == silent && std::getenv("CLIMSEG_COMM_KILL_SILENT")) std::raise(SIGKILL);
    if (rank != silent) {
      const auto t0 = std::chrono::steady_clock::now();
      try {
        allreduce(comm, x.data(), x.data(), static_cast<int64_t>(x.size()), DType::f32, algo, opt);
      } catch (const Error& e) {
        threw = 1;
        what = e.what();
        named = what.find("waiting for rank " + std::to_string(silent)) != std::string::npos;
      }
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    MPI_Barrier(MPI_COMM_WORLD);
    std::vector<int> all_threw(size), all_named(size);
    MPI_Allgather(&threw, 1, MPI_INT, all_threw.data(), 1, MPI_INT, MPI_COMM_WORLD);
    MPI_Allgather(&named, 1, MPI_INT, all_named.data(), 1, MPI_INT, MPI_COMM_WORLD);
    INFO(algo_name(algo) << " rank " << rank << ": " << what);
    if (rank != silent) {
      CHECK(threw == 1);
      CHECK(what.find("timed out") != std::string::npos);
      // One deadline for the first rank, plus at most one more for a rank whose peer gave up; slack for 8
      // oversubscribed ranks.
      CHECK(seconds < 2 * opt.timeout_s + 3.0);
    }
    int named_total = 0;
    for (int r = 0; r < size; ++r) named_total += all_named[r];
    CHECK(named_total >= 1);
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
