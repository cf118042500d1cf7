// Kernels for tests/cudasim/test_cudasim.cpp: real CUDA (they would build with nvcc unchanged), compiled here through
// the cudasim rewrite (kernels/cudasim/rewrite_cu.py) with cudasim.h force-included.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "tests/cudasim/test_kernels.h"

namespace cudasim_test {

namespace {

// Shared-memory tree sum of one block (blockDim.x a power of 2 <= 1024). The barriers are what makes it correct:
// without them a thread reads s[t + o] before its owner has written (or finished accumulating) it.
__global__ void block_sum_kernel(const float* in, float* out) {
  __shared__ float s[1024];
  const unsigned t = threadIdx.x;
  s[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (unsigned o = blockDim.x / 2; o > 0; o >>= 1) {
    if (t < o) s[t] += s[t + o];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

// The same tree without any barrier (wrong on a GPU; wrong here in forward thread order).
__global__ void block_sum_no_barrier_kernel(const float* in, float* out) {
  __shared__ float s[1024];
  const unsigned t = threadIdx.x;
  s[t] = in[blockIdx.x * blockDim.x + t];
  for (unsigned o = blockDim.x / 2; o > 0; o >>= 1) {
    if (t < o) s[t] += s[t + o];
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

__global__ void sync_count_kernel(const int* flags, int* out, int* and_or) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = __syncthreads_count(flags[i]);
  const int a = __syncthreads_and(flags[i]);
  const int o = __syncthreads_or(flags[i]);
  if (threadIdx.x == 0) {
    and_or[2 * blockIdx.x] = a;
    and_or[2 * blockIdx.x + 1] = o;
  }
}

__global__ void warp_sum_kernel(const float* in, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  float v = i < n ? in[i] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0 && i < n) out[i / 32] = v;  // warps wholly past n have no output slot
}

__global__ void shuffle_lanes_kernel(int op, int arg, int width, unsigned mask, int* out) {
  const int lane = threadIdx.x;
  out[lane] = -2;
  if (!(mask >> lane & 1u)) return;
  switch (op) {
    case 0: out[lane] = __shfl_sync(mask, lane, arg, width); break;
    case 1: out[lane] = __shfl_up_sync(mask, lane, arg, width); break;
    case 2: out[lane] = __shfl_down_sync(mask, lane, arg, width); break;
    default: out[lane] = __shfl_xor_sync(mask, lane, arg, width); break;
  }
}

__global__ void divergent_kernel(int which, int* scratch) {
  const unsigned t = threadIdx.x;
  if (which == 0) {
    if (t < blockDim.x / 2) __syncthreads();  // half the block never arrives
    scratch[t] = 1;
  } else if (which == 1) {
    if (t == 0) return;  // exits before the barrier
    __syncthreads();
    scratch[t] = 1;
  } else if (which == 2) {
    if (t % 2)
      __syncthreads();
    else
      __syncthreads();  // a different barrier
    scratch[t] = 1;
  } else {
    int v = static_cast<int>(t);
    if ((t & 31) < 16) v = __shfl_down_sync(0xffffffffu, v, 1);  // lanes 16..31 are named but wait below
    __syncthreads();
    scratch[t] = v;
  }
}

__global__ void trivial_kernel(int* marker) {
  if (threadIdx.x == 0 && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0) marker[0] = 1;
}

__global__ void __launch_bounds__(64) bounded_kernel(int* marker) {
  if (threadIdx.x == 0) marker[0] = 1;
}

__global__ void indices_kernel(unsigned* out) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned per_block = blockDim.x * blockDim.y * blockDim.z;
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  unsigned* o = out + 12 * (block * per_block + t);
  o[0] = blockIdx.x;
  o[1] = blockIdx.y;
  o[2] = blockIdx.z;
  o[3] = threadIdx.x;
  o[4] = threadIdx.y;
  o[5] = threadIdx.z;
  o[6] = blockDim.x;
  o[7] = blockDim.y;
  o[8] = blockDim.z;
  o[9] = gridDim.x;
  o[10] = gridDim.y;
  o[11] = gridDim.z;
}

__global__ void copy_f32_kernel(const float* in, float* out, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) out[i] = in[i];
}

__global__ void round_f16_kernel(const float* in, __half* h, float* back, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    h[i] = __float2half_rn(in[i]);
    back[i] = __half2float(h[i]);
  }
}

__global__ void round_bf16_kernel(const float* in, __nv_bfloat16* b, float* back, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    b[i] = __float2bfloat16_rn(in[i]);
    back[i] = __bfloat162float(b[i]);
  }
}

__global__ void mul_add_rn_kernel(const float* a, const float* b, const float* c, float* out, float* fma, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    out[i] = __fadd_rn(__fmul_rn(a[i], b[i]), c[i]);
    fma[i] = fmaf(a[i], b[i], c[i]);
  }
}

