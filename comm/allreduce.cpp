// Allreduce schedules, their executor, the auto_ rule and the baselines; see comm/allreduce.h and
// docs/distributed.md (step schedules, alpha-beta costs, numerics).
//
// Builders append transfers at absolute step indices, so concurrent sub-schedules (the two trees, the inter-node
// rings of several shards and ports) are merged by writing into the same steps. Transfers of zero elements are
// never emitted; both ends compute the same ranges, so both skip them. Deadlock freedom: every transfer is placed
// at the same (phase, step within phase) on both of its ends, and each rank runs its steps in order, so a rank
// only ever waits for a peer that is behind it in that order.
#include "comm/allreduce.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <sstream>
#include <thread>

#include "engine/check.h"
#include "engine/check_mpi.h"

namespace climseg::comm {

const char* algo_name(AllreduceAlgo a) {
  switch (a) {
    case AllreduceAlgo::ring:
      return "ring";
    case AllreduceAlgo::tree:
      return "tree";
    case AllreduceAlgo::halving_doubling:
      return "halving_doubling";
    case AllreduceAlgo::hierarchical:
      return "hierarchical";
    case AllreduceAlgo::mpi:
      return "mpi";
    case AllreduceAlgo::nccl:
      return "nccl";
    case AllreduceAlgo::auto_:
      return "auto";
  }
  return "?";
}

AllreduceAlgo parse_algo(std::string_view s) {
  if (s == "ring") return AllreduceAlgo::ring;
  if (s == "tree") return AllreduceAlgo::tree;
  if (s == "halving_doubling" || s == "hd") return AllreduceAlgo::halving_doubling;
  if (s == "hierarchical" || s == "hier") return AllreduceAlgo::hierarchical;
  if (s == "mpi") return AllreduceAlgo::mpi;
  if (s == "nccl") return AllreduceAlgo::nccl;
  if (s == "auto" || s == "auto_") return AllreduceAlgo::auto_;
  CS_THROW("unknown allreduce algorithm '", s, "' (ring, tree, halving_doubling, hierarchical, mpi, nccl, auto)");
}

AllreduceAlgo choose_algo(const Topology& t, int64_t bytes, const AllreduceOptions& opt) {
  if (t.size == 1) return AllreduceAlgo::ring;
  if (bytes <= opt.small_bytes) return AllreduceAlgo::halving_doubling;
  bool some_node_shared = false;
  for (const auto& n : t.node_ranks) some_node_shared |= n.size() > 1;
  if (t.multi_node() && some_node_shared) return AllreduceAlgo::hierarchical;
  return AllreduceAlgo::ring;
}

int64_t Schedule::elems_sent() const {
  int64_t n = 0;
  for (const Step& s : steps)
    for (const Transfer& x : s.ops)
      if (x.kind == Transfer::send) n += x.count;
  return n;
}

int64_t Schedule::max_step_reduce() const {
  int64_t m = 0;
  for (const Step& s : steps) {
    int64_t n = 0;
    for (const Transfer& x : s.ops)
      if (x.kind == Transfer::recv_reduce) n += x.count;
    m = std::max(m, n);
  }
  return m;
}

// ---- builders ------------------------------------------------------------------------------------------------------

namespace {

struct Range {
  int64_t off, cnt;
};

// Part k of `parts` equal parts of r (the first parts are the shorter ones when it does not divide).
Range part(Range r, int64_t k, int64_t parts) {
  int64_t a = r.cnt * k / parts, b = r.cnt * (k + 1) / parts;
  return {r.off + a, b - a};
}

void add(Schedule& s, int step, Transfer::Kind kind, int peer, int port, int tag, Range r) {
  if (r.cnt <= 0) return;
  if (static_cast<int>(s.steps.size()) <= step) s.steps.resize(step + 1);
  s.steps[step].ops.push_back({kind, peer, port, tag % 32768, r.off, r.cnt});
}

int mod(int a, int n) { return ((a % n) + n) % n; }

// Ring reduce-scatter over `group` (world ranks in ring order; I am group[me]) on range r cut into n segments:
// at step k I send segment me-k-1 to my right neighbour and add segment me-k-2 from my left one; after n-1 steps I
// hold the full sum of segment `me`. Returns the number of steps (n-1).
int ring_reduce_scatter(Schedule& s, int base, const std::vector<int>& group, int me, Range r, int port, int tag) {
  const int n = static_cast<int>(group.size());
  const int right = group[mod(me + 1, n)], left = group[mod(me - 1, n)];
  for (int k = 0; k < n - 1; ++k) {
    add(s, base + k, Transfer::send, right, port, tag, part(r, mod(me - k - 1, n), n));
    add(s, base + k, Transfer::recv_reduce, left, port, tag, part(r, mod(me - k - 2, n), n));
  }
  return n - 1;
}

// Ring allgather: I hold segment `me`; at step k I pass on segment me-k and receive segment me-k-1.
int ring_allgather(Schedule& s, int base, const std::vector<int>& group, int me, Range r, int port, int tag) {
  const int n = static_cast<int>(group.size());
  const int right = group[mod(me + 1, n)], left = group[mod(me - 1, n)];
  for (int k = 0; k < n - 1; ++k) {
    add(s, base + k, Transfer::send, right, port, tag, part(r, mod(me - k, n), n));
    add(s, base + k, Transfer::recv_copy, left, port, tag, part(r, mod(me - k - 1, n), n));
  }
  return n - 1;
}

int ring_allreduce(Schedule& s, int base, const std::vector<int>& group, int me, Range r, int port, int tag) {
  int k = ring_reduce_scatter(s, base, group, me, r, port, tag);
  return k + ring_allgather(s, base + k, group, me, r, port, tag);
}

// Recursive halving-doubling over `group`. n = p' + rem with p' a power of two: ranks 2i and 2i+1 (i < rem) fold
// first (the even one sends everything to the odd one, which continues as virtual rank i), and the odd one sends the
// result back at the end. Virtual ranks v halve: at level mask = p'/2 ... 1 the partner is v ^ mask, both hold the
// same range; the one with the bit clear keeps the lower half.
void halving_doubling(Schedule& s, const std::vector<int>& group, int me, Range r, int tag) {
  const int n = static_cast<int>(group.size());
  int p2 = 1;
  while (p2 * 2 <= n) p2 *= 2;
  const int rem = n - p2;
  int levels = 0;
  while ((1 << levels) < p2) ++levels;
  const int last = 1 + 2 * levels;    // step of the unfold
  if (me < 2 * rem && me % 2 == 0) {  // folded out: hand over, wait for the result
    add(s, 0, Transfer::send, group[me + 1], 0, tag, r);
    add(s, last, Transfer::recv_copy, group[me + 1], 0, tag, r);
    return;
  }
  if (me < 2 * rem) add(s, 0, Transfer::recv_reduce, group[me - 1], 0, tag, r);
  const int v = me < 2 * rem ? me / 2 : me - rem;
  auto real = [&](int w) { return group[w < rem ? 2 * w + 1 : w + rem]; };
  std::vector<Range> keep(levels), give(levels);
  Range cur = r;
  int step = 1;
  for (int l = 0, mask = p2 / 2; mask >= 1; ++l, mask /= 2, ++step) {
    const int peer = real(v ^ mask);
    Range lo{cur.off, cur.cnt / 2}, hi{cur.off + cur.cnt / 2, cur.cnt - cur.cnt / 2};
    keep[l] = (v & mask) ? hi : lo;
    give[l] = (v & mask) ? lo : hi;
    add(s, step, Transfer::send, peer, 0, tag, give[l]);
    add(s, step, Transfer::recv_reduce, peer, 0, tag, keep[l]);
    cur = keep[l];
  }
  for (int l = levels - 1, mask = 1; l >= 0; --l, mask *= 2, ++step) {
    const int peer = real(v ^ mask);
    add(s, step, Transfer::send, peer, 0, tag, keep[l]);
    add(s, step, Transfer::recv_copy, peer, 0, tag, give[l]);
  }
  if (me < 2 * rem) add(s, last, Transfer::send, group[me - 1], 0, tag, r);
}

// In-order balanced binary tree over positions [lo, hi): the root is the middle position.
struct TreeNode {
  int parent = -1, depth = 0, height = 0;
  std::vector<int> children;
};
int build_tree(std::vector<TreeNode>& t, int lo, int hi, int parent, int depth) {
  if (lo >= hi) return -1;
  const int mid = lo + (hi - lo) / 2;
  t[mid].parent = parent;
  t[mid].depth = depth;
  for (int c : {build_tree(t, lo, mid, mid, depth + 1), build_tree(t, mid + 1, hi, mid, depth + 1)})
    if (c >= 0) {
      t[mid].children.push_back(c);
      t[mid].height = std::max(t[mid].height, t[c].height + 1);
    }
  return mid;
}

// Double binary tree: tree 0 places rank i at position i, tree 1 at the mirrored position n-1-i (n even) or the
// shifted one i+1 mod n (n odd), so that most leaves of one tree are inner nodes of the other (NCCL's construction).
// Tree t reduces half t of the range to its root and broadcasts it back. Each half is cut into chunks; in the reduce
// phase a node of height h sends chunk c to its parent at step c + h (its children, of smaller height, have sent
// theirs before), in the broadcast phase (after both trees' reduce phases) a node of depth d receives chunk c at
// step R + c + d - 1 and forwards it at R + c + d. Simplification (documented): the broadcast of a tree does not
// start before both reduce phases are over.
void double_tree(Schedule& s, int n, int rank, Range r, int64_t chunk_elems) {
  std::vector<TreeNode> t(n);
  const int root = build_tree(t, 0, n, -1, 0);
  auto pos_of = [&](int tree, int rk) { return tree == 0 ? rk : (n % 2 == 0 ? n - 1 - rk : (rk + 1) % n); };
  auto rank_of = [&](int tree, int pos) { return tree == 0 ? pos : (n % 2 == 0 ? n - 1 - pos : (pos + n - 1) % n); };
  Range half[2] = {{r.off, r.cnt / 2}, {r.off + r.cnt / 2, r.cnt - r.cnt / 2}};
  int64_t chunks[2];
  int reduce_len = 0;
  for (int k = 0; k < 2; ++k) {
    chunks[k] = std::max<int64_t>(1, (half[k].cnt + chunk_elems - 1) / chunk_elems);
    reduce_len = std::max(reduce_len, static_cast<int>(chunks[k]) + t[root].height);
  }
  for (int k = 0; k < 2; ++k) {
    const TreeNode& me = t[pos_of(k, rank)];
    for (int64_t c = 0; c < chunks[k]; ++c) {
      const Range ch = part(half[k], c, chunks[k]);
      const int ci = static_cast<int>(c);
      for (int child : me.children) add(s, ci + t[child].height, Transfer::recv_reduce, rank_of(k, child), 0, k, ch);
      if (me.parent >= 0) {
        add(s, ci + me.height, Transfer::send, rank_of(k, me.parent), 0, k, ch);
        add(s, reduce_len + ci + me.depth - 1, Transfer::recv_copy, rank_of(k, me.parent), 0, k, ch);
      }
      for (int child : me.children) add(s, reduce_len + ci + me.depth, Transfer::send, rank_of(k, child), 0, k, ch);
    }
  }
}

// Hierarchical: on every node, the range is cut into local_size segments (node-specific when node sizes differ).
// After the intra-node ring reduce-scatter, local rank l of each node holds its node's sum of segment l. The pieces
// of the inter-node phase are the intersections of all nodes' segments; for each piece the owners (one rank per
// node) run a ring allreduce, split into `ports` parts on separate channels. All pieces and ports run concurrently
// (same steps). Then the intra-node ring allgather.
void hierarchical(Schedule& s, const Topology& t, Range r, int ports) {
  const std::vector<int>& mine = t.node_ranks[t.node];
  int step = ring_reduce_scatter(s, 0, mine, t.local_rank, r, 0, 0);
  // Boundaries of every node's segments, merged.
  std::vector<int64_t> cuts;
  for (const auto& nr : t.node_ranks) {
    const int64_t ln = static_cast<int64_t>(nr.size());
    for (int64_t l = 0; l <= ln; ++l) cuts.push_back(r.cnt * l / ln);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  int inter_steps = 0;
  if (t.num_nodes > 1) {
    for (size_t i = 0; i + 1 < cuts.size(); ++i) {
      const int64_t a = cuts[i], b = cuts[i + 1];
      std::vector<int> owners;
      int me = -1;
      for (int node = 0; node < t.num_nodes; ++node) {
        const int64_t ln = static_cast<int64_t>(t.node_ranks[node].size());
        // owner: the l with floor(cnt*l/ln) <= a < floor(cnt*(l+1)/ln)
        int64_t l = 0;
        while (r.cnt * (l + 1) / ln <= a) ++l;
        const int owner = t.node_ranks[node][l];
        if (owner == t.rank) me = node;
        owners.push_back(owner);
      }
      if (me < 0) continue;
      const Range piece{r.off + a, b - a};
      for (int p = 0; p < ports; ++p) {
        int k = ring_allreduce(s, step, owners, me, part(piece, p, ports), p, 1 + static_cast<int>(i) * ports + p);
        inter_steps = std::max(inter_steps, k);
      }
    }
    inter_steps = 2 * (t.num_nodes - 1);
  }
  ring_allgather(s, step + inter_steps, mine, t.local_rank, r, 0, 0);
}

}  // namespace

Schedule build_schedule(AllreduceAlgo algo, const Topology& t, int64_t count, const ScheduleParams& p) {
  CS_CHECK(count >= 0, "allreduce: negative count ", count);
  CS_CHECK(p.ports >= 1, "allreduce: ports must be >= 1, got ", p.ports);
  CS_CHECK(p.chunk_elems >= 1, "allreduce: chunk must be >= 1 element, got ", p.chunk_elems);
  Schedule s;
  const Range all{0, count};
  if (t.size == 1 || count == 0) return s;
  std::vector<int> everyone(t.size);
  for (int i = 0; i < t.size; ++i) everyone[i] = i;
  switch (algo) {
    case AllreduceAlgo::ring:
      for (int q = 0; q < p.ports; ++q) ring_allreduce(s, 0, everyone, t.rank, part(all, q, p.ports), q, q);
      break;
    case AllreduceAlgo::halving_doubling:
      halving_doubling(s, everyone, t.rank, all, 0);
      break;
    case AllreduceAlgo::tree:
      double_tree(s, t.size, t.rank, all, p.chunk_elems);
      break;
    case AllreduceAlgo::hierarchical:
      hierarchical(s, t, all, p.ports);
      break;
    default:
      CS_THROW("allreduce: ", algo_name(algo), " has no step schedule");
  }
  return s;
}

namespace {

// The ranges of the output already written by an out-of-place run (disjoint, sorted: start -> end).
class Written {
 public:
  // 1: all of [a, b) written, 0: none of it, -1: partly.
  int state(int64_t a, int64_t b) const {
    int64_t covered = 0;
    auto it = w_.upper_bound(a);
    if (it != w_.begin()) --it;
    for (; it != w_.end() && it->first < b; ++it)
      covered += std::max<int64_t>(0, std::min(b, it->second) - std::max(a, it->first));
    return covered == b - a ? 1 : covered == 0 ? 0 : -1;
  }
  void add(int64_t a, int64_t b) {
    auto it = w_.upper_bound(a);
    if (it != w_.begin() && std::prev(it)->second >= a) --it;
    while (it != w_.end() && it->first <= b) {
      a = std::min(a, it->first);
      b = std::max(b, it->second);
      it = w_.erase(it);
    }
    w_.emplace(a, b);
  }
  // The gaps of [0, n).
  std::vector<std::pair<int64_t, int64_t>> gaps(int64_t n) const {
    std::vector<std::pair<int64_t, int64_t>> g;
    int64_t at = 0;
    for (const auto& [a, b] : w_) {
      if (a > at) g.emplace_back(at, a);
      at = std::max(at, b);
    }
    if (at < n) g.emplace_back(at, n);
    return g;
  }

