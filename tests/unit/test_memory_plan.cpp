// Memory planner tests: hand-worked cases, malformed inputs, a randomized sweep checked by a brute-force
// per-step overlap test (independent of verify_memory_plan), corruption detection and a 10,000-request plan.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/memory_plan.h"

using climseg::MemKind;
using climseg::MemoryPlan;
using climseg::MemRequest;
using climseg::plan_memory;
using climseg::verify_memory_plan;
using Catch::Matchers::Contains;

namespace {

constexpr size_t KiB = 1024, MiB = 1024 * KiB;

MemRequest rq(std::string name, size_t bytes, int first, int last, size_t align = 1,
              MemKind kind = MemKind::activation) {
  MemRequest r;
  r.name = std::move(name);
  r.bytes = bytes;
  r.first = first;
  r.last = last;
  r.align = align;
  r.kind = kind;
  return r;
}

MemRequest slice(std::string name, size_t bytes, int first, int last, int parent, size_t parent_offset) {
  MemRequest r = rq(std::move(name), bytes, first, last);
  r.parent = parent;
  r.parent_offset = parent_offset;
  return r;
}

MemRequest inplace(std::string name, size_t bytes, int first, int last, int of) {
  MemRequest r = rq(std::move(name), bytes, first, last);
  r.inplace_of = of;
  return r;
}

bool disjoint(size_t a, size_t an, size_t b, size_t bn) { return a + an <= b || b + bn <= a; }

size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

// Everything the tests expect of a plan, recomputed here from the requests and the plan's offsets/roots alone:
// grants follow the in-place rule exactly, slices sit at parent + parent_offset, alignment holds, the arena is
// the highest block end, and at every step the live blocks are pairwise disjoint (brute force, step by step).
// The lower bound, peak step and per-kind totals are recomputed the same brute-force way.
void check_plan(const std::vector<MemRequest>& r, const MemoryPlan& p) {
  const int n = static_cast<int>(r.size());
  REQUIRE(p.offsets.size() == r.size());
  REQUIRE(p.root.size() == r.size());
  auto top_of = [&](int i) {
    while (r[i].parent >= 0) i = r[i].parent;
    return i;
  };
  // Folded range of a non-slice request: its own plus that of every non-empty slice below it.
  std::vector<int> ffirst(n), flast(n);
  std::vector<char> has_slices(n, 0);
  for (int i = 0; i < n; ++i) ffirst[i] = r[i].first, flast[i] = r[i].last;
  for (int i = 0; i < n; ++i) {
    if (r[i].parent < 0 || r[i].bytes == 0) continue;
    has_slices[r[i].parent] = 1;
    const int t = top_of(i);
    ffirst[t] = std::min(ffirst[t], r[i].first);
    flast[t] = std::max(flast[t], r[i].last);
  }
  // In-place grants, replayed in index order.
  std::vector<char> taken(n, 0);
  int merges = 0;
  for (int i = 0; i < n; ++i) {
    if (r[i].bytes == 0) {
      CHECK(p.offsets[i] == 0);
      CHECK(p.root[i] == i);
      continue;
    }
    if (r[i].parent >= 0) {
      CHECK(p.root[i] == p.root[r[i].parent]);
      CHECK(p.offsets[i] == p.offsets[r[i].parent] + r[i].parent_offset);
      continue;
    }
    const int c = r[i].inplace_of;
    const bool qualifies = c >= 0 && r[c].parent < 0 && r[c].bytes > 0 && !has_slices[c] && !taken[c] &&
                           r[c].last == ffirst[i] && r[i].bytes <= r[p.root[c]].bytes;
    if (qualifies) {
      INFO("request " << i << " should take over " << c);
      CHECK(p.root[i] == p.root[c]);
      CHECK(p.offsets[i] == p.offsets[c]);
      taken[c] = 1;
      ++merges;
    } else {
      INFO("request " << i << " should own its memory");
      CHECK(p.root[i] == i);
    }
  }
  CHECK(p.inplace_merges == merges);

  // Blocks as the test sees them: grouped by plan.root.
  struct B {
    size_t off = 0, bytes = 0, align = 1;
    int first = 0, last = 0;
    MemKind kind = MemKind::activation;
  };
  std::map<int, B> blocks;
  for (int i = 0; i < n; ++i) {
    if (r[i].bytes == 0) continue;
    const int root = p.root[i];
    auto [it, fresh] = blocks.try_emplace(root);
    B& b = it->second;
    if (fresh) b = {p.offsets[root], r[root].bytes, 1, r[i].first, r[i].last, r[root].kind};
    b.align = std::max(b.align, r[i].align);
    b.first = std::min(b.first, r[i].first);
    b.last = std::max(b.last, r[i].last);
    CHECK(p.offsets[i] >= b.off);
    CHECK(p.offsets[i] + r[i].bytes <= b.off + b.bytes);
  }
  size_t arena = 0, no_reuse = 0;
  std::array<size_t, 4> by_kind{};
  int tmin = 0, tmax = -1;
  for (auto& [root, b] : blocks) {
    CHECK(b.off % b.align == 0);
    arena = std::max(arena, b.off + b.bytes);
    no_reuse += align_up(b.bytes, b.align);
    by_kind[static_cast<size_t>(b.kind)] += align_up(b.bytes, b.align);
    if (tmax < tmin) tmin = b.first, tmax = b.last;
    tmin = std::min(tmin, b.first);
    tmax = std::max(tmax, b.last);
  }
  CHECK(p.arena_bytes == arena);
  CHECK(p.no_reuse_bytes == no_reuse);
  for (size_t k = 0; k < 4; ++k) CHECK(p.total_by_kind[k] == by_kind[k]);

  // Brute force, step by step.
  size_t lower = 0;
  int peak = 0;
  std::vector<std::pair<size_t, size_t>> live;
  for (int t = tmin; t <= tmax; ++t) {
    live.clear();
    size_t sum = 0;
    for (auto& [root, b] : blocks) {
      if (b.first <= t && t <= b.last) live.emplace_back(b.off, b.off + b.bytes), sum += b.bytes;
    }
    std::sort(live.begin(), live.end());
    for (size_t k = 1; k < live.size(); ++k) {
      INFO("step " << t << ": [" << live[k - 1].first << ", " << live[k - 1].second << ") vs [" << live[k].first
                   << ", " << live[k].second << ")");
      REQUIRE(live[k - 1].second <= live[k].first);
    }
    if (sum > lower) lower = sum, peak = t;
  }
  CHECK(p.lower_bound == lower);
  if (lower > 0) CHECK(p.peak_step == peak);
  size_t at_peak = 0;
  for (size_t k = 0; k < 4; ++k) at_peak += p.live_at_peak_by_kind[k];
  CHECK(at_peak == lower);
  CHECK(p.arena_bytes >= p.lower_bound);
}

MemoryPlan plan_and_check(const std::vector<MemRequest>& r) {
  MemoryPlan p = plan_memory(r);
  REQUIRE_NOTHROW(verify_memory_plan(r, p));
  check_plan(r, p);
  return p;
}

// ---- random graphs -------------------------------------------------------------------------------------------

using Rng = std::mt19937_64;
int uni(Rng& g, int a, int b) { return std::uniform_int_distribution<int>(a, b)(g); }
bool coin(Rng& g, double p) { return std::uniform_real_distribution<double>(0, 1)(g) < p; }

// Skewed sizes: log-uniform, half over [1 B, 64 MiB] (many tiny tensors) and half over [64 KiB, 64 MiB].
size_t random_bytes(Rng& g, size_t max = 64 * MiB) {
  const double lo = coin(g, 0.5) ? 0.0 : std::log(64.0 * KiB);
  const double e = std::uniform_real_distribution<double>(lo, std::log(static_cast<double>(max)))(g);
  size_t b = std::clamp<size_t>(static_cast<size_t>(std::exp(e)), 1, max);
  if (coin(g, 0.5)) b = std::max<size_t>(4, b / 4 * 4);  // element-sized, like real tensors
  return b;
}

size_t random_align(Rng& g) {
  static const size_t aligns[] = {1, 64, 256, 4096};
  return aligns[uni(g, 0, 3)];
}

void random_range(Rng& g, int steps, MemRequest& q) {
  q.first = uni(g, 0, steps - 1);
  const int pick = uni(g, 0, 99);
  const int len = pick < 60 ? uni(g, 0, 3) : pick < 90 ? uni(g, 0, std::max(1, steps / 4)) : uni(g, 0, steps);
  q.last = std::min(steps - 1, q.first + len);
}

// A concat-like slice tree: a parent whose children sit back to back (with a little slack) and may themselves
// be parents. Built with local indices, then appended in a random order so that parents come before or after
// their slices.
struct Node {
  MemRequest q;
  int local_parent = -1;
};

int gen_tree(Rng& g, std::vector<Node>& nodes, int steps, int depth, int concat_step) {
  const int me = static_cast<int>(nodes.size());
  nodes.push_back({});
  const int k = uni(g, 2, 5);
  std::vector<int> kids;
  size_t off = coin(g, 0.3) ? static_cast<size_t>(uni(g, 0, 64)) : 0;
  for (int c = 0; c < k; ++c) {
    int kid;
    if (depth < 2 && coin(g, 0.25)) {
      kid = gen_tree(g, nodes, steps, depth + 1, std::max(0, concat_step - uni(g, 0, 3)));
    } else {
      kid = static_cast<int>(nodes.size());
      nodes.push_back({});
      MemRequest& q = nodes[kid].q;
      q.bytes = coin(g, 0.05) ? 0 : random_bytes(g, 16 * MiB);
      q.first = std::max(0, concat_step - uni(g, 0, k));
      q.last = std::min(steps - 1, concat_step + (coin(g, 0.2) ? uni(g, 0, 5) : 0));
      q.align = random_align(g);
    }
    nodes[kid].local_parent = me;
    nodes[kid].q.parent_offset = off;
    off += nodes[kid].q.bytes + (coin(g, 0.2) ? static_cast<size_t>(uni(g, 0, 100)) : 0);
    kids.push_back(kid);
  }
  MemRequest& q = nodes[me].q;
  q.bytes = off + (coin(g, 0.3) ? static_cast<size_t>(uni(g, 0, 4096)) : 0);
  q.first = concat_step;
  q.last = std::min(steps - 1, concat_step + uni(g, 0, steps / 2));
  q.align = random_align(g);
  return me;
}

std::vector<MemRequest> random_graph(Rng& g, int n_target, int steps) {
  std::vector<MemRequest> r;
  static const MemKind kinds[] = {MemKind::activation, MemKind::gradient, MemKind::saved, MemKind::workspace};
  while (static_cast<int>(r.size()) < n_target) {
    const int n = static_cast<int>(r.size());
    const int pick = uni(g, 0, 99);
    if (pick < 15 && n > 0) {
      // In-place taker: often a valid hand-over (first == candidate's last, smaller), sometimes not; often the
      // previous request, which builds chains like relu after relu.
      const int c = coin(g, 0.4) ? n - 1 : uni(g, 0, n - 1);
      MemRequest q = rq("ip" + std::to_string(n), 0, 0, 0, random_align(g), kinds[uni(g, 0, 1)]);
      q.inplace_of = c;
      if (coin(g, 0.7)) {
        q.first = r[c].last;
        q.last = std::min(steps - 1, q.first + uni(g, 0, 4));
      } else {
        random_range(g, steps, q);
      }
      q.bytes = coin(g, 0.8) ? std::max<size_t>(1, static_cast<size_t>(r[c].bytes * (coin(g, 0.5) ? 1.0 : 0.7)))
                             : random_bytes(g);
      r.push_back(q);
    } else if (pick < 30) {
      std::vector<Node> nodes;
      gen_tree(g, nodes, steps, 0, uni(g, 0, steps - 1));
      std::vector<int> perm(nodes.size());
      for (size_t k = 0; k < perm.size(); ++k) perm[k] = static_cast<int>(k);
      if (coin(g, 0.5)) std::shuffle(perm.begin(), perm.end(), g);
      std::vector<int> global(nodes.size());
      for (size_t k = 0; k < perm.size(); ++k) global[perm[k]] = n + static_cast<int>(k);
      for (size_t k = 0; k < perm.size(); ++k) {
        const Node& nd = nodes[perm[k]];
        MemRequest q = nd.q;
        q.name = (nd.local_parent < 0 ? "cat" : "sl") + std::to_string(n + k);
        q.kind = MemKind::activation;
        q.parent = nd.local_parent < 0 ? -1 : global[nd.local_parent];
        if (n > 0 && coin(g, 0.1)) q.inplace_of = uni(g, 0, n - 1);  // slices and parents: never granted
        r.push_back(q);
      }
    } else {
      MemRequest q = rq("t" + std::to_string(n), coin(g, 0.03) ? 0 : random_bytes(g), 0, 0, random_align(g),
                        kinds[uni(g, 0, 3)]);
      random_range(g, steps, q);
      if (q.kind == MemKind::workspace) q.last = q.first;
      if (q.kind == MemKind::saved) q.last = std::max(q.last, std::min(steps - 1, q.first + steps / 2));
      if (n > 0 && coin(g, 0.08)) q.inplace_of = uni(g, 0, n - 1);  // mostly invalid candidates
      r.push_back(q);
    }
  }
  return r;
}

}  // namespace

