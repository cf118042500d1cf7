// cudasim stand-in for cudart: one device (index 0) whose memory is host memory. Device allocations have exactly
// the requested size (so ASan sees overruns) and are filled with 0xFF bytes (uninitialised fp32/fp16/bf16 reads
// are NaN); copies and memsets that touch a device allocation are checked against its bounds; freed and foreign
// pointers are refused as CUDA refuses them. Streams and events exist as checked handles; work submitted to a
// stream runs at once on the calling thread (immediate mode, a valid CUDA schedule) or, in the deferred-stream mode
// (CLIMSEG_CUDASIM_DEFER=1), is queued per stream and run at the synchronisations that need it, in a seeded
// interleaving that keeps only the ordering CUDA guarantees. See README.md.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include "cudasim/memory.h"
#include "cudasim/testing.h"
#include "internal.h"

namespace cudasim {
// One piece of work handed to a stream (a grid, a copy, a memset, a library call, an event record, an event wait).
// In deferred mode it runs once it is at the head of its stream's queue and every op in `deps` is done.
struct Op {
  std::function<void()> work;
  std::vector<std::shared_ptr<Op>> deps;  // cleared once done (so finished ops do not keep chains alive)
  bool done = false;
};
}  // namespace cudasim

struct CUstream_st {
  unsigned flags = 0;
  std::deque<std::shared_ptr<cudasim::Op>> queue;  // deferred mode: submitted, not yet run, in stream order
  std::shared_ptr<cudasim::Op> last;               // deferred mode: the latest op submitted (done or not)
};

struct CUevent_st {
  unsigned flags = 0;
  // The latest cudaEventRecord: its op (done once the stream got there) and the host time it ran at. A new record
  // replaces both; an older pending record still writes its own time, never this event.
  std::shared_ptr<cudasim::Op> op;
  std::shared_ptr<std::chrono::steady_clock::time_point> time;
};

