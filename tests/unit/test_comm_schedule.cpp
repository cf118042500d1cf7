// Allreduce schedules (comm/allreduce.h) checked without MPI: the schedules of all ranks are executed together by a
// simulator with rendezvous semantics (a step of a rank completes only when each of its sends has met the peer's
// posted receive and each receive has met a send, matched first-in first-out per (source, destination, port,
// tag), with equal sizes). That is stricter than MPI's eager protocol, so a schedule that finishes here cannot
// deadlock under MPI. Buffers hold doubles with distinct integer values; every rank must end with the exact sum.
// Also checked: within a step no received range overlaps a sent range or another received-into-buffer range; the
// topology functions on hand-worked cases; the auto_ rule; and the real executor (run_schedule, in place and out of
// place, fp32 and fp16) with one thread per rank over an in-memory transport.
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

#include "comm/allreduce.h"
#include "comm/world.h"
#include "engine/check.h"

using namespace climseg;
using namespace climseg::comm;

namespace {

struct Posted {
  int rank;
  size_t op;  // index in the step's ops
};

// Runs all ranks' schedules; returns the number of elements that differ from the exact sum (or -1 on deadlock).
int64_t simulate(const std::vector<Schedule>& sched, int64_t count, std::string& why) {
  const int n = static_cast<int>(sched.size());
  std::vector<std::vector<double>> buf(n, std::vector<double>(count));
  std::vector<double> want(count, 0.0);
  for (int r = 0; r < n; ++r)
    for (int64_t i = 0; i < count; ++i) {
      buf[r][i] = 1.0 + r * 1e4 + static_cast<double>(i % 9973);
      want[i] += buf[r][i];
    }
  using Key = std::tuple<int, int, int, int>;  // src, dst, port, tag
  std::map<Key, std::deque<Posted>> sends, recvs;
  std::vector<size_t> at(n, 0);
  std::vector<std::vector<char>> matched(n);
  std::vector<std::vector<std::vector<double>>> payload(n);
  auto post_step = [&](int r) {
    while (at[r] < sched[r].steps.size() && sched[r].steps[at[r]].ops.empty()) ++at[r];
    if (at[r] >= sched[r].steps.size()) return;
    const auto& ops = sched[r].steps[at[r]].ops;
    matched[r].assign(ops.size(), 0);
    payload[r].assign(ops.size(), {});
    for (size_t k = 0; k < ops.size(); ++k) {
      const Transfer& x = ops[k];
      const bool is_send = x.kind == Transfer::send;
      Key key = is_send ? Key{r, x.peer, x.port, x.tag} : Key{x.peer, r, x.port, x.tag};
      auto& other = is_send ? recvs[key] : sends[key];
      if (!other.empty()) {
        Posted p = other.front();
        other.pop_front();
        const Transfer& y = sched[p.rank].steps[at[p.rank]].ops[p.op];
        if (y.count != x.count) why = "size mismatch";
        const Posted s = is_send ? Posted{r, k} : p, d = is_send ? p : Posted{r, k};
        const Transfer& sx = sched[s.rank].steps[at[s.rank]].ops[s.op];
        payload[d.rank][d.op].assign(buf[s.rank].begin() + sx.offset, buf[s.rank].begin() + sx.offset + sx.count);
        matched[r][k] = 1;
        matched[p.rank][p.op] = 1;
      } else {
        (is_send ? sends[key] : recvs[key]).push_back({r, k});
      }
    }
  };
  for (int r = 0; r < n; ++r) post_step(r);
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < n; ++r) {
      if (at[r] >= sched[r].steps.size()) continue;
      bool all = true;
      for (char m : matched[r]) all &= m != 0;
      if (!all) continue;
      const auto& ops = sched[r].steps[at[r]].ops;
      for (size_t k = 0; k < ops.size(); ++k) {
        const Transfer& x = ops[k];
        if (x.kind == Transfer::send) continue;
        for (int64_t i = 0; i < x.count; ++i) {
          if (x.kind == Transfer::recv_copy)
            buf[r][x.offset + i] = payload[r][k][i];
          else
            buf[r][x.offset + i] += payload[r][k][i];
        }
      }
      ++at[r];
      post_step(r);
      progress = true;
    }
  }
  for (int r = 0; r < n; ++r)
    if (at[r] < sched[r].steps.size()) {
      why = "deadlock: rank " + std::to_string(r) + " stuck at step " + std::to_string(at[r]);
      return -1;
    }
  int64_t wrong = 0;
  for (int r = 0; r < n; ++r)
    for (int64_t i = 0; i < count; ++i) wrong += buf[r][i] != want[i];
  return wrong;
}

