// The deterministic per-channel sums of batch norm and affine (kernels/cuda/channel_sums.h: the algorithm and the
// chunking). Layout: NHWC, data operands pixel-strided (P, C) matrices, per-channel vectors contiguous (C);
// consecutive threads read consecutive channels, so loads are coalesced for C >= 32. Statistics and partials are
// fp32 whatever the data type.
//
// Bound: memory; each pass 1 reads its operands once (4-12 bytes per fp32 element), pass 2 reads the partials.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "engine/check_cuda.h"
#include "kernels/cuda/channel_sums.h"
#include "kernels/cuda/common.cuh"

namespace climseg::cuda {

namespace {

constexpr int kTile = 32;  // channels per block
constexpr int kLanes = 8;  // pixel lanes per block

template <class T, int kMode>
__global__ void norm_reduce_partial_nhwc_kernel(ReduceArgs a) {
  constexpr int nout = (kMode == kBnBwd || kMode == kAffineBwd) ? 2 : 1;
  __shared__ float lanes[nout][kLanes][kTile + 1];
  const int64_t c = int64_t(blockIdx.x) * kTile + threadIdx.x;
  const int64_t p0 = int64_t(blockIdx.y) * a.chunk;
  const int64_t p1 = p0 + a.chunk < a.P ? p0 + a.chunk : a.P;
  const T* x = static_cast<const T*>(a.x);
  const T* y = static_cast<const T*>(a.y);
  const T* dy = static_cast<const T*>(a.dy);
  float acc0 = 0.0f, acc1 = 0.0f;
  if (c < a.C) {
    const float m = (kMode == kSqDev || kMode == kBnBwd) ? a.mean[c] : 0.0f;
    const float is = kMode == kBnBwd ? a.inv_std[c] : 0.0f;
    for (int64_t p = p0 + threadIdx.y; p < p1; p += kLanes) {
      if constexpr (kMode == kSum) {
        acc0 += to_f(x[p * a.xs + c]);
      } else if constexpr (kMode == kSqDev) {
        const float d = to_f(x[p * a.xs + c]) - m;
        acc0 += d * d;
      } else if constexpr (kMode == kBnBwd) {
        float dz = to_f(dy[p * a.dys + c]);
        if (a.relu && !(to_f(y[p * a.ys + c]) > 0.0f)) dz = 0.0f;
        const float xhat = (to_f(x[p * a.xs + c]) - m) * is;
        acc0 += dz * xhat;
        acc1 += dz;
      } else {
        const float g = to_f(dy[p * a.dys + c]);
        acc0 += g * to_f(x[p * a.xs + c]);
        acc1 += g;
      }
    }
  }
  lanes[0][threadIdx.y][threadIdx.x] = acc0;
  if constexpr (nout == 2) lanes[1][threadIdx.y][threadIdx.x] = acc1;
  __syncthreads();
  if (threadIdx.y == 0 && c < a.C) {
#pragma unroll
    for (int o = 0; o < nout; ++o) {
      float s = 0.0f;
#pragma unroll
      for (int j = 0; j < kLanes; ++j) s += lanes[o][j][threadIdx.x];  // fixed order: deterministic
      a.partial[(int64_t(blockIdx.y) * nout + o) * a.C + c] = s;
    }
  }
}

// Two-output final sums: sums[0..C) = sum a, sums[C..2C) = sum b (chunk order); g0 (=|+=) sum a, g1 (=|+=) sum b.
template <class T>
__global__ void norm_final2_kernel(int64_t chunks, int64_t C, const float* partial, float* sums, T* g0, T* g1,
                                   bool accumulate) {
  // partial: (chunks, 2, C); sums: (2, C) fp32 or null; g0, g1: (C)
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    float s0 = 0.0f, s1 = 0.0f;
    for (int64_t j = 0; j < chunks; ++j) {
      s0 += partial[(2 * j) * C + c];
      s1 += partial[(2 * j + 1) * C + c];
    }
    if (sums) {
      sums[c] = s0;
      sums[C + c] = s1;
    }
    g0[c] = from_f<T>(accumulate ? to_f(g0[c]) + s0 : s0);
    g1[c] = from_f<T>(accumulate ? to_f(g1[c]) + s1 : s1);
  }
}

template <class T, int kMode>
void launch_reduce(const ReduceArgs& a, cudaStream_t s) {
  const int64_t chunks = norm_chunks(a.P);
  CS_CHECK(chunks <= 65535, "cuda norm reduce: ", chunks, " pixel chunks exceed the grid limit");
  dim3 grid(static_cast<unsigned>((a.C + kTile - 1) / kTile), static_cast<unsigned>(chunks));
  norm_reduce_partial_nhwc_kernel<T, kMode><<<grid, dim3(kTile, kLanes), 0, s>>>(a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void channel_sums_partial(ReduceMode mode, DType dt, const ReduceArgs& a, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch(dt, "channel_sums_partial", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    switch (mode) {
      case kSum: launch_reduce<T, kSum>(a, s); return;
      case kSqDev: launch_reduce<T, kSqDev>(a, s); return;
      case kBnBwd: launch_reduce<T, kBnBwd>(a, s); return;
      case kAffineBwd: launch_reduce<T, kAffineBwd>(a, s); return;
    }
    CS_THROW("cuda::channel_sums_partial: unknown mode ", static_cast<int>(mode));
  });
}

void channel_sums_final2(DType dt, int64_t chunks, int64_t C, const float* partial, float* sums, void* g0, void* g1,
                         bool accumulate, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch(dt, "channel_sums_final2", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    norm_final2_kernel<T><<<grid_for(C), kThreads, 0, s>>>(chunks, C, partial, sums, static_cast<T*>(g0),
                                                            static_cast<T*>(g1), accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace climseg::cuda