__global__ void append_tag_kernel(int* log, int tag) {
  const int n = log[0];
  log[1 + n] = tag;
  log[0] = n + 1;
}

// The launch's error, else its execution's: the synchronisation reports that (as on a GPU, where the launch
// returns before the kernel runs; in cudasim's deferred-stream mode the kernel runs at the synchronisation).
cudaError_t finish() {
  if (cudaError_t e = cudaGetLastError()) return e;
  (void)cudaDeviceSynchronize();
  return cudaGetLastError();
}

}  // namespace

cudaError_t block_sum(const float* in, float* out, int blocks, int threads, bool with_barriers) {
  if (with_barriers)
    block_sum_kernel<<<blocks, threads>>>(in, out);
  else
    block_sum_no_barrier_kernel<<<blocks, threads>>>(in, out);
  return finish();
}

cudaError_t sync_count(const int* flags, int* out, int* and_or, int blocks, int threads) {
  sync_count_kernel<<<blocks, threads, 0, nullptr>>>(flags, out, and_or);
  return finish();
}

cudaError_t warp_sum(const float* in, float* out, int n) {
  const int threads = 128;
  warp_sum_kernel<<<(n + threads - 1) / threads, threads>>>(in, out, n);
  return finish();
}

cudaError_t shuffle_lanes(Shfl op, int arg, int width, unsigned mask, int* out) {
  shuffle_lanes_kernel<<<1, 32>>>(static_cast<int>(op), arg, width, mask, out);
  return finish();
}

cudaError_t divergent(int which, int* scratch) {
  divergent_kernel<<<2, 64>>>(which, scratch);
  return finish();
}

cudaError_t trivial(dim3 grid, dim3 block, int* marker) {
  trivial_kernel<<<grid, block>>>(marker);
  return finish();
}

cudaError_t bounded(int threads, int* marker) {
  bounded_kernel<<<1, threads>>>(marker);
  return finish();
}

cudaError_t indices(dim3 grid, dim3 block, unsigned* out) {
  indices_kernel<<<grid, block>>>(out);
  return finish();
}

cudaError_t copy_f32(const float* in, float* out, int n) {
  copy_f32_kernel<<<2, 32>>>(in, out, n);
  return finish();
}

cudaError_t round_f16(const float* in, __half* h, float* back, int n) {
  round_f16_kernel<<<2, 32>>>(in, h, back, n);
  return finish();
}

cudaError_t round_bf16(const float* in, __nv_bfloat16* b, float* back, int n) {
  round_bf16_kernel<<<2, 32>>>(in, b, back, n);
  return finish();
}

cudaError_t mul_add_rn(const float* a, const float* b, const float* c, float* out, float* fma, int n) {
  mul_add_rn_kernel<<<1, 64>>>(a, b, c, out, fma, n);
  return finish();
}

cudaError_t append_tag(int* log, int tag, cudaStream_t stream) {
  append_tag_kernel<<<1, 1, 0, stream>>>(log, tag);
  return cudaGetLastError();
}

}  // namespace cudasim_test
