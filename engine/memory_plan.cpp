// Memory planner (engine.md section 3, STYLE.md B): requests -> blocks (slices folded into their root, in-place
// candidates merged into the block they take over) -> greedy-by-size placement -> offsets. See
// docs/memory-planner.md for the timeline convention and the reasoning behind each rule.
#include "engine/memory_plan.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <sstream>
#include <utility>

#include "engine/check.h"

namespace climseg {

const char* mem_kind_name(MemKind k) {
  switch (k) {
    case MemKind::activation: return "activation";
    case MemKind::gradient: return "gradient";
    case MemKind::saved: return "saved";
    case MemKind::workspace: return "workspace";
    case MemKind::count: break;
  }
  return "unknown";
}

namespace {

constexpr size_t kinds = static_cast<size_t>(MemKind::count);

bool is_pow2(size_t a) { return a != 0 && (a & (a - 1)) == 0; }

// Rounds up to a power-of-two alignment; throws rather than wrapping around (sizes near SIZE_MAX are a bug).
size_t align_up(size_t x, size_t a) {
  CS_CHECK(x <= std::numeric_limits<size_t>::max() - (a - 1), "size ", x, " overflows when aligned to ", a);
  return (x + a - 1) & ~(a - 1);
}

// "3 ('conv1.out')": how requests are named in every error message.
std::string req_name(const std::vector<MemRequest>& r, int i) {
  return detail::concat(i, " ('", r[static_cast<size_t>(i)].name, "')");
}

std::string format_bytes(size_t b) {
  static const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (b < 1024) return detail::concat(b, " B");
  double v = static_cast<double>(b) / 1024.0;
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string format_ratio(size_t num, size_t den) {
  if (den == 0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(num) / static_cast<double>(den));
  return buf;
}

// One piece of memory: a root request plus everything folded into it (its slices, the requests that took it
// over in place, and their slices).
struct Block {
  int root = -1;
  size_t bytes = 0;
  size_t align = 1;
  int64_t first = 0;  // folded live range over all members
  int64_t last = 0;
  MemKind kind = MemKind::activation;
  size_t offset = 0;
};

// Checks the per-request invariants that both the planner and the verifier rely on.
void validate_requests(const std::vector<MemRequest>& r) {
  CS_CHECK(r.size() < static_cast<size_t>(std::numeric_limits<int>::max()), "too many requests: ", r.size());
  const int n = static_cast<int>(r.size());
  for (int i = 0; i < n; ++i) {
    const MemRequest& q = r[static_cast<size_t>(i)];
    CS_CHECK(q.first <= q.last, "request ", req_name(r, i), ": first step ", q.first, " > last step ", q.last);
    CS_CHECK(is_pow2(q.align), "request ", req_name(r, i), ": alignment ", q.align, " is not a power of two");
    CS_CHECK(q.parent >= -1 && q.parent < n && q.parent != i, "request ", req_name(r, i), ": bad parent index ",
             q.parent, " (", n, " requests)");
    // In-place candidates must be earlier requests: the in-place decision is taken in index order, so that a
    // chain relu <- relu <- relu is resolved link by link.
    CS_CHECK(q.inplace_of >= -1 && q.inplace_of < i, "request ", req_name(r, i), ": bad inplace_of index ",
             q.inplace_of, " (must be an earlier request)");
    if (q.parent >= 0) {
      const MemRequest& p = r[static_cast<size_t>(q.parent)];
      CS_CHECK(q.parent_offset <= p.bytes && q.bytes <= p.bytes - q.parent_offset, "slice ", req_name(r, i),
               " [", q.parent_offset, ", ", q.parent_offset, " + ", q.bytes, ") does not fit in its parent ",
               req_name(r, q.parent), " of ", p.bytes, " bytes");
    }
  }
}

// Resolves parent chains to (slice root, accumulated offset). Throws on a cycle.
void resolve_slices(const std::vector<MemRequest>& r, std::vector<int>& slice_root, std::vector<size_t>& acc) {
  const int n = static_cast<int>(r.size());
  slice_root.assign(static_cast<size_t>(n), -1);
  acc.assign(static_cast<size_t>(n), 0);
  std::vector<uint8_t> state(static_cast<size_t>(n), 0);  // 0 new, 1 on the current chain, 2 resolved
  std::vector<int> chain;
  for (int i = 0; i < n; ++i) {
    if (state[static_cast<size_t>(i)] == 2) continue;
    chain.clear();
    int j = i;
    while (j >= 0 && state[static_cast<size_t>(j)] == 0) {
      state[static_cast<size_t>(j)] = 1;
      chain.push_back(j);
      j = r[static_cast<size_t>(j)].parent;
    }
    CS_CHECK(j < 0 || state[static_cast<size_t>(j)] == 2, "slice parents form a cycle through request ",
             req_name(r, j));
    // Unwind from the top of the chain so each link sees its parent resolved.
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      const size_t k = static_cast<size_t>(*it);
      const int p = r[k].parent;
      if (p < 0) {
        slice_root[k] = *it;
        acc[k] = 0;
      } else {
        slice_root[k] = slice_root[static_cast<size_t>(p)];
        acc[k] = acc[static_cast<size_t>(p)] + r[k].parent_offset;
      }
      state[k] = 2;
    }
  }
}

}  // namespace

MemoryPlan plan_memory(const std::vector<MemRequest>& requests) {
  const auto& r = requests;
  validate_requests(r);
  const int n = static_cast<int>(r.size());
  const auto at = [](int i) { return static_cast<size_t>(i); };

  std::vector<int> slice_root;
  std::vector<size_t> acc;
  resolve_slices(r, slice_root, acc);

  // Fold slice live ranges into their slice root, so a concat buffer is live from its first producer's step.
  // Zero-byte requests take no part in anything after validation.
  std::vector<int64_t> first(at(n)), last(at(n));
  std::vector<size_t> align(at(n));
  std::vector<uint8_t> has_slices(at(n), 0);
  for (int i = 0; i < n; ++i) {
    first[at(i)] = r[at(i)].first;
    last[at(i)] = r[at(i)].last;
    align[at(i)] = r[at(i)].align;
  }
  for (int i = 0; i < n; ++i) {
    const MemRequest& q = r[at(i)];
    if (q.parent < 0 || q.bytes == 0) continue;
    has_slices[at(q.parent)] = 1;
    const size_t s = at(slice_root[at(i)]);
    first[s] = std::min(first[s], first[at(i)]);
    last[s] = std::max(last[s], last[at(i)]);
    // The root's offset must satisfy every slice's alignment modulo its (fixed) accumulated offset.
    align[s] = std::max(align[s], q.align);
  }

  // In place, in index order. block_of maps a non-slice request to the request whose block it lives in.
  MemoryPlan plan;
  std::vector<int> block_of(at(n), -1);
  std::vector<uint8_t> taken_over(at(n), 0);
  for (int i = 0; i < n; ++i) {
    const MemRequest& q = r[at(i)];
    if (q.parent >= 0 || q.bytes == 0) continue;
    block_of[at(i)] = i;
    const int p = q.inplace_of;
    if (p < 0) continue;
    const MemRequest& c = r[at(p)];
    const int b = block_of[at(p)];
    // Each condition is needed for correctness: a slice or parent has a shape of memory the taker would break;
    // a second taker would share memory with the first while both are live; last == first is the hand-over.
    const bool ok = c.parent < 0 && c.bytes > 0 && !has_slices[at(p)] && !taken_over[at(p)] && b >= 0 &&
                    last[at(p)] == first[at(i)] && q.bytes <= r[at(b)].bytes;
    if (!ok) continue;
    block_of[at(i)] = b;
    taken_over[at(p)] = 1;
    ++plan.inplace_merges;
  }

  // Blocks: one per request that keeps its own memory; members fold their range and alignment in.
  std::vector<int> block_index(at(n), -1);
  std::vector<Block> blocks;
  for (int i = 0; i < n; ++i) {
    if (block_of[at(i)] != i) continue;
    block_index[at(i)] = static_cast<int>(blocks.size());
    Block bl;
    bl.root = i;
    bl.bytes = r[at(i)].bytes;
    bl.align = align[at(i)];
    bl.first = first[at(i)];
    bl.last = last[at(i)];
    bl.kind = r[at(i)].kind;
    blocks.push_back(bl);
  }
  for (int i = 0; i < n; ++i) {
    const int b = block_of[at(i)];
    if (b < 0 || b == i) continue;
    Block& bl = blocks[at(block_index[at(b)])];
    bl.bytes = std::max(bl.bytes, r[at(i)].bytes);  // a no-op by the fit rule; kept so the block owns max bytes
    bl.align = std::max(bl.align, align[at(i)]);
    bl.first = std::min(bl.first, first[at(i)]);
    bl.last = std::max(bl.last, last[at(i)]);
  }

  // Greedy by size (TFLite arena planner): largest first, ties by earlier first use, then index for determinism.
  // Each block goes to the lowest aligned offset that clears every placed block it shares a step with; `placed`
  // is kept sorted by offset so that is one scan over the gaps.
  std::vector<int> order(blocks.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int>(k);
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    const Block& x = blocks[at(a)];
    const Block& y = blocks[at(b)];
    if (x.bytes != y.bytes) return x.bytes > y.bytes;
    if (x.first != y.first) return x.first < y.first;
    return x.root < y.root;
  });
  std::vector<int> placed;  // block indices sorted by (offset, index)
  placed.reserve(blocks.size());
  for (int k : order) {
    Block& bl = blocks[at(k)];
    size_t offset = 0;
    for (int pk : placed) {
      const Block& o = blocks[at(pk)];
      if (o.last < bl.first || o.first > bl.last) continue;
      const size_t candidate = align_up(offset, bl.align);
      if (o.offset >= candidate && o.offset - candidate >= bl.bytes) break;  // fits in the gap before o
      offset = std::max(offset, o.offset + o.bytes);
    }
    bl.offset = align_up(offset, bl.align);
    CS_CHECK(bl.offset <= std::numeric_limits<size_t>::max() - bl.bytes, "arena offset overflow");
    const auto pos = std::lower_bound(placed.begin(), placed.end(), k, [&](int a, int b) {
      const size_t oa = blocks[at(a)].offset, ob = blocks[at(b)].offset;
      return oa != ob ? oa < ob : a < b;
    });
    placed.insert(pos, k);
    plan.arena_bytes = std::max(plan.arena_bytes, bl.offset + bl.bytes);
  }

