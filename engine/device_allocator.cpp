#include "engine/device_allocator.h"

#include <cstdio>
#include <exception>

#include "engine/check.h"

namespace climseg {

namespace {
std::string human_bytes(size_t b) {
  char buf[64];
  double v = static_cast<double>(b);
  if (b >= (size_t{1} << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", v / double(1 << 30));
  else if (b >= (size_t{1} << 20))
    std::snprintf(buf, sizeof buf, "%.2f MiB", v / double(1 << 20));
  else if (b >= 1024)
    std::snprintf(buf, sizeof buf, "%.2f KiB", v / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%zu B", b);
  return buf;
}
}  // namespace

std::string AllocatorStats::str() const {
  return detail::concat("in use ", human_bytes(bytes_in_use), " (requested ", human_bytes(bytes_requested),
                        ", peak ", human_bytes(peak_in_use), "), cached ", human_bytes(bytes_cached), "; ",
                        allocations, " allocations, ", cache_hits, " cache hits, ", raw_allocs, " raw allocs, ",
                        raw_alloc_failures, " raw alloc failures, ", raw_frees, " raw frees, ", oom_retries,
                        " out-of-memory retries");
}

CachingAllocator::CachingAllocator(RawDeviceAllocator raw) : raw_(raw) {
  CS_CHECK(raw_.alloc != nullptr && raw_.free != nullptr, "CachingAllocator needs raw alloc and free functions");
}

CachingAllocator::~CachingAllocator() {
  try {
    release_cached();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "CachingAllocator: releasing the cache failed: %s\n", e.what());
  }
}

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) return 0;
  size_t a = bytes < kSmallLimit ? kSmallAlign : kLargeAlign;
  CS_CHECK(bytes <= SIZE_MAX - a, "allocation of ", bytes, " bytes overflows the size rounding");
  return (bytes + a - 1) / a * a;
}

void* CachingAllocator::allocate(int device, size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);

  void* ptr = nullptr;
  size_t block = size;
  auto dev_it = free_.find(device);
  if (dev_it != free_.end()) {
    // Smallest cached block >= size; taken when it is at most kMaxOversize (5/4) times the request.
    auto& lists = dev_it->second;
    auto it = lists.lower_bound(size);
    if (it != lists.end() && it->first - size <= size / 4) {
      ptr = it->second;
      block = it->first;
      lists.erase(it);
      stats_.bytes_cached -= block;
      stats_.cache_hits++;
    }
  }
  if (ptr == nullptr) {
    ptr = raw_.alloc(device, size, raw_.user);
    if (ptr == nullptr) {
      stats_.raw_alloc_failures++;
      stats_.oom_retries++;
      size_t released = release_locked(device);
      ptr = raw_.alloc(device, size, raw_.user);
      if (ptr == nullptr) {
        stats_.raw_alloc_failures++;
        CS_THROW("out of memory on device ", device, ": ", raw_.name, " of ", bytes, " bytes (block ",
                 human_bytes(size), ") failed, also after releasing ", human_bytes(released),
                 " of cached blocks and retrying; allocator: ", stats_.str());
      }
    }
    stats_.raw_allocs++;
  }
  if (raw_.handed_out) raw_.handed_out(ptr, bytes, block, raw_.user);
  used_.emplace(ptr, Block{device, block, bytes});
  stats_.allocations++;
  stats_.bytes_in_use += block;
  stats_.bytes_requested += bytes;
  if (stats_.bytes_in_use > stats_.peak_in_use) stats_.peak_in_use = stats_.bytes_in_use;
  return ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = used_.find(ptr);
  CS_CHECK(it != used_.end(), "device free of ", ptr, " (", bytes,
           " bytes): not a live allocation of this allocator (double free or foreign pointer)");
  const Block b = it->second;
  CS_CHECK(bytes == b.requested, "device free of ", ptr, " with ", bytes, " bytes, but ", b.requested,
           " bytes were allocated");
  used_.erase(it);
  stats_.bytes_in_use -= b.size;
  stats_.bytes_requested -= b.requested;
  free_[b.device].emplace(b.size, ptr);
  stats_.bytes_cached += b.size;
}

size_t CachingAllocator::release_locked(int device) {
  auto dev_it = free_.find(device);
  if (dev_it == free_.end()) return 0;
  size_t released = 0;
  auto& lists = dev_it->second;
  while (!lists.empty()) {
    auto it = lists.begin();
    const size_t size = it->first;
    void* ptr = it->second;
    lists.erase(it);  // first, so a throwing free cannot leave a dangling entry behind
    stats_.bytes_cached -= size;
    raw_.free(device, ptr, size, raw_.user);
    stats_.raw_frees++;
    released += size;
  }
  free_.erase(dev_it);
  return released;
}

size_t CachingAllocator::release_cached(int device) {
  std::lock_guard<std::mutex> lock(mu_);
  return release_locked(device);
}

size_t CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int> devices;
  for (const auto& [d, lists] : free_) devices.push_back(d);
  size_t released = 0;
  for (int d : devices) released += release_locked(d);
  return released;
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_in_use = stats_.bytes_in_use;
}

// ---- CPU-only build: the process-wide allocator exists and throws on use (backend boundary) ------------------
#if !defined(CLIMSEG_HAVE_CUDA)
namespace {
void* no_cuda_alloc(int, size_t, void*) { CS_THROW("device allocation: this climseg was built without CUDA"); }
void no_cuda_free(int, void*, size_t, void*) {}
}  // namespace

CachingAllocator& device_allocator() {
  // Never destroyed: tensors released during static destruction still find it alive.
  static CachingAllocator* instance = new CachingAllocator(RawDeviceAllocator{no_cuda_alloc, no_cuda_free, nullptr,
                                                                              "device allocation (no CUDA)"});
  return *instance;
}
#endif

}  // namespace climseg
