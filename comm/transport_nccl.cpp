// NCCL transport on device buffers (see comm/transport.h), and the ncclAllReduce baseline. Thin on purpose: one
// NCCL communicator over the Communicator's world (created once from an ncclUniqueId that rank 0 broadcasts with
// MPI, device = local rank), the transfers of a step issued between ncclGroupStart/ncclGroupEnd on the caller's
// stream, reductions by comm/reduce_cuda.cu on the same stream. Ports are not separate channels here (NCCL stripes
// over its own channels); the schedule still cuts the data the same way. Compiled only with NCCL; not run on the
// GPU-less development machine.
//
// Deadline: NCCL offers no per-request test, so wait_all() polls cudaStreamQuery and ncclCommGetAsyncError; at the
// deadline it aborts the NCCL communicator (ncclCommAbort: kernels waiting for a dead peer return) and throws,
// naming the peers of the step. The communicator is unusable afterwards, as after any NCCL failure.
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <sstream>
#include <thread>
#include <vector>

#include "comm/reduce_cuda.h"
#include "comm/transport.h"
#include "engine/check.h"
#include "engine/check_cuda.h"
#include "engine/check_mpi.h"

namespace climseg::comm {
namespace {

struct NcclState {
  ncclComm_t comm = nullptr;
  bool aborted = false;
  void* scratch = nullptr;
  size_t scratch_bytes = 0;
  // Scratch buffers outgrown while work using them may still be queued (host_wait false): freed by the next wait
  // for the stream (cudaFree would synchronise the device now).
  std::vector<void*> retired;
  void free_retired() {
    for (void* p : retired) CUDA_CHECK_LOG(cudaFree(p));
    retired.clear();
  }
  ~NcclState() {
    free_retired();
    if (scratch) CUDA_CHECK_LOG(cudaFree(scratch));
    if (comm && !aborted) ncclCommDestroy(comm);
  }
};

NcclState& nccl_for(Communicator& c) {
  if (!c.nccl_state()) {
    ncclUniqueId id{};
    if (c.rank() == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    MPI_CHECK(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, c.world()));
    CUDA_CHECK(cudaSetDevice(cuda_device_for(c.topology())));
    auto st = std::make_shared<NcclState>();
    NCCL_CHECK(ncclCommInitRank(&st->comm, c.size(), id, c.rank()));
    c.nccl_state() = st;
  }
  auto& st = *static_cast<NcclState*>(c.nccl_state().get());
  CS_CHECK(!st.aborted, "NCCL communicator was aborted after an earlier failure");
  return st;
}

// Waits for `stream` with an optional deadline, watching NCCL's asynchronous error state.
void wait_stream(NcclState& st, cudaStream_t stream, double timeout_s, const std::string& waiting_for) {
  if (timeout_s <= 0) {
    CUDA_CHECK(cudaStreamSynchronize(stream));
    st.free_retired();
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) {
      st.free_retired();
      return;
    }
    if (q != cudaErrorNotReady) CUDA_CHECK(q);
    // cudaErrorNotReady is also the thread's last error (as PyTorch's CUDAStream::query clears it): left there, the
    // next launch check (cudaGetLastError) fails with "device not ready" (found by the emulation's deferred mode).
    (void)cudaGetLastError();
    ncclResult_t async = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(st.comm, &async));
    if (async != ncclSuccess && async != ncclInProgress) {
      ncclCommAbort(st.comm);
      st.aborted = true;
      CS_THROW("allreduce nccl: asynchronous NCCL error ", ncclGetErrorString(async), " waiting for ", waiting_for);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(st.comm);
      st.aborted = true;
      CS_THROW("allreduce nccl: timed out after ", timeout_s, " s waiting for ", waiting_for,
               "; the NCCL communicator was aborted");
    }
    std::this_thread::yield();
  }
}

ncclDataType_t nccl_type(DType dt) {
  switch (dt) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::f16:
      return ncclFloat16;
    case DType::bf16:
      return ncclBfloat16;
    default:
      CS_THROW("allreduce nccl: unsupported dtype ", dtype_name(dt));
  }
}

