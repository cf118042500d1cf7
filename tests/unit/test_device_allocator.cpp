// Caching device allocator policy (engine/device_allocator.h) on the CPU, with fake raw alloc/free functions that
// hand out fake addresses, count calls and can run out of memory: rounding, reuse, the 1.25x oversize rule,
// per-device free lists, statistics, releasing the cache, the out-of-memory retry and error, misuse, threads.
#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "engine/check.h"
#include "engine/device_allocator.h"

using climseg::AllocatorStats;
using climseg::CachingAllocator;
using climseg::RawDeviceAllocator;
using Catch::Matchers::Contains;

namespace {

constexpr size_t KiB = 1024, MiB = 1024 * KiB;

// A fake device memory: fake addresses (never dereferenced), a capacity per device, call counts.
struct FakeDevices {
  std::mutex mu;
  size_t capacity = SIZE_MAX;  // per device
  std::map<int, size_t> used;  // device -> bytes held
  std::map<void*, std::pair<int, size_t>> live;
  uintptr_t next = 0x10000;
  int allocs = 0, failures = 0, frees = 0;
  bool throw_on_alloc = false;

  static void* alloc(int device, size_t bytes, void* user) {
    auto* f = static_cast<FakeDevices*>(user);
    std::lock_guard<std::mutex> lock(f->mu);
    if (f->throw_on_alloc) CS_THROW("fake driver failure");
    if (f->used[device] + bytes > f->capacity) {
      f->failures++;
      return nullptr;
    }
    void* p = reinterpret_cast<void*>(f->next);
    f->next += bytes + 4096;
    f->used[device] += bytes;
    f->live[p] = {device, bytes};
    f->allocs++;
    return p;
  }
  static void free(int device, void* ptr, size_t bytes, void* user) {
    auto* f = static_cast<FakeDevices*>(user);
    std::lock_guard<std::mutex> lock(f->mu);
    auto it = f->live.find(ptr);
    REQUIRE(it != f->live.end());
    REQUIRE(it->second.first == device);
    REQUIRE(it->second.second == bytes);
    f->used[device] -= bytes;
    f->live.erase(it);
    f->frees++;
  }
  RawDeviceAllocator raw() { return RawDeviceAllocator{alloc, free, this, "fakeMalloc"}; }
};

}  // namespace

TEST_CASE("allocator rounds sizes to 512 B below 1 MiB and to 2 MiB from 1 MiB on", "[allocator]") {
  CHECK(CachingAllocator::round_size(0) == 0);
  CHECK(CachingAllocator::round_size(1) == 512);
  CHECK(CachingAllocator::round_size(512) == 512);
  CHECK(CachingAllocator::round_size(513) == 1024);
  CHECK(CachingAllocator::round_size(MiB - 1) == MiB);
  CHECK(CachingAllocator::round_size(MiB) == 2 * MiB);
  CHECK(CachingAllocator::round_size(2 * MiB) == 2 * MiB);
  CHECK(CachingAllocator::round_size(2 * MiB + 1) == 4 * MiB);
  CHECK(CachingAllocator::round_size(101 * MiB) == 102 * MiB);
}

TEST_CASE("allocator tells the handed_out hook each block it hands out, new or cached, with both sizes",
          "[allocator]") {
  // The emulation build's hook (engine/device_cuda.cpp -> cudasim::block_handed_out) poisons [requested, block).
  struct Call {
    void* p;
    size_t requested, block;
  };
  static std::vector<Call> calls;
  calls.clear();
  FakeDevices fake;
  RawDeviceAllocator r = fake.raw();
  r.handed_out = [](void* p, size_t requested, size_t block, void* user) {
    REQUIRE(user != nullptr);  // the raw allocator's user pointer, passed through
    calls.push_back({p, requested, block});
  };
  CachingAllocator a(r);
  void* p = a.allocate(0, 1000);
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].p == p);
  CHECK(calls[0].requested == 1000);
  CHECK(calls[0].block == 1024);
  a.deallocate(p, 1000);
  void* q = a.allocate(0, 900);  // the cached 1024-byte block, for fewer bytes
  REQUIRE(q == p);
  REQUIRE(calls.size() == 2);
  CHECK(calls[1].requested == 900);
  CHECK(calls[1].block == 1024);
  a.deallocate(q, 900);
  CHECK(a.allocate(0, 0) == nullptr);  // nothing handed out, nothing told
  CHECK(calls.size() == 2);
}