namespace cudasim {
namespace {

// ---- errors ------------------------------------------------------------------------------------------------------

thread_local cudaError_t t_last = cudaSuccess;
std::mutex g_err_mu;
cudaError_t g_sticky = cudaSuccess;
std::map<int, std::string> g_detail;  // error code -> what the emulator knows about its latest occurrence

// An empty detail keeps the previous one (a sticky error reported again by a later call).
void store_detail(cudaError_t e, const std::string& detail) {
  if (detail.empty()) return;
  std::lock_guard<std::mutex> lock(g_err_mu);
  g_detail[e] = detail;
}

// ---- allocations -------------------------------------------------------------------------------------------------

struct Alloc {
  size_t size;
  bool device;  // device (cudaMalloc) or pinned host (cudaHostAlloc)
};
std::mutex g_mem_mu;
std::map<uintptr_t, Alloc> g_allocs;  // by base address

// The allocation that contains p (a zero-size range at its end counts), or end().
std::map<uintptr_t, Alloc>::const_iterator find_alloc(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return g_allocs.end();
  --it;
  if (a >= it->first && a <= it->first + it->second.size) return it;
  return g_allocs.end();
}

enum class Want { any, device, host };

// Checks that [p, p + bytes) is inside one device allocation if p points into one; `want` device: it must.
cudaError_t check_span(const char* who, const char* what, const void* p, size_t bytes, Want want) {
  std::lock_guard<std::mutex> lock(g_mem_mu);
  const auto it = find_alloc(p);
  const bool dev = it != g_allocs.end() && it->second.device;
  if (want == Want::device && !dev)
    return detail::set_error(cudaErrorInvalidValue, std::string(who) + ": " + what + " " +
                                                        (p ? "is not device memory" : "is null"));
  if (want == Want::host && dev)
    return detail::set_error(cudaErrorInvalidValue, std::string(who) + ": " + what +
                                                        " is device memory but the copy kind says host");
  if (dev) {
    const size_t off = reinterpret_cast<uintptr_t>(p) - it->first;
    if (bytes > it->second.size - off)
      return detail::set_error(cudaErrorInvalidValue,
                               std::string(who) + ": " + what + ": " + std::to_string(bytes) + " bytes at offset " +
                                   std::to_string(off) + " overrun the " + std::to_string(it->second.size) +
                                   "-byte device allocation");
  }
  return cudaSuccess;
}

// ---- streams and events ------------------------------------------------------------------------------------------

std::mutex g_obj_mu;
std::set<cudaStream_t> g_streams;
std::set<cudaEvent_t> g_events;

bool valid_event(cudaEvent_t e) {
  std::lock_guard<std::mutex> lock(g_obj_mu);
  return g_events.count(e) != 0;
}

#define CUDASIM_STICKY_CHECK()                                     \
  do {                                                             \
    if (cudaError_t cs_e_ = ::cudasim::detail::sticky_error())     \
      return ::cudasim::detail::set_error(cs_e_);                  \
  } while (0)

cudaError_t memcpy_kind_check(const char* who, void* dst, const void* src, size_t dbytes, size_t sbytes,
                              cudaMemcpyKind kind) {
  Want wd = Want::any, ws = Want::any;
  switch (kind) {
    case cudaMemcpyHostToHost: wd = ws = Want::host; break;
    case cudaMemcpyHostToDevice: wd = Want::device; ws = Want::host; break;
    case cudaMemcpyDeviceToHost: wd = Want::host; ws = Want::device; break;
    case cudaMemcpyDeviceToDevice: wd = ws = Want::device; break;
    case cudaMemcpyDefault: break;
    default: return detail::set_error(cudaErrorInvalidMemcpyDirection, std::string(who) + ": bad copy kind");
  }
  if (cudaError_t e = check_span(who, "destination", dst, dbytes, wd)) return e;
  return check_span(who, "source", src, sbytes, ws);
}

// ---- deferred-stream mode ----------------------------------------------------------------------------------------
//
// Every stream (the legacy default stream, the per-thread default streams, created streams) has a queue. submit()
// appends an op, with the dependencies CUDA implies: the stream's order (the queue), the legacy default stream's
// implicit synchronisation with blocking streams (created without cudaStreamNonBlocking), and cudaStreamWaitEvent's
// event. Synchronisations run queued ops until what they wait for is done; each step picks one ready op (head of
// its queue, dependencies done) among all streams with a seeded generator, so independent streams interleave
// differently from seed to seed, work of unrelated streams may run early or stay pending, and a given seed replays
// the same schedule (for one host thread; the steps of several host threads interleave as they call). The lowest
// pending op (in submission order) is always ready, so the loop never deadlocks. Ops run under one global mutex.

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

struct Deferred {
  std::recursive_mutex mu;
  bool on = env_flag("CLIMSEG_CUDASIM_DEFER");
  uint64_t seed = 0;
  bool announced = false;
  std::mt19937_64 rng;
  CUstream_st legacy{};
  std::vector<CUstream_st*> streams{&legacy};  // every queue, in creation order (a deterministic pick order)
  cudaError_t async_error = cudaSuccess;       // a non-sticky execution error, for the synchronisation that ran it

