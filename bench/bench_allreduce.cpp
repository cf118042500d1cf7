// climseg-bench allreduce: nccl-tests' all_reduce_perf for our algorithms (comm/allreduce.h), MPI_Allreduce and,
// with --device cuda, ncclAllReduce. Run under mpirun; rank 0 prints.
//
// For each size from --minbytes to --maxbytes (times --stepfactor) and each algorithm: with --check, one call on
// exactly summable integers and the number of wrong elements over all ranks (#wrong; also a call's error counts as
// wrong); then, out-of-place and in-place, --warmup_iters untimed calls, a barrier, --iters timed calls. time is
// the slowest rank's mean per call (us); algbw = bytes / time; busbw = algbw * 2(n-1)/n, the bandwidth an optimal
// ring needs per link (nccl-tests' definition), comparable across rank counts.
#include "bench/bench_allreduce.h"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <vector>

#include "comm/allreduce.h"
#include "comm/world.h"
#include "engine/check.h"
#include "engine/tensor.h"

namespace climseg::bench {
namespace {

using namespace climseg::comm;

float exact_value(int rank, int64_t i) { return static_cast<float>((rank * 7 + i * 3 + i / 17) % 17 - 8); }

void fill_host(std::vector<std::byte>& h, int64_t count, DType dt, int rank) {
  for (int64_t i = 0; i < count; ++i) {
    const float v = exact_value(rank, i);
    if (dt == DType::f16)
      reinterpret_cast<Half*>(h.data())[i] = float_to_half(v);
    else if (dt == DType::bf16)
      reinterpret_cast<BFloat16*>(h.data())[i] = float_to_bf16(v);
    else
      reinterpret_cast<float*>(h.data())[i] = v;
  }
}
float host_value(const std::vector<std::byte>& h, int64_t i, DType dt) {
  if (dt == DType::f16) return half_to_float(reinterpret_cast<const Half*>(h.data())[i]);
  if (dt == DType::bf16) return bf16_to_float(reinterpret_cast<const BFloat16*>(h.data())[i]);
  return reinterpret_cast<const float*>(h.data())[i];
}

// A buffer on the benchmark's device; host staging for fills and checks.
struct Buf {
  std::vector<std::byte> host;
  Tensor dev;
  void* ptr = nullptr;
  Buf(int64_t bytes, Device d) : host(std::max<int64_t>(bytes, 1)) {
    if (d == Device::cuda) {
      dev = Tensor::empty(Shape{1, 1, 1, std::max<int64_t>(bytes, 1)}, DType::u8, Device::cuda);
      ptr = dev.data();
    } else {
      ptr = host.data();
    }
  }
  void upload() {
    if (!dev.data()) return;
    Tensor h = Tensor::empty(dev.shape(), DType::u8, Device::cpu);
    std::memcpy(h.data(), host.data(), host.size());
    dev.copy_from(h);
  }
  void download() {
    if (!dev.data()) return;
    Tensor h = Tensor::empty(dev.shape(), DType::u8, Device::cpu);
    h.copy_from(dev);
    std::memcpy(host.data(), h.data(), host.size());
  }
};

}  // namespace

int run_allreduce_bench(const AllreduceBenchOptions& o) {
  int init = 0;
  MPI_Initialized(&init);
  if (!init) MPI_Init(nullptr, nullptr);
  int failed = 0;
  {
    TopologyOptions to;
    to.ranks_per_node = o.ranks_per_node;
    Communicator comm(MPI_COMM_WORLD, to);
    const int n = comm.size(), me = comm.rank();
    const DType dt = parse_dtype(o.dtype);
    CS_CHECK(dt == DType::f32 || dt == DType::f16 || dt == DType::bf16, "--dtype: fp32, fp16 or bf16");
    const Device dev = parse_device(o.device);
    std::vector<AllreduceAlgo> algos;
    for (const std::string& a : o.algos) {
      if (a == "all") {
        for (auto x :
             {AllreduceAlgo::ring, AllreduceAlgo::tree, AllreduceAlgo::halving_doubling, AllreduceAlgo::hierarchical})
          algos.push_back(x);
        algos.push_back(dev == Device::cuda ? AllreduceAlgo::nccl : AllreduceAlgo::mpi);
      } else {
        algos.push_back(parse_algo(a));
      }
    }
    AllreduceOptions ao;
    ao.ports = o.ports;
    ao.device = dev;
    ao.timeout_s = o.timeout_s;
    const int64_t es = static_cast<int64_t>(dtype_size(dt));
    const double bus = n > 1 ? 2.0 * (n - 1) / n : 1.0;
    if (me == 0) {
      std::printf(
          "# climseg-bench allreduce: %s, %s buffers (%s transport), dtype %s, ports %d, iters %d, warmup %d, "
          "check %d\n",
          comm.topology().str().c_str(), dev == Device::cpu ? "host" : "device", dev == Device::cpu ? "MPI" : "NCCL",
          dtype_name(dt), o.ports, o.iters, o.warmup, o.check);
      std::printf("# time: slowest rank's mean per call; busbw = algbw * 2(n-1)/n\n");
      std::printf("#%71s%37s\n", "out-of-place", "in-place");
      std::printf("#%12s %12s %6s %17s %10s %8s %8s %7s %10s %8s %8s %7s\n", "size", "count", "type", "algo", "time",
                  "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong");
      std::printf("#%12s %12s %6s %17s %10s %8s %8s %7s %10s %8s %8s %7s\n", "(B)", "(elements)", "", "", "(us)",
                  "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "");
      std::fflush(stdout);
    }
    // The comm layer logs every (algorithm, size class) it runs; here only auto's choices are news.
    const bool has_auto = std::find(algos.begin(), algos.end(), AllreduceAlgo::auto_) != algos.end();
    LogFn print = [](const std::string& s) { std::printf("# %s\n", s.c_str()); };
    comm.set_logger(o.log_choice && has_auto ? print : LogFn{});
    for (int64_t bytes = o.minbytes; bytes <= o.maxbytes;
         bytes = o.stepfactor > 1 ? bytes * o.stepfactor : bytes + std::max<int64_t>(o.stepbytes, 1)) {
      const int64_t count = bytes / es;
      for (AllreduceAlgo algo : algos) {
        Buf send(count * es, dev), recv(count * es, dev);
        double t[2] = {0, 0};
        long long wrong[2] = {0, 0};
        for (int ip = 0; ip < 2; ++ip) {
          void* out = ip ? send.ptr : recv.ptr;
          long long w = 0;
          if (o.check) {
            fill_host(send.host, count, dt, me);
            send.upload();
            try {
              allreduce(comm, send.ptr, out, count, dt, algo, ao);
              Buf& res = ip ? send : recv;
              res.download();
              for (int64_t i = 0; i < count; ++i) {
                double ref = 0;
                for (int r = 0; r < n; ++r) ref += exact_value(r, i);
                w += host_value(res.host, i, dt) != ref;
              }
            } catch (const std::exception& e) {
              std::fprintf(stderr, "rank %d: %s %lld B: %s\n", me, algo_name(algo), static_cast<long long>(bytes),
                           e.what());
              w += std::max<int64_t>(count, 1);
            }
          }
          MPI_Allreduce(&w, &wrong[ip], 1, MPI_LONG_LONG, MPI_SUM, comm.world());
          fill_host(send.host, count, dt, me);
          send.upload();
          for (int k = 0; k < o.warmup; ++k) allreduce(comm, send.ptr, out, count, dt, algo, ao);
          MPI_Barrier(comm.world());
          const double t0 = MPI_Wtime();
          for (int k = 0; k < o.iters; ++k) allreduce(comm, send.ptr, out, count, dt, algo, ao);
          const double mine = (MPI_Wtime() - t0) / std::max(o.iters, 1);
          MPI_Allreduce(&mine, &t[ip], 1, MPI_DOUBLE, MPI_MAX, comm.world());
        }
        if (wrong[0] || wrong[1]) ++failed;
        if (me == 0) {
          const double b = static_cast<double>(count * es);
          std::printf(" %12lld %12lld %6s %17s", static_cast<long long>(count * es), static_cast<long long>(count),
                      dtype_name(dt), algo_name(algo));
          for (int ip = 0; ip < 2; ++ip) {
            const double alg = t[ip] > 0 ? b / t[ip] / 1e9 : 0;
            std::printf(" %10.1f %8.3f %8.3f %7s", t[ip] * 1e6, alg, alg * bus,
                        o.check ? std::to_string(wrong[ip]).c_str() : "N/A");
          }
          std::printf("\n");
          std::fflush(stdout);
        }
      }
    }
    if (me == 0 && o.check) std::printf("# rows with #wrong > 0: %d\n", failed);
  }
  MPI_Finalize();
  return failed ? 1 : 0;
}

}  // namespace climseg::bench