TEST_CASE("allocator reuses a freed block of the same rounded size", "[allocator]") {
  FakeDevices fake;
  CachingAllocator a(fake.raw());
  REQUIRE(a.allocate(0, 0) == nullptr);
  void* p = a.allocate(0, 1000);
  REQUIRE(p != nullptr);
  CHECK(fake.allocs == 1);
  CHECK(fake.live.at(p).second == 1024);  // rounded before the raw call

  AllocatorStats s = a.stats();
  CHECK(s.bytes_in_use == 1024);
  CHECK(s.bytes_requested == 1000);
  CHECK(s.bytes_cached == 0);
  CHECK(s.raw_allocs == 1);
  CHECK(s.cache_hits == 0);

  a.deallocate(p, 1000);
  s = a.stats();
  CHECK(s.bytes_in_use == 0);
  CHECK(s.bytes_cached == 1024);
  CHECK(fake.frees == 0);  // cached, not returned

  void* q = a.allocate(0, 900);  // same rounded size (1024)
  CHECK(q == p);
  CHECK(fake.allocs == 1);
  s = a.stats();
  CHECK(s.cache_hits == 1);
  CHECK(s.allocations == 2);
  CHECK(s.bytes_in_use == 1024);
  CHECK(s.bytes_requested == 900);
  CHECK(s.bytes_cached == 0);

  void* r = a.allocate(0, 900);  // the cached block is taken: a new one
  CHECK(r != p);
  CHECK(fake.allocs == 2);
  CHECK(a.stats().peak_in_use == 2048);
  a.deallocate(q, 900);
  a.deallocate(r, 900);
  CHECK(a.stats().peak_in_use == 2048);
  a.reset_peak();
  CHECK(a.stats().peak_in_use == 0);
}

TEST_CASE("allocator takes a cached block at most 1.25x the request, the smallest that fits", "[allocator]") {
  FakeDevices fake;
  CachingAllocator a(fake.raw());
  void* b10 = a.allocate(0, 10 * MiB);
  void* b12 = a.allocate(0, 12 * MiB);
  a.deallocate(b12, 12 * MiB);
  a.deallocate(b10, 10 * MiB);
  REQUIRE(a.stats().bytes_cached == 22 * MiB);

  SECTION("8 MiB takes the 10 MiB block (1.25x), bookkept at its real size") {
    void* p = a.allocate(0, 8 * MiB);
    CHECK(p == b10);
    CHECK(a.stats().bytes_in_use == 10 * MiB);
    CHECK(a.stats().bytes_requested == 8 * MiB);
    CHECK(a.stats().bytes_cached == 12 * MiB);
    a.deallocate(p, 8 * MiB);
    CHECK(a.stats().bytes_cached == 22 * MiB);  // back under its real size
    CHECK(a.allocate(0, 10 * MiB) == b10);
  }
  SECTION("10 MiB takes the 10 MiB block, not the 12 MiB one") { CHECK(a.allocate(0, 10 * MiB) == b10); }
  SECTION("11 MiB (rounded 12) takes the 12 MiB block") { CHECK(a.allocate(0, 11 * MiB) == b12); }
  SECTION("6 MiB: both cached blocks are more than 1.25x larger, so a new block") {
    void* p = a.allocate(0, 6 * MiB);
    CHECK(p != b10);
    CHECK(p != b12);
    CHECK(fake.allocs == 3);
    CHECK(a.stats().cache_hits == 0);
  }
  SECTION("small requests never take large blocks") {
    a.allocate(0, 512);
    CHECK(fake.allocs == 3);
  }
}

TEST_CASE("allocator keeps one free list per device", "[allocator]") {
  FakeDevices fake;
  CachingAllocator a(fake.raw());
  void* p0 = a.allocate(0, 4 * MiB);
  a.deallocate(p0, 4 * MiB);
  void* p1 = a.allocate(1, 4 * MiB);
  CHECK(p1 != p0);
  CHECK(fake.live.at(p1).first == 1);
  CHECK(a.allocate(0, 4 * MiB) == p0);
  a.deallocate(p1, 4 * MiB);
  CHECK(a.release_cached(1) == 4 * MiB);
  CHECK(fake.live.count(p1) == 0);
  CHECK(fake.live.count(p0) == 1);  // in use on device 0: untouched
}

TEST_CASE("allocator release_cached returns every cached block to the raw allocator", "[allocator]") {
  FakeDevices fake;
  {
    CachingAllocator a(fake.raw());
    std::vector<void*> ps;
    for (size_t sz : {100 * KiB, 3 * MiB, 700 * KiB, 3 * MiB}) ps.push_back(a.allocate(0, sz));
    void* q = a.allocate(1, 5 * MiB);
    a.deallocate(ps[0], 100 * KiB);
    a.deallocate(ps[1], 3 * MiB);
    a.deallocate(q, 5 * MiB);
    const size_t cached = CachingAllocator::round_size(100 * KiB) + 4 * MiB + 6 * MiB;
    CHECK(a.stats().bytes_cached == cached);
    CHECK(a.release_cached() == cached);
    AllocatorStats s = a.stats();
    CHECK(s.bytes_cached == 0);
    CHECK(s.raw_frees == 3);
    CHECK(fake.frees == 3);
    CHECK(s.bytes_in_use == CachingAllocator::round_size(700 * KiB) + 4 * MiB);
    CHECK(a.release_cached() == 0);
    a.deallocate(ps[2], 700 * KiB);
    // ps[3] stays in use: the destructor releases the cache only.
  }
  CHECK(fake.live.size() == 1);
}