  Deferred() {
    if (const char* v = std::getenv("CLIMSEG_CUDASIM_SEED"); v != nullptr && *v != '\0') {
      seed = std::strtoull(v, nullptr, 0);
    } else {
      std::random_device rd;
      seed = (uint64_t{rd()} << 32) ^ rd() ^
             static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    }
    rng.seed(seed);
  }
};

Deferred& dq() {
  static Deferred* d = new Deferred();  // never destroyed: streams may be used during static destruction
  return *d;
}

CUstream_st* per_thread_stream() {
  thread_local CUstream_st* s = [] {
    auto* st = new CUstream_st{};  // blocking (it synchronises with the legacy stream); never freed
    std::lock_guard<std::recursive_mutex> lock(dq().mu);
    dq().streams.push_back(st);
    return st;
  }();
  return s;
}

CUstream_st* queue_of(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy) return &dq().legacy;
  if (s == cudaStreamPerThread) return per_thread_stream();
  return s;
}

bool blocking(const CUstream_st* s) { return (s->flags & cudaStreamNonBlocking) == 0; }

bool ready(const CUstream_st* s) {
  if (s->queue.empty()) return false;
  for (const auto& d : s->queue.front()->deps)
    if (!d->done) return false;
  return true;
}

// Runs one ready op (seeded choice). Returns false when nothing is pending. Caller holds dq().mu.
bool step() {
  Deferred& d = dq();
  thread_local std::vector<CUstream_st*> cand;
  cand.clear();
  for (CUstream_st* s : d.streams)
    if (ready(s)) cand.push_back(s);
  if (cand.empty()) return false;
  CUstream_st* s = cand[static_cast<size_t>(d.rng() % cand.size())];
  std::shared_ptr<Op> op = std::move(s->queue.front());
  s->queue.pop_front();
  // After a fault the context is dead: later work does not run (its results are undefined on a GPU anyway).
  if (op->work && detail::sticky_error() == cudaSuccess) {
    const cudaError_t saved = t_last;
    t_last = cudaSuccess;
    op->work();
    // A sticky error is reported by every later call anyway; a non-sticky one goes to the synchronisation.
    if (t_last != cudaSuccess && detail::sticky_error() == cudaSuccess && d.async_error == cudaSuccess)
      d.async_error = t_last;
    t_last = saved;
  }
  op->done = true;
  op->deps.clear();
  op->work = nullptr;
  return true;
}

// Runs ops until `done()` holds (or nothing is pending). Returns the sticky error, or a non-sticky execution error
// (a __launch_bounds__ violation) of an op run here, as the synchronisation's result (also the last error).
template <class F>
cudaError_t run_until(F&& finished) {
  Deferred& d = dq();
  std::lock_guard<std::recursive_mutex> lock(d.mu);
  while (!finished() && step()) {
  }
  if (cudaError_t e = detail::sticky_error()) return detail::set_error(e);
  if (cudaError_t e = std::exchange(d.async_error, cudaSuccess)) return detail::set_error(e);
  return cudaSuccess;
}

bool all_idle() {
  for (const CUstream_st* s : dq().streams)
    if (!s->queue.empty()) return false;
  return true;
}

cudaError_t sync_device() {
  if (!dq().on) return cudaSuccess;
  return run_until(all_idle);
}

cudaError_t sync_op(const std::shared_ptr<Op>& op) {
  if (!dq().on || !op) return cudaSuccess;
  return run_until([&] { return op->done; });
}

// cudaStreamQuery / cudaEventQuery on pending work: cudaErrorNotReady, after one step of progress (so a polling
// loop finishes, and the first query after new work always sees it pending).
cudaError_t query_op(const std::shared_ptr<Op>& op) {
  if (!dq().on || !op) return cudaSuccess;
  std::lock_guard<std::recursive_mutex> lock(dq().mu);
  if (op->done) return cudaSuccess;
  step();
  if (cudaError_t e = detail::sticky_error()) return detail::set_error(e);
  return detail::set_error(cudaErrorNotReady);
}

// Queues (deferred) or runs (immediate) `work` on stream s, after `extra` (an event wait). Returns its op.
std::shared_ptr<Op> submit_op(cudaStream_t stream, std::function<void()> work, std::shared_ptr<Op> extra = nullptr) {
  auto op = std::make_shared<Op>();
  Deferred& d = dq();
  std::unique_lock<std::recursive_mutex> lock(d.mu);
  if (!d.on) {
    lock.unlock();
    if (work) work();
    op->done = true;
    return op;
  }
  if (!d.announced) {
    d.announced = true;
    std::fprintf(stderr, "cudasim: deferred-stream mode, interleaving seed %llu (replay: CLIMSEG_CUDASIM_SEED=%llu)\n",
                 static_cast<unsigned long long>(d.seed), static_cast<unsigned long long>(d.seed));
  }
  CUstream_st* q = queue_of(stream);
  op->work = std::move(work);
  if (extra && !extra->done) op->deps.push_back(std::move(extra));
  // The legacy default stream: its work waits for all earlier work of blocking streams, and theirs for its.
  if (q == &d.legacy) {
    for (CUstream_st* s : d.streams)
      if (s != q && blocking(s) && s->last && !s->last->done) op->deps.push_back(s->last);
  } else if (blocking(q) && d.legacy.last && !d.legacy.last->done) {
    op->deps.push_back(d.legacy.last);
  }
  q->queue.push_back(op);
  q->last = op;
  return op;
}

std::shared_ptr<Op> last_op(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(dq().mu);
  return queue_of(stream)->last;
}

}  // namespace

