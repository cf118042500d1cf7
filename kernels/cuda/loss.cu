// Weighted softmax cross-entropy fused with argmax and per-sample TP/FP/FN counts, CUDA path. The CPU reference is
// kernels/cpu/loss.{h,cpp} (same semantics and saved-state layout; parity in tests/cuda/test_cuda_loss.cpp).
//
// Layout: logits (P, K) pixel-strided, labels (P, 1) pixel-strided, P = N * HW; saved = XentHeader, counts
// (N, 3, K) int64, argmax mask (P) u8; workspace = per-block partials (kernels/cpu/loss.h, XentCudaPartials).
//
// Algorithm (forward), deterministic and atomics-free:
//   pass 1: grid (chunks per sample, N), 256 threads; each block owns kXentCudaChunk = 1024 pixels of one sample,
//           4 per thread at fixed positions. Per pixel in fp32: max and argmax (first maximum), sum of exp(x - max),
//           nll = max + log(sum) - x[label], times w[label]. The block's loss and weight sums are reduced by a
//           fixed warp-shuffle tree then the warps in order; the confusion counts by __syncthreads_count (a
//           block-wide popcount, exact); the first bad label by a min over pixel indices. One record per block.
//   pass 2: one block combines the records in a fixed order (thread-strided fp64 sums, then a fixed tree), sums the
//           per-sample counts, computes the reduction's denominator, the loss and the backward scale, and writes y
//           and the header. Nothing depends on the GPU model or the scheduling, so results are bit-reproducible.
// Backward: one thread per pixel (grid-stride) recomputes the softmax from the logits; dy and the backward scale
//           are read from device memory (no host sync).
//
// Bound: memory-bound. Forward reads K logits + 1 label and writes 1 mask byte per pixel (K = 3, fp16: 8 bytes with
// u8 labels); backward reads the same and writes K gradients. A 768x1152 fp16 sample is ~7 MB forward, ~12 MB
// backward: a few microseconds at HBM bandwidth. Pass 1 also spends 3K block barriers per 256 pixels on the counts;
// the per-pixel reads are strided by the pixel stride (K elements), so a warp touches 32 * K * 2 contiguous bytes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "engine/check_cuda.h"
#include "kernels/cuda/loss.h"

namespace climseg::cuda {

namespace {

constexpr int kWarps = kThreads / 32;
constexpr int kPerThread = static_cast<int>(kXentCudaChunk) / kThreads;
static_assert(kXentCudaChunk % kThreads == 0);

struct ClassWeights {
  float w[kXentCudaMaxClasses];
};


struct AddOp {
  template <class V>
  __device__ V operator()(V a, V b) const {
    return a + b;
  }
};
struct MinOp {
  template <class V>
  __device__ V operator()(V a, V b) const {
    return b < a ? b : a;
  }
};

// Fixed-order block reduction: a shuffle tree within each warp, then thread 0 combines the warps in order. The
// result is valid in thread 0. `sh` holds kWarps values; the trailing barrier makes it reusable.
template <class V, class Op>
__device__ V block_reduce(V v, Op op, V* sh) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  V r = sh[0];
  if (threadIdx.x == 0)
    for (int i = 1; i < kWarps; ++i) r = op(r, sh[i]);
  __syncthreads();
  return r;
}

__device__ __forceinline__ bool label_ok(int64_t l, int K, int64_t ignore) {
  return l >= 0 && l < K && !(ignore >= 0 && l == ignore);
}

template <class T, class L>
__global__ void __launch_bounds__(kThreads)
    xent_fwd_partial_kernel(int64_t HW, int K, const T* x, int64_t xs, const L* lab, int64_t ls, ClassWeights cw,
                            int64_t ignore, uint8_t* argmax, float* ploss, float* pwsum, int* pnonzero, int* pvalid,
                            long long* pbad, int* pcounts) {
  // x: (N*HW, K), lab: (N*HW, 1), argmax: (N*HW); partial records indexed by block (sample-major).
  __shared__ int s_counts[3 * kXentCudaMaxClasses];
  __shared__ float s_f[kWarps];
  __shared__ int s_i[kWarps];
  __shared__ long long s_ll[kWarps];
  const int64_t n = blockIdx.y;
  const int64_t blk = n * gridDim.x + blockIdx.x;
  const int64_t hw0 = int64_t(blockIdx.x) * kXentCudaChunk;
  if (threadIdx.x < 3 * K) s_counts[threadIdx.x] = 0;
  float loss = 0.0f, wsum = 0.0f;
  int nonzero = 0, valid = 0;
  long long bad = LLONG_MAX;
  __syncthreads();
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t hw = hw0 + int64_t(i) * kThreads + threadIdx.x;
    int am = -1, l = -1;
    bool ok = false;
    if (hw < HW) {
      const int64_t p = n * HW + hw;
      const T* xp = x + p * xs;
      float m = to_f(xp[0]);
      am = 0;
      for (int k = 1; k < K; ++k) {
        const float v = to_f(xp[k]);
        if (v > m) {  // strict: the first maximum wins, as on the CPU and in torch.argmax
          m = v;
          am = k;
        }
      }
      argmax[p] = static_cast<uint8_t>(am);
      const int64_t lv = static_cast<int64_t>(lab[p * ls]);
      ok = label_ok(lv, K, ignore);
      if (ok) {
        l = static_cast<int>(lv);
        float se = 0.0f;
        for (int k = 0; k < K; ++k) se += expf(to_f(xp[k]) - m);
        const float nll = m + logf(se) - to_f(xp[l]);
        const float wl = cw.w[l];
        loss += wl * nll;
        wsum += wl;
        nonzero += wl != 0.0f;
        valid += 1;
      } else if (!(ignore >= 0 && lv == ignore) && p < bad) {
        bad = p;
      }
    }
    // Confusion counts: exact block-wide popcounts, the same result in any order.
    for (int c = 0; c < K; ++c) {
      const int tp = __syncthreads_count(ok && l == c && am == c);
      const int fp = __syncthreads_count(ok && am == c && l != c);
      const int fn = __syncthreads_count(ok && l == c && am != c);
      if (threadIdx.x == 0) {
        s_counts[c] += tp;
        s_counts[K + c] += fp;
        s_counts[2 * K + c] += fn;
      }
    }
  }
  loss = block_reduce(loss, AddOp{}, s_f);
  wsum = block_reduce(wsum, AddOp{}, s_f);
  nonzero = block_reduce(nonzero, AddOp{}, s_i);
  valid = block_reduce(valid, AddOp{}, s_i);
  bad = block_reduce(bad, MinOp{}, s_ll);
  if (threadIdx.x == 0) {
    ploss[blk] = loss;
    pwsum[blk] = wsum;
    pnonzero[blk] = nonzero;
    pvalid[blk] = valid;
    pbad[blk] = bad;
  }
  if (threadIdx.x < 3 * K) pcounts[blk * 3 * K + threadIdx.x] = s_counts[threadIdx.x];  // after the barriers above
}

