// CUDA kernels for batch norm (statistics, fused apply with residual add and ReLU, backward), per-channel affine,
// constant scale and inverted dropout. The CPU references are kernels/cpu/norm.h (same semantics, checked by
// tests/cuda/test_cuda_norm.cpp); dropout masks come from engine/philox.h, shared with the host, bit-identical.
//
// Layout: NHWC, data operands pixel-strided (P, C) matrices (element (p, c) at p * stride + c), so channel slices
// of concat buffers are read and written in place; per-channel vectors contiguous (C).
//
// Algorithm:
// - Per-channel reductions (batch mean, centred sum of squares, the two backward sums, the affine parameter
//   gradients) are deterministic two-level sums, no atomics: pass 1 gives each (32-channel tile, pixel chunk) block
//   8 pixel lanes that sum in a fixed order, combined in a fixed order through shared memory into fp32 partials
//   (chunks, C) in the caller's workspace; pass 2 sums each channel's partials in chunk order. The chunking depends
//   on P only (norm_chunk), never on the GPU, so results are reproducible on any device. Consecutive threads read
//   consecutive channels, so loads are coalesced for C >= 32.
// - Statistics are fp32 whatever the data type; the variance is the centred second pass (no E[x^2] - E[x]^2
//   cancellation). The mode (training/inference) is written into the statistics header by the statistics kernel,
//   and backward reads it on the device: no host round trip.
// - Pointwise kernels: one thread per element (dropout: per 4 elements, one Philox call), grid-stride loops,
//   16-bit storage widened to fp32 and rounded once on store.
//
// Bound: memory. Training forward reads x three times (mean, variance, apply) and writes y: ~16 bytes per fp32
// element, so a (2, 768, 1152, 256) fp32 activation (1.8 GB traffic) should take ~0.7 ms at 2.7 TB/s on H100 SXM.
// Backward reads x, dy (and y) twice and writes dx. Fusing the two statistics passes (Welford/Chan merge per chunk)
// and vectorised loads are the next steps once parity holds on hardware.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "engine/check_cuda.h"
#include "engine/philox.h"
#include "kernels/cpu/norm.h"
#include "kernels/cuda/norm.h"

namespace climseg::cuda {

namespace {



// ---- reductions ----------------------------------------------------------------------------------------------

constexpr int kTile = 32;  // channels per block
constexpr int kLanes = 8;  // pixel lanes per block

enum ReduceMode : int {
  kSum = 0,        // a = x                                       (batch mean)
  kSqDev = 1,      // a = (x - mean)^2                            (batch variance)
  kBnBwd = 2,      // a = dz * xhat, b = dz                       (dgamma, dbeta; dz = dy masked by y > 0 if relu)
  kAffineBwd = 3,  // a = dy * x, b = dy                          (dscale, dshift)
};

struct ReduceArgs {
  int64_t P, C, chunk;
  const void* x;  // (P, C) data
  int64_t xs;
  const void* y;  // (P, C) fused output (kBnBwd with relu)
  int64_t ys;
  const void* dy;  // (P, C)
  int64_t dys;
  const float* mean;     // (C) fp32
  const float* inv_std;  // (C) fp32
  bool relu;
  float* partial;  // (chunks, nout, C) fp32
};

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

// Batch mean: mean[c] = (sum of the chunk partials in chunk order) / M.
__global__ void bn_final_mean_kernel(int64_t chunks, int64_t C, const float* partial, int64_t M, float* mean) {
  // partial: (chunks, C); mean: (C)
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int64_t j = 0; j < chunks; ++j) s += partial[j * C + c];
    mean[c] = s / static_cast<float>(M);
  }
}