// No step reads a range that the same step receives into, and no two receives into the buffer overlap.
bool steps_are_disjoint(const Schedule& s) {
  for (const Step& st : s.steps)
    for (size_t a = 0; a < st.ops.size(); ++a)
      for (size_t b = a + 1; b < st.ops.size(); ++b) {
        const Transfer &x = st.ops[a], &y = st.ops[b];
        const bool overlap = x.offset < y.offset + y.count && y.offset < x.offset + x.count;
        const bool both_send = x.kind == Transfer::send && y.kind == Transfer::send;
        const bool both_reduce = x.kind == Transfer::recv_reduce && y.kind == Transfer::recv_reduce;
        if (overlap && !both_send && !both_reduce) return false;
      }
  return true;
}

std::vector<std::vector<int>> layouts(int n) {
  std::vector<std::vector<int>> l = {nodes_by_count(n, n), nodes_by_count(n, 1), nodes_by_count(n, 2),
                                     nodes_by_count(n, 3)};
  if (n == 5) l.push_back(nodes_by_sizes({2, 2, 1}));
  if (n == 7) l.push_back(nodes_by_sizes({3, 3, 1}));
  if (n == 6) l.push_back(nodes_by_sizes({1, 4, 1}));
  if (n == 9) l.push_back(nodes_by_sizes({4, 1, 2, 2}));
  return l;
}

}  // namespace

TEST_CASE("topology from node assignments", "[comm][topology]") {
  Topology t = make_topology(4, nodes_by_sizes({2, 2, 1}));
  CHECK(t.size == 5);
  CHECK(t.num_nodes == 3);
  CHECK(t.node == 2);
  CHECK(t.local_rank == 0);
  CHECK(t.local_size == 1);
  CHECK_FALSE(t.uniform());
  CHECK(t.str() == "5 ranks on 3 nodes (2,2,1)");
  t = make_topology(3, nodes_by_count(7, 3));
  CHECK(t.node == 1);
  CHECK(t.local_rank == 0);
  CHECK(t.node_ranks[2] == std::vector<int>{6});
  t = make_topology(2, {1, 0, 1, 0});  // interleaved placement, as MPI may give
  CHECK(t.node == 1);
  CHECK(t.local_rank == 1);
  CHECK(t.node_ranks[0] == std::vector<int>{1, 3});
  // The device: local rank modulo the visible devices, the trainer's rule (it was the bare local rank here, so a node
  // with fewer GPUs than ranks failed cudaSetDevice in NCCL's set-up while the trainer shared the GPUs).
  CHECK(cuda_device_for(t, 8) == 1);
  CHECK(cuda_device_for(t, 1) == 0);
  CHECK(cuda_device_for(t, 0) == 0);
  CHECK(cuda_device_for_local_rank(5, 4) == 1);
  CHECK(cuda_device_for_local_rank(3, 4) == 3);
  CHECK_THROWS(nodes_by_count(4, 0));
  CHECK_THROWS(make_topology(0, {0, 2}));  // node 1 empty
}

TEST_CASE("auto_ rule", "[comm][auto]") {
  CHECK(choose_algo(make_topology(0, {0}), 1 << 30) == AllreduceAlgo::ring);
  CHECK(choose_algo(make_topology(0, nodes_by_count(4, 4)), 1024) == AllreduceAlgo::halving_doubling);
  CHECK(choose_algo(make_topology(0, nodes_by_count(4, 4)), 1 << 20) == AllreduceAlgo::ring);
  CHECK(choose_algo(make_topology(0, nodes_by_count(4, 2)), 1 << 20) == AllreduceAlgo::hierarchical);
  CHECK(choose_algo(make_topology(0, nodes_by_count(4, 1)), 1 << 20) == AllreduceAlgo::ring);
  CHECK(parse_algo("hier") == AllreduceAlgo::hierarchical);
  CHECK_THROWS(parse_algo("butterfly"));
}

