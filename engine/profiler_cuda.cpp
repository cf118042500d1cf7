// Profiler backend for a CUDA build: cudaEvent_t for timing, NVTX v3 (header-only) for Nsight Systems ranges.
#include <cstdio>

#include <cuda_runtime.h>
#include <nvtx3/nvToolsExt.h>

#include "engine/check_cuda.h"
#include "engine/profiler_backend.h"

namespace climseg::detail {

ProfEvent prof_event_create() {
  cudaEvent_t ev = nullptr;
  // cudaEventDefault keeps timing enabled (cudaEventDisableTiming would make elapsed-time queries fail).
  CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDefault));
  return ev;
}

void prof_event_destroy(ProfEvent ev) noexcept {
  if (ev) CUDA_CHECK_LOG(cudaEventDestroy(ev));
}

void prof_event_record(ProfEvent ev, CUstream_st* stream) { CUDA_CHECK(cudaEventRecord(ev, stream)); }

bool prof_event_ready(ProfEvent ev) {
  cudaError_t e = cudaEventQuery(ev);
  if (e == cudaErrorNotReady) {
    // Not an error, but clear it so that the next CUDA_CHECK_LAUNCH does not report it (as PyTorch's Event::query).
    (void)cudaGetLastError();
    return false;
  }
  CUDA_CHECK(e);
  return true;
}

double prof_event_elapsed_ms(ProfEvent begin, ProfEvent end) {
  // Both must have completed; `begin` may sit on another stream than `end`.
  CUDA_CHECK(cudaEventSynchronize(end));
  CUDA_CHECK(cudaEventSynchronize(begin));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, begin, end));
  return ms;
}

void nvtx_push(const char* name) noexcept { nvtxRangePushA(name ? name : "?"); }
void nvtx_pop() noexcept { nvtxRangePop(); }

}  // namespace climseg::detail