// ---- hand-worked cases ---------------------------------------------------------------------------------------

TEST_CASE("disjoint lifetimes reuse offset 0", "[memory_plan]") {
  std::vector<MemRequest> r = {rq("a", 1000, 0, 1), rq("b", 1000, 2, 3)};
  MemoryPlan p = plan_and_check(r);
  CHECK(p.offsets == std::vector<size_t>{0, 0});
  CHECK(p.arena_bytes == 1000);
  CHECK(p.lower_bound == 1000);
  CHECK(p.no_reuse_bytes == 2000);
  CHECK(p.inplace_merges == 0);
}

TEST_CASE("overlapping lifetimes do not overlap in memory", "[memory_plan]") {
  std::vector<MemRequest> r = {rq("small", 500, 1, 3), rq("big", 1000, 0, 2)};
  MemoryPlan p = plan_and_check(r);
  CHECK(p.offsets[1] == 0);  // largest first
  CHECK(p.offsets[0] == 1000);
  CHECK(p.arena_bytes == 1500);
  CHECK(p.lower_bound == 1500);
  CHECK(p.peak_step == 1);
}

TEST_CASE("greedy by size fills a gap left between live blocks", "[memory_plan]") {
  // a [0,9] at 0, b [0,2] at 1000, c [0,9] at 1800; d [3,9] is not live with b, so it goes into b's place
  // between a and c rather than on top of c.
  std::vector<MemRequest> r = {rq("a", 1000, 0, 9), rq("b", 800, 0, 2), rq("c", 700, 0, 9), rq("d", 600, 3, 9)};
  MemoryPlan p = plan_and_check(r);
  CHECK(p.offsets == std::vector<size_t>{0, 1000, 1800, 1000});
  CHECK(p.arena_bytes == 2500);
  CHECK(p.lower_bound == 2500);
  CHECK(p.peak_step == 0);
}

