// Page-locked ("pinned") host memory: the staging buffers of the input pipeline (io/pipeline.h). The CUDA driver
// copies from page-locked memory by DMA, so cudaMemcpyAsync from it is truly asynchronous and runs at the link's
// full speed; from ordinary pageable memory it is staged through a driver buffer and partly synchronous.
//
// Implemented by pinned_memory_cuda.cpp (cudaHostAlloc, portable: usable by every device and context) and
// pinned_memory_nocuda.cpp (ordinary 256-byte aligned memory, as Tensor::empty). A CUDA build on a machine without
// a device also returns ordinary memory: there is nothing to pin for.
#pragma once

#include "engine/tensor.h"

namespace climseg {

// True when pinned_empty returns page-locked memory (a CUDA build with a visible device).
bool pinned_memory_available();

// A contiguous host (Device::cpu) tensor, page-locked when pinned_memory_available(), otherwise ordinary aligned
// memory. Freed (cudaFreeHost) when the last view goes. Page-locking is slow (the OS maps and locks every page) and
// takes memory the OS cannot swap: allocate once, reuse.
Tensor pinned_empty(Shape s, DType t);

// Whether ptr lies in page-locked memory registered with CUDA (false in a CPU-only build).
bool is_pinned(const void* ptr);

}  // namespace climseg