// Batch variance -> inv_std, running statistics (optional), mode header = 1 (training).
__global__ void bn_final_var_kernel(int64_t chunks, int64_t C, const float* partial, int64_t M, float eps,
                                    float momentum, const float* mean, float* inv_std, float* running_mean,
                                    float* running_var, uint32_t* header) {
  // partial: (chunks, C); mean, inv_std, running_*: (C); header: 4 u32
  if (blockIdx.x == 0 && threadIdx.x == 0) header[0] = 1u;
  const float unbias = M > 1 ? static_cast<float>(static_cast<double>(M) / static_cast<double>(M - 1)) : 1.0f;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int64_t j = 0; j < chunks; ++j) s += partial[j * C + c];
    const float var = s / static_cast<float>(M);
    inv_std[c] = 1.0f / sqrtf(var + eps);
    if (running_mean) {
      running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean[c];
      running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (var * unbias);
    }
  }
}

// Inference statistics: mean = running mean, inv_std = 1 / sqrt(running_var + eps), header = 0.
__global__ void bn_infer_stats_kernel(int64_t C, const float* running_mean, const float* running_var, float eps,
                                      float* mean, float* inv_std, uint32_t* header) {
  if (blockIdx.x == 0 && threadIdx.x == 0) header[0] = 0u;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    mean[c] = running_mean[c];
    inv_std[c] = 1.0f / sqrtf(running_var[c] + eps);
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

// ---- pointwise ---------------------------------------------------------------------------------------------------

template <class T>
__global__ void bn_apply_nhwc_kernel(int64_t n, int64_t C, const T* x, int64_t xs, const float* mean,
                                     const float* inv_std, const T* gamma, const T* beta, const T* res, int64_t rs,
                                     bool relu, T* y, int64_t ys) {
  // x, res, y: (P, C); mean, inv_std fp32 (C); gamma, beta (C)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / C, c = i - p * C;
    float v = (to_f(x[p * xs + c]) - mean[c]) * inv_std[c] * to_f(gamma[c]) + to_f(beta[c]);
    if (res) v += to_f(res[p * rs + c]);
    if (relu && v <= 0.0f) v = 0.0f;  // NaN stays NaN (torch.relu)
    y[p * ys + c] = from_f<T>(v);
  }
}

template <class T>
__global__ void bn_bwd_data_nhwc_kernel(int64_t n, int64_t C, const T* x, int64_t xs, const T* y, int64_t ys,
                                        const T* dy, int64_t dys, const float* mean, const float* inv_std,
                                        const T* gamma, const float* sums, const uint32_t* header, int64_t M,
                                        bool relu, T* dx, int64_t dxs, bool dx_acc, T* dres, int64_t drs,
                                        bool dres_acc) {
  // x, y, dy, dx, dres: (P, C); sums: (2, C) = (sum dz xhat, sum dz); header[0]: 1 training, 0 inference
  const bool training = header[0] != 0u;
  const float inv_m = 1.0f / static_cast<float>(M);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / C, c = i - p * C;
    float dz = to_f(dy[p * dys + c]);
    if (relu && !(to_f(y[p * ys + c]) > 0.0f)) dz = 0.0f;
    // dx before dres: when the residual is x itself, dx overwrites and dres accumulates one buffer (slot order).
    if (dx) {
      float g = dz;
      if (training) g -= (sums[C + c] + (to_f(x[p * xs + c]) - mean[c]) * inv_std[c] * sums[c]) * inv_m;
      g *= to_f(gamma[c]) * inv_std[c];
      T* d = dx + p * dxs + c;
      *d = from_f<T>(dx_acc ? to_f(*d) + g : g);
    }
    if (dres) {
      T* d = dres + p * drs + c;
      *d = from_f<T>(dres_acc ? to_f(*d) + dz : dz);
    }
  }
}

template <class T>
__global__ void affine_fwd_nhwc_kernel(int64_t n, int64_t C, const T* x, int64_t xs, const T* scale, const T* shift,
                                       T* y, int64_t ys) {
  // x, y: (P, C); scale, shift: (C)
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / C, c = i - p * C;
    y[p * ys + c] = from_f<T>(__fadd_rn(__fmul_rn(to_f(x[p * xs + c]), to_f(scale[c])), to_f(shift[c])));
  }
}