TEST_CASE("alignment is respected", "[memory_plan]") {
  std::vector<MemRequest> r = {rq("a", 100, 0, 1, 1), rq("b", 100, 0, 1, 256), rq("c", 100, 0, 1, 4096),
                               rq("d", 10, 0, 0, 64)};
  MemoryPlan p = plan_and_check(r);
  CHECK(p.offsets[0] == 0);
  CHECK(p.offsets[1] == 256);
  CHECK(p.offsets[2] == 4096);
  CHECK(p.offsets[3] == 128);  // first 64-aligned offset past a [0,100)
  CHECK(p.arena_bytes == 4196);
  CHECK(p.no_reuse_bytes == 100 + 256 + 4096 + 64);
}

TEST_CASE("in place: granted on hand-over, refused otherwise", "[memory_plan]") {
  SECTION("granted when candidate.last == first") {
    std::vector<MemRequest> r = {rq("x", 1000, 0, 1), inplace("relu", 800, 1, 2, 0)};
    MemoryPlan p = plan_and_check(r);
    CHECK(p.inplace_merges == 1);
    CHECK(p.root == std::vector<int>{0, 0});
    CHECK(p.offsets == std::vector<size_t>{0, 0});
    CHECK(p.arena_bytes == 1000);
    CHECK(p.lower_bound == 1000);
    CHECK(p.no_reuse_bytes == 1000);
  }
  SECTION("refused when the candidate is still live after first (last > first)") {
    std::vector<MemRequest> r = {rq("x", 1000, 0, 2), inplace("relu", 800, 1, 2, 0)};
    MemoryPlan p = plan_and_check(r);
    CHECK(p.inplace_merges == 0);
    CHECK(p.root == std::vector<int>{0, 1});
    CHECK(p.arena_bytes == 1800);
  }
  SECTION("refused when the candidate is too small") {
    std::vector<MemRequest> r = {rq("x", 1000, 0, 1), inplace("relu", 1200, 1, 2, 0)};
    MemoryPlan p = plan_and_check(r);
    CHECK(p.inplace_merges == 0);
    CHECK(p.arena_bytes == 2200);
  }
  SECTION("refused when the candidate is a slice or a parent of slices") {
    std::vector<MemRequest> r = {rq("cat", 1000, 1, 2), slice("s", 500, 0, 1, 0, 0), inplace("a", 400, 1, 3, 1),
                                 inplace("b", 400, 2, 3, 0)};
    MemoryPlan p = plan_and_check(r);
    CHECK(p.inplace_merges == 0);
    CHECK(p.root == std::vector<int>{0, 0, 2, 3});
  }
  SECTION("a second taker of the same candidate is refused") {
    std::vector<MemRequest> r = {rq("x", 1000, 0, 1), inplace("a", 1000, 1, 2, 0), inplace("b", 1000, 1, 2, 0)};
    MemoryPlan p = plan_and_check(r);
    CHECK(p.inplace_merges == 1);
    CHECK(p.root == std::vector<int>{0, 0, 2});
    CHECK(p.arena_bytes == 2000);
  }
  SECTION("alignment of the taker raises the block's alignment") {
    std::vector<MemRequest> r = {rq("pad", 100, 0, 5), rq("x", 50, 0, 1, 1), inplace("y", 50, 1, 2, 1)};
    r[2].align = 256;
    MemoryPlan p = plan_and_check(r);
    CHECK(p.inplace_merges == 1);
    CHECK(p.offsets[1] == 256);
    CHECK(p.offsets[2] == 256);
  }
}

