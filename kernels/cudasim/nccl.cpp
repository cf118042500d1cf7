// cudasim's stand-in NCCL (include/nccl.h) over MPI: each call queues its transfer on the stream as one MPI call, so
// the emulated collectives keep CUDA's stream order (immediate mode: at once; deferred mode: when something
// synchronises with the stream). Device memory is host memory in the emulator, so MPI reads it directly. fp16 and
// bf16 sums go through user MPI ops that add in fp32 and round once per element, as NCCL's reduction kernels do.
#include <mpi.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cudasim/fp_bits.h"
#include "cudasim/testing.h"
#include "internal.h"
#include "nccl.h"

struct ncclComm {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
  bool aborted = false;
  ncclResult_t async = ncclSuccess;  // the first failure of queued work
};

namespace {

struct P2p {
  bool send;
  void* buf;
  size_t bytes;
  int peer;
};
struct Group {
  int depth = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  std::vector<P2p> ops;
  ncclResult_t error = ncclSuccess;
};
thread_local Group g_group;
std::atomic<size_t> g_ops_run{0};

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
    default:
      return 0;
  }
}

void sum_half(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i)
    b[i] = cudasim::fp::float_to_half_rn(cudasim::fp::half_to_float(a[i]) + cudasim::fp::half_to_float(b[i]));
}
void sum_bf16(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i)
    b[i] = cudasim::fp::float_to_bf16_rn(cudasim::fp::bf16_to_float(a[i]) + cudasim::fp::bf16_to_float(b[i]));
}

bool live(ncclComm_t c) { return c != nullptr && c->comm != MPI_COMM_NULL && !c->aborted; }

// Queued work that failed marks the communicator (ncclCommGetAsyncError reports it), as a failed NCCL kernel does.
void fail(ncclComm_t c, const std::string& what) {
  if (c->async == ncclSuccess) c->async = ncclRemoteError;
  std::fprintf(stderr, "cudasim nccl: %s\n", what.c_str());
}

ncclResult_t run_p2p(ncclComm_t c, cudaStream_t stream, std::vector<P2p> ops) {
  for (const P2p& o : ops) {
    if (o.peer < 0 || o.peer >= c->size) return ncclInvalidArgument;
    if (o.bytes > 0 && !cudasim::detail::device_span_problem(o.buf, o.bytes).empty()) return ncclInvalidArgument;
  }
  cudasim::detail::submit(stream, [c, ops = std::move(ops)] {
    ++g_ops_run;
    if (c->aborted) return;
    std::vector<MPI_Request> req;
    for (const P2p& o : ops) {
      for (size_t off = 0; off < o.bytes || off == 0; off += size_t{1} << 30) {  // int counts: 1 GiB pieces
        const int n = static_cast<int>(std::min(o.bytes - off, size_t{1} << 30));
        char* p = static_cast<char*>(o.buf) + off;
        req.emplace_back();
        const int rc = o.send ? MPI_Isend(p, n, MPI_BYTE, o.peer, 0, c->comm, &req.back())
                              : MPI_Irecv(p, n, MPI_BYTE, o.peer, 0, c->comm, &req.back());
        if (rc != MPI_SUCCESS) return fail(c, "MPI_Isend/MPI_Irecv failed");
        if (o.bytes == 0) break;
      }
    }
    if (MPI_Waitall(static_cast<int>(req.size()), req.data(), MPI_STATUSES_IGNORE) != MPI_SUCCESS)
      fail(c, "MPI_Waitall failed");
  });
  return ncclSuccess;
}

// ncclSend / ncclRecv: queued at once outside a group, collected until ncclGroupEnd inside one.
ncclResult_t post_p2p(bool send, void* buf, size_t count, ncclDataType_t dt, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  if (!live(comm) || type_size(dt) == 0) return ncclInvalidArgument;
  const P2p o{send, buf, count * type_size(dt), peer};
  if (g_group.depth == 0) return run_p2p(comm, stream, {o});
  if (g_group.comm != nullptr && (g_group.comm != comm || g_group.stream != stream))
    return g_group.error = ncclInvalidUsage;  // one communicator and one stream per group here
  g_group.comm = comm;
  g_group.stream = stream;
  g_group.ops.push_back(o);
  return ncclSuccess;
}

}  // namespace

