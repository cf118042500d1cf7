// cudasim: hooks for the emulator's own tests and for test drivers (not part of CUDA).
#pragma once

#include <cstddef>

namespace cudasim {

// Clears a sticky error (CUDA would need a new process) and the calling thread's last error.
void clear_sticky_error();
// Device allocations alive now (cudaMalloc without cudaFree).
size_t live_device_allocations();
// Run the threads (and blocks) of every launch in reverse order; initially CLIMSEG_CUDASIM_REVERSE=1.
void set_reverse_order(bool on);
bool reverse_order();

}  // namespace cudasim
