// MPI point-to-point transport on host buffers (see comm/transport.h). Every transfer is one MPI_Isend/MPI_Irecv on
// the port's communicator; wait_all() either blocks in MPI_Waitall (no deadline) or polls MPI_Testsome until the
// deadline, yielding the core between polls (oversubscribed runs share cores with the peers we wait for).
//
// Messages larger than INT_MAX bytes are sent as several messages of at most 1 GiB with the same tag; MPI's
// non-overtaking rule keeps them in order.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>
#include <thread>
#include <vector>

#include "comm/transport.h"
#include "engine/check.h"
#include "engine/check_mpi.h"

namespace climseg::comm {

void host_reduce_sum(void* dst, const void* a, const void* b, int64_t count, DType dt) {
  switch (dt) {
    case DType::f32: {
      auto* d = static_cast<float*>(dst);
      auto *x = static_cast<const float*>(a), *y = static_cast<const float*>(b);
      for (int64_t i = 0; i < count; ++i) d[i] = x[i] + y[i];
      return;
    }
    case DType::f64: {
      auto* d = static_cast<double*>(dst);
      auto *x = static_cast<const double*>(a), *y = static_cast<const double*>(b);
      for (int64_t i = 0; i < count; ++i) d[i] = x[i] + y[i];
      return;
    }
    case DType::f16: {
      auto* d = static_cast<Half*>(dst);
      auto *x = static_cast<const Half*>(a), *y = static_cast<const Half*>(b);
      for (int64_t i = 0; i < count; ++i) d[i] = float_to_half(half_to_float(x[i]) + half_to_float(y[i]));
      return;
    }
    case DType::bf16: {
      auto* d = static_cast<BFloat16*>(dst);
      auto *x = static_cast<const BFloat16*>(a), *y = static_cast<const BFloat16*>(b);
      for (int64_t i = 0; i < count; ++i) d[i] = float_to_bf16(bf16_to_float(x[i]) + bf16_to_float(y[i]));
      return;
    }
    default:
      CS_THROW("allreduce: unsupported dtype ", dtype_name(dt), " (fp32, fp64, fp16 and bf16 are summed)");
  }
}

namespace {

constexpr int64_t kMaxMessage = int64_t{1} << 30;

class MpiTransport final : public Transport {
 public:
  explicit MpiTransport(Communicator& comm) : comm_(comm) {}
  ~MpiTransport() override { abandon(); }

  Device device() const override { return Device::cpu; }

  void post_send(int peer, int port, int tag, const void* buf, int64_t bytes) override {
    post(peer, port, tag, const_cast<void*>(buf), bytes, /*send=*/true);
  }
  void post_recv(int peer, int port, int tag, void* buf, int64_t bytes) override {
    post(peer, port, tag, buf, bytes, /*send=*/false);
  }

  void wait_all(double timeout_s) override {
    if (reqs_.empty()) return;
    if (timeout_s <= 0) {
      std::vector<MPI_Status> st(reqs_.size());
      int rc = MPI_Waitall(static_cast<int>(reqs_.size()), reqs_.data(), st.data());
      if (rc != MPI_SUCCESS) {
        std::string what = describe_failure(st);
        abandon();
        CS_THROW("allreduce: MPI transfer failed: ", what, ": ", detail::mpi_error_string(rc));
      }
      reqs_.clear();
      info_.clear();
      return;
    }
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + std::chrono::duration<double>(timeout_s);
    int remaining = static_cast<int>(reqs_.size());
    std::vector<int> done(reqs_.size());
    std::vector<MPI_Status> st(reqs_.size());
    int polls = 0;
    while (remaining > 0) {
      int outcount = 0;
      int rc = MPI_Testsome(static_cast<int>(reqs_.size()), reqs_.data(), &outcount, done.data(), st.data());
      if (rc != MPI_SUCCESS) {
        std::string what = describe_failure(st);
        abandon();
        CS_THROW("allreduce: MPI transfer failed: ", what, ": ", detail::mpi_error_string(rc));
      }
      if (outcount != MPI_UNDEFINED) remaining -= outcount;
      if (remaining == 0) break;
      if (clock::now() > deadline) {
        // The first transfer still pending names the rank we wait for.
        size_t i = 0;
        while (i < reqs_.size() && reqs_[i] == MPI_REQUEST_NULL) ++i;
        const Info& f = info_[i];
        std::ostringstream os;
        os << "allreduce: timed out after " << timeout_s << " s waiting for rank " << f.peer << " ("
           << (f.send ? "send of " : "receive of ") << f.bytes << " bytes, port " << f.port << ", tag " << f.tag << ", "
           << remaining << " transfer(s) pending on rank " << comm_.rank() << "); rank " << f.peer
           << " may have failed or left the collective";
        abandon();
        CS_THROW(os.str());
      }
      if (++polls > 64) std::this_thread::yield();
    }
    reqs_.clear();
    info_.clear();
  }

  void reduce_sum(void* dst, const void* a, const void* b, int64_t count, DType dt) override {
    host_reduce_sum(dst, a, b, count, dt);
  }
  void copy(void* dst, const void* src, int64_t bytes) override {
    if (bytes > 0 && dst != src) std::memcpy(dst, src, static_cast<size_t>(bytes));
  }
  void* scratch(int64_t bytes) override { return comm_.scratch(static_cast<size_t>(std::max<int64_t>(bytes, 1))); }

 private:
  struct Info {
    int peer, port, tag;
    int64_t bytes;
    bool send;
  };

  void post(int peer, int port, int tag, void* buf, int64_t bytes, bool send) {
    MPI_Comm c = comm_.port(port);
    auto* p = static_cast<char*>(buf);
    for (int64_t off = 0; off < bytes || (bytes == 0 && off == 0); off += kMaxMessage) {
      int n = static_cast<int>(std::min(kMaxMessage, bytes - off));
      MPI_Request r = MPI_REQUEST_NULL;
      if (send)
        MPI_CHECK(MPI_Isend(p + off, n, MPI_BYTE, peer, tag, c, &r));
      else
        MPI_CHECK(MPI_Irecv(p + off, n, MPI_BYTE, peer, tag, c, &r));
      reqs_.push_back(r);
      info_.push_back({peer, port, tag, bytes, send});
      if (bytes == 0) break;
    }
  }

  std::string describe_failure(const std::vector<MPI_Status>& st) {
    for (size_t i = 0; i < reqs_.size(); ++i)
      if (st[i].MPI_ERROR != MPI_SUCCESS && st[i].MPI_ERROR != MPI_ERR_PENDING) {
        std::ostringstream os;
        os << (info_[i].send ? "send to" : "receive from") << " rank " << info_[i].peer;
        return os.str();
      }
    return "a transfer";
  }

  // Gives up on pending transfers after a failure: receives are cancelled, sends are released (an eager send has
  // left already; a rendezvous send can only complete if the peer ever posts its receive).
  void abandon() {
    for (size_t i = 0; i < reqs_.size(); ++i) {
      if (reqs_[i] == MPI_REQUEST_NULL) continue;
      if (!info_[i].send) MPI_Cancel(&reqs_[i]);
      MPI_Request_free(&reqs_[i]);
    }
    reqs_.clear();
    info_.clear();
  }

  Communicator& comm_;
  std::vector<MPI_Request> reqs_;
  std::vector<Info> info_;
};

}  // namespace

std::unique_ptr<Transport> make_mpi_transport(Communicator& comm) { return std::make_unique<MpiTransport>(comm); }

}  // namespace climseg::comm