namespace detail {

cudaError_t set_error(cudaError_t e, const std::string& detail) {
  if (e != cudaSuccess) {
    t_last = e;
    store_detail(e, detail);
  }
  return e;
}

cudaError_t set_sticky(cudaError_t e, const std::string& detail) {
  {
    std::lock_guard<std::mutex> lock(g_err_mu);
    if (g_sticky == cudaSuccess) g_sticky = e;
  }
  return set_error(e, detail);
}

cudaError_t sticky_error() {
  std::lock_guard<std::mutex> lock(g_err_mu);
  return g_sticky;
}

bool valid_stream(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return true;
  std::lock_guard<std::mutex> lock(g_obj_mu);
  return g_streams.count(s) != 0;
}

std::string device_span_problem(const void* p, size_t bytes) {
  if (p == nullptr) return "null pointer";
  std::lock_guard<std::mutex> lock(g_mem_mu);
  const auto it = find_alloc(p);
  if (it == g_allocs.end() || !it->second.device) return "not device memory";
  const size_t off = reinterpret_cast<uintptr_t>(p) - it->first;
  if (bytes > it->second.size - off)
    return std::to_string(bytes) + " bytes at offset " + std::to_string(off) + " overrun the " +
           std::to_string(it->second.size) + "-byte device allocation";
  return {};
}

void submit(cudaStream_t s, std::function<void()> work) { submit_op(s, std::move(work)); }

}  // namespace detail

// Test hooks (declared in cudasim/testing.h).
void block_handed_out(void* p, size_t requested, size_t block) {
  if (p == nullptr || requested > block) return;
  {
    std::lock_guard<std::mutex> lock(g_mem_mu);
    const auto it = g_allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == g_allocs.end() || !it->second.device || it->second.size < block) return;
  }
  if (deferred()) return;
  char* q = static_cast<char*>(p);
#if defined(__SANITIZE_ADDRESS__)
  __asan_unpoison_memory_region(q, block);
  __asan_poison_memory_region(q + requested, block - requested);
#endif
  std::memset(q, 0xFF, requested);
}

void clear_sticky_error() {
  std::lock_guard<std::mutex> lock(g_err_mu);
  g_sticky = cudaSuccess;
  t_last = cudaSuccess;
}
void set_deferred(bool on) {
  if (!on) (void)sync_device();  // what was queued runs before the mode goes
  std::lock_guard<std::recursive_mutex> lock(dq().mu);
  dq().on = on;
}
bool deferred() {
  std::lock_guard<std::recursive_mutex> lock(dq().mu);
  return dq().on;
}
void set_seed(uint64_t seed) {
  std::lock_guard<std::recursive_mutex> lock(dq().mu);
  dq().seed = seed;
  dq().rng.seed(seed);
}
uint64_t seed() {
  std::lock_guard<std::recursive_mutex> lock(dq().mu);
  return dq().seed;
}
size_t pending_work() {
  std::lock_guard<std::recursive_mutex> lock(dq().mu);
  size_t n = 0;
  for (const CUstream_st* s : dq().streams) n += s->queue.size();
  return n;
}
size_t live_device_allocations() {
  std::lock_guard<std::mutex> lock(g_mem_mu);
  size_t n = 0;
  for (const auto& [base, a] : g_allocs) n += a.device;
  return n;
}

}  // namespace cudasim

using cudasim::detail::set_error;

extern "C" {

// ---- errors ------------------------------------------------------------------------------------------------------

cudaError_t cudaGetLastError(void) {
  if (cudaError_t s = cudasim::detail::sticky_error()) return s;
  const cudaError_t e = cudasim::t_last;
  cudasim::t_last = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) {
  if (cudaError_t s = cudasim::detail::sticky_error()) return s;
  return cudasim::t_last;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define CS_NAME(x) \
  case x: return #x;
    CS_NAME(cudaSuccess)
    CS_NAME(cudaErrorInvalidValue)
    CS_NAME(cudaErrorMemoryAllocation)
    CS_NAME(cudaErrorInitializationError)
    CS_NAME(cudaErrorInvalidConfiguration)
    CS_NAME(cudaErrorInvalidDevicePointer)
    CS_NAME(cudaErrorInvalidMemcpyDirection)
    CS_NAME(cudaErrorNoDevice)
    CS_NAME(cudaErrorInvalidDevice)
    CS_NAME(cudaErrorInvalidResourceHandle)
    CS_NAME(cudaErrorIllegalState)
    CS_NAME(cudaErrorNotReady)
    CS_NAME(cudaErrorIllegalAddress)
    CS_NAME(cudaErrorLaunchOutOfResources)
    CS_NAME(cudaErrorLaunchTimeout)
    CS_NAME(cudaErrorAssert)
    CS_NAME(cudaErrorIllegalInstruction)
    CS_NAME(cudaErrorLaunchFailure)
    CS_NAME(cudaErrorNotSupported)
    CS_NAME(cudaErrorUnknown)
#undef CS_NAME
  }
  return "cudaErrorUnknown";
}