// dx (=|+=) dy * s[c] (s null: the constant alpha)
template <class T>
__global__ void scale_bwd_nhwc_kernel(int64_t n, int64_t C, const T* dy, int64_t dys, const T* s, float alpha, T* dx,
                                      int64_t dxs, bool acc) {
  // dy, dx: (P, C); s: (C) or null
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = i / C, c = i - p * C;
    const float g = s ? __fmul_rn(to_f(dy[p * dys + c]), to_f(s[c])) : __fmul_rn(alpha, to_f(dy[p * dys + c]));
    T* d = dx + p * dxs + c;
    *d = from_f<T>(acc ? __fadd_rn(to_f(*d), g) : g);
  }
}

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

// ---- launch helpers ----------------------------------------------------------------------------------------------

template <class F>
void dispatch(DType t, const char* who, F&& f) {
  switch (t) {
    case DType::f32: f(static_cast<float*>(nullptr)); return;
    case DType::f16: f(static_cast<__half*>(nullptr)); return;
    case DType::bf16: f(static_cast<__nv_bfloat16*>(nullptr)); return;
    default: CS_THROW("cuda::", who, ": the CUDA kernels take fp32, fp16 or bf16, not ", dtype_name(t));
  }
}

void check_ctx(ExecContext& ctx, const char* who) {
  CS_CHECK(ctx.device() == Device::cuda, "cuda::", who, ": needs a CUDA context, got a ", device_name(ctx.device()),
           " one");
}

void check_operand(const char* who, const char* what, const Tensor& t) {
  CS_CHECK(t.defined(), "cuda::", who, ": ", what, " is undefined");
  CS_CHECK(t.device() == Device::cuda, "cuda::", who, ": ", what, " ", t.str(), " is not on the CUDA device");
  CS_CHECK(t.is_pixel_strided(), "cuda::", who, ": ", what, " ", t.str(), " is not pixel-strided");
}

void check_like(const char* who, const char* what, const Tensor& t, const Tensor& ref) {
  check_operand(who, what, t);
  CS_CHECK(t.shape() == ref.shape() && t.dtype() == ref.dtype(), "cuda::", who, ": ", what, " is ", t.str(),
           ", expected the shape and dtype of ", ref.str());
}

// A contiguous per-channel vector of C elements of dtype dt.
void check_vec(const char* who, const char* what, const Tensor& t, int64_t C, DType dt) {
  check_operand(who, what, t);
  CS_CHECK(t.is_contiguous() && t.numel() == C && t.dtype() == dt, "cuda::", who, ": ", what, " ", t.str(),
           " must be contiguous ", dtype_name(dt), " with ", C, " elements");
}

void check_bytes(const char* who, const char* what, const Tensor& t, size_t need) {
  check_operand(who, what, t);
  CS_CHECK(t.nbytes() >= need, "cuda::", who, ": ", what, " has ", t.nbytes(), " bytes, needs ", need);
}

template <class T>
const T* cptr(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.data()) : nullptr;
}
template <class T>
T* mptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data()) : nullptr;
}

cudaStream_t stream_of(ExecContext& ctx) { return static_cast<cudaStream_t>(ctx.stream()); }

size_t stats_bytes(int64_t C) { return 16 + 2 * static_cast<size_t>(C) * sizeof(float); }

struct Stats {
  uint32_t* header;
  float *mean, *inv_std;
};
Stats stats_of(const Tensor& stats, int64_t C) {
  auto* base = static_cast<unsigned char*>(stats.data());
  return {reinterpret_cast<uint32_t*>(base), reinterpret_cast<float*>(base + 16),
          reinterpret_cast<float*>(base + 16) + C};
}

