// cudasim runtime internals shared by cudasim.cpp (launches, fibers, barriers) and cudart.cpp (the stand-in cudart).
#pragma once

#include <functional>
#include <string>

#include "cuda_runtime.h"

namespace cudasim::detail {

// CUDA's error model. Every failing call sets the calling thread's last error (cudaGetLastError returns it and
// clears it). A sticky error (a fault while a kernel ran) poisons the whole (emulated) context: every later call
// returns it and cudaGetLastError does not clear it. `detail` is appended to cudaGetErrorString's text.
cudaError_t set_error(cudaError_t e, const std::string& detail = {});
cudaError_t set_sticky(cudaError_t e, const std::string& detail);
cudaError_t sticky_error();

bool valid_stream(cudaStream_t s);
// Hands work to a stream. Immediate mode (the only mode so far): runs it now, on the calling thread. A deferred mode
// will queue it on the stream and run it at the next synchronisation with the stream (see README).
void submit(cudaStream_t s, std::function<void()> work);

// For the stand-in libraries (cuBLAS, cuDNN): empty when [p, p + bytes) lies inside one live device allocation,
// otherwise what is wrong with it (null, not device memory, past the end of its allocation).
std::string device_span_problem(const void* p, size_t bytes);

// Runs the grid: called by the stream when the launch's turn comes. Execution errors set the (sticky) error.
void run_grid(const KernelInfo& info, dim3 grid, dim3 block, const std::function<void()>& body);

}  // namespace cudasim::detail