static const char* base_error_string(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchTimeout: return "the launch timed out and was terminated";
    case cudaErrorAssert: return "device-side assert triggered";
    case cudaErrorIllegalInstruction: return "an illegal instruction was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorUnknown: return "unknown error";
  }
  return "unrecognized error code";
}

// CUDA's text, followed by "[cudasim: ...]" with what the emulator knows about the latest error of that code.
const char* cudaGetErrorString(cudaError_t e) {
  const char* base = base_error_string(e);
  // A few strings per thread, so that two calls in one expression both stay valid.
  thread_local std::string ring[8];
  thread_local unsigned next = 0;
  std::lock_guard<std::mutex> lock(cudasim::g_err_mu);
  auto it = cudasim::g_detail.find(e);
  if (it == cudasim::g_detail.end()) return base;
  std::string& text = ring[next++ % 8];
  text = std::string(base) + " [cudasim: " + it->second + "]";
  return text.c_str();
}

// ---- device ------------------------------------------------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return set_error(cudaErrorInvalidValue, "cudaGetDeviceCount: null pointer");
  *count = 1;
  return cudaSuccess;
}

// The emulated device: one "GPU" whose limits are those cudasim enforces (1024 threads per block, 48 KiB of static
// shared memory, 1 TiB of memory); compute capability 9.0 because the launch checks follow sm_90's limits.
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp* prop, int device) {
  CUDASIM_STICKY_CHECK();
  if (!prop) return set_error(cudaErrorInvalidValue, "cudaGetDeviceProperties: null pointer");
  if (device != 0) return set_error(cudaErrorInvalidDevice, "cudaGetDeviceProperties: device " + std::to_string(device));
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "%s", "cudasim (CUDA emulated on the CPU)");
  prop->totalGlobalMem = size_t{1} << 40;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 1;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* v) {
  if (!v) return set_error(cudaErrorInvalidValue, "cudaDriverGetVersion: null pointer");
  *v = 13000;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* v) {
  if (!v) return set_error(cudaErrorInvalidValue, "cudaRuntimeGetVersion: null pointer");
  *v = 13000;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  CUDASIM_STICKY_CHECK();
  if (!device) return set_error(cudaErrorInvalidValue, "cudaGetDevice: null pointer");
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  CUDASIM_STICKY_CHECK();
  if (device != 0)
    return set_error(cudaErrorInvalidDevice, "cudaSetDevice(" + std::to_string(device) + "): the emulator has one device");
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
  CUDASIM_STICKY_CHECK();
  return cudasim::sync_device();  // immediate mode: nothing is pending
}

// ---- memory ------------------------------------------------------------------------------------------------------

cudaError_t cudaMalloc(void** p, size_t size) {
  CUDASIM_STICKY_CHECK();
  if (!p) return set_error(cudaErrorInvalidValue, "cudaMalloc: null pointer");
  *p = nullptr;
  if (size == 0) return cudaSuccess;
  void* q = nullptr;
  // The emulated device has at most 1 TiB: a larger request fails as on a GPU, without asking the host allocator
  // (ASan aborts on requests above its own 1 TiB limit instead of returning null).
  constexpr size_t kMaxDeviceBytes = size_t{1} << 40;
  if (size > kMaxDeviceBytes)
    return set_error(cudaErrorMemoryAllocation,
                     "cudaMalloc: " + std::to_string(size) + " bytes (more than the emulated device's 1 TiB)");
  // 256-byte aligned as cudaMalloc; exactly `size` bytes, so a sanitizer sees an access past the end.
  if (posix_memalign(&q, 256, size) != 0 || q == nullptr)
    return set_error(cudaErrorMemoryAllocation, "cudaMalloc: " + std::to_string(size) + " bytes");
  std::memset(q, 0xFF, size);
  {
    std::lock_guard<std::mutex> lock(cudasim::g_mem_mu);
    cudasim::g_allocs[reinterpret_cast<uintptr_t>(q)] = cudasim::Alloc{size, true};
  }
  *p = q;
  return cudaSuccess;
}

