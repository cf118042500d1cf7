// Memory planner: pure C++, no device. Takes requests (bytes, alignment, live range, kind, in-place candidate,
// slice-of-parent) and assigns byte offsets in one arena so that no two requests that are live at the same time
// overlap, reusing the memory of requests whose lives have ended (engine.md section 3, STYLE.md B).
//
// Time is a sequence of integer steps (the Net uses: forward of node i at t = i, the loss at t = L, backward of
// node i at t = 2L - i). A request is live on [first, last], both inclusive.
//
// Slices: a request with `parent` >= 0 owns no memory; it is placed at parent's offset + parent_offset and its
// live range is folded into the parent's (parents may themselves be slices: a chain resolves to one root). This is
// how a concatenation buffer whose channel slices are its producers' outputs is expressed: the concat output is the
// parent, each producer's output a slice at (channel offset x element size); the strided view is the Tensor's job.
//
// In place: a request with `inplace_of` = P may share P's memory when P's last use is this request's first use
// (P.last == first), P is not a slice or parent, P is not already shared, and this request fits in P's bytes.
// Shared requests form one block covering both live ranges. Candidates that do not qualify get their own memory.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace climseg {

enum class MemKind : uint8_t { activation, gradient, saved, workspace, count };
const char* mem_kind_name(MemKind k);

struct MemRequest {
  std::string name;
  size_t bytes = 0;
  size_t align = 256;
  int first = 0;  // first step of use (inclusive)
  int last = 0;   // last step of use (inclusive), >= first
  MemKind kind = MemKind::activation;
  int inplace_of = -1;  // index of an earlier request whose memory this one may take over
  int parent = -1;      // index of the request this one is a slice of
  size_t parent_offset = 0;
};

struct MemoryPlan {
  std::vector<size_t> offsets;  // per request, bytes from the arena start
  std::vector<int> root;        // per request: the request whose block it lives in (itself when it has its own)
  size_t arena_bytes = 0;       // what the plan needs (its peak)
  size_t lower_bound = 0;       // most bytes live at any one step (no placement can need less)
  size_t no_reuse_bytes = 0;    // every block allocated separately, no reuse at all
  int peak_step = 0;            // the step at which lower_bound is reached
  std::array<size_t, static_cast<size_t>(MemKind::count)> live_at_peak_by_kind{};  // bytes live at peak_step
  std::array<size_t, static_cast<size_t>(MemKind::count)> total_by_kind{};         // no-reuse bytes per kind
  int inplace_merges = 0;       // in-place candidates that were granted
  std::string report() const;   // human-readable summary (peak, lower bound, no-reuse, by kind)
};

// Plans the requests. Throws climseg::Error on malformed input (first > last, bad parent/inplace index, a slice
// that does not fit in its parent, alignment not a power of two).
MemoryPlan plan_memory(const std::vector<MemRequest>& requests);

// Independent check of a plan: every offset aligned, every block inside the arena, slices inside their parents,
// and no two blocks with overlapping live ranges overlapping in bytes (except requests that share a block by
// design). Throws climseg::Error naming the two requests on the first violation.
void verify_memory_plan(const std::vector<MemRequest>& requests, const MemoryPlan& plan);

}  // namespace climseg