__device__ double denominator(XentReduction red, int64_t total, double wsum, long long nonzero) {
  switch (red) {
    case XentReduction::sum: return 1.0;
    case XentReduction::mean: return static_cast<double>(total);
    case XentReduction::weighted_mean: return wsum;
    case XentReduction::sum_by_nonzero_weights: return static_cast<double>(nonzero);
  }
  return 1.0;
}

template <class T, class L>
__global__ void __launch_bounds__(kThreads)
    xent_fwd_final_kernel(int64_t N, int64_t HW, int64_t bps, int K, const float* ploss, const float* pwsum,
                          const int* pnonzero, const int* pvalid, const long long* pbad, const int* pcounts,
                          const L* lab, int64_t ls, XentReduction red, double scale, T* y, XentHeader* hdr,
                          long long* counts) {
  // One block. Records (N * bps) combined in a fixed order; counts (N, 3, K) summed over each sample's blocks.
  __shared__ double s_d[kWarps];
  __shared__ long long s_ll[kWarps];
  const int64_t nb = N * bps;
  double loss = 0.0, wsum = 0.0;
  long long nonzero = 0, valid = 0, bad = LLONG_MAX;
  for (int64_t b = threadIdx.x; b < nb; b += kThreads) {
    loss += static_cast<double>(ploss[b]);
    wsum += static_cast<double>(pwsum[b]);
    nonzero += pnonzero[b];
    valid += pvalid[b];
    bad = pbad[b] < bad ? pbad[b] : bad;
  }
  loss = block_reduce(loss, AddOp{}, s_d);
  wsum = block_reduce(wsum, AddOp{}, s_d);
  nonzero = block_reduce(nonzero, AddOp{}, s_ll);
  valid = block_reduce(valid, AddOp{}, s_ll);
  bad = block_reduce(bad, MinOp{}, s_ll);
  const int64_t ck = 3 * int64_t(K);
  for (int64_t e = threadIdx.x; e < N * ck; e += kThreads) {
    const int64_t n = e / ck, j = e - n * ck;
    long long s = 0;
    for (int64_t b = 0; b < bps; ++b) s += pcounts[(n * bps + b) * ck + j];
    counts[e] = s;
  }
  if (threadIdx.x == 0) {
    XentHeader h;
    h.weighted_sum = loss;
    h.denom = denominator(red, N * HW, wsum, nonzero);
    // Empty denominator: loss 0 and gradient 0, as the CPU path (not PyTorch's NaN).
    h.grad_scale = h.denom != 0.0 ? scale / h.denom : 0.0;
    h.loss = h.grad_scale * loss;
    h.valid_pixels = valid;
    h.bad_index = bad == LLONG_MAX ? -1 : bad;
    h.bad_value = bad == LLONG_MAX ? 0 : static_cast<int64_t>(lab[bad * ls]);
    h.reserved = 0;
    *hdr = h;
    y[0] = from_f<T>(static_cast<float>(h.loss));
  }
}