TEST_CASE("allocator releases the cache and retries once when the device is out of memory", "[allocator]") {
  FakeDevices fake;
  fake.capacity = 8 * MiB;
  CachingAllocator a(fake.raw());
  void* p = a.allocate(0, 4 * MiB);
  a.deallocate(p, 4 * MiB);  // cached: the device is half full

  void* q = a.allocate(0, 6 * MiB);  // 4 cached + 6 > 8: fails, cache released, retried
  REQUIRE(q != nullptr);
  AllocatorStats s = a.stats();
  CHECK(s.oom_retries == 1);
  CHECK(s.raw_alloc_failures == 1);
  CHECK(s.raw_frees == 1);
  CHECK(s.bytes_cached == 0);
  CHECK(s.bytes_in_use == 6 * MiB);
  CHECK(fake.allocs == 2);
  CHECK(fake.failures == 1);
}

TEST_CASE("allocator throws a clear error when out of memory even after the retry", "[allocator]") {
  FakeDevices fake;
  fake.capacity = 8 * MiB;
  CachingAllocator a(fake.raw());
  void* p = a.allocate(0, 6 * MiB);
  REQUIRE_THROWS_AS(a.allocate(0, 4 * MiB), climseg::Error);
  try {
    a.allocate(0, 4 * MiB - 5);
    FAIL("expected an out-of-memory error");
  } catch (const climseg::Error& e) {
    CHECK_THAT(e.what(), Contains("out of memory on device 0"));
    CHECK_THAT(e.what(), Contains("fakeMalloc of 4194299 bytes"));
    CHECK_THAT(e.what(), Contains("in use 6.00 MiB"));
  }
  AllocatorStats s = a.stats();
  CHECK(s.oom_retries == 2);
  CHECK(s.raw_alloc_failures == 4);
  CHECK(s.bytes_in_use == 6 * MiB);  // the failures changed nothing else
  CHECK(s.allocations == 1);
  a.deallocate(p, 6 * MiB);
  CHECK(a.allocate(0, 4 * MiB) != nullptr);  // takes no cached block (6 > 1.25 x 4): releases it and retries
}

TEST_CASE("allocator propagates raw allocator errors other than out of memory", "[allocator]") {
  FakeDevices fake;
  fake.throw_on_alloc = true;
  CachingAllocator a(fake.raw());
  CHECK_THROWS_WITH(a.allocate(0, 100), Contains("fake driver failure"));
  CHECK(a.stats().allocations == 0);
  CHECK(a.stats().bytes_in_use == 0);
}

TEST_CASE("allocator rejects frees of unknown pointers, double frees and wrong sizes", "[allocator]") {
  FakeDevices fake;
  CachingAllocator a(fake.raw());
  a.deallocate(nullptr, 0);  // ignored
  void* p = a.allocate(0, 2000);
  int x = 0;
  CHECK_THROWS_WITH(a.deallocate(&x, 4), Contains("not a live allocation"));
  CHECK_THROWS_WITH(a.deallocate(p, 2048), Contains("2000 bytes were allocated"));
  a.deallocate(p, 2000);
  CHECK_THROWS_WITH(a.deallocate(p, 2000), Contains("double free"));
  CHECK(a.stats().bytes_cached == 2048);
}

TEST_CASE("allocator stays consistent under concurrent use", "[allocator]") {
  FakeDevices fake;
  {
    CachingAllocator a(fake.raw());
    auto worker = [&a](unsigned seed) {
      std::mt19937 rng(seed);
      std::uniform_int_distribution<size_t> size(1, 3 * MiB);
      std::vector<std::pair<void*, size_t>> held;
      for (int i = 0; i < 2000; ++i) {
        if (held.size() < 8 && (rng() & 1)) {
          size_t n = size(rng);
          held.emplace_back(a.allocate(static_cast<int>(rng() % 2), n), n);
        } else if (!held.empty()) {
          size_t j = rng() % held.size();
          a.deallocate(held[j].first, held[j].second);
          held.erase(held.begin() + static_cast<std::ptrdiff_t>(j));
        }
      }
      for (auto& [p, n] : held) a.deallocate(p, n);
    };
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < 4; ++t) threads.emplace_back(worker, 100 + t);
    for (auto& t : threads) t.join();
    AllocatorStats s = a.stats();
    CHECK(s.bytes_in_use == 0);
    CHECK(s.bytes_requested == 0);
    CHECK(s.allocations == s.raw_allocs + s.cache_hits);
    CHECK(s.cache_hits > 0);
    size_t live = 0;
    for (auto& [p, dn] : fake.live) live += dn.second;
    CHECK(live == s.bytes_cached);  // everything the fake still holds is in the cache
  }
  CHECK(fake.live.empty());  // the destructor released the cache
}