TEST_CASE("every schedule completes under rendezvous semantics and sums exactly", "[comm][schedule]") {
  const AllreduceAlgo algos[] = {AllreduceAlgo::ring, AllreduceAlgo::tree, AllreduceAlgo::halving_doubling,
                                 AllreduceAlgo::hierarchical};
  for (int n = 1; n <= 9; ++n)
    for (const auto& nodes : layouts(n))
      for (AllreduceAlgo algo : algos)
        for (int64_t count : {0, 1, 2, 3, 7, 64, 1023, 1025})
          for (int ports : {1, 3}) {
            ScheduleParams p;
            p.ports = ports;
            p.chunk_elems = 100;  // several pipeline chunks for the tree at 1023+
            std::vector<Schedule> s;
            bool disjoint = true;
            for (int r = 0; r < n; ++r) {
              s.push_back(build_schedule(algo, make_topology(r, nodes), count, p));
              disjoint &= steps_are_disjoint(s.back());
            }
            std::string why;
            const int64_t wrong = simulate(s, count, why);
            INFO(algo_name(algo) << " n=" << n << " nodes=" << make_topology(0, nodes).str() << " count=" << count
                                 << " ports=" << ports << " " << why);
            CHECK(wrong == 0);
            CHECK(why.empty());
            CHECK(disjoint);
          }
}

TEST_CASE("ring and halving-doubling move the textbook volume", "[comm][schedule]") {
  // Ring: 2(n-1)/n of the buffer sent per rank; halving-doubling for a power of two: the same; with a fold, a rank
  // that folds out sends its whole buffer once.
  const int64_t count = 1 << 12;
  for (int n : {2, 4, 8}) {
    Topology t = make_topology(1, nodes_by_count(n, n));
    CHECK(build_schedule(AllreduceAlgo::ring, t, count).elems_sent() == 2 * (n - 1) * count / n);
    CHECK(build_schedule(AllreduceAlgo::halving_doubling, t, count).elems_sent() == 2 * (n - 1) * count / n);
    CHECK(build_schedule(AllreduceAlgo::ring, t, count).steps.size() == static_cast<size_t>(2 * (n - 1)));
  }
  // Hierarchical with 2 nodes of 2: intra reduce-scatter (count/2), inter allreduce of a half (count/2), intra
  // allgather (count/2).
  Topology t = make_topology(0, nodes_by_count(4, 2));
  CHECK(build_schedule(AllreduceAlgo::hierarchical, t, count).elems_sent() == count / 2 * 3);
  CHECK(build_schedule(AllreduceAlgo::halving_doubling, make_topology(0, nodes_by_count(5, 5)), count).elems_sent() ==
        count);
}

namespace {

// In-memory transport: one per rank (thread); sends are copied into a shared mailbox at once (eager), receives wait
// for their message in wait_all(), first-in first-out per (source, destination, port, tag).
struct Mailbox {
  std::mutex m;
  std::condition_variable cv;
  std::map<std::tuple<int, int, int, int>, std::deque<std::vector<std::byte>>> q;
};

class MemTransport final : public Transport {
 public:
  MemTransport(Mailbox& box, int rank) : box_(box), rank_(rank) {}
  Device device() const override { return Device::cpu; }
  void post_send(int peer, int port, int tag, const void* buf, int64_t bytes) override {
    std::vector<std::byte> msg(static_cast<const std::byte*>(buf), static_cast<const std::byte*>(buf) + bytes);
    std::lock_guard<std::mutex> lock(box_.m);
    box_.q[{rank_, peer, port, tag}].push_back(std::move(msg));
    box_.cv.notify_all();
  }
  void post_recv(int peer, int port, int tag, void* buf, int64_t bytes) override {
    recvs_.push_back({peer, port, tag, buf, bytes});
  }
  void wait_all(double) override {
    for (const Recv& r : recvs_) {
      std::unique_lock<std::mutex> lock(box_.m);
      auto& q = box_.q[{r.peer, rank_, r.port, r.tag}];
      CS_CHECK(box_.cv.wait_for(lock, std::chrono::seconds(10), [&] { return !q.empty(); }), "rank ", rank_,
               " waited 10 s for rank ", r.peer);
      CS_CHECK(static_cast<int64_t>(q.front().size()) == r.bytes, "size mismatch");
      std::memcpy(r.buf, q.front().data(), r.bytes);
      q.pop_front();
    }
    recvs_.clear();
  }
  void reduce_sum(void* dst, const void* a, const void* b, int64_t count, DType dt) override {
    host_reduce_sum(dst, a, b, count, dt);
  }
  void copy(void* dst, const void* src, int64_t bytes) override { std::memcpy(dst, src, bytes); }
  void* scratch(int64_t bytes) override {
    scratch_.resize(std::max<int64_t>(bytes, 1));
    return scratch_.data();
  }

