// Caching device allocator: the policy behind every device Tensor, in pure C++ so it is unit-tested on the CPU
// with fake alloc/free functions (tests/unit/test_device_allocator.cpp). engine/device_cuda.cpp plugs in
// cudaMalloc/cudaFree (never managed memory) and keeps one process-wide instance.
//
// Policy (PyTorch's caching allocator, simplified: no block splitting, no stream tracking):
// - Sizes are rounded up: to a multiple of 512 B below 1 MiB, to a multiple of 2 MiB from 1 MiB on. Rounding
//   makes repeated requests of nearby sizes land on the same block size, so the cache hits.
// - A freed block goes to its device's free list, keyed by its (rounded) size, and is not returned to the driver.
// - A request takes the smallest cached block of its device whose size is >= the rounded request and
//   <= kMaxOversize (1.25) x the rounded request; only when none fits is the raw allocator called. The 1.25 bound
//   keeps a small request from pinning a much larger block (at most 25% waste per block, no splitting needed).
// - When the raw allocator reports out of memory, the device's cache is released and the allocation retried
//   once; if that fails too, climseg::Error names the size requested and the statistics.
// - Thread-safe: one mutex around the bookkeeping and the raw calls.
//
// Streams: like PyTorch without record_stream, a freed block can be handed out again at once. Device work is
// stream-ordered, so this is safe while a block is used on one stream; code that frees memory still in use by
// another stream must synchronise that stream first (ExecContext does so for its workspace and on destruction).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace climseg {

struct AllocatorStats {
  size_t bytes_in_use = 0;       // block bytes handed out and not yet freed (rounded sizes)
  size_t bytes_requested = 0;    // bytes asked for by the live allocations (before rounding)
  size_t bytes_cached = 0;       // block bytes held in the free lists
  size_t peak_in_use = 0;        // maximum of bytes_in_use since construction (or reset_peak())
  int64_t allocations = 0;       // allocate() calls that returned memory
  int64_t cache_hits = 0;        // allocations served from the free lists
  int64_t raw_allocs = 0;        // successful raw allocations (cudaMalloc calls that returned memory)
  int64_t raw_alloc_failures = 0;// raw allocations that reported out of memory
  int64_t raw_frees = 0;         // raw frees (cudaFree calls)
  int64_t oom_retries = 0;       // times the cache was released to retry an allocation
  std::string str() const;       // one line, human-readable sizes
};

// The raw functions the policy sits on. alloc returns nullptr when the device is out of memory and throws
// climseg::Error on any other failure; free must not fail for a pointer alloc returned.
struct RawDeviceAllocator {
  void* (*alloc)(int device, size_t bytes, void* user) = nullptr;
  void (*free)(int device, void* ptr, size_t bytes, void* user) = nullptr;
  void* user = nullptr;              // passed through (tests count calls with it)
  const char* name = "raw allocator";  // for messages ("cudaMalloc")
  // Optional: told each time a block (`block` bytes at ptr, from alloc) is handed out for `requested` bytes, new or
  // from the cache. The emulation build makes the unused tail inaccessible to AddressSanitizer and refills the
  // requested bytes with NaN patterns (kernels/cudasim/include/cudasim/memory.h).
  void (*handed_out)(void* ptr, size_t requested, size_t block, void* user) = nullptr;
};

class CachingAllocator {
 public:
  static constexpr size_t kSmallAlign = 512;             // rounding below kSmallLimit
  static constexpr size_t kSmallLimit = size_t{1} << 20;  // 1 MiB
  static constexpr size_t kLargeAlign = size_t{2} << 20;  // rounding from kSmallLimit on: 2 MiB
  static constexpr double kMaxOversize = 1.25;           // largest cached block reused, relative to the request

  explicit CachingAllocator(RawDeviceAllocator raw);
  // Returns the cached blocks to the raw allocator. Blocks still in use are left alone (their owners may
  // outlive us; the process-wide instance is never destroyed for that reason).
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  static size_t round_size(size_t bytes);

  // nullptr for 0 bytes. Throws climseg::Error when the device is out of memory after releasing the cache.
  void* allocate(int device, size_t bytes);
  // `bytes` is the size given to allocate() (checked). nullptr is ignored. Throws for an unknown pointer.
  void deallocate(void* ptr, size_t bytes);

  // Returns every cached block (of one device, or of all) to the raw allocator; returns the bytes released.
  size_t release_cached();
  size_t release_cached(int device);

  AllocatorStats stats() const;
  void reset_peak();  // peak_in_use = bytes_in_use

 private:
  struct Block {
    int device;
    size_t size;       // rounded (the block's real size)
    size_t requested;  // what the caller asked for
  };
  RawDeviceAllocator raw_;
  mutable std::mutex mu_;
  std::map<int, std::multimap<size_t, void*>> free_;  // device -> (block size -> block)
  std::unordered_map<void*, Block> used_;
  AllocatorStats stats_;

  size_t release_locked(int device);  // mu_ held
};

// The process-wide device allocator (cudaMalloc/cudaFree on the current device). In a build without CUDA it
// exists (so tools and tests link) and every allocation throws.
CachingAllocator& device_allocator();

}  // namespace climseg
