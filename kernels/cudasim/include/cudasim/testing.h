// cudasim: hooks for the emulator's own tests and for test drivers (not part of CUDA).
#pragma once

#include <cstddef>
#include <cstdint>

namespace cudasim {

// Clears a sticky error (CUDA would need a new process) and the calling thread's last error.
void clear_sticky_error();
// Device allocations alive now (cudaMalloc without cudaFree).
size_t live_device_allocations();
// Run the threads (and blocks) of every launch in reverse order; initially CLIMSEG_CUDASIM_REVERSE=1.
void set_reverse_order(bool on);
bool reverse_order();
// The deferred-stream mode (README.md); initially CLIMSEG_CUDASIM_DEFER=1. Turning it off first runs all queued work.
void set_deferred(bool on);
bool deferred();
// The seed of the deferred mode's interleaving (initially CLIMSEG_CUDASIM_SEED, else random); set_seed restarts
// the generator, so the same seed and the same calls give the same schedule.
void set_seed(uint64_t seed);
uint64_t seed();
// Ops queued on streams and not yet run (always 0 in immediate mode).
size_t pending_work();
// NCCL calls (the stand-in over MPI, nccl.cpp; only in builds with MPI) whose queued transfer has run.
size_t nccl_ops_run();

}  // namespace cudasim
