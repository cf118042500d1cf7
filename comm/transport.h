// Transport: how one step of a schedule (comm/allreduce.h) moves bytes. A step posts its receives and sends, waits
// for all of them, then reduces what arrived. Peers are world ranks; `port` picks one of the P parallel channels
// of the multi-port split (a duplicated MPI communicator, or the one NCCL communicator where ports are only a way
// of cutting the data). Buffers are host memory for the MPI transport and device memory for the NCCL one.
//
// Failure handling: wait_all() takes a deadline. With timeout_s > 0 the MPI transport polls its requests
// (MPI_Testsome) instead of blocking in MPI_Waitall, and when the deadline passes it cancels what it can and throws
// climseg::Error naming the first rank it was still waiting for, so a dead or silent peer never hangs us. NCCL
// cannot be polled per request; the NCCL transport checks ncclCommGetAsyncError while it waits on its stream and
// aborts the communicator at the deadline (ncclCommAbort), naming the step's peers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "comm/world.h"
#include "engine/dtype.h"

namespace climseg::comm {

class Transport {
 public:
  virtual ~Transport() = default;
  virtual Device device() const = 0;
  // Post a transfer of `bytes` bytes; it completes in wait_all(). `tag` separates concurrent streams between the
  // same pair of ranks (both sides derive it from the schedule, so it matches).
  virtual void post_send(int peer, int port, int tag, const void* buf, int64_t bytes) = 0;
  virtual void post_recv(int peer, int port, int tag, void* buf, int64_t bytes) = 0;
  // Completes every posted transfer. timeout_s <= 0: no deadline.
  virtual void wait_all(double timeout_s) = 0;
  // dst[i] = round(float(a[i]) + float(b[i])) for i < count (fp32 maths for 16-bit types; one rounding). dst may
  // be a (in place) or a third buffer (the first addition of an out-of-place call).
  virtual void reduce_sum(void* dst, const void* a, const void* b, int64_t count, DType dt) = 0;
  virtual void copy(void* dst, const void* src, int64_t bytes) = 0;
  // Scratch for received partial sums, in the transport's memory; valid until the next call.
  virtual void* scratch(int64_t bytes) = 0;
};

// MPI point-to-point on host buffers (comm/transport_mpi.cpp).
std::unique_ptr<Transport> make_mpi_transport(Communicator& comm);

// Host reduction shared by the MPI transport and the MPI_Allreduce user ops (comm/transport_mpi.cpp).
void host_reduce_sum(void* dst, const void* a, const void* b, int64_t count, DType dt);

#if defined(CLIMSEG_HAVE_NCCL)
// NCCL send/recv on device buffers (comm/transport_nccl.cpp). `stream` is a cudaStream_t; the NCCL communicator
// spans comm.world() and is created from an ncclUniqueId broadcast by rank 0 (collective). host_wait false: a step's
// wait_all only ends its NCCL group, so the whole schedule stays queued on `stream` in stream order (the host never
// waits; the caller waits later with wait_nccl_stream).
std::unique_ptr<Transport> make_nccl_transport(Communicator& comm, void* stream, bool host_wait = true);
// ncclGetVersion() of the NCCL library loaded at run time (2.x.y as 20000 + 100 x + y), 0 when the call fails. Needs
// no communicator.
int nccl_runtime_version();
// ncclAllReduce baseline (algo nccl) on device buffers, on `stream`; with host_wait, waits for it before returning.
void nccl_allreduce(Communicator& comm, const void* send, void* recv, int64_t count, DType dt, void* stream,
                    double timeout_s, bool host_wait = true);
// Waits until `stream` (where NCCL work of comm was queued without a host wait) is done, polling NCCL's asynchronous
// error state; at the deadline (timeout_s > 0) aborts the NCCL communicator and throws naming `what`.
void wait_nccl_stream(Communicator& comm, void* stream, double timeout_s, const std::string& what);
#endif

}  // namespace climseg::comm
