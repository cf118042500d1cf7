// comm/data_parallel.h with MPI.
#include "comm/data_parallel.h"

#include <mpi.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "comm/allreduce.h"
#include "comm/ranks.h"
#include "comm/transport.h"
#include "comm/world.h"
#include "engine/check.h"
#include "engine/check_mpi.h"
#include "engine/crc32c.h"
#include "engine/event.h"
#include "engine/profiler.h"

namespace climseg::comm {

namespace {

struct Bucket {
  int64_t offset = 0, count = 0;  // elements of the flat gradient buffer
  int first_node = 0;             // the lowest node with a parameter in it: the bucket is final after its backward
};

}  // namespace

struct DataParallel::Impl {
  DistOptions opt;
  Device device;
  ExecContext& ctx;
  std::unique_ptr<Communicator> comm;
  AllreduceAlgo algo = AllreduceAlgo::auto_;
  AllreduceOptions aopt;
  Tensor grads, lag;
  DType dt = DType::f32;
  std::vector<Bucket> buckets;
  std::vector<std::vector<int>> buckets_of_node;  // node -> buckets that become final after its backward

  // Host buffers: a communication thread runs the allreduces in order while backward goes on.
  std::thread worker;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<void*, int64_t>> queue;
  int64_t in_flight = 0;
  bool stop = false;
  std::exception_ptr error;

  // Device buffers: the NCCL transport on a communication stream ordered with the compute stream by events
  // (created once; an event may be recorded again as soon as its wait is enqueued). Each bucket's reduction is
  // queued there without a host wait (AllreduceOptions::host_wait false), so it overlaps the rest of backward;
  // wait_all() waits once (with the deadline) before the optimizer reads the sums.
  std::unique_ptr<ExecContext> comm_ctx;
  Event ready, done;
  bool device_pending = false;  // reductions queued on comm_ctx since the last wait_all

  Impl(const DistOptions& o, Device d, ExecContext& c) : opt(o), device(d), ctx(c) {}

  void reduce_now(void* p, int64_t n) {
    if (n > 0) allreduce(*comm, p, p, n, dt, algo, aopt);
  }

  void run_worker() {
    for (;;) {
      std::pair<void*, int64_t> job;
      {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return stop || !queue.empty(); });
        if (queue.empty()) return;
        job = queue.front();
        queue.pop_front();
      }
      try {
        bool skip = false;
        {
          std::lock_guard<std::mutex> lk(mu);
          skip = error != nullptr;  // after a failure, drain without communicating (the run is ending)
        }
        if (!skip) reduce_now(job.first, job.second);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!error) error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lk(mu);
        --in_flight;
      }
      cv.notify_all();
    }
  }

  void launch(const Tensor& buf, int64_t offset, int64_t count) {
    void* p = static_cast<char*>(buf.data()) + static_cast<size_t>(offset) * dtype_size(dt);
    if (device == Device::cuda) {
      ready.record(ctx);
      ready.wait(*comm_ctx);
      reduce_now(p, count);  // queued on the communication stream; the host goes on with backward
      device_pending = true;
      return;
    }
    if (!opt.overlap) {
      reduce_now(p, count);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu);
      queue.emplace_back(p, count);
      ++in_flight;
    }
    cv.notify_all();
  }

  void wait_all() {
    if (device == Device::cuda) {
      if (device_pending) {
        device_pending = false;
#if defined(CLIMSEG_HAVE_NCCL)
        wait_nccl_stream(*comm, comm_ctx->stream(), opt.timeout_s, "the gradient allreduces of this step");
#endif
      }
      done.record(*comm_ctx);
      done.wait(ctx);
      return;
    }
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return in_flight == 0; });
    if (error) {
      std::exception_ptr e = error;
      lk.unlock();
      std::rethrow_exception(e);
    }
  }
};

DataParallel::DataParallel(const DistOptions& opt, const Net& net, Device device, ExecContext& ctx)
    : impl_(std::make_unique<Impl>(opt, device, ctx)) {
  Impl& m = *impl_;
  CS_CHECK(opt.lag == 0 || opt.lag == 1, "--gradient-lag ", opt.lag, ": use 0 or 1");
  CS_CHECK(opt.bucket_mb > 0, "--bucket-mb must be positive");
  ensure_mpi();
  TopologyOptions to;
  to.ranks_per_node = opt.ranks_per_node;
  m.comm = std::make_unique<Communicator>(MPI_COMM_WORLD, to);
  m.algo = parse_algo(opt.algo);
  m.aopt.ports = opt.ports;
  m.aopt.timeout_s = opt.timeout_s;
  m.aopt.device = device;
  if (device == Device::cuda) {
    m.comm_ctx = std::make_unique<ExecContext>(Device::cuda, ctx.device_index());
    m.ready = Event(Device::cuda, ctx.device_index());
    m.done = Event(Device::cuda, ctx.device_index());
    m.aopt.stream = m.comm_ctx->stream();
    m.aopt.host_wait = false;
    CS_CHECK(m.algo != AllreduceAlgo::mpi, "--allreduce mpi reduces host buffers; CUDA gradients use nccl, ",
             "ring, tree, halving_doubling, hierarchical or auto");
  }
  m.grads = net.grad_buffer();
  m.dt = m.grads.dtype();
  // Buckets over the flat buffer, from its end (the last layers' parameters, final first in backward).
  const auto& params = net.params();
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(opt.bucket_mb * 1024 * 1024) /
                                                static_cast<int64_t>(dtype_size(m.dt)));
  const int64_t total = m.grads.numel();
  int64_t end = total;
  for (int i = static_cast<int>(params.size()) - 1; i >= 0; --i) {
    const bool last = i == 0;
    const int64_t begin = last ? 0 : params[static_cast<size_t>(i)].offset;
    if (end - begin >= cap || last) {
      m.buckets.push_back({begin, end - begin, params[static_cast<size_t>(i)].node});
      end = begin;
    }
  }
  m.buckets_of_node.resize(static_cast<size_t>(net.num_nodes()));
  for (size_t b = 0; b < m.buckets.size(); ++b)
    m.buckets_of_node[static_cast<size_t>(m.buckets[b].first_node)].push_back(static_cast<int>(b));
  if (opt.lag == 1) m.lag = Tensor::zeros(m.grads.shape(), m.dt, device, &ctx);
  if (device == Device::cpu && opt.overlap) m.worker = std::thread([this] { impl_->run_worker(); });
}