TEST_CASE("in-place chains: each link takes over the previous", "[memory_plan]") {
  // conv -> bn -> relu -> dropout, each in place of the one before; then a later tensor reuses the block.
  std::vector<MemRequest> r = {rq("conv", 4096, 0, 1), inplace("bn", 4096, 1, 2, 0), inplace("relu", 4096, 2, 3, 1),
                               inplace("drop", 2048, 3, 4, 2), rq("other", 1024, 2, 2)};
  MemoryPlan p = plan_and_check(r);
  CHECK(p.inplace_merges == 3);
  CHECK(p.root == std::vector<int>{0, 0, 0, 0, 4});
  CHECK(p.offsets[4] == 4096);  // the merged block is live on [0,4]
  CHECK(p.arena_bytes == 5120);
  CHECK(p.lower_bound == 5120);
  CHECK(p.peak_step == 2);
}

TEST_CASE("slices: a concat buffer whose channel slices are its producers' outputs", "[memory_plan]") {
  // NHWC, 16 pixels, f32, channels 3 + 5 + 8 = 16. A channel slice [c0, c0+ck) spans from element c0 of pixel 0
  // to element c0+ck-1 of pixel 15: offset c0*4, bytes ((P-1)*C + ck)*4. Producers run at steps 0, 1, 2, the
  // concat consumer at 3; the concat buffer is then read until step 5.
  const size_t P = 16, C = 16, es = 4;
  const size_t ch[] = {3, 5, 8}, c0[] = {0, 3, 8};
  std::vector<MemRequest> r;
  r.push_back(rq("cat", P * C * es, 3, 5, 256));
  for (int k = 0; k < 3; ++k)
    r.push_back(slice("prod" + std::to_string(k), ((P - 1) * C + ch[k]) * es, k, 3, 0, c0[k] * es));
  r.push_back(rq("early", 1024, 0, 0));  // live with the first producer, so it must not overlap the buffer
  r.push_back(rq("late", 1024, 6, 7));   // after the buffer: reuses its memory
  MemoryPlan p = plan_and_check(r);
  CHECK(p.root == std::vector<int>{0, 0, 0, 0, 4, 5});
  for (int k = 0; k < 3; ++k) CHECK(p.offsets[1 + k] == p.offsets[0] + c0[k] * es);
  CHECK(p.offsets[0] % 256 == 0);
  CHECK(disjoint(p.offsets[0], 1024, p.offsets[4], 1024));
  CHECK(p.offsets[5] == p.offsets[0]);
  CHECK(p.lower_bound == 2048);  // the buffer is live from step 0
  CHECK(p.peak_step == 0);
  CHECK(p.no_reuse_bytes == 1024 + 1024 + 1024);

  SECTION("a slice that does not fit in its parent throws") {
    r[3].bytes += es;  // channels 8..16 inclusive: one past the end
    REQUIRE_THROWS_AS(plan_memory(r), climseg::Error);
    REQUIRE_THROWS_WITH(plan_memory(r), Contains("does not fit in its parent"));
  }
}