  // Offsets and roots per request.
  plan.offsets.assign(at(n), 0);
  plan.root.resize(at(n));
  for (int i = 0; i < n; ++i) {
    plan.root[at(i)] = i;
    if (r[at(i)].bytes == 0) continue;
    const int s = slice_root[at(i)];  // i itself unless i is a slice
    const Block& bl = blocks[at(block_index[at(block_of[at(s)])])];
    plan.root[at(i)] = bl.root;
    plan.offsets[at(i)] = bl.offset + acc[at(i)];
  }

  // No-reuse totals.
  for (const Block& bl : blocks) {
    const size_t b = align_up(bl.bytes, bl.align);
    plan.no_reuse_bytes += b;
    plan.total_by_kind[static_cast<size_t>(bl.kind)] += b;
  }

  // Lower bound: sweep over (step, +bytes) at first and (step, -bytes) at last + 1. At equal steps the removals
  // and additions are all applied before the level is read, so the level is exactly what is live at that step.
  std::vector<std::pair<int64_t, int64_t>> events;
  events.reserve(2 * blocks.size());
  for (const Block& bl : blocks) {
    events.emplace_back(bl.first, static_cast<int64_t>(bl.bytes));
    events.emplace_back(bl.last + 1, -static_cast<int64_t>(bl.bytes));
  }
  std::sort(events.begin(), events.end());
  int64_t level = 0, best = 0, best_step = 0;
  for (size_t e = 0; e < events.size();) {
    const int64_t t = events[e].first;
    for (; e < events.size() && events[e].first == t; ++e) level += events[e].second;
    if (level > best) {
      best = level;
      best_step = t;
    }
  }
  plan.lower_bound = static_cast<size_t>(best);
  plan.peak_step = static_cast<int>(best_step);
  for (const Block& bl : blocks) {
    if (best > 0 && bl.first <= best_step && best_step <= bl.last)
      plan.live_at_peak_by_kind[static_cast<size_t>(bl.kind)] += bl.bytes;
  }
  return plan;
}