size_t cudasim::nccl_ops_run() { return g_ops_run.load(); }

extern "C" {

ncclResult_t ncclGetVersion(int* version) {
  if (version == nullptr) return ncclInvalidArgument;
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess:
      return "no error (cudasim nccl)";
    case ncclInvalidArgument:
      return "invalid argument (cudasim nccl)";
    case ncclInvalidUsage:
      return "invalid usage (cudasim nccl)";
    case ncclRemoteError:
      return "remote process exited or there was a network error (cudasim nccl: an MPI call failed)";
    case ncclInProgress:
      return "NCCL operation in progress (cudasim nccl)";
    default:
      return "internal error (cudasim nccl)";
  }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (id == nullptr) return ncclInvalidArgument;
  std::random_device rd;
  for (char& b : id->internal) b = static_cast<char>(rd());
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId, int rank) {
  int init = 0, size = 0, me = 0;
  MPI_Initialized(&init);
  if (comm == nullptr || !init) return ncclInvalidUsage;  // the stand-in needs MPI (climseg initialises it first)
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  if (size != nranks || me != rank) return ncclInvalidUsage;  // one communicator over the world, in world order
  auto* c = new ncclComm;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &c->comm) != MPI_SUCCESS) {
    delete c;
    return ncclSystemError;
  }
  MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
  c->rank = rank;
  c->size = nranks;
  *comm = c;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin && comm->comm != MPI_COMM_NULL) MPI_Comm_free(&comm->comm);
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
  comm->aborted = true;  // queued work not yet run is skipped; a blocked MPI call cannot be interrupted
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async) {
  if (comm == nullptr || async == nullptr) return ncclInvalidArgument;
  *async = comm->async;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t dt, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  if (!live(comm)) return ncclInvalidUsage;
  if (g_group.depth > 0) return ncclInvalidUsage;  // collectives inside a group: not used by climseg
  const size_t es = type_size(dt);
  if (op != ncclSum || (dt != ncclFloat32 && dt != ncclFloat64 && dt != ncclFloat16 && dt != ncclBfloat16) ||
      count > static_cast<size_t>(INT32_MAX))
    return ncclInvalidArgument;
  if (count > 0 && (!cudasim::detail::device_span_problem(send, count * es).empty() ||
                    !cudasim::detail::device_span_problem(recv, count * es).empty()))
    return ncclInvalidArgument;
  cudasim::detail::submit(stream, [=] {
    ++g_ops_run;
    if (comm->aborted || count == 0) return;
    MPI_Datatype t = dt == ncclFloat32 ? MPI_FLOAT : dt == ncclFloat64 ? MPI_DOUBLE : MPI_UINT16_T;
    MPI_Op mop = MPI_SUM;
    if (dt == ncclFloat16 || dt == ncclBfloat16) MPI_Op_create(dt == ncclFloat16 ? sum_half : sum_bf16, 1, &mop);
    const int rc = MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, static_cast<int>(count), t, mop,
                                 comm->comm);
    if (mop != MPI_SUM) MPI_Op_free(&mop);
    if (rc != MPI_SUCCESS) fail(comm, "MPI_Allreduce failed");
  });
  return ncclSuccess;
}

ncclResult_t ncclSend(const void* buf, size_t count, ncclDataType_t dt, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  return post_p2p(true, const_cast<void*>(buf), count, dt, peer, comm, stream);
}

ncclResult_t ncclRecv(void* buf, size_t count, ncclDataType_t dt, int peer, ncclComm_t comm, cudaStream_t stream) {
  return post_p2p(false, buf, count, dt, peer, comm, stream);
}

ncclResult_t ncclGroupStart(void) {
  ++g_group.depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd(void) {
  if (g_group.depth == 0) return ncclInvalidUsage;
  if (--g_group.depth > 0) return ncclSuccess;
  Group g = std::move(g_group);
  g_group = Group{};
  if (g.error != ncclSuccess) return g.error;
  if (g.ops.empty()) return ncclSuccess;
  return run_p2p(g.comm, g.stream, std::move(g.ops));
}

}  // extern "C"
