// Host entry points of the kernels in test_kernels.cu (compiled through the cudasim rewrite), for test_cudasim.cpp.
// Each launches its kernel(s) on the default stream and returns cudaGetLastError() after the launch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace cudasim_test {

// Block-wise sums of `in` (blocks of `threads` floats, threads a power of 2 <= 1024) by a shared-memory tree.
cudaError_t block_sum(const float* in, float* out, int blocks, int threads, bool with_barriers);
// out[i] = __syncthreads_count(flags[i]) for every thread; and_or[2 * b] / [2 * b + 1]: the _and / _or results.
cudaError_t sync_count(const int* flags, int* out, int* and_or, int blocks, int threads);
// One warp-shuffle tree sum per warp: out[warp] = sum of its 32 inputs.
cudaError_t warp_sum(const float* in, float* out, int n);
// out[lane] = the named shuffle of `lane` (as an int) with the given argument, width and mask; lanes outside the
// mask do not call it (out = -2).
enum class Shfl { idx, up, down, xor_ };
cudaError_t shuffle_lanes(Shfl op, int arg, int width, unsigned mask, int* out);
// Kernels whose barriers or shuffles some threads never reach. which: 0 half the block skips a __syncthreads,
// 1 thread 0 returns before it, 2 odd and even threads wait at different __syncthreads, 3 half a warp at a
// shuffle while the rest waits at __syncthreads.
cudaError_t divergent(int which, int* scratch);
// A trivial kernel (writes 1 to marker[0]) with an arbitrary configuration.
cudaError_t trivial(dim3 grid, dim3 block, int* marker);
// A kernel declared __launch_bounds__(64) (writes 1 to marker[0]).
cudaError_t bounded(int threads, int* marker);
// Every thread of a 3-D grid of 3-D blocks records (blockIdx, threadIdx, blockDim, gridDim) at its global index.
cudaError_t indices(dim3 grid, dim3 block, unsigned* out);
// out[i] = in[i] through the device: fp32, and fp32 -> fp16 / bf16 -> fp32 with the device-side conversions.
cudaError_t copy_f32(const float* in, float* out, int n);
cudaError_t round_f16(const float* in, __half* h, float* back, int n);
cudaError_t round_bf16(const float* in, __nv_bfloat16* b, float* back, int n);
// out[i] = __fadd_rn(__fmul_rn(a[i], b[i]), c[i]) (never fused) and fma[i] = fmaf(a[i], b[i], c[i]).
cudaError_t mul_add_rn(const float* a, const float* b, const float* c, float* out, float* fma, int n);

// One thread appends `tag` to log (log[0]: the count, log[1..]: the tags) on `stream`. Returns the launch's error
// without synchronising: what the deferred-stream tests order.
cudaError_t append_tag(int* log, int tag, cudaStream_t stream);

}  // namespace cudasim_test