// Independent of the planner on purpose: everything is recomputed from the requests and plan.offsets/root, so a
// bug in the planner's block construction cannot hide itself here.
void verify_memory_plan(const std::vector<MemRequest>& requests, const MemoryPlan& plan) {
  const auto& r = requests;
  validate_requests(r);
  const int n = static_cast<int>(r.size());
  const auto at = [](int i) { return static_cast<size_t>(i); };
  CS_CHECK(plan.offsets.size() == r.size() && plan.root.size() == r.size(), "plan has ", plan.offsets.size(),
           " offsets and ", plan.root.size(), " roots for ", n, " requests");

  // Per request: walk the parent chain (bounded by n, so a cycle cannot hang) for the top and the offset sum.
  std::vector<int64_t> first(at(n)), last(at(n));
  std::vector<int> members_root(at(n), -1);
  for (int i = 0; i < n; ++i) {
    const MemRequest& q = r[at(i)];
    if (q.bytes == 0) continue;
    int top = i;
    size_t sum = 0;
    for (int steps = 0; r[at(top)].parent >= 0; ++steps) {
      CS_CHECK(steps < n, "slice parents form a cycle through request ", req_name(r, i));
      sum += r[at(top)].parent_offset;
      top = r[at(top)].parent;
    }
    const int root = plan.root[at(i)];
    CS_CHECK(root >= 0 && root < n, "request ", req_name(r, i), ": root index ", root, " out of range");
    const MemRequest& rq = r[at(root)];
    CS_CHECK(rq.parent < 0 && plan.root[at(root)] == root && rq.bytes > 0, "request ", req_name(r, i),
             ": its root ", req_name(r, root), " is not a block of its own");
    CS_CHECK(plan.root[at(top)] == root, "slice ", req_name(r, i), " is in block ", req_name(r, root),
             " but its top parent ", req_name(r, top), " is in block ", plan.root[at(top)]);
    const size_t off = plan.offsets[at(i)];
    const size_t base = plan.offsets[at(root)];
    if (q.parent >= 0) {
      CS_CHECK(plan.offsets[at(top)] == base && off >= base && off - base == sum, "slice ", req_name(r, i),
               " at offset ", off, " is not at its block's offset ", base, " + accumulated parent_offset ", sum);
      CS_CHECK(plan.offsets[at(q.parent)] <= off && off + q.bytes <= plan.offsets[at(q.parent)] +
               r[at(q.parent)].bytes, "slice ", req_name(r, i), " lies outside its parent ", req_name(r, q.parent));
      // A slice's own alignment is honoured modulo its fixed offset inside the block.
      CS_CHECK((off - sum) % q.align == 0, "slice ", req_name(r, i), ": block offset ", off - sum,
               " not a multiple of ", q.align);
    } else {
      CS_CHECK(off == base, "request ", req_name(r, i), " shares block ", req_name(r, root), " but sits at ", off,
               " instead of ", base);
      CS_CHECK(off % q.align == 0, "request ", req_name(r, i), ": offset ", off, " not a multiple of ", q.align);
    }
    CS_CHECK(sum <= rq.bytes && q.bytes <= rq.bytes - sum, "request ", req_name(r, i), " [", sum, ", ", sum,
             " + ", q.bytes, ") lies outside its block ", req_name(r, root), " of ", rq.bytes, " bytes");
    members_root[at(i)] = root;
    first[at(i)] = q.first;
    last[at(i)] = q.last;
  }

  // Requests that share a block without being slices must hand over at one step, never live side by side:
  // sort the block's non-slice members by first use and check each ends no later than the next starts.
  // Their ranges include the ranges of their own slices.
  std::vector<int64_t> mfirst(first), mlast(last);
  for (int i = 0; i < n; ++i) {
    if (members_root[at(i)] < 0 || r[at(i)].parent < 0) continue;
    int top = i;
    while (r[at(top)].parent >= 0) top = r[at(top)].parent;
    mfirst[at(top)] = std::min(mfirst[at(top)], first[at(i)]);
    mlast[at(top)] = std::max(mlast[at(top)], last[at(i)]);
  }
  std::vector<std::pair<int, int>> owners;  // (root, member) for non-slice members
  for (int i = 0; i < n; ++i)
    if (members_root[at(i)] >= 0 && r[at(i)].parent < 0) owners.emplace_back(members_root[at(i)], i);
  std::sort(owners.begin(), owners.end(), [&](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    if (mfirst[at(a.second)] != mfirst[at(b.second)]) return mfirst[at(a.second)] < mfirst[at(b.second)];
    return a.second < b.second;
  });
  for (size_t k = 1; k < owners.size(); ++k) {
    if (owners[k].first != owners[k - 1].first) continue;
    const int a = owners[k - 1].second, b = owners[k].second;
    CS_CHECK(mlast[at(a)] <= mfirst[at(b)], "requests ", req_name(r, a), " steps [", mfirst[at(a)], ", ",
             mlast[at(a)], "] and ", req_name(r, b), " steps [", mfirst[at(b)], ", ", mlast[at(b)],
             "] share block ", req_name(r, owners[k].first), " while both live");
  }

  // Blocks: folded range over all members; bytes and offset are the root's.
  struct VBlock {
    int root;
    int64_t first, last;
  };
  std::vector<int> vindex(at(n), -1);
  std::vector<VBlock> vb;
  for (int i = 0; i < n; ++i) {
    const int root = members_root[at(i)];
    if (root < 0) continue;
    if (vindex[at(root)] < 0) {
      vindex[at(root)] = static_cast<int>(vb.size());
      vb.push_back({root, first[at(i)], last[at(i)]});
    }
    VBlock& b = vb[at(vindex[at(root)])];
    b.first = std::min(b.first, first[at(i)]);
    b.last = std::max(b.last, last[at(i)]);
  }
  for (const VBlock& b : vb) {
    const size_t off = plan.offsets[at(b.root)], bytes = r[at(b.root)].bytes;
    CS_CHECK(off <= plan.arena_bytes && bytes <= plan.arena_bytes - off, "block ", req_name(r, b.root), " [",
             off, ", ", off + bytes, ") exceeds the arena of ", plan.arena_bytes, " bytes");
  }

  // Pairwise: sweep by first use, keeping the blocks still live; each new block is compared with all of them.
  std::sort(vb.begin(), vb.end(), [](const VBlock& a, const VBlock& b) {
    return a.first != b.first ? a.first < b.first : a.root < b.root;
  });
  std::vector<const VBlock*> active;
  for (const VBlock& b : vb) {
    std::erase_if(active, [&](const VBlock* a) { return a->last < b.first; });
    const size_t bo = plan.offsets[at(b.root)], be = bo + r[at(b.root)].bytes;
    for (const VBlock* a : active) {
      const size_t ao = plan.offsets[at(a->root)], ae = ao + r[at(a->root)].bytes;
      CS_CHECK(ae <= bo || be <= ao, "blocks ", req_name(r, a->root), " bytes [", ao, ", ", ae, ") steps [",
               a->first, ", ", a->last, "] and ", req_name(r, b.root), " bytes [", bo, ", ", be, ") steps [",
               b.first, ", ", b.last, "] overlap while both live");
    }
    active.push_back(&b);
  }
}