template <class T, class L>
__global__ void xent_bwd_kernel(int64_t P, int K, const T* x, int64_t xs, const L* lab, int64_t ls, ClassWeights cw,
                                int64_t ignore, const T* dy, const XentHeader* hdr, double multiplier, T* dx,
                                int64_t dxs, bool accumulate) {
  // x, dx: (P, K); lab: (P, 1); dy: one element; hdr: the forward's header (device memory); multiplier: host value
  // (the loss scale), applied in double so a scale above the 16-bit range never passes through T.
  const float g = static_cast<float>(hdr->grad_scale * static_cast<double>(to_f(dy[0])) * multiplier);
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < P; p += int64_t(gridDim.x) * blockDim.x) {
    const T* xp = x + p * xs;
    T* dp = dx + p * dxs;
    const int64_t lv = static_cast<int64_t>(lab[p * ls]);
    if (!label_ok(lv, K, ignore)) {
      if (!accumulate)
        for (int k = 0; k < K; ++k) dp[k] = from_f<T>(0.0f);
      continue;
    }
    const int l = static_cast<int>(lv);
    float m = to_f(xp[0]);
    for (int k = 1; k < K; ++k) m = fmaxf(m, to_f(xp[k]));
    float se = 0.0f;
    for (int k = 0; k < K; ++k) se += expf(to_f(xp[k]) - m);
    const float inv = 1.0f / se, f = g * cw.w[l];
    for (int k = 0; k < K; ++k) {
      const float d = f * (expf(to_f(xp[k]) - m) * inv - (k == l ? 1.0f : 0.0f));
      dp[k] = from_f<T>(accumulate ? to_f(dp[k]) + d : d);
    }
  }
}

// ---- launch helpers ------------------------------------------------------------------------------------------
// The label dtypes (the data dtypes: dispatch() in common.cuh).
template <class F>
void dispatch_labels(DType t, const char* who, F&& f) {
  switch (t) {
    case DType::i32: f(static_cast<int32_t*>(nullptr)); return;
    case DType::i64: f(static_cast<int64_t*>(nullptr)); return;
    case DType::u8: f(static_cast<uint8_t*>(nullptr)); return;
    default: CS_THROW("cuda::", who, ": labels must be i32, i64 or u8, not ", dtype_name(t));
  }
}

void check_common(ExecContext& ctx, const char* who, const Tensor& x, const Tensor& lab,
                  const std::vector<double>& w, const Tensor& saved) {
  check_ctx(ctx, who);
  check_operand(who, "logits", x);
  check_operand(who, "labels", lab);
  const Shape& s = x.shape();
  CS_CHECK(lab.shape() == (Shape{s.n, s.h, s.w, 1}), "cuda::", who, ": labels ", lab.shape().str(),
           " do not match logits ", s.str());
  CS_CHECK(s.c >= 1 && s.c <= kXentCudaMaxClasses, "cuda::", who, ": ", s.c, " classes; the CUDA path takes 1 to ",
           kXentCudaMaxClasses);
  CS_CHECK(static_cast<int64_t>(w.size()) == s.c, "cuda::", who, ": ", w.size(), " class weights for ", s.c,
           " classes");
  const size_t need = xent_saved_layout(s.n, s.h * s.w, s.c).total;
  CS_CHECK(saved.defined() && saved.device() == Device::cuda && saved.dtype() == DType::u8 &&
               saved.is_contiguous() && saved.nbytes() >= need,
           "cuda::", who, ": saved state must be a contiguous device u8 tensor of at least ", need, " bytes");
  CS_CHECK(reinterpret_cast<uintptr_t>(saved.data()) % 8 == 0, "cuda::", who, ": saved state must be 8-byte aligned");
}

ClassWeights to_weights(const std::vector<double>& w) {
  ClassWeights cw{};
  for (size_t i = 0; i < w.size(); ++i) cw.w[i] = static_cast<float>(w[i]);
  return cw;
}

}  // namespace

