// comm/ranks.h with MPI.
#include "comm/ranks.h"

#include <mpi.h>

#include <algorithm>
#include <cstdlib>

#include "engine/check.h"
#include "engine/check_mpi.h"

namespace climseg::comm {

void ensure_mpi() {
  int init = 0;
  MPI_CHECK(MPI_Initialized(&init));
  if (init) return;
  int provided = 0;
  MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
  CS_CHECK(provided >= MPI_THREAD_SERIALIZED, "the MPI library provides thread level ", provided,
           "; climseg's communication thread needs MPI_THREAD_SERIALIZED");
  std::atexit([] {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
  });
}

RankInfo init_ranks() {
  RankInfo r;
  if (!launched_with_ranks()) return r;
  ensure_mpi();
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &r.rank));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &r.size));
  MPI_Comm local;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, r.rank, MPI_INFO_NULL, &local));
  MPI_CHECK(MPI_Comm_rank(local, &r.local_rank));
  MPI_CHECK(MPI_Comm_size(local, &r.local_size));
  MPI_Comm_free(&local);
  return r;
}

void abort_ranks(int code) {
  int init = 0, fin = 0, size = 1;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (!init || fin) return;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

void rank_barrier() {
  int init = 0;
  MPI_Initialized(&init);
  if (init) MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

void send_to_rank(int dest, int tag, const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  for (size_t off = 0; off < bytes || off == 0; off += size_t{1} << 30) {  // MPI counts are int: 1 GiB pieces
    const size_t n = std::min(bytes - off, size_t{1} << 30);
    MPI_CHECK(MPI_Send(p + off, static_cast<int>(n), MPI_BYTE, dest, tag, MPI_COMM_WORLD));
    if (bytes == 0) break;
  }
}

void recv_from_rank(int src, int tag, void* data, size_t bytes) {
  char* p = static_cast<char*>(data);
  for (size_t off = 0; off < bytes || off == 0; off += size_t{1} << 30) {
    const size_t n = std::min(bytes - off, size_t{1} << 30);
    MPI_CHECK(MPI_Recv(p + off, static_cast<int>(n), MPI_BYTE, src, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    if (bytes == 0) break;
  }
}

}  // namespace climseg::comm
