// cudasim: what device code sees. The built-in index variables (one value per fiber, set by the runtime before it
// switches to a fiber), block barriers, warp shuffles, and the explicitly rounded arithmetic intrinsics.
//
// Barriers and shuffles switch to the block's scheduler (kernels/cudasim/cudasim.cpp), which resumes the threads
// only when every thread concerned has arrived, so they have their real semantics; a barrier or shuffle that some
// thread concerned can never reach fails the launch (a sticky cudaErrorLaunchFailure naming the kernel and site).
#pragma once

#include <cstdint>
#include <cstring>
#include <source_location>
#include <type_traits>

#include "cudasim/defs.h"

extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace cudasim {

enum class Sync : int { syncthreads = 0, count = 1, and_ = 2, or_ = 3 };
enum class WarpOp : int { shfl_idx = 0, shfl_up = 1, shfl_down = 2, shfl_xor = 3, syncwarp = 4 };

// Block barrier; returns the reduction of `pred` over the block (count, and, or) for the *_count/_and/_or forms.
int block_sync(Sync kind, int pred, const std::source_location& loc);
// Warp operation over the lanes of `mask`: exchanges `size` bytes of `bits`; returns the bits received.
uint64_t warp_op(WarpOp op, unsigned mask, uint64_t bits, unsigned size, int arg, int width,
                 const std::source_location& loc);
// Inserted by the build step at the top of a __launch_bounds__ kernel: fails the launch (cudaErrorLaunchOutOfResources,
// as CUDA refuses such a launch) when the block has more threads than the kernel was compiled for.
void check_launch_bounds(long long max_threads, long long min_blocks = 0, long long max_cluster = 0);
[[noreturn]] void trap(const std::source_location& loc);

template <class T>
T shfl(WarpOp op, unsigned mask, T v, int arg, int width, const std::source_location& loc) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "cudasim: shuffles move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_op(op, mask, bits, sizeof(T), arg, width, loc);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}

// Keeps a value in a register as-is: the operations of the _rn intrinsics are never contracted into an FMA with
// their neighbours, whatever -ffp-contract the including file is compiled with.
template <class T>
inline T fp_fence(T v) {
#if defined(__x86_64__)
  asm("" : "+x"(v));
#elif defined(__aarch64__)
  asm("" : "+w"(v));
#else
  volatile T t = v;
  v = t;
#endif
  return v;
}

}  // namespace cudasim

// ---- barriers and warp functions (the source location names the site in error messages) ----------------------
inline void __syncthreads(std::source_location loc = std::source_location::current()) {
  cudasim::block_sync(cudasim::Sync::syncthreads, 0, loc);
}
inline int __syncthreads_count(int pred, std::source_location loc = std::source_location::current()) {
  return cudasim::block_sync(cudasim::Sync::count, pred, loc);
}
inline int __syncthreads_and(int pred, std::source_location loc = std::source_location::current()) {
  return cudasim::block_sync(cudasim::Sync::and_, pred, loc);
}
inline int __syncthreads_or(int pred, std::source_location loc = std::source_location::current()) {
  return cudasim::block_sync(cudasim::Sync::or_, pred, loc);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, std::source_location loc = std::source_location::current()) {
  cudasim::warp_op(cudasim::WarpOp::syncwarp, mask, 0, 0, 0, warpSize, loc);
}
template <class T>
T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize,
              std::source_location loc = std::source_location::current()) {
  return cudasim::shfl(cudasim::WarpOp::shfl_idx, mask, var, srcLane, width, loc);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned int delta, int width = warpSize,
                 std::source_location loc = std::source_location::current()) {
  return cudasim::shfl(cudasim::WarpOp::shfl_up, mask, var, static_cast<int>(delta), width, loc);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned int delta, int width = warpSize,
                   std::source_location loc = std::source_location::current()) {
  return cudasim::shfl(cudasim::WarpOp::shfl_down, mask, var, static_cast<int>(delta), width, loc);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize,
                  std::source_location loc = std::source_location::current()) {
  return cudasim::shfl(cudasim::WarpOp::shfl_xor, mask, var, laneMask, width, loc);
}

// ---- memory fences (one host thread runs the block: nothing to order) and misc --------------------------------
inline void __threadfence_block() {}
inline void __threadfence() {}
inline void __threadfence_system() {}
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
[[noreturn]] inline void __trap(std::source_location loc = std::source_location::current()) { cudasim::trap(loc); }

// ---- IEEE arithmetic with explicit round to nearest even, never contracted ------------------------------------
inline float __fadd_rn(float a, float b) { return cudasim::fp_fence(cudasim::fp_fence(a) + cudasim::fp_fence(b)); }
inline float __fsub_rn(float a, float b) { return cudasim::fp_fence(cudasim::fp_fence(a) - cudasim::fp_fence(b)); }
inline float __fmul_rn(float a, float b) { return cudasim::fp_fence(cudasim::fp_fence(a) * cudasim::fp_fence(b)); }
inline float __fdiv_rn(float a, float b) { return cudasim::fp_fence(cudasim::fp_fence(a) / cudasim::fp_fence(b)); }
inline float __frcp_rn(float a) { return cudasim::fp_fence(1.0f / cudasim::fp_fence(a)); }
inline float __fsqrt_rn(float a) { return cudasim::fp_fence(__builtin_sqrtf(cudasim::fp_fence(a))); }
inline float __fmaf_rn(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return cudasim::fp_fence(cudasim::fp_fence(a) + cudasim::fp_fence(b)); }
inline double __dsub_rn(double a, double b) { return cudasim::fp_fence(cudasim::fp_fence(a) - cudasim::fp_fence(b)); }
inline double __dmul_rn(double a, double b) { return cudasim::fp_fence(cudasim::fp_fence(a) * cudasim::fp_fence(b)); }
inline double __ddiv_rn(double a, double b) { return cudasim::fp_fence(cudasim::fp_fence(a) / cudasim::fp_fence(b)); }
inline double __dsqrt_rn(double a) { return cudasim::fp_fence(__builtin_sqrt(cudasim::fp_fence(a))); }
inline double __fma_rn(double a, double b, double c) { return __builtin_fma(a, b, c); }
