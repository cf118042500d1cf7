// cudasim runtime: kernel launches. Each block's threads run as fibers on the launching host thread, one block after
// another; a fiber runs until it reaches a barrier or a warp operation (or returns), and the block's scheduler
// resumes the threads waiting there only when every thread concerned has arrived, so __syncthreads and the *_sync
// shuffles have their real semantics whatever the order in which the threads are run. See README.md.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "cudasim/device.h"
#include "internal.h"

#if !defined(__x86_64__) || defined(CUDASIM_USE_UCONTEXT)
#define CUDASIM_UCONTEXT 1
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// The built-in variables: the values of the fiber that runs (set by the scheduler before every switch to a fiber).
thread_local uint3 threadIdx{0, 0, 0};
thread_local uint3 blockIdx{0, 0, 0};
thread_local dim3 blockDim{1, 1, 1};
thread_local dim3 gridDim{1, 1, 1};

#if !defined(CUDASIM_UCONTEXT)
// x86-64 context switch: saves the callee-saved registers, MXCSR and the x87 control word on the current stack,
// stores the stack pointer in *save_sp and continues on new_sp. A new fiber's stack is laid out by init_frame() so
// that the switch "returns" into cudasim_ctx_start, which calls the function in r12 (never returns).
asm(R"(
  .text
  .globl cudasim_ctx_switch
  .type cudasim_ctx_switch,@function
  .p2align 4
cudasim_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cudasim_ctx_switch, .-cudasim_ctx_switch

  .globl cudasim_ctx_start
  .type cudasim_ctx_start,@function
  .p2align 4
cudasim_ctx_start:
  callq *%r12
  ud2
  .size cudasim_ctx_start, .-cudasim_ctx_start
  .section .note.GNU-stack,"",@progbits
  .text
)");
extern "C" void cudasim_ctx_switch(void** save_sp, void* new_sp);
extern "C" void cudasim_ctx_start();
#endif

namespace cudasim {

namespace {

// ---- settings ----------------------------------------------------------------------------------------------------

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

std::atomic<bool> g_reverse{env_flag("CLIMSEG_CUDASIM_REVERSE")};

size_t stack_bytes() {
  static const size_t bytes = [] {
    size_t kib = 128;  // ample for our kernels (a few hundred bytes of locals), also with ASan's redzones
    if (const char* v = std::getenv("CLIMSEG_CUDASIM_STACK_KIB")) kib = std::max<size_t>(16, std::strtoull(v, nullptr, 10));
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return (kib * 1024 + page - 1) / page * page;
  }();
  return bytes;
}

// ---- per-thread (fiber) state ------------------------------------------------------------------------------------

enum class St : uint8_t { run, barrier, warp, exited, failed };

struct Fiber {
  void* sp = nullptr;  // saved stack pointer while switched out
#if defined(CUDASIM_UCONTEXT)
  ucontext_t uc;
#endif
  char* stack_lo = nullptr;  // usable stack [stack_lo, stack_lo + stack_size); a guard page below
  uint3 tid{0, 0, 0};
  unsigned linear = 0;  // threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)
  St st = St::run;
  // where it waits (barrier or warp operation)
  const char* file = nullptr;
  unsigned line = 0;
  const char* func = nullptr;
  int kind = 0;  // Sync or WarpOp
  int pred = 0;
  int result = 0;
  // warp operation
  unsigned mask = 0;
  int arg = 0, width = 0;
  unsigned size = 0;
  uint64_t value = 0, out = 0;
};

class LaunchFailure : public std::exception {
 public:
  LaunchFailure(cudaError_t code, std::string msg, bool sticky) : code(code), msg(std::move(msg)), sticky(sticky) {}
  const char* what() const noexcept override { return msg.c_str(); }
  cudaError_t code;
  std::string msg;
  bool sticky;
};

// One per host thread that launches kernels: the fibers and their stacks (kept and reused between blocks and
// launches), and the state of the block that runs.
struct Scheduler {
  std::vector<Fiber> fibers;
  char* region = nullptr;  // mmap'd stacks, one guard page below each
  size_t region_bytes = 0;
  size_t nstacks = 0;
  void* main_sp = nullptr;
#if defined(CUDASIM_UCONTEXT)
  ucontext_t main_uc;
#endif
  Fiber* cur = nullptr;
  const std::function<void()>* body = nullptr;
  const KernelInfo* info = nullptr;
  bool failed = false;
  cudaError_t fail_code = cudaSuccess;
  bool fail_sticky = true;
  std::string fail_msg;
  // ASan's view of the scheduler's own stack
  void* main_fake_stack = nullptr;
  const void* main_stack_bottom = nullptr;
  size_t main_stack_size = 0;

