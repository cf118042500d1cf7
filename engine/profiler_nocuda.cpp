// Profiler backend for a build without CUDA: NVTX ranges are no-ops, and any event call means someone asked for a
// CUDA profiler, which cannot work here, so it throws (never a silent fallback to wall time).
#include "engine/check.h"
#include "engine/profiler_backend.h"

namespace climseg::detail {

namespace {
[[noreturn]] void no_cuda() {
  CS_THROW("a CUDA profiler (Profiler(Device::cuda)) was requested, but this climseg was built without CUDA");
}
}  // namespace

ProfEvent prof_event_create() { no_cuda(); }
void prof_event_destroy(ProfEvent) noexcept {}
void prof_event_record(ProfEvent, CUstream_st*) { no_cuda(); }
bool prof_event_ready(ProfEvent) { no_cuda(); }
double prof_event_elapsed_ms(ProfEvent, ProfEvent) { no_cuda(); }

void nvtx_push(const char*) noexcept {}
void nvtx_pop() noexcept {}

}  // namespace climseg::detail