TEST_CASE("slice of a slice, declared before its parents", "[memory_plan]") {
  std::vector<MemRequest> r = {slice("inner", 1024, 0, 1, 1, 512), slice("mid", 2048, 1, 2, 2, 1024),
                               rq("outer", 4096, 2, 4, 256), rq("x", 100, 0, 0)};
  MemoryPlan p = plan_and_check(r);
  CHECK(p.root == std::vector<int>{2, 2, 2, 3});
  CHECK(p.offsets[1] == p.offsets[2] + 1024);
  CHECK(p.offsets[0] == p.offsets[2] + 1536);
  CHECK(p.offsets[2] == 0);
  CHECK(p.offsets[3] == 4096);  // outer is live from step 0 through its innermost slice
}

TEST_CASE("zero-byte requests get offset 0 and take no memory", "[memory_plan]") {
  std::vector<MemRequest> r = {rq("a", 1000, 0, 3), rq("empty", 0, 0, 3, 4096), rq("b", 1000, 0, 3)};
  MemoryPlan p = plan_and_check(r);
  CHECK(p.offsets[1] == 0);
  CHECK(p.arena_bytes == 2000);
  CHECK(p.no_reuse_bytes == 2000);
}

TEST_CASE("lower bound, peak step and per-kind totals", "[memory_plan]") {
  std::vector<MemRequest> r = {rq("act", 1000, 0, 2, 1, MemKind::activation),
                               rq("grad", 500, 2, 3, 1, MemKind::gradient),
                               rq("saved", 300, 0, 3, 1, MemKind::saved),
                               rq("ws", 200, 1, 1, 1, MemKind::workspace)};
  MemoryPlan p = plan_and_check(r);
  CHECK(p.lower_bound == 1800);
  CHECK(p.peak_step == 2);
  CHECK(p.live_at_peak_by_kind == std::array<size_t, 4>{1000, 500, 300, 0});
  CHECK(p.total_by_kind == std::array<size_t, 4>{1000, 500, 300, 200});
  CHECK(p.no_reuse_bytes == 2000);

  const std::string rep = p.report();
  INFO(rep);
  CHECK_THAT(rep, Contains("4 requests in 4 blocks, 0 in-place merges"));
  CHECK_THAT(rep, Contains("lower bound"));
  CHECK_THAT(rep, Contains("live at peak step 2"));
  CHECK_THAT(rep, Contains("gradient 500 B"));
  CHECK(std::string(climseg::mem_kind_name(MemKind::saved)) == "saved");
}

