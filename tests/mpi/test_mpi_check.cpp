// MPI_CHECK in a singleton MPI process (no mpirun needed). Its own executable (label `mpi`) because OpenMPI
// keeps allocations from MPI_Init until exit, which LeakSanitizer reports; the sanitizer run disables leak
// detection for this label only (tests/CMakeLists.txt).
#include <catch2/catch.hpp>

#include <string>

#include "engine/check.h"
#if defined(CLIMSEG_HAVE_MPI)
#include "engine/check_mpi.h"
#endif

using Catch::Contains;

#if defined(CLIMSEG_HAVE_MPI)
TEST_CASE("MPI_CHECK turns an MPI error code into an exception with MPI's text", "[check][mpi]") {
  int init = 0;
  MPI_Initialized(&init);
  if (!init) MPI_Init(nullptr, nullptr);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int rank = -1;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  REQUIRE(rank == 0);
  int bad = 0;
  REQUIRE_THROWS_WITH([&] { MPI_CHECK(MPI_Send(&bad, 1, MPI_INT, 12345, 0, MPI_COMM_WORLD)); }(),
                      Contains("MPI_Send"));
  MPI_Finalize();
}
#endif