static cudaError_t free_alloc(const char* who, void* p, bool device) {
  if (p == nullptr) return cudaSuccess;
  size_t size = 0;
  {
    std::lock_guard<std::mutex> lock(cudasim::g_mem_mu);
    auto it = cudasim::g_allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == cudasim::g_allocs.end() || it->second.device != device) {
      const auto inside = cudasim::find_alloc(p);
      std::string why = inside == cudasim::g_allocs.end() ? "not a live allocation (freed twice, or never allocated)"
                        : inside->second.device != device ? (device ? "a pinned host allocation, not device memory"
                                                                    : "device memory, not a pinned host allocation")
                                                          : "inside an allocation, not its start";
      char buf[32];
      std::snprintf(buf, sizeof buf, "%p", p);
      return set_error(cudaErrorInvalidValue, std::string(who) + "(" + buf + "): " + why);
    }
    size = it->second.size;
    cudasim::g_allocs.erase(it);
  }
#if defined(__SANITIZE_ADDRESS__)
  __asan_unpoison_memory_region(p, size);  // a tail cudasim::block_handed_out made inaccessible
#endif
  (void)size;
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  CUDASIM_STICKY_CHECK();
  // cudaFree synchronises the device first (queued work may still use the memory).
  if (cudaError_t e = cudasim::sync_device()) return e;
  return free_alloc("cudaFree", p, true);
}