TEST_CASE("report uses binary units", "[memory_plan]") {
  std::vector<MemRequest> r = {rq("a", 812 * MiB, 0, 1, 256), rq("b", 3 * KiB / 2, 0, 0, 256, MemKind::gradient)};
  const std::string rep = plan_memory(r).report();
  INFO(rep);
  CHECK_THAT(rep, Contains("812.0 MiB"));
  CHECK_THAT(rep, Contains("1.5 KiB"));
}

TEST_CASE("malformed requests throw", "[memory_plan]") {
  using climseg::Error;
  std::vector<MemRequest> ok = {rq("a", 100, 0, 1), rq("b", 100, 1, 2)};
  REQUIRE_NOTHROW(plan_memory(ok));
  auto bad = ok;
  SECTION("first > last") {
    bad[1].first = 3;
    REQUIRE_THROWS_WITH(plan_memory(bad), Contains("first step 3 > last step 2"));
  }
  SECTION("parent index out of range") {
    bad[1].parent = 2;
    REQUIRE_THROWS_WITH(plan_memory(bad), Contains("bad parent index"));
    bad[1].parent = -2;
    REQUIRE_THROWS_AS(plan_memory(bad), Error);
    bad[1].parent = 1;
    REQUIRE_THROWS_AS(plan_memory(bad), Error);
  }
  SECTION("in-place index out of range or not earlier") {
    bad[0].inplace_of = 1;
    REQUIRE_THROWS_WITH(plan_memory(bad), Contains("bad inplace_of index"));
    bad[0].inplace_of = 0;
    REQUIRE_THROWS_AS(plan_memory(bad), Error);
    bad[0].inplace_of = 7;
    REQUIRE_THROWS_AS(plan_memory(bad), Error);
  }
  SECTION("alignment not a power of two") {
    bad[0].align = 3;
    REQUIRE_THROWS_WITH(plan_memory(bad), Contains("not a power of two"));
    bad[0].align = 0;
    REQUIRE_THROWS_AS(plan_memory(bad), Error);
  }
  SECTION("slice does not fit") {
    bad[1].parent = 0;
    bad[1].parent_offset = 1;
    REQUIRE_THROWS_WITH(plan_memory(bad), Contains("does not fit in its parent"));
    bad[1].bytes = 10;
    bad[1].parent_offset = static_cast<size_t>(-1);  // must not wrap around
    REQUIRE_THROWS_AS(plan_memory(bad), Error);
  }
  SECTION("slice cycle") {
    bad[0].parent = 1;
    bad[1].parent = 0;
    REQUIRE_THROWS_AS(plan_memory(bad), Error);
  }
}