template <class T, int kMode>
void launch_reduce(const ReduceArgs& a, cudaStream_t s) {
  const int64_t chunks = norm_chunks(a.P);
  CS_CHECK(chunks <= 65535, "cuda norm reduce: ", chunks, " pixel chunks exceed the grid limit");
  dim3 grid(static_cast<unsigned>((a.C + kTile - 1) / kTile), static_cast<unsigned>(chunks));
  norm_reduce_partial_nhwc_kernel<T, kMode><<<grid, dim3(kTile, kLanes), 0, s>>>(a);
  CUDA_CHECK_LAUNCH();
}

int grid_c(int64_t C) { return grid_for(C); }

}  // namespace

// ---- batch norm --------------------------------------------------------------------------------------------------

void bn_fwd_train(ExecContext& ctx, const Tensor& x, const Tensor& res, const Tensor& gamma, const Tensor& beta,
                  const Tensor& running_mean, const Tensor& running_var, double momentum, double eps, bool relu,
                  const Tensor& y, const Tensor& stats, const Tensor& workspace) {
  const char* who = "bn_fwd_train";
  check_ctx(ctx, who);
  check_operand(who, "x", x);
  check_like(who, "y", y, x);
  if (res.defined()) check_like(who, "residual", res, x);
  const int64_t P = x.shape().pixels(), C = x.shape().c, n = x.numel();
  check_vec(who, "gamma", gamma, C, x.dtype());
  check_vec(who, "beta", beta, C, x.dtype());
  CS_CHECK(running_mean.defined() == running_var.defined(), "cuda::", who,
           ": running mean and variance must be both given or both absent");
  if (running_mean.defined()) {
    check_vec(who, "running_mean", running_mean, C, DType::f32);
    check_vec(who, "running_var", running_var, C, DType::f32);
  }
  check_bytes(who, "stats", stats, stats_bytes(C));
  check_bytes(who, "workspace", workspace, bn_fwd_workspace_bytes(P, C));
  CS_CHECK(P > 0, "cuda::", who, ": no pixels");
  cudaStream_t s = stream_of(ctx);
  Stats st = stats_of(stats, C);
  float* partial = static_cast<float*>(workspace.data());
  const int64_t chunks = norm_chunks(P);
  dispatch(x.dtype(), who, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    ReduceArgs a{P, C, norm_chunk(P), x.data(), x.pixel_stride(), nullptr, 0, nullptr, 0, st.mean, nullptr,
                 false, partial};
    launch_reduce<T, kSum>(a, s);
    bn_final_mean_kernel<<<grid_c(C), kThreads, 0, s>>>(chunks, C, partial, P, st.mean);
    CUDA_CHECK_LAUNCH();
    launch_reduce<T, kSqDev>(a, s);
    bn_final_var_kernel<<<grid_c(C), kThreads, 0, s>>>(chunks, C, partial, P, static_cast<float>(eps),
                                                        static_cast<float>(momentum), st.mean, st.inv_std,
                                                        mptr<float>(running_mean), mptr<float>(running_var),
                                                        st.header);
    CUDA_CHECK_LAUNCH();
    bn_apply_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(x), x.pixel_stride(), st.mean,
                                                              st.inv_std, cptr<T>(gamma), cptr<T>(beta), cptr<T>(res),
                                                              res.defined() ? res.pixel_stride() : 0, relu,
                                                              mptr<T>(y), y.pixel_stride());
    CUDA_CHECK_LAUNCH();
  });
}