DataParallel::~DataParallel() {
  Impl& m = *impl_;
  if (m.worker.joinable()) {
    {
      std::lock_guard<std::mutex> lk(m.mu);
      m.stop = true;
    }
    m.cv.notify_all();
    m.worker.join();
  }
}

int DataParallel::rank() const { return impl_->comm->rank(); }
int DataParallel::size() const { return impl_->comm->size(); }
int DataParallel::local_rank() const { return impl_->comm->topology().local_rank; }
std::string DataParallel::topology() const { return impl_->comm->topology().str(); }
bool DataParallel::has_lag() const { return impl_->lag.defined(); }
Tensor DataParallel::optimizer_grads() const { return has_lag() ? impl_->lag : impl_->grads; }

void DataParallel::node_done(int node) {
  Impl& m = *impl_;
  if (has_lag() || !m.opt.overlap) return;
  ProfileScope scope(m.ctx, ProfCategory::allreduce, "bucket launch");
  for (int b : m.buckets_of_node[static_cast<size_t>(node)])
    m.launch(m.grads, m.buckets[static_cast<size_t>(b)].offset, m.buckets[static_cast<size_t>(b)].count);
}

void DataParallel::finish() {
  Impl& m = *impl_;
  ProfileScope scope(m.ctx, ProfCategory::allreduce, "allreduce wait");
  if (!has_lag() && !m.opt.overlap)
    for (const Bucket& b : m.buckets) m.launch(m.grads, b.offset, b.count);
  m.wait_all();  // with lag: the previous step's gradients, reduced while this step ran
}

void DataParallel::after_step() {
  Impl& m = *impl_;
  if (!has_lag()) return;
  ProfileScope scope(m.ctx, ProfCategory::allreduce, "lag launch");
  m.lag.copy_from(m.grads, &m.ctx);
  m.launch(m.lag, 0, m.lag.numel());
}

Tensor DataParallel::lag_buffer() {
  impl_->wait_all();
  return impl_->lag;
}

void DataParallel::set_lag_buffer(const Tensor& host) {
  impl_->wait_all();
  impl_->lag.copy_from(host, &impl_->ctx);
}

void DataParallel::sum(std::vector<double>& v) {
  if (v.empty()) return;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_SUM,
                          impl_->comm->world()));
}

void DataParallel::average_state(Net& net, ExecContext& ctx) {
  const Tensor& st = net.state_buffer();
  if (!st.defined()) return;
  Tensor host = st.to(Device::cpu, &ctx);
  ctx.synchronize();
  CS_CHECK(host.dtype() == DType::f32 || host.dtype() == DType::f64, "average_state: statistics dtype ",
           dtype_name(host.dtype()));
  const MPI_Datatype t = host.dtype() == DType::f32 ? MPI_FLOAT : MPI_DOUBLE;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, host.data(), static_cast<int>(host.numel()), t, MPI_SUM,
                          impl_->comm->world()));
  const double inv = 1.0 / static_cast<double>(size());
  if (host.dtype() == DType::f32) {
    float* p = host.data_as<float>();
    for (int64_t i = 0; i < host.numel(); ++i) p[i] = static_cast<float>(p[i] * inv);
  } else {
    double* p = host.data_as<double>();
    for (int64_t i = 0; i < host.numel(); ++i) p[i] *= inv;
  }
  st.copy_from(host, &ctx);
  ctx.synchronize();
}

void DataParallel::check_replicas(const Tensor& master, int64_t step, ExecContext& ctx) {
  Tensor host = master.to(Device::cpu, &ctx);
  ctx.synchronize();
  const uint32_t mine = crc32c(host.data(), host.nbytes());
  std::vector<uint32_t> all(static_cast<size_t>(size()));
  MPI_CHECK(MPI_Allgather(&mine, 1, MPI_UINT32_T, all.data(), 1, MPI_UINT32_T, impl_->comm->world()));
  std::string bad;
  for (int r = 1; r < size(); ++r)
    if (all[static_cast<size_t>(r)] != all[0]) bad += " " + std::to_string(r);
  CS_CHECK(bad.empty(), "--check-replicas: after step ", step, " the weights of rank(s)", bad,
           " differ from rank 0's (CRC-32C of the master weights)");
}

std::string DataParallel::broadcast_string(const std::string& s) {
  int64_t n = static_cast<int64_t>(s.size());
  MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT64_T, 0, impl_->comm->world()));
  std::string out = rank() == 0 ? s : std::string(static_cast<size_t>(n), '\0');
  if (n > 0) MPI_CHECK(MPI_Bcast(out.data(), static_cast<int>(n), MPI_CHAR, 0, impl_->comm->world()));
  return out;
}

}  // namespace climseg::comm