void softmax_xent_fwd(ExecContext& ctx, const Tensor& x, const Tensor& lab, const std::vector<double>& w,
                      int64_t ignore_index, XentReduction red, double scale, const Tensor& y, const Tensor& saved,
                      const Tensor& workspace) {
  const char* who = "softmax_xent_fwd";
  check_common(ctx, who, x, lab, w, saved);
  check_operand(who, "y", y);
  CS_CHECK(y.numel() == 1 && y.dtype() == x.dtype(), "cuda::", who, ": y must be one ", dtype_name(x.dtype()),
           " element, got ", y.str());
  const Shape& s = x.shape();
  const int64_t HW = s.h * s.w;
  const XentSavedLayout lay = xent_saved_layout(s.n, HW, s.c);
  const XentCudaPartials part = xent_cuda_partials(s.n, HW, s.c);
  uint8_t* base = static_cast<uint8_t*>(saved.data());
  cudaStream_t st = stream_of(ctx);
  uint8_t* ws = nullptr;
  if (part.blocks > 0) {
    CS_CHECK(workspace.defined() && workspace.device() == Device::cuda && workspace.is_contiguous() &&
                 workspace.nbytes() >= part.total,
             "cuda::", who, ": workspace must be a contiguous device tensor of at least ", part.total, " bytes");
    CS_CHECK(reinterpret_cast<uintptr_t>(workspace.data()) % 256 == 0, "cuda::", who,
             ": workspace must be 256-byte aligned");
    CS_CHECK(part.blocks_per_sample <= 0x7fffffff && s.n <= 65535, "cuda::", who, ": ", s.str(),
             " exceeds the grid");
    ws = static_cast<uint8_t*>(workspace.data());
  }
  const ClassWeights cw = to_weights(w);
  dispatch(x.dtype(), who, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dispatch_labels(lab.dtype(), who, [&](auto ltag) {
      using L = std::remove_pointer_t<decltype(ltag)>;
      auto* ploss = reinterpret_cast<float*>(ws + part.loss);
      auto* pwsum = reinterpret_cast<float*>(ws + part.wsum);
      auto* pnz = reinterpret_cast<int*>(ws + part.nonzero);
      auto* pvalid = reinterpret_cast<int*>(ws + part.valid);
      auto* pbad = reinterpret_cast<long long*>(ws + part.first_bad);
      auto* pcounts = reinterpret_cast<int*>(ws + part.counts);
      if (part.blocks > 0) {
        dim3 grid(static_cast<unsigned>(part.blocks_per_sample), static_cast<unsigned>(s.n));
        xent_fwd_partial_kernel<T, L><<<grid, kThreads, 0, st>>>(
            HW, static_cast<int>(s.c), cptr<T>(x), x.pixel_stride(),
            cptr<L>(lab), lab.pixel_stride(), cw, ignore_index, base + lay.mask, ploss, pwsum,
            pnz, pvalid, pbad, pcounts);
        CUDA_CHECK_LAUNCH();
      }
      xent_fwd_final_kernel<T, L><<<1, kThreads, 0, st>>>(
          s.n, HW, part.blocks_per_sample, static_cast<int>(s.c), ploss, pwsum, pnz, pvalid, pbad, pcounts,
          cptr<L>(lab), lab.pixel_stride(), red, scale, mptr<T>(y),
          reinterpret_cast<XentHeader*>(base), reinterpret_cast<long long*>(base + lay.counts));
      CUDA_CHECK_LAUNCH();
    });
  });
}

void softmax_xent_bwd(ExecContext& ctx, const Tensor& x, const Tensor& lab, const std::vector<double>& w,
                      int64_t ignore_index, const Tensor& dy, const Tensor& saved, double multiplier,
                      const Tensor& dx, bool accumulate) {
  const char* who = "softmax_xent_bwd";
  check_common(ctx, who, x, lab, w, saved);
  check_operand(who, "dy", dy);
  check_operand(who, "dx", dx);
  CS_CHECK(dy.numel() == 1 && dy.dtype() == x.dtype(), "cuda::", who, ": dy must be one ", dtype_name(x.dtype()),
           " element, got ", dy.str());
  CS_CHECK(dx.shape() == x.shape() && dx.dtype() == x.dtype(), "cuda::", who, ": dx ", dx.str(),
           " does not match logits ", x.str());
  const int64_t P = x.shape().pixels();
  if (P == 0) return;
  cudaStream_t st = stream_of(ctx);
  const ClassWeights cw = to_weights(w);
  const int grid = grid_for(P);
  dispatch(x.dtype(), who, [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dispatch_labels(lab.dtype(), who, [&](auto ltag) {
      using L = std::remove_pointer_t<decltype(ltag)>;
      xent_bwd_kernel<T, L><<<grid, kThreads, 0, st>>>(
          P, static_cast<int>(x.shape().c), cptr<T>(x), x.pixel_stride(),
          cptr<L>(lab), lab.pixel_stride(), cw, ignore_index, cptr<T>(dy),
          static_cast<const XentHeader*>(saved.data()), multiplier, mptr<T>(dx), dx.pixel_stride(),
          accumulate);
      CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace climseg::cuda