 private:
  struct Recv {
    int peer, port, tag;
    void* buf;
    int64_t bytes;
  };
  Mailbox& box_;
  int rank_;
  std::vector<Recv> recvs_;
  std::vector<std::byte> scratch_;
};

}  // namespace

TEST_CASE("run_schedule in place and out of place over an in-memory transport", "[comm][executor]") {
  const AllreduceAlgo algos[] = {AllreduceAlgo::ring, AllreduceAlgo::tree, AllreduceAlgo::halving_doubling,
                                 AllreduceAlgo::hierarchical};
  for (int n : {2, 3, 5, 6})
    for (const auto& nodes :
         {nodes_by_count(n, 2), nodes_by_sizes(n == 5 ? std::vector<int>{2, 2, 1} : std::vector<int>{n - 1, 1})})
      for (AllreduceAlgo algo : algos)
        for (int64_t count : {1, 3, 7, 1025})
          for (DType dt : {DType::f32, DType::f16})
            for (bool in_place : {true, false}) {
              ScheduleParams p;
              p.ports = 2;
              p.chunk_elems = 100;
              Mailbox box;
              const size_t es = dtype_size(dt);
              std::vector<std::vector<std::byte>> src(n, std::vector<std::byte>(count * es)),
                  dst(n, std::vector<std::byte>(count * es, std::byte{0x7f}));
              std::vector<std::string> errors(n);
              auto value = [](int r, int64_t i) { return static_cast<float>((r * 5 + i * 3) % 13 - 6); };
              for (int r = 0; r < n; ++r)
                for (int64_t i = 0; i < count; ++i) {
                  if (dt == DType::f32)
                    reinterpret_cast<float*>(src[r].data())[i] = value(r, i);
                  else
                    reinterpret_cast<Half*>(src[r].data())[i] = float_to_half(value(r, i));
                }
              const auto orig = src;
              std::vector<std::thread> threads;
              for (int r = 0; r < n; ++r)
                threads.emplace_back([&, r] {
                  try {
                    MemTransport tr(box, r);
                    void* out = in_place ? src[r].data() : dst[r].data();
                    run_schedule(build_schedule(algo, make_topology(r, nodes), count, p), tr, src[r].data(), out, count,
                                 dt, 0);
                  } catch (const std::exception& e) {
                    errors[r] = e.what();
                  }
                });
              for (auto& t : threads) t.join();
              int64_t wrong = 0;
              for (int r = 0; r < n; ++r) {
                const auto& out = in_place ? src[r] : dst[r];
                for (int64_t i = 0; i < count; ++i) {
                  float want = 0;
                  for (int q = 0; q < n; ++q) want += value(q, i);
                  const float got = dt == DType::f32 ? reinterpret_cast<const float*>(out.data())[i]
                                                     : half_to_float(reinterpret_cast<const Half*>(out.data())[i]);
                  wrong += got != want;
                }
                if (!in_place) wrong += src[r] != orig[r];
              }
              INFO(algo_name(algo) << " n=" << n << " " << make_topology(0, nodes).str() << " count=" << count << " "
                                   << dtype_name(dt) << (in_place ? " in place" : " out of place") << " " << errors[0]);
              CHECK(wrong == 0);
              for (const auto& e : errors) CHECK(e.empty());
            }
}