cudaError_t cudaHostAlloc(void** p, size_t size, unsigned int flags) {
  CUDASIM_STICKY_CHECK();
  if (!p) return set_error(cudaErrorInvalidValue, "cudaHostAlloc: null pointer");
  if (flags & ~0x7u) return set_error(cudaErrorInvalidValue, "cudaHostAlloc: unknown flags");
  *p = nullptr;
  if (size == 0) return cudaSuccess;
  void* q = nullptr;
  if (posix_memalign(&q, 256, size) != 0 || q == nullptr)
    return set_error(cudaErrorMemoryAllocation, "cudaHostAlloc: " + std::to_string(size) + " bytes");
  {
    std::lock_guard<std::mutex> lock(cudasim::g_mem_mu);
    cudasim::g_allocs[reinterpret_cast<uintptr_t>(q)] = cudasim::Alloc{size, false};
  }
  *p = q;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** p, size_t size) { return cudaHostAlloc(p, size, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void* p) {
  CUDASIM_STICKY_CHECK();
  if (cudaError_t e = cudasim::sync_device()) return e;  // as cudaFree (queued copies may use the buffer)
  return free_alloc("cudaFreeHost", p, false);
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p) {
  CUDASIM_STICKY_CHECK();
  if (!a) return set_error(cudaErrorInvalidValue, "cudaPointerGetAttributes: null attributes");
  *a = cudaPointerAttributes{};
  std::lock_guard<std::mutex> lock(cudasim::g_mem_mu);
  const auto it = cudasim::find_alloc(p);
  if (it == cudasim::g_allocs.end() || p == nullptr) {
    a->type = cudaMemoryTypeUnregistered;
    a->device = -2;
    return cudaSuccess;
  }
  a->device = 0;
  a->devicePointer = const_cast<void*>(p);
  if (it->second.device) {
    a->type = cudaMemoryTypeDevice;
  } else {
    a->type = cudaMemoryTypeHost;
    a->hostPointer = const_cast<void*>(p);
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  CUDASIM_STICKY_CHECK();
  if (!cudasim::detail::valid_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "cudaMemcpyAsync: stream");
  if (count == 0) return cudaSuccess;
  if (!dst || !src) return set_error(cudaErrorInvalidValue, "cudaMemcpyAsync: null pointer");
  if (cudaError_t e = cudasim::memcpy_kind_check("cudaMemcpyAsync", dst, src, count, count, kind)) return e;
  cudasim::detail::submit(stream, [=] { std::memmove(dst, src, count); });
  return cudaSuccess;
}

// On the legacy default stream (so after earlier work of blocking streams, not of cudaStreamNonBlocking ones), and
// synchronous with the host unless both sides are device memory (CUDA's "API synchronization behavior": a
// device-to-device cudaMemcpy does not wait).
cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (cudaError_t e = cudaMemcpyAsync(dst, src, count, kind, nullptr)) return e;
  bool d2d = kind == cudaMemcpyDeviceToDevice;
  if (kind == cudaMemcpyDefault) {
    cudaPointerAttributes a{}, b{};
    d2d = cudaPointerGetAttributes(&a, dst) == cudaSuccess && cudaPointerGetAttributes(&b, src) == cudaSuccess &&
          a.type == cudaMemoryTypeDevice && b.type == cudaMemoryTypeDevice;
  }
  if (d2d) return cudaSuccess;
  return cudasim::sync_op(cudasim::last_op(nullptr));
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t stream) {
  CUDASIM_STICKY_CHECK();
  if (!cudasim::detail::valid_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "cudaMemcpy2DAsync: stream");
  if (width == 0 || height == 0) return cudaSuccess;
  if (!dst || !src) return set_error(cudaErrorInvalidValue, "cudaMemcpy2DAsync: null pointer");
  if (dpitch < width || spitch < width) return set_error(cudaErrorInvalidValue, "cudaMemcpy2DAsync: pitch < width");
  if (cudaError_t e = cudasim::memcpy_kind_check("cudaMemcpy2DAsync", dst, src, (height - 1) * dpitch + width,
                                                 (height - 1) * spitch + width, kind))
    return e;
  cudasim::detail::submit(stream, [=] {
    for (size_t r = 0; r < height; ++r)
      std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  });
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t count, cudaStream_t stream) {
  CUDASIM_STICKY_CHECK();
  if (!cudasim::detail::valid_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "cudaMemsetAsync: stream");
  if (count == 0) return cudaSuccess;
  if (cudaError_t e = cudasim::check_span("cudaMemsetAsync", "destination", p, count, cudasim::Want::device)) return e;
  cudasim::detail::submit(stream, [=] { std::memset(p, value, count); });
  return cudaSuccess;
}

cudaError_t cudaMemset(void* p, int value, size_t count) { return cudaMemsetAsync(p, value, count, nullptr); }

cudaError_t cudaMemset2DAsync(void* p, size_t pitch, int value, size_t width, size_t height, cudaStream_t stream) {
  CUDASIM_STICKY_CHECK();
  if (!cudasim::detail::valid_stream(stream)) return set_error(cudaErrorInvalidResourceHandle, "cudaMemset2DAsync: stream");
  if (width == 0 || height == 0) return cudaSuccess;
  if (pitch < width) return set_error(cudaErrorInvalidValue, "cudaMemset2DAsync: pitch < width");
  if (cudaError_t e = cudasim::check_span("cudaMemset2DAsync", "destination", p, (height - 1) * pitch + width,
                                          cudasim::Want::device))
    return e;
  cudasim::detail::submit(stream, [=] {
    for (size_t r = 0; r < height; ++r) std::memset(static_cast<char*>(p) + r * pitch, value, width);
  });
  return cudaSuccess;
}

// ---- streams -----------------------------------------------------------------------------------------------------

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags) {
  CUDASIM_STICKY_CHECK();
  if (!s) return set_error(cudaErrorInvalidValue, "cudaStreamCreateWithFlags: null pointer");
  if (flags & ~1u) return set_error(cudaErrorInvalidValue, "cudaStreamCreateWithFlags: unknown flags");
  auto* st = new CUstream_st{};
  st->flags = flags;
  {
    std::lock_guard<std::recursive_mutex> lock(cudasim::dq().mu);
    cudasim::dq().streams.push_back(st);
  }
  std::lock_guard<std::mutex> lock(cudasim::g_obj_mu);
  cudasim::g_streams.insert(st);
  *s = st;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  CUDASIM_STICKY_CHECK();
  {
    std::lock_guard<std::mutex> lock(cudasim::g_obj_mu);
    if (s == nullptr || cudasim::g_streams.erase(s) == 0)
      return set_error(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: not a live stream");
  }
  // CUDA returns at once and lets queued work finish; here it runs now (a valid schedule), then the queue goes.
  (void)cudasim::sync_op(cudasim::last_op(s));
  {
    std::lock_guard<std::recursive_mutex> lock(cudasim::dq().mu);
    auto& v = cudasim::dq().streams;
    for (auto it = v.begin(); it != v.end(); ++it)
      if (*it == s) {
        v.erase(it);
        break;
      }
  }
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  CUDASIM_STICKY_CHECK();
  if (!cudasim::detail::valid_stream(s))
    return set_error(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: not a live stream");
  return cudasim::sync_op(cudasim::last_op(s));
}

cudaError_t cudaStreamQuery(cudaStream_t s) {
  CUDASIM_STICKY_CHECK();
  if (!cudasim::detail::valid_stream(s))
    return set_error(cudaErrorInvalidResourceHandle, "cudaStreamQuery: not a live stream");
  return cudasim::query_op(cudasim::last_op(s));
}

// Later work of s waits for the event's latest record (as at this call); an event never recorded is no wait.
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int flags) {
  CUDASIM_STICKY_CHECK();
  if (!cudasim::detail::valid_stream(s) || !cudasim::valid_event(e))
    return set_error(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: not a live stream or event");
  if (flags != 0) return set_error(cudaErrorInvalidValue, "cudaStreamWaitEvent: unknown flags");
  std::shared_ptr<cudasim::Op> rec;
  {
    std::lock_guard<std::recursive_mutex> lock(cudasim::dq().mu);
    rec = e->op;
  }
  if (rec && !rec->done) cudasim::submit_op(s, nullptr, rec);
  return cudaSuccess;
}

// ---- events ------------------------------------------------------------------------------------------------------

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int flags) {
  CUDASIM_STICKY_CHECK();
  if (!e) return set_error(cudaErrorInvalidValue, "cudaEventCreateWithFlags: null pointer");
  if (flags & ~0x7u) return set_error(cudaErrorInvalidValue, "cudaEventCreateWithFlags: unknown flags");
  auto* ev = new CUevent_st{};
  ev->flags = flags;
  std::lock_guard<std::mutex> lock(cudasim::g_obj_mu);
  cudasim::g_events.insert(ev);
  *e = ev;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  CUDASIM_STICKY_CHECK();
  {
    std::lock_guard<std::mutex> lock(cudasim::g_obj_mu);
    if (e == nullptr || cudasim::g_events.erase(e) == 0)
      return set_error(cudaErrorInvalidResourceHandle, "cudaEventDestroy: not a live event");
  }
  delete e;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  CUDASIM_STICKY_CHECK();
  if (!cudasim::valid_event(e) || !cudasim::detail::valid_stream(s))
    return set_error(cudaErrorInvalidResourceHandle, "cudaEventRecord: not a live event or stream");
  auto time = std::make_shared<std::chrono::steady_clock::time_point>();
  // Lock order: the deferred mutex, then submit_op's (the same, recursive): the event's fields change under it.
  std::lock_guard<std::recursive_mutex> lock(cudasim::dq().mu);
  auto op = cudasim::submit_op(s, [time] { *time = std::chrono::steady_clock::now(); });
  e->op = std::move(op);
  e->time = std::move(time);
  return cudaSuccess;
}

static std::shared_ptr<cudasim::Op> event_op(cudaEvent_t e) {
  std::lock_guard<std::recursive_mutex> lock(cudasim::dq().mu);
  return e->op;
}

cudaError_t cudaEventQuery(cudaEvent_t e) {
  CUDASIM_STICKY_CHECK();
  if (!cudasim::valid_event(e)) return set_error(cudaErrorInvalidResourceHandle, "cudaEventQuery: not a live event");
  return cudasim::query_op(event_op(e));
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  CUDASIM_STICKY_CHECK();
  if (!cudasim::valid_event(e))
    return set_error(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: not a live event");
  return cudasim::sync_op(event_op(e));
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  CUDASIM_STICKY_CHECK();
  if (!ms) return set_error(cudaErrorInvalidValue, "cudaEventElapsedTime: null pointer");
  if (!cudasim::valid_event(start) || !cudasim::valid_event(end))
    return set_error(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: not a live event");
  if ((start->flags | end->flags) & cudaEventDisableTiming)
    return set_error(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event was created without timing");
  std::lock_guard<std::recursive_mutex> lock(cudasim::dq().mu);
  if (!start->op || !end->op)
    return set_error(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event was never recorded");
  if (!start->op->done || !end->op->done)
    return set_error(cudaErrorNotReady, "cudaEventElapsedTime: an event's work has not completed");
  *ms = std::chrono::duration<float, std::milli>(*end->time - *start->time).count();
  return cudaSuccess;
}

}  // extern "C"
