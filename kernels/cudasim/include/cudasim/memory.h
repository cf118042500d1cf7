// cudasim: what a caching allocator above cudaMalloc tells the emulator (engine/device_cuda.cpp), so that the
// checks that cudaMalloc's exact sizes give survive the caching. Not part of CUDA.
#pragma once

#include <cstddef>

namespace cudasim {

// A block of `block` bytes from cudaMalloc, at p, is handed out for `requested` (<= block) bytes. In immediate mode
// the requested bytes are filled with 0xFF again (an uninitialised read of a reused block is NaN, as of a fresh
// cudaMalloc) and, in a build with AddressSanitizer, bytes [requested, block) are made inaccessible, so a kernel
// that reads or writes past the end of its tensor is reported although the block is larger. In the deferred-stream
// mode neither is done: work queued by the block's previous user may still run on it (handing a block out again
// at once is valid CUDA when its users share a stream). Pointers that are not the start of a live device allocation
// of at least `block` bytes are ignored.
void block_handed_out(void* p, size_t requested, size_t block);

}  // namespace cudasim