class NcclTransport final : public Transport {
 public:
  NcclTransport(Communicator& comm, void* stream, bool host_wait)
      : st_(nccl_for(comm)), stream_(static_cast<cudaStream_t>(stream)), host_wait_(host_wait) {}

  Device device() const override { return Device::cuda; }

  void post_send(int peer, int, int, const void* buf, int64_t bytes) override {
    begin();
    NCCL_CHECK(ncclSend(buf, static_cast<size_t>(bytes), ncclUint8, peer, st_.comm, stream_));
    peers_.push_back(peer);
  }
  void post_recv(int peer, int, int, void* buf, int64_t bytes) override {
    begin();
    NCCL_CHECK(ncclRecv(buf, static_cast<size_t>(bytes), ncclUint8, peer, st_.comm, stream_));
    peers_.push_back(peer);
  }
  void wait_all(double timeout_s) override {
    if (!open_) return;
    open_ = false;
    NCCL_CHECK(ncclGroupEnd());
    if (!host_wait_) {  // the next step's work is queued behind this one on the same stream
      peers_.clear();
      return;
    }
    std::ostringstream os;
    os << "rank(s)";
    for (int p : peers_) os << " " << p;
    peers_.clear();
    wait_stream(st_, stream_, timeout_s, os.str());
  }
  void reduce_sum(void* dst, const void* a, const void* b, int64_t count, DType dt) override {
    device_reduce_sum(dst, a, b, count, dt, stream_);
  }
  void copy(void* dst, const void* src, int64_t bytes) override {
    if (bytes > 0 && dst != src)
      CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice, stream_));
  }
  void* scratch(int64_t bytes) override {
    if (static_cast<size_t>(bytes) > st_.scratch_bytes) {
      if (host_wait_) {
        CUDA_CHECK(cudaStreamSynchronize(stream_));
        if (st_.scratch) CUDA_CHECK(cudaFree(st_.scratch));
      } else if (st_.scratch) {
        st_.retired.push_back(st_.scratch);  // queued work may still use it: no host wait here
      }
      st_.scratch = nullptr;
      CUDA_CHECK(cudaMalloc(&st_.scratch, static_cast<size_t>(bytes)));
      st_.scratch_bytes = static_cast<size_t>(bytes);
    }
    return st_.scratch;
  }
  ~NcclTransport() override {
    if (open_) ncclGroupEnd();
    if (host_wait_) CUDA_CHECK_LOG(cudaStreamSynchronize(stream_));
  }

 private:
  void begin() {
    if (!open_) NCCL_CHECK(ncclGroupStart());
    open_ = true;
  }
  NcclState& st_;
  cudaStream_t stream_;
  bool host_wait_ = true;
  bool open_ = false;
  std::vector<int> peers_;
};

}  // namespace

int nccl_runtime_version() {
  int v = 0;
  return ncclGetVersion(&v) == ncclSuccess ? v : 0;
}

std::unique_ptr<Transport> make_nccl_transport(Communicator& comm, void* stream, bool host_wait) {
  return std::make_unique<NcclTransport>(comm, stream, host_wait);
}

void nccl_allreduce(Communicator& comm, const void* send, void* recv, int64_t count, DType dt, void* stream,
                    double timeout_s, bool host_wait) {
  NcclState& st = nccl_for(comm);
  auto s = static_cast<cudaStream_t>(stream);
  NCCL_CHECK(ncclAllReduce(send, recv, static_cast<size_t>(count), nccl_type(dt), ncclSum, st.comm, s));
  if (host_wait) wait_stream(st, s, timeout_s, "the other ranks of ncclAllReduce");
}

void wait_nccl_stream(Communicator& comm, void* stream, double timeout_s, const std::string& what) {
  wait_stream(nccl_for(comm), static_cast<cudaStream_t>(stream), timeout_s, what);
}

}  // namespace climseg::comm
