// Private to the profiler: the few CUDA calls it needs, behind plain functions so that profiler.cpp builds without
// CUDA headers. profiler_cuda.cpp implements them with cudaEvent_t and NVTX v3; profiler_nocuda.cpp makes the NVTX
// calls no-ops and the event calls throw (a CUDA profiler cannot exist in a CPU-only build).
#pragma once

struct CUstream_st;
struct CUevent_st;

namespace climseg::detail {

using ProfEvent = CUevent_st*;  // cudaEvent_t

// Creates an event with timing enabled (cudaEventDefault) on the current device.
ProfEvent prof_event_create();
// Never throws: called from destructors. Errors are logged to stderr.
void prof_event_destroy(ProfEvent ev) noexcept;
// Enqueues the event on `stream` (null: the legacy default stream). Asynchronous.
void prof_event_record(ProfEvent ev, CUstream_st* stream);
// Non-blocking: true once all work before the event's record has completed.
bool prof_event_ready(ProfEvent ev);
// Milliseconds between two recorded events; waits for both to complete.
double prof_event_elapsed_ms(ProfEvent begin, ProfEvent end);

// NVTX ranges for Nsight Systems (no-ops in a CPU-only build). Never throw.
void nvtx_push(const char* name) noexcept;
void nvtx_pop() noexcept;

}  // namespace climseg::detail