  ~Scheduler() {
    if (region) munmap(region, region_bytes);
  }

  void ensure_stacks(size_t n) {
    if (n <= nstacks) return;
    if (region) munmap(region, region_bytes);
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t slot = stack_bytes() + page;
    region_bytes = slot * n;
    void* p = mmap(nullptr, region_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      region = nullptr;
      nstacks = 0;
      throw std::runtime_error("cudasim: cannot map fiber stacks");
    }
    region = static_cast<char*>(p);
    for (size_t i = 0; i < n; ++i) mprotect(region + i * slot, page, PROT_NONE);  // guard page: overflow faults
    nstacks = n;
    fibers.assign(n, Fiber{});
    for (size_t i = 0; i < n; ++i) fibers[i].stack_lo = region + i * slot + page;
  }
};

thread_local Scheduler* t_sched = nullptr;

Scheduler& scheduler() {
  thread_local Scheduler s;
  return s;
}

// ---- fiber switching ---------------------------------------------------------------------------------------------

void fiber_main();

#if !defined(CUDASIM_UCONTEXT)
extern "C" void cudasim_fiber_entry() { fiber_main(); }

void init_frame(Fiber& f) {
  uintptr_t top = reinterpret_cast<uintptr_t>(f.stack_lo + stack_bytes());
  top &= ~uintptr_t{15};
  uintptr_t after_ret = top - 16;  // 16-aligned: rsp at cudasim_ctx_start, before its call
  auto* w = reinterpret_cast<uint64_t*>(after_ret - 9 * 8);
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  w[0] = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(fpucw) << 32);
  w[1] = 0;
  w[2] = 0;                                                     // r15
  w[3] = 0;                                                     // r14
  w[4] = 0;                                                     // r13
  w[5] = reinterpret_cast<uint64_t>(&cudasim_fiber_entry);     // r12: called by cudasim_ctx_start
  w[6] = 0;                                                     // rbx
  w[7] = 0;                                                     // rbp
  w[8] = reinterpret_cast<uint64_t>(&cudasim_ctx_start);       // return address of the first switch
  f.sp = w;
}
#else
void init_frame(Fiber& f) {
  getcontext(&f.uc);
  f.uc.uc_stack.ss_sp = f.stack_lo;
  f.uc.uc_stack.ss_size = stack_bytes();
  f.uc.uc_link = nullptr;
  makecontext(&f.uc, reinterpret_cast<void (*)()>(&fiber_main), 0);
}
#endif

// Scheduler -> fiber f; returns when f waits or has finished.
void resume(Scheduler& s, Fiber& f) {
  s.cur = &f;
  threadIdx = f.tid;
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(&s.main_fake_stack, f.stack_lo, stack_bytes());
#endif
#if defined(CUDASIM_UCONTEXT)
  swapcontext(&s.main_uc, &f.uc);
#else
  cudasim_ctx_switch(&s.main_sp, f.sp);
#endif
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(s.main_fake_stack, nullptr, nullptr);
#endif
  s.cur = nullptr;
}

// Fiber -> scheduler. `final`: the fiber never runs again (its stack is reused for a later thread).
void yield_to_scheduler(Scheduler& s, Fiber& f, bool final) {
#if defined(__SANITIZE_ADDRESS__)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(final ? nullptr : &fake, s.main_stack_bottom, s.main_stack_size);
#endif
#if defined(CUDASIM_UCONTEXT)
  swapcontext(&f.uc, &s.main_uc);
#else
  cudasim_ctx_switch(&f.sp, s.main_sp);
#endif
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  (void)final;
}

void fiber_main() {
  Scheduler& s = *t_sched;
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(nullptr, &s.main_stack_bottom, &s.main_stack_size);
#endif
  Fiber& f = *s.cur;
  try {
    (*s.body)();
    f.st = St::exited;
  } catch (const LaunchFailure& e) {
    f.st = St::failed;
    if (!s.failed) {
      s.failed = true;
      s.fail_code = e.code;
      s.fail_sticky = e.sticky;
      s.fail_msg = e.msg;
    }
  } catch (const std::exception& e) {
    f.st = St::failed;
    if (!s.failed) {
      s.failed = true;
      s.fail_code = cudaErrorLaunchFailure;
      s.fail_sticky = true;
      s.fail_msg = std::string("exception in device code: ") + e.what();
    }
  } catch (...) {
    f.st = St::failed;
    if (!s.failed) {
      s.failed = true;
      s.fail_code = cudaErrorLaunchFailure;
      s.fail_sticky = true;
      s.fail_msg = "exception in device code";
    }
  }
  yield_to_scheduler(s, f, true);
  // A finished fiber is never resumed. Its entry frame has no caller to return or throw to, so if the scheduler ever
  // broke that rule the only safe thing left is to stop, saying why.
  std::fputs("cudasim: internal error: a finished CUDA thread (fiber) was resumed\n", stderr);
  std::abort();
}

// ---- messages ----------------------------------------------------------------------------------------------------

std::string str3(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

std::string param_types(const char* pretty) {
  // "... launch(...) [with P = {long int, const float*}]" -> "long int, const float*"
  std::string p = pretty ? pretty : "";
  const size_t a = p.find("[with P = {");
  if (a == std::string::npos) return "";
  const size_t b = p.find('}', a);
  return p.substr(a + 11, b == std::string::npos ? std::string::npos : b - (a + 11));
}

std::string kernel_desc(const KernelInfo& k) {
  return "kernel '" + std::string(k.name) + "' (parameters: " + param_types(k.signature) + "; launched at " +
         k.file + ":" + std::to_string(k.line) + ")";
}

std::string site(const Fiber& f) {
  return std::string(f.file ? f.file : "?") + ":" + std::to_string(f.line);
}

const char* sync_name(int k) {
  switch (static_cast<Sync>(k)) {
    case Sync::syncthreads: return "__syncthreads";
    case Sync::count: return "__syncthreads_count";
    case Sync::and_: return "__syncthreads_and";
    case Sync::or_: return "__syncthreads_or";
  }
  return "barrier";
}
const char* warp_name(int k) {
  switch (static_cast<WarpOp>(k)) {
    case WarpOp::shfl_idx: return "__shfl_sync";
    case WarpOp::shfl_up: return "__shfl_up_sync";
    case WarpOp::shfl_down: return "__shfl_down_sync";
    case WarpOp::shfl_xor: return "__shfl_xor_sync";
    case WarpOp::syncwarp: return "__syncwarp";
  }
  return "warp operation";
}

std::string where(const Fiber& f) {
  switch (f.st) {
    case St::barrier: return std::string("waits at ") + sync_name(f.kind) + " at " + site(f);
    case St::warp: return std::string("waits at ") + warp_name(f.kind) + " at " + site(f);
    case St::exited: return "has exited";
    case St::failed: return "failed";
    case St::run: return "is running";
  }
  return "?";
}

[[noreturn]] void fail_block(Scheduler& s, const std::string& what) {
  throw LaunchFailure(cudaErrorLaunchFailure,
                      kernel_desc(*s.info) + ", block " + str3(blockIdx) + ": " + what, true);
}

// ---- the block scheduler -----------------------------------------------------------------------------------------

// Completes the warp operations whose lanes have all arrived. Returns whether any thread can run again.
bool resolve_warps(Scheduler& s, unsigned n) {
  bool progress = false;
  for (unsigned w0 = 0; w0 < n; w0 += 32) {
    const unsigned lanes = std::min(32u, n - w0);
    for (unsigned l = 0; l < lanes; ++l) {
      Fiber& f = s.fibers[w0 + l];
      if (f.st != St::warp) continue;
      // Lanes named in the mask: each non-exited one must wait at the same operation with the same mask.
      bool ready = true;
      for (unsigned m = 0; m < lanes && ready; ++m) {
        if (!(f.mask >> m & 1u)) continue;
        const Fiber& g = s.fibers[w0 + m];
        if (g.st == St::exited) continue;
        if (g.st != St::warp || g.mask != f.mask || g.kind != f.kind || g.line != f.line || g.file != f.file)
          ready = false;
      }
      if (!ready) continue;
      // Exchange: every participating lane reads its source lane's value (as at the barrier point).
      for (unsigned m = 0; m < lanes; ++m) {
        Fiber& g = s.fibers[w0 + m];
        if (!(f.mask >> m & 1u) || g.st != St::warp) continue;
        const int width = g.width;
        const int lane = static_cast<int>(m);
        const int seg = lane & ~(width - 1);
        int src = lane;
        switch (static_cast<WarpOp>(g.kind)) {
          case WarpOp::shfl_idx: src = seg + (g.arg & (width - 1)); break;
          case WarpOp::shfl_up: src = (lane - seg) >= g.arg ? lane - g.arg : lane; break;
          case WarpOp::shfl_down: src = (lane - seg) + g.arg < width ? lane + g.arg : lane; break;
          case WarpOp::shfl_xor: {
            const int x = lane ^ g.arg;
            src = (x & ~(width - 1)) > seg ? lane : x;  // later groups: own value
            break;
          }
          case WarpOp::syncwarp: break;
        }
        // A source lane that does not take part (not in the mask, exited, beyond the block): undefined in CUDA;
        // here all bits set (NaN for floating point), so a use of it shows.
        uint64_t v = ~uint64_t{0};
        if (src >= 0 && src < 32 && static_cast<unsigned>(src) < lanes && (f.mask >> src & 1u) &&
            s.fibers[w0 + src].st == St::warp)
          v = s.fibers[w0 + src].value;
        g.out = v;
      }
      for (unsigned m = 0; m < lanes; ++m) {
        Fiber& g = s.fibers[w0 + m];
        if ((f.mask >> m & 1u) && g.st == St::warp) g.st = St::run;
      }
      progress = true;
    }
  }
  return progress;
}

// Every thread waits or has finished, and no warp operation can complete: release the block barrier if every
// thread waits at it, otherwise the block can never go on: fail with the first thread that does not arrive.
bool release_barrier(Scheduler& s, unsigned n) {
  const Fiber* at = nullptr;
  for (unsigned i = 0; i < n; ++i)
    if (s.fibers[i].st == St::barrier) {
      at = &s.fibers[i];
      break;
    }
  if (at == nullptr) {
    // No barrier: warp operations that cannot complete (or nothing left).
    for (unsigned i = 0; i < n; ++i) {
      const Fiber& f = s.fibers[i];
      if (f.st != St::warp) continue;
      const unsigned w0 = i & ~31u, lanes = std::min(32u, n - w0);
      for (unsigned m = 0; m < lanes; ++m) {
        const Fiber& g = s.fibers[w0 + m];
        if (!(f.mask >> m & 1u) || g.st == St::exited) continue;
        if (g.st != St::warp || g.mask != f.mask || g.kind != f.kind || g.line != f.line || g.file != f.file)
          fail_block(s, std::string(warp_name(f.kind)) + " at " + site(f) + " (mask 0x" +
                            [&] {
                              char b[16];
                              std::snprintf(b, sizeof b, "%08x", f.mask);
                              return std::string(b);
                            }() +
                            ") in thread " + str3(f.tid) + ": lane " + std::to_string(m) + " named in the mask, thread " +
                            str3(g.tid) + ", " + where(g) + (g.st == St::warp ? " (mask or site differs)" : ""));
      }
    }
    return false;
  }
  for (unsigned i = 0; i < n; ++i) {
    const Fiber& g = s.fibers[i];
    if (g.st == St::barrier && g.kind == at->kind && g.line == at->line && g.file == at->file) continue;
    unsigned waiting = 0;
    for (unsigned j = 0; j < n; ++j) waiting += s.fibers[j].st == St::barrier && s.fibers[j].line == at->line &&
                                                 s.fibers[j].file == at->file;
    fail_block(s, std::string("divergent barrier: ") + sync_name(at->kind) + " at " + site(*at) + " is reached by " +
                      std::to_string(waiting) + " of " + std::to_string(n) + " threads; thread " + str3(g.tid) + " " +
                      where(g));
  }
  int result = 0;
  const Sync kind = static_cast<Sync>(at->kind);
  if (kind == Sync::and_) result = 1;
  for (unsigned i = 0; i < n; ++i) {
    const int p = s.fibers[i].pred != 0;
    if (kind == Sync::count) result += p;
    if (kind == Sync::and_) result &= p;
    if (kind == Sync::or_) result |= p;
  }
  for (unsigned i = 0; i < n; ++i) {
    s.fibers[i].result = result;
    s.fibers[i].st = St::run;
  }
  return true;
}

void run_block(Scheduler& s, unsigned n, bool reverse) {
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = s.fibers[i];
    f.tid = uint3{i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
    f.linear = i;
    f.st = St::run;
    f.file = nullptr;
    f.line = 0;
#if defined(__SANITIZE_ADDRESS__)
    __asan_unpoison_memory_region(f.stack_lo, stack_bytes());  // frames left by the fiber's previous thread
#endif
    init_frame(f);
  }
  for (;;) {
    for (unsigned k = 0; k < n; ++k) {
      Fiber& f = s.fibers[reverse ? n - 1 - k : k];
      if (f.st != St::run) continue;
      resume(s, f);
      if (s.failed) return;
    }
    if (resolve_warps(s, n)) continue;
    bool all_done = true;
    for (unsigned i = 0; i < n && all_done; ++i) all_done = s.fibers[i].st == St::exited;
    if (all_done) return;
    try {
      if (!release_barrier(s, n)) fail_block(s, "no thread can go on");
    } catch (const LaunchFailure& e) {
      s.failed = true;
      s.fail_code = e.code;
      s.fail_sticky = e.sticky;
      s.fail_msg = e.msg;
      return;
    }
  }
}

Fiber& current_fiber(const char* what) {
  Scheduler* s = t_sched;
  if (s == nullptr || s->cur == nullptr)
    throw std::logic_error(std::string("cudasim: ") + what + " called outside a kernel");
  return *s->cur;
}

}  // namespace

// ---- device functions --------------------------------------------------------------------------------------------

int block_sync(Sync kind, int pred, const std::source_location& loc) {
  Fiber& f = current_fiber(sync_name(static_cast<int>(kind)));
  f.st = St::barrier;
  f.kind = static_cast<int>(kind);
  f.pred = pred;
  f.file = loc.file_name();
  f.line = loc.line();
  f.func = loc.function_name();
  yield_to_scheduler(*t_sched, f, false);
  return f.result;
}

uint64_t warp_op(WarpOp op, unsigned mask, uint64_t bits, unsigned size, int arg, int width,
                 const std::source_location& loc) {
  Fiber& f = current_fiber(warp_name(static_cast<int>(op)));
  const unsigned lane = f.linear & 31u;
  Scheduler& s = *t_sched;
  auto bad = [&](const std::string& why) {
    throw LaunchFailure(cudaErrorLaunchFailure,
                        kernel_desc(*s.info) + ", block " + str3(blockIdx) + ", thread " + str3(f.tid) + ": " +
                            warp_name(static_cast<int>(op)) + " at " + loc.file_name() + ":" +
                            std::to_string(loc.line()) + ": " + why,
                        true);
  };
  if (!(mask >> lane & 1u)) bad("the calling lane " + std::to_string(lane) + " is not in the mask");
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    bad("width " + std::to_string(width) + " is not a power of 2 in [1, 32]");
  f.st = St::warp;
  f.kind = static_cast<int>(op);
  f.mask = mask;
  f.arg = arg;
  f.width = width;
  f.size = size;
  f.value = bits;
  f.file = loc.file_name();
  f.line = loc.line();
  f.func = loc.function_name();
  yield_to_scheduler(s, f, false);
  if (size < 8) return f.out & ((uint64_t{1} << (8 * size)) - 1);
  return f.out;
}

void check_launch_bounds(long long max_threads, long long min_blocks, long long max_cluster) {
  (void)min_blocks;
  (void)max_cluster;
  Scheduler* s = t_sched;
  if (s == nullptr || s->cur == nullptr) return;
  const unsigned long long n = 1ull * blockDim.x * blockDim.y * blockDim.z;
  if (max_threads > 0 && n > static_cast<unsigned long long>(max_threads))
    throw LaunchFailure(cudaErrorLaunchOutOfResources,
                        kernel_desc(*s->info) + ": " + std::to_string(n) + " threads per block, but the kernel's " +
                            "__launch_bounds__ allows at most " + std::to_string(max_threads),
                        false);
}

void trap(const std::source_location& loc) {
  Scheduler* s = t_sched;
  throw LaunchFailure(cudaErrorLaunchFailure,
                      (s && s->info ? kernel_desc(*s->info) : std::string("kernel")) + ": __trap() at " +
                          loc.file_name() + ":" + std::to_string(loc.line()),
                      true);
}

void set_reverse_order(bool on) { g_reverse.store(on); }
bool reverse_order() { return g_reverse.load(); }

// ---- launches ----------------------------------------------------------------------------------------------------

void launch_kernel(const KernelInfo& info, dim3 grid, dim3 block, size_t shmem, cudaStream_t stream,
                   std::function<void()> body) {
  using detail::set_error;
  if (cudaError_t e = detail::sticky_error()) {
    set_error(e);
    return;
  }
  if (!detail::valid_stream(stream)) {
    set_error(cudaErrorInvalidResourceHandle, kernel_desc(info) + ": launched on a stream that does not exist");
    return;
  }
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  std::string bad;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0)
    bad = "zero-size grid or block";
  else if (block.x > 1024 || block.y > 1024 || block.z > 64)
    bad = "block dimensions exceed (1024, 1024, 64)";
  else if (threads > 1024)
    bad = std::to_string(threads) + " threads per block exceed 1024";
  else if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    bad = "grid dimensions exceed (2^31 - 1, 65535, 65535)";
  if (!bad.empty()) {
    set_error(cudaErrorInvalidConfiguration,
              kernel_desc(info) + ": grid " + str3(grid) + ", block " + str3(block) + ": " + bad);
    return;
  }
  if (shmem != 0) {
    set_error(cudaErrorNotSupported,
              kernel_desc(info) + ": " + std::to_string(shmem) + " bytes of dynamic shared memory (not emulated)");
    return;
  }
  detail::submit(stream, [info, grid, block, body = std::move(body)] { detail::run_grid(info, grid, block, body); });
}

