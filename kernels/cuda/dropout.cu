// CUDA kernels for inverted dropout: forward (the mask from Philox, the key written for backward), backward (the
// mask regenerated on the device from that key) and the mask alone for tests. The CPU reference is
// kernels/cpu/norm.h (dropout_keep, dropout_scale; checked by tests/cuda/test_cuda_norm.cpp); the mask comes from
// engine/philox.h, shared with the host, bit-identical.
//
// Layout: NHWC, data operands pixel-strided (P, C) matrices (element (p, c) at p * stride + c); the mask is drawn
// for the logical NHWC index, so views and contiguous buffers get the same mask.
//
// Algorithm: one thread per 4 consecutive logical elements (one Philox call gives 4 uniforms), grid-stride loops,
// 16-bit storage widened to fp32 and rounded once on store. No mask is stored: backward regenerates it from the
// key (seed, step, training) that forward wrote into the saved buffer, read on the device (no host round trip).
//
// Bound: memory (8 bytes per fp32 element each way); Philox is ~10 integer multiplies per 4 elements.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "engine/check_cuda.h"
#include "engine/philox.h"
#include "kernels/cpu/norm.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/dropout.h"

namespace climseg::cuda {

namespace {

// Dropout forward: one thread per Philox block (4 consecutive logical indices). key (3 u64) is written by one
// thread when given. Inference (training false): y = x.
template <class T>
__global__ void dropout_fwd_nhwc_kernel(int64_t n, int64_t C, const T* x, int64_t xs, T* y, int64_t ys, float p,
                                        float scale, uint64_t seed, uint64_t step, bool training, uint64_t* key) {
  // x, y: (P, C); y may share x's memory
  if (key && blockIdx.x == 0 && threadIdx.x == 0) {
    key[0] = seed;
    key[1] = step;
    key[2] = training ? 1u : 0u;
  }
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += int64_t(gridDim.x) * blockDim.x) {
    Philox4 r{{0u, 0u, 0u, 0u}};
    if (training) r = philox_block(seed, step, static_cast<uint64_t>(b));
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = 4 * b + j;
      if (i < n) {
        const int64_t q = i / C, c = i - q * C;
        if (training) {
          const bool keep = philox_uniform_from_bits(r.v[j]) >= p;
          y[q * ys + c] = keep ? from_f<T>(__fmul_rn(to_f(x[q * xs + c]), scale)) : from_f<T>(0.0f);
        } else {
          y[q * ys + c] = x[q * xs + c];
        }
      }
    }
  }
}

// Dropout backward: the mask regenerated from the key written by forward (read on the device).
template <class T>
__global__ void dropout_bwd_nhwc_kernel(int64_t n, int64_t C, const T* dy, int64_t dys, T* dx, int64_t dxs, bool acc,
                                        float p, float scale, const uint64_t* key) {
  // dy, dx: (P, C); dx may share dy's memory
  const uint64_t seed = key[0], step = key[1];
  const bool training = key[2] != 0u;
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += int64_t(gridDim.x) * blockDim.x) {
    Philox4 r{{0u, 0u, 0u, 0u}};
    if (training) r = philox_block(seed, step, static_cast<uint64_t>(b));
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = 4 * b + j;
      if (i < n) {
        const int64_t q = i / C, c = i - q * C;
        float g = to_f(dy[q * dys + c]);
        if (training) g = philox_uniform_from_bits(r.v[j]) >= p ? __fmul_rn(g, scale) : 0.0f;
        T* d = dx + q * dxs + c;
        *d = from_f<T>(acc ? __fadd_rn(to_f(*d), g) : g);
      }
    }
  }
}

__global__ void dropout_mask_kernel(int64_t n, uint8_t* mask, float p, uint64_t seed, uint64_t step) {
  // mask: (n) contiguous
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    mask[i] = philox_uniform(seed, step, static_cast<uint64_t>(i)) >= p ? 1 : 0;
}

}  // namespace

void dropout_fwd(ExecContext& ctx, double p, uint64_t seed, uint64_t step, bool training, const Tensor& x,
                 const Tensor& y, const Tensor& key) {
  const char* who = "dropout_fwd";
  check_ctx(ctx, who);
  check_operand(who, "x", x);
  check_like(who, "y", y, x);
  if (key.defined()) check_bytes(who, "key", key, 3 * sizeof(uint64_t));
  const int64_t C = x.shape().c, n = x.numel();
  cudaStream_t s = stream_of(ctx);
  dispatch(x.dtype(), who, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    // One thread per 4 elements; at least one block so the key is written even for an empty tensor.
    dropout_fwd_nhwc_kernel<T><<<grid_for((n + 3) / 4), kThreads, 0, s>>>(
        n, std::max<int64_t>(C, 1), cptr<T>(x), x.pixel_stride(), mptr<T>(y), y.pixel_stride(),
        static_cast<float>(p), cpu::dropout_scale(p), seed, step, training, mptr<uint64_t>(key));
    CUDA_CHECK_LAUNCH();
  });
}

void dropout_bwd(ExecContext& ctx, double p, const Tensor& key, const Tensor& dy, const Tensor& dx, bool accumulate) {
  const char* who = "dropout_bwd";
  check_ctx(ctx, who);
  check_operand(who, "dy", dy);
  check_like(who, "dx", dx, dy);
  check_bytes(who, "key", key, 3 * sizeof(uint64_t));
  const int64_t C = dy.shape().c, n = dy.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(dy.dtype(), who, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dropout_bwd_nhwc_kernel<T><<<grid_for((n + 3) / 4), kThreads, 0, s>>>(
        n, C, cptr<T>(dy), dy.pixel_stride(), mptr<T>(dx), dx.pixel_stride(), accumulate, static_cast<float>(p),
        cpu::dropout_scale(p), cptr<uint64_t>(key));
    CUDA_CHECK_LAUNCH();
  });
}

void dropout_mask(ExecContext& ctx, double p, uint64_t seed, uint64_t step, const Tensor& mask) {
  check_ctx(ctx, "dropout_mask");
  check_operand("dropout_mask", "mask", mask);
  CS_CHECK(mask.dtype() == DType::u8 && mask.is_contiguous(), "cuda::dropout_mask: mask ", mask.str(),
           " must be contiguous u8");
  const int64_t n = mask.numel();
  if (n == 0) return;
  dropout_mask_kernel<<<grid_for(n), kThreads, 0, stream_of(ctx)>>>(n, mptr<uint8_t>(mask), static_cast<float>(p),
                                                                      seed, step);
  CUDA_CHECK_LAUNCH();
}

}  // namespace climseg::cuda