// ---- randomized -----------------------------------------------------------------------------------------------

TEST_CASE("random graphs: plans are valid, deterministic and near the lower bound", "[memory_plan][random]") {
  Rng g(0x5eed'c11'5e6ULL);
  const int graphs = 1000;
  double sum_lb = 0, max_lb = 0, sum_nr = 0;
  long requests = 0, merges = 0;
  for (int k = 0; k < graphs; ++k) {
    const int n = uni(g, 5, 200);
    const int steps = uni(g, 4, 120);
    const auto r = random_graph(g, n, steps);
    INFO("graph " << k << ", " << r.size() << " requests");
    const MemoryPlan p = plan_and_check(r);
    REQUIRE(plan_memory(r).offsets == p.offsets);
    requests += static_cast<long>(r.size());
    merges += p.inplace_merges;
    REQUIRE(p.lower_bound > 0);
    const double lb = static_cast<double>(p.arena_bytes) / static_cast<double>(p.lower_bound);
    sum_lb += lb;
    max_lb = std::max(max_lb, lb);
    sum_nr += static_cast<double>(p.arena_bytes) / static_cast<double>(p.no_reuse_bytes);
  }
  std::printf("memory_plan random: %d graphs, %ld requests, %ld in-place merges; planned/lower bound mean %.4f "
              "max %.4f; planned/no-reuse mean %.4f\n",
              graphs, requests, merges, sum_lb / graphs, max_lb, sum_nr / graphs);
}