namespace detail {

void run_grid(const KernelInfo& info, dim3 grid, dim3 block, const std::function<void()>& body) {
  if (t_sched != nullptr && t_sched->cur != nullptr) {
    set_sticky(cudaErrorNotSupported, kernel_desc(info) + ": launched from device code (not emulated)");
    return;
  }
  Scheduler& s = scheduler();
  const unsigned n = block.x * block.y * block.z;
  try {
    s.ensure_stacks(n);
  } catch (const std::exception& e) {
    set_sticky(cudaErrorMemoryAllocation, kernel_desc(info) + ": " + e.what());
    return;
  }
  t_sched = &s;
  s.body = &body;
  s.info = &info;
  s.failed = false;
  s.fail_msg.clear();
  gridDim = grid;
  blockDim = block;
  const bool reverse = g_reverse.load(std::memory_order_relaxed);
  const unsigned long long nblocks = 1ull * grid.x * grid.y * grid.z;
  for (unsigned long long k = 0; k < nblocks && !s.failed; ++k) {
    const unsigned long long b = reverse ? nblocks - 1 - k : k;
    blockIdx = uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                     static_cast<unsigned>(b / (1ull * grid.x * grid.y))};
    run_block(s, n, reverse);
  }
  t_sched = nullptr;
  s.body = nullptr;
  s.info = nullptr;
  threadIdx = uint3{0, 0, 0};
  if (s.failed) {
    if (s.fail_sticky) {
      std::fprintf(stderr, "cudasim: %s\n", s.fail_msg.c_str());
      set_sticky(s.fail_code, s.fail_msg);
    } else {
      set_error(s.fail_code, s.fail_msg);
    }
  }
}

}  // namespace detail
}  // namespace cudasim
