// The ranks of a run started by an MPI launcher (mpirun, srun): whether this process is one of several, MPI
// initialisation, its place (rank, size, local rank and node size), a barrier, point-to-point messages and abort.
// Used by every command that runs on several ranks (train, predict, events, data stage). In a build without MPI
// (comm/ranks_nompi.cpp) there is one rank, and being launched with several is an error.
#pragma once

#include <cstddef>

namespace climseg::comm {

// True when this process was started by an MPI launcher with more than one rank (mpirun, srun): reads the
// launchers' environment variables, so it is safe to call before MPI_Init (and in a build without MPI).
bool launched_with_ranks();
// MPI_Init_thread once per process (when not yet initialised) and MPI_Finalize at exit (registered with atexit).
void ensure_mpi();
// This process's place among the ranks (initialises MPI when launched with ranks; one rank otherwise).
struct RankInfo {
  int rank = 0, size = 1;
  int local_rank = 0, local_size = 1;  // on this node (MPI_COMM_TYPE_SHARED)
  int nodes() const { return (size + local_size - 1) / local_size; }
};
RankInfo init_ranks();
void rank_barrier();  // MPI_Barrier on the world (no-op with one rank)
// Point-to-point messages between world ranks (blocking; `bytes` on both sides must agree). Without MPI: an error.
void send_to_rank(int dest, int tag, const void* data, size_t bytes);
void recv_from_rank(int src, int tag, void* data, size_t bytes);
// After an error on one rank of several: MPI_Abort, so the others end too instead of waiting in a collective (and
// MPI_Finalize at exit cannot hang). No-op with one rank or without MPI.
void abort_ranks(int code);

}  // namespace climseg::comm