TEST_CASE("verify_memory_plan catches corrupted plans", "[memory_plan]") {
  Rng g(42);
  int moved = 0;
  for (int k = 0; k < 50; ++k) {
    const auto r = random_graph(g, 60, 30);
    const MemoryPlan p = plan_memory(r);
    REQUIRE_NOTHROW(verify_memory_plan(r, p));
    // Blocks with their folded ranges, from plan.root.
    std::map<int, std::pair<int, int>> range;
    for (int i = 0; i < static_cast<int>(r.size()); ++i) {
      if (r[i].bytes == 0) continue;
      auto [it, fresh] = range.try_emplace(p.root[i], r[i].first, r[i].last);
      it->second.first = std::min(it->second.first, r[i].first);
      it->second.second = std::max(it->second.second, r[i].last);
    }
    // Move block b onto a live neighbour a (at a's offset, when b's alignment allows it).
    bool done = false;
    for (auto& [a, ra] : range) {
      for (auto& [b, rb] : range) {
        if (done || a == b || ra.second < rb.first || rb.second < ra.first) continue;
        size_t balign = 1;
        for (int i = 0; i < static_cast<int>(r.size()); ++i)
          if (r[i].bytes > 0 && p.root[i] == b) balign = std::max(balign, r[i].align);
        if (p.offsets[a] % balign != 0) continue;
        MemoryPlan bad = p;
        const size_t from = p.offsets[b], to = p.offsets[a];
        for (int i = 0; i < static_cast<int>(r.size()); ++i)
          if (r[i].bytes > 0 && p.root[i] == b) bad.offsets[i] = bad.offsets[i] - from + to;
        bad.arena_bytes = std::max(bad.arena_bytes, to + r[b].bytes);
        REQUIRE_THROWS_WITH(verify_memory_plan(r, bad), Contains("overlap while both live"));
        done = true;
        ++moved;
      }
    }
  }
  CHECK(moved > 40);

  SECTION("hand-made corruptions") {
    std::vector<MemRequest> r = {rq("a", 1000, 0, 2, 256), rq("b", 500, 1, 3, 256), slice("s", 100, 0, 0, 0, 200),
                                 rq("c", 1000, 1, 3, 1)};
    const MemoryPlan p = plan_and_check(r);
    MemoryPlan bad = p;
    bad.offsets[1] += 8;  // misaligned
    bad.arena_bytes += 8;
    REQUIRE_THROWS_WITH(verify_memory_plan(r, bad), Contains("not a multiple of 256"));
    bad = p;
    bad.arena_bytes -= 1;  // arena too small
    REQUIRE_THROWS_WITH(verify_memory_plan(r, bad), Contains("exceeds the arena"));
    bad = p;
    bad.offsets[2] += 1;  // slice off its parent_offset
    REQUIRE_THROWS_AS(verify_memory_plan(r, bad), climseg::Error);
    bad = p;
    bad.root[3] = 0;  // c shares a's block while both are live on [1,2]
    bad.offsets[3] = p.offsets[0];
    REQUIRE_THROWS_WITH(verify_memory_plan(r, bad), Contains("while both live"));
    bad = p;
    bad.offsets.pop_back();
    REQUIRE_THROWS_AS(verify_memory_plan(r, bad), climseg::Error);
    bad = p;
    bad.root[1] = 77;  // out of range
    REQUIRE_THROWS_WITH(verify_memory_plan(r, bad), Contains("out of range"));
  }
  SECTION("a slice declared before its parent, whose parent's root is corrupt") {
    // s claims block x, and its parent's root is garbage: the message must not index with the garbage.
    std::vector<MemRequest> r = {slice("s", 100, 0, 1, 1, 0), rq("cat", 400, 1, 2), rq("x", 400, 0, 2)};
    const MemoryPlan p = plan_and_check(r);
    MemoryPlan bad = p;
    bad.root[0] = 2;
    bad.root[1] = 77;
    REQUIRE_THROWS_WITH(verify_memory_plan(r, bad), Contains("is in block 77"));
  }
}

TEST_CASE("10,000 requests", "[memory_plan][large]") {
  Rng g(10000);
  const auto r = random_graph(g, 10000, 4000);
  const auto t0 = std::chrono::steady_clock::now();
  const MemoryPlan p = plan_memory(r);
  const auto t1 = std::chrono::steady_clock::now();
  REQUIRE_NOTHROW(verify_memory_plan(r, p));
  const auto t2 = std::chrono::steady_clock::now();
  CHECK(p.arena_bytes >= p.lower_bound);
  CHECK(p.arena_bytes <= p.no_reuse_bytes);
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::printf("memory_plan large: %zu requests, plan %.1f ms, verify %.1f ms, planned/lower bound %.4f\n%s",
              r.size(), ms(t1 - t0), ms(t2 - t1),
              static_cast<double>(p.arena_bytes) / static_cast<double>(p.lower_bound), p.report().c_str());
}