std::string MemoryPlan::report() const {
  int blocks = 0;
  for (size_t i = 0; i < root.size(); ++i) blocks += root[i] == static_cast<int>(i);
  std::ostringstream os;
  os << "memory plan: " << offsets.size() << " requests in " << blocks << " blocks, " << inplace_merges
     << " in-place merges\n";
  char line[160];
  std::snprintf(line, sizeof line, "  %-22s %s\n", "arena (planned peak)", format_bytes(arena_bytes).c_str());
  os << line;
  std::snprintf(line, sizeof line, "  %-22s %s  (planned/lower bound %s)\n", "lower bound",
                format_bytes(lower_bound).c_str(), format_ratio(arena_bytes, lower_bound).c_str());
  os << line;
  std::snprintf(line, sizeof line, "  %-22s %s  (planned/no reuse %s)\n", "no reuse",
                format_bytes(no_reuse_bytes).c_str(), format_ratio(arena_bytes, no_reuse_bytes).c_str());
  os << line;
  os << "  live at peak step " << peak_step << ":";
  for (size_t k = 0; k < kinds; ++k) {
    os << (k ? ", " : "  ") << mem_kind_name(static_cast<MemKind>(k)) << " "
       << format_bytes(live_at_peak_by_kind[k]);
  }
  os << "\n  no reuse by kind:      ";
  for (size_t k = 0; k < kinds; ++k) {
    os << (k ? ", " : "") << mem_kind_name(static_cast<MemKind>(k)) << " " << format_bytes(total_by_kind[k]);
  }
  os << "\n";
  return os.str();
}

}  // namespace climseg