void bn_fwd_infer(ExecContext& ctx, const Tensor& x, const Tensor& res, const Tensor& gamma, const Tensor& beta,
                  const Tensor& running_mean, const Tensor& running_var, double eps, bool relu, const Tensor& y,
                  const Tensor& stats) {
  const char* who = "bn_fwd_infer";
  check_ctx(ctx, who);
  check_operand(who, "x", x);
  check_like(who, "y", y, x);
  if (res.defined()) check_like(who, "residual", res, x);
  const int64_t C = x.shape().c, n = x.numel();
  check_vec(who, "gamma", gamma, C, x.dtype());
  check_vec(who, "beta", beta, C, x.dtype());
  check_vec(who, "running_mean", running_mean, C, DType::f32);
  check_vec(who, "running_var", running_var, C, DType::f32);
  check_bytes(who, "stats", stats, stats_bytes(C));
  cudaStream_t s = stream_of(ctx);
  Stats st = stats_of(stats, C);
  bn_infer_stats_kernel<<<grid_c(C), kThreads, 0, s>>>(C, cptr<float>(running_mean), cptr<float>(running_var),
                                                        static_cast<float>(eps), st.mean, st.inv_std, st.header);
  CUDA_CHECK_LAUNCH();
  if (n == 0) return;
  dispatch(x.dtype(), who, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    bn_apply_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(x), x.pixel_stride(), st.mean,
                                                              st.inv_std, cptr<T>(gamma), cptr<T>(beta), cptr<T>(res),
                                                              res.defined() ? res.pixel_stride() : 0, relu,
                                                              mptr<T>(y), y.pixel_stride());
    CUDA_CHECK_LAUNCH();
  });
}