 private:
  std::map<int64_t, int64_t> w_;
};

}  // namespace

void run_schedule(const Schedule& s, Transport& tr, const void* src, void* data, int64_t count, DType dt,
                  double timeout_s) {
  const int64_t esize = static_cast<int64_t>(dtype_size(dt));
  auto* base = static_cast<std::byte*>(data);
  const auto* in = static_cast<const std::byte*>(src);
  const bool in_place = src == data;
  Written written;
  // Out of place, a range partly written already is completed from src first, so every transfer reads or writes
  // one buffer as a whole.
  auto settle = [&](const Transfer& x) -> bool {  // true: the range is (now) in data
    if (in_place) return true;
    const int st = written.state(x.offset, x.offset + x.count);
    if (st == 1) return true;
    if (st == 0) return false;
    for (auto [a, b] : written.gaps(count))
      if (b > x.offset && a < x.offset + x.count) {
        a = std::max(a, x.offset);
        b = std::min(b, x.offset + x.count);
        tr.copy(base + a * esize, in + a * esize, (b - a) * esize);
      }
    written.add(x.offset, x.offset + x.count);
    return true;
  };
  auto* scratch = static_cast<std::byte*>(tr.scratch(s.max_step_reduce() * esize));
  std::vector<char> from_data;
  for (const Step& step : s.steps) {
    if (step.ops.empty()) continue;
    from_data.assign(step.ops.size(), 1);
    for (size_t k = 0; k < step.ops.size(); ++k)
      if (step.ops[k].kind == Transfer::send) from_data[k] = settle(step.ops[k]);
    int64_t at = 0;
    for (const Transfer& x : step.ops) {
      if (x.kind == Transfer::recv_copy) tr.post_recv(x.peer, x.port, x.tag, base + x.offset * esize, x.count * esize);
      if (x.kind == Transfer::recv_reduce) {
        tr.post_recv(x.peer, x.port, x.tag, scratch + at * esize, x.count * esize);
        at += x.count;
      }
    }
    for (size_t k = 0; k < step.ops.size(); ++k) {
      const Transfer& x = step.ops[k];
      if (x.kind == Transfer::send)
        tr.post_send(x.peer, x.port, x.tag, (from_data[k] ? base : in) + x.offset * esize, x.count * esize);
    }
    tr.wait_all(timeout_s);
    at = 0;
    for (size_t k = 0; k < step.ops.size(); ++k) {
      const Transfer& x = step.ops[k];
      if (x.kind == Transfer::recv_reduce) {
        // Settled again: an earlier reduction of this step (two children sending the same tree chunk) may have
        // written the range since.
        const std::byte* a = (settle(x) ? base : in) + x.offset * esize;
        tr.reduce_sum(base + x.offset * esize, a, scratch + at * esize, x.count, dt);
        at += x.count;
      }
      if (!in_place && x.kind != Transfer::send) written.add(x.offset, x.offset + x.count);
    }
  }
  if (!in_place)
    for (auto [a, b] : written.gaps(count)) tr.copy(base + a * esize, in + a * esize, (b - a) * esize);
}

// ---- the entry point
// -------------------------------------------------------------------------------------------------

namespace {

std::string human_bytes(int64_t b) {
  std::ostringstream os;
  if (b >= (int64_t{1} << 30))
    os << b / double(int64_t{1} << 30) << " GiB";
  else if (b >= (1 << 20))
    os << b / double(1 << 20) << " MiB";
  else if (b >= 1024)
    os << b / 1024.0 << " KiB";
  else
    os << b << " B";
  return os.str();
}

// MPI_Allreduce (MPI_Iallreduce polled against the deadline when a timeout is set).
void mpi_allreduce(Communicator& comm, const void* send, void* recv, int64_t count, DType dt, double timeout_s) {
  CS_CHECK(count <= INT32_MAX, "allreduce mpi: count ", count, " exceeds MPI's int count");
  MPI_Datatype type = MPI_FLOAT;
  MPI_Op op = MPI_SUM;
  if (dt == DType::f16) {
    type = comm.half_type();
    op = comm.half_sum_op();
  } else if (dt == DType::bf16) {
    type = comm.half_type();
    op = comm.bf16_sum_op();
  } else if (dt == DType::f64) {
    type = MPI_DOUBLE;
  } else {
    CS_CHECK(dt == DType::f32, "allreduce: unsupported dtype ", dtype_name(dt));
  }
  const void* sb = send == recv ? MPI_IN_PLACE : send;
  const int n = static_cast<int>(count);
  if (timeout_s <= 0) {
    MPI_CHECK(MPI_Allreduce(sb, recv, n, type, op, comm.world()));
    return;
  }
  MPI_Request req = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Iallreduce(sb, recv, n, type, op, comm.world(), &req));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (int polls = 0;; ++polls) {
    int done = 0;
    MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    if (std::chrono::steady_clock::now() > deadline)
      CS_THROW("allreduce mpi: timed out after ", timeout_s, " s in MPI_Iallreduce on rank ", comm.rank(),
               " (MPI does not say which peer is missing)");
    if (polls > 64) std::this_thread::yield();
  }
}

}  // namespace

void allreduce(Communicator& comm, const void* send, void* recv, int64_t count, DType dt, AllreduceAlgo algo,
               const AllreduceOptions& opt) {
  CS_CHECK(dt == DType::f32 || dt == DType::f64 || dt == DType::f16 || dt == DType::bf16, "allreduce: unsupported dtype ",
           dtype_name(dt), " (fp32, fp64, fp16 and bf16 are summed)");
  CS_CHECK(count >= 0, "allreduce: negative count ", count);
  CS_CHECK(count == 0 || (send && recv), "allreduce: null buffer");
  CS_CHECK(opt.ports >= 1 && opt.ports <= 64, "allreduce: ports must be in [1, 64], got ", opt.ports);
  const Topology& t = comm.topology();
  const int64_t bytes = count * static_cast<int64_t>(dtype_size(dt));
  const bool forced = algo != AllreduceAlgo::auto_;
  if (!forced) algo = choose_algo(t, bytes, opt);
#if !defined(CLIMSEG_HAVE_NCCL)
  CS_CHECK(algo != AllreduceAlgo::nccl, "allreduce nccl: climseg was built without NCCL");
  CS_CHECK(opt.device == Device::cpu, "allreduce on device buffers needs NCCL; climseg was built without it");
#endif
  CS_CHECK(algo != AllreduceAlgo::nccl || opt.device == Device::cuda,
           "allreduce nccl: needs device buffers (options.device = cuda)");
  CS_CHECK(algo != AllreduceAlgo::mpi || opt.device == Device::cpu, "allreduce mpi: host buffers only");
  if (count > 0) {
    int cls = 0;
    while ((int64_t{1} << cls) < bytes) ++cls;
    std::ostringstream line;
    line << "climseg comm: allreduce up to " << human_bytes(int64_t{1} << cls) << " on " << t.str() << ": "
         << algo_name(algo) << (forced ? " (forced)" : " (auto)");
    if (opt.ports > 1 && (algo == AllreduceAlgo::hierarchical || algo == AllreduceAlgo::ring))
      line << ", " << opt.ports << " ports";
    comm.log_once(std::string(algo_name(algo)) + "/" + std::to_string(cls) + (forced ? "/forced" : "/auto"),
                  line.str());
  }
  if (count == 0) return;

  if (algo == AllreduceAlgo::nccl) {
#if defined(CLIMSEG_HAVE_NCCL)
    nccl_allreduce(comm, send, recv, count, dt, opt.stream, opt.timeout_s, opt.host_wait);
#endif
    return;
  }
  if (algo == AllreduceAlgo::mpi) {
    mpi_allreduce(comm, send, recv, count, dt, opt.timeout_s);
    return;
  }
  std::unique_ptr<Transport> tr;
  if (opt.device == Device::cpu) {
    tr = make_mpi_transport(comm);
  } else {
#if defined(CLIMSEG_HAVE_NCCL)
    tr = make_nccl_transport(comm, opt.stream, opt.host_wait);
#endif
  }
  // Every rank creates the port communicators in the same order before any traffic (MPI_Comm_dup is collective).
  if (opt.device == Device::cpu && t.size > 1)
    for (int p = 0; p < opt.ports; ++p) comm.port(p);
  ScheduleParams sp;
  sp.ports = opt.ports;
  sp.chunk_elems = std::max<int64_t>(1, opt.chunk_bytes / static_cast<int64_t>(dtype_size(dt)));
  const Schedule s = build_schedule(algo, t, count, sp);
  run_schedule(s, *tr, send, recv, count, dt, opt.timeout_s);
}

}  // namespace climseg::comm
