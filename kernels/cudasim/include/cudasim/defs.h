// cudasim: the CUDA qualifiers and built-in vector types, shared by the stand-in toolkit headers (cuda_runtime.h,
// cuda_fp16.h, cuda_bf16.h) and the force-included cudasim.h. Host C++ only: no nvcc is involved.
#pragma once

#define CUDASIM 1

// Function and variable qualifiers. Device code is ordinary host code here.
#ifndef __host__
#define __host__
#endif
#ifndef __device__
#define __device__
#endif
#ifndef __global__
#define __global__
#endif
#ifndef __forceinline__
#define __forceinline__ inline __attribute__((always_inline))
#endif
// (No __noinline__: libstdc++ uses __attribute__((__noinline__)) itself; our code does not use it.)
#ifndef __constant__
#define __constant__
#endif
#ifndef __restrict__
#define __restrict__ __restrict
#endif
// __launch_bounds__(max threads[, min blocks[, max cluster]]) expands to nothing; the build step
// (kernels/cudasim/rewrite_cu.py) turns it into a launch-time check at the top of the kernel body.
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
// __shared__ variables: one copy per host thread. The blocks of a launch run one after another on the launching
// host thread, and all threads (fibers) of a block run on that host thread, so every thread of the running block
// sees the same copy, as on a GPU; two host threads launching the same kernel at once get separate copies.
// Caveat: the contents are not reset between blocks (a GPU leaves them undefined too).
#ifndef __shared__
#define __shared__ static thread_local
#endif

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};