void bn_bwd(ExecContext& ctx, const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
            const Tensor& stats, bool relu, const Tensor& dgamma, const Tensor& dbeta, bool param_accumulate,
            const Tensor& dx, bool dx_accumulate, const Tensor& dres, bool dres_accumulate, const Tensor& workspace) {
  const char* who = "bn_bwd";
  check_ctx(ctx, who);
  check_operand(who, "x", x);
  check_like(who, "dy", dy, x);
  if (relu) check_like(who, "y", y, x);
  if (dx.defined()) check_like(who, "dx", dx, x);
  if (dres.defined()) check_like(who, "dres", dres, x);
  const int64_t P = x.shape().pixels(), C = x.shape().c, n = x.numel();
  check_vec(who, "gamma", gamma, C, x.dtype());
  check_vec(who, "dgamma", dgamma, C, x.dtype());
  check_vec(who, "dbeta", dbeta, C, x.dtype());
  check_bytes(who, "stats", stats, stats_bytes(C));
  check_bytes(who, "workspace", workspace, bn_bwd_workspace_bytes(P, C));
  CS_CHECK(P > 0, "cuda::", who, ": no pixels");
  cudaStream_t s = stream_of(ctx);
  Stats st = stats_of(stats, C);
  const int64_t chunks = norm_chunks(P);
  float* partial = static_cast<float*>(workspace.data());  // (chunks, 2, C)
  float* sums = reinterpret_cast<float*>(static_cast<unsigned char*>(workspace.data()) +
                                         norm_align(static_cast<size_t>(chunks * 2 * C) * sizeof(float)));
  dispatch(x.dtype(), who, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    ReduceArgs a{P,       C,          norm_chunk(P), x.data(), x.pixel_stride(), relu ? y.data() : nullptr,
                 relu ? y.pixel_stride() : 0, dy.data(), dy.pixel_stride(), st.mean, st.inv_std, relu, partial};
    launch_reduce<T, kBnBwd>(a, s);
    norm_final2_kernel<T><<<grid_c(C), kThreads, 0, s>>>(chunks, C, partial, sums, mptr<T>(dgamma), mptr<T>(dbeta),
                                                          param_accumulate);
    CUDA_CHECK_LAUNCH();
    if (!dx.defined() && !dres.defined()) return;
    bn_bwd_data_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(
        n, C, cptr<T>(x), x.pixel_stride(), relu ? cptr<T>(y) : nullptr, relu ? y.pixel_stride() : 0, cptr<T>(dy),
        dy.pixel_stride(), st.mean, st.inv_std, cptr<T>(gamma), sums, st.header, P, relu, mptr<T>(dx),
        dx.defined() ? dx.pixel_stride() : 0, dx_accumulate, mptr<T>(dres), dres.defined() ? dres.pixel_stride() : 0,
        dres_accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

// ---- affine and scale --------------------------------------------------------------------------------------------

void affine_fwd(ExecContext& ctx, const Tensor& x, const Tensor& scale, const Tensor& shift, const Tensor& y) {
  const char* who = "affine_fwd";
  check_ctx(ctx, who);
  check_operand(who, "x", x);
  check_like(who, "y", y, x);
  const int64_t C = x.shape().c, n = x.numel();
  check_vec(who, "scale", scale, C, x.dtype());
  check_vec(who, "shift", shift, C, x.dtype());
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(x.dtype(), who, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    affine_fwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(x), x.pixel_stride(), cptr<T>(scale),
                                                                cptr<T>(shift), mptr<T>(y), y.pixel_stride());
    CUDA_CHECK_LAUNCH();
  });
}

void affine_bwd(ExecContext& ctx, const Tensor& x, const Tensor& dy, const Tensor& scale, const Tensor& dx,
                bool dx_accumulate, const Tensor& dscale, const Tensor& dshift, bool param_accumulate,
                const Tensor& workspace) {
  const char* who = "affine_bwd";
  check_ctx(ctx, who);
  check_operand(who, "x", x);
  check_like(who, "dy", dy, x);
  if (dx.defined()) check_like(who, "dx", dx, x);
  const int64_t P = x.shape().pixels(), C = x.shape().c, n = x.numel();
  check_vec(who, "scale", scale, C, x.dtype());
  check_vec(who, "dscale", dscale, C, x.dtype());
  check_vec(who, "dshift", dshift, C, x.dtype());
  check_bytes(who, "workspace", workspace, affine_bwd_workspace_bytes(P, C));
  CS_CHECK(P > 0, "cuda::", who, ": no pixels");
  cudaStream_t s = stream_of(ctx);
  const int64_t chunks = norm_chunks(P);
  float* partial = static_cast<float*>(workspace.data());
  dispatch(x.dtype(), who, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    ReduceArgs a{P, C, norm_chunk(P), x.data(), x.pixel_stride(), nullptr, 0, dy.data(), dy.pixel_stride(),
                 nullptr, nullptr, false, partial};
    launch_reduce<T, kAffineBwd>(a, s);
    norm_final2_kernel<T><<<grid_c(C), kThreads, 0, s>>>(chunks, C, partial, nullptr, mptr<T>(dscale),
                                                          mptr<T>(dshift), param_accumulate);
    CUDA_CHECK_LAUNCH();
    if (!dx.defined()) return;
    scale_bwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(dy), dy.pixel_stride(), cptr<T>(scale),
                                                               0.0f, mptr<T>(dx), dx.pixel_stride(), dx_accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

void scale_fwd(ExecContext& ctx, double alpha, const Tensor& x, const Tensor& y) {
  // y = alpha * x is the backward kernel without accumulation
  check_ctx(ctx, "scale_fwd");
  check_operand("scale_fwd", "x", x);
  check_like("scale_fwd", "y", y, x);
  const int64_t C = x.shape().c, n = x.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(x.dtype(), "scale_fwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    scale_bwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(x), x.pixel_stride(), nullptr,
                                                               static_cast<float>(alpha), mptr<T>(y),
                                                               y.pixel_stride(), false);
    CUDA_CHECK_LAUNCH();
  });
}

void scale_bwd(ExecContext& ctx, double alpha, const Tensor& dy, const Tensor& dx, bool accumulate) {
  check_ctx(ctx, "scale_bwd");
  check_operand("scale_bwd", "dy", dy);
  check_like("scale_bwd", "dx", dx, dy);
  const int64_t C = dy.shape().c, n = dy.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(ctx);
  dispatch(dy.dtype(), "scale_bwd", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    scale_bwd_nhwc_kernel<T><<<grid_for(n), kThreads, 0, s>>>(n, C, cptr<T>(dy), dy.pixel_stride(), nullptr,
                                                               static_cast<float>(alpha), mptr<T>(dx),
                                                               dx.pixel_stride(), accumulate);
    CUDA_CHECK_LAUNCH();
  });
}

// ---- dropout -----------------------------------------------------------------------------------------------------

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
