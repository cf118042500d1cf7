#include "kernels/cpu/loss.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace climseg {

const char* xent_reduction_name(XentReduction r) {
  switch (r) {
    case XentReduction::sum: return "sum";
    case XentReduction::mean: return "mean";
    case XentReduction::weighted_mean: return "weighted_mean";
    case XentReduction::sum_by_nonzero_weights: return "sum_by_nonzero_weights";
  }
  return "?";
}

XentSavedLayout xent_saved_layout(int64_t N, int64_t HW, int64_t K) {
  XentSavedLayout l;
  l.counts = sizeof(XentHeader);
  l.mask = l.counts + static_cast<size_t>(3 * N * K) * sizeof(int64_t);
  l.total = l.mask + static_cast<size_t>(N * HW);
  return l;
}

XentCudaPartials xent_cuda_partials(int64_t N, int64_t HW, int64_t K) {
  XentCudaPartials p;
  p.blocks_per_sample = (HW + kXentCudaChunk - 1) / kXentCudaChunk;
  p.blocks = N * p.blocks_per_sample;
  const size_t nb = static_cast<size_t>(p.blocks);
  auto align = [](size_t v) { return (v + 255) / 256 * 256; };
  size_t off = 0;
  p.loss = off;
  off = align(off + nb * 4);
  p.wsum = off;
  off = align(off + nb * 4);
  p.nonzero = off;
  off = align(off + nb * 4);
  p.valid = off;
  off = align(off + nb * 4);
  p.first_bad = off;
  off = align(off + nb * 8);
  p.counts = off;
  off = align(off + nb * static_cast<size_t>(3 * K) * 4);
  p.total = p.blocks ? off : 0;
  return p;
}

double xent_denominator(XentReduction r, int64_t total_pixels, double weight_sum, int64_t nonzero_weight_pixels) {
  switch (r) {
    case XentReduction::sum: return 1.0;
    case XentReduction::mean: return static_cast<double>(total_pixels);
    case XentReduction::weighted_mean: return weight_sum;
    case XentReduction::sum_by_nonzero_weights: return static_cast<double>(nonzero_weight_pixels);
  }
  return 1.0;
}

namespace cpu {

namespace {
// Below this many logits a parallel region costs more than it saves (as kernels/cpu/eltwise.cpp).
constexpr int64_t kParallelMin = 1 << 15;

struct BlockSums {
  double loss = 0;    // sum of w * nll
  double wsum = 0;    // sum of w[label]
  int64_t nonzero = 0;
  int64_t valid = 0;
  int64_t first_bad = -1;  // flat pixel index
};

template <class L>
bool label_ok(L raw, int64_t K, int64_t ignore_index, int64_t* out) {
  int64_t l = static_cast<int64_t>(raw);
  *out = l;
  return l >= 0 && l < K && !(ignore_index >= 0 && l == ignore_index);
}
}  // namespace

template <class T, class L>
void softmax_xent_fwd(int64_t N, int64_t HW, int64_t K, const T* x, int64_t xs, const L* labels, int64_t ls,
                      const double* w, int64_t ignore_index, XentReduction red, double scale, T* y, uint8_t* argmax,
                      int64_t* counts, XentHeader* hdr) {
  const int64_t bps = (HW + kXentBlock - 1) / kXentBlock;  // blocks per sample
  const int64_t nblocks = N * bps;
  std::vector<BlockSums> sums(static_cast<size_t>(nblocks));
  // Per-block confusion counts (3K each), summed per sample afterwards: integers, so the order is immaterial,
  // but keeping them per block avoids any sharing between threads.
  std::vector<int64_t> bcounts(static_cast<size_t>(nblocks * 3 * K), 0);
#pragma omp parallel for schedule(static) if (N * HW * K >= kParallelMin)
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t n = b / bps;
    const int64_t p0 = n * HW + (b % bps) * kXentBlock;
    const int64_t p1 = std::min(p0 + kXentBlock, (n + 1) * HW);
    BlockSums s;
    int64_t* tp = bcounts.data() + b * 3 * K;
    int64_t* fp = tp + K;
    int64_t* fn = fp + K;
    for (int64_t p = p0; p < p1; ++p) {
      const T* xp = x + p * xs;
      T m = xp[0];
      int64_t am = 0;
      for (int64_t k = 1; k < K; ++k)
        if (xp[k] > m) {  // strict: the first maximum wins, as torch.argmax
          m = xp[k];
          am = k;
        }
      argmax[p] = static_cast<uint8_t>(am);
      int64_t l;
      const L raw = labels[p * ls];
      if (!label_ok(raw, K, ignore_index, &l)) {
        if (!(ignore_index >= 0 && l == ignore_index) && s.first_bad < 0) s.first_bad = p;
        continue;
      }
      T se = T(0);
      for (int64_t k = 0; k < K; ++k) se += std::exp(xp[k] - m);
      const T nll = m + std::log(se) - xp[l];
      const T wl = static_cast<T>(w[l]);
      s.loss += static_cast<double>(wl * nll);
      s.wsum += static_cast<double>(wl);
      s.nonzero += wl != T(0);
      s.valid += 1;
      if (am == l) {
        tp[l]++;
      } else {
        fp[am]++;
        fn[l]++;
      }
    }
    sums[static_cast<size_t>(b)] = s;
  }
  // Fixed-order combine.
  BlockSums t;
  for (const BlockSums& s : sums) {
    t.loss += s.loss;
    t.wsum += s.wsum;
    t.nonzero += s.nonzero;
    t.valid += s.valid;
    if (t.first_bad < 0 && s.first_bad >= 0) t.first_bad = s.first_bad;
  }
  std::memset(counts, 0, static_cast<size_t>(3 * N * K) * sizeof(int64_t));
  for (int64_t b = 0; b < nblocks; ++b) {
    int64_t* dst = counts + (b / bps) * 3 * K;
    const int64_t* src = bcounts.data() + b * 3 * K;
    for (int64_t j = 0; j < 3 * K; ++j) dst[j] += src[j];
  }
  XentHeader h{};
  h.weighted_sum = t.loss;
  h.denom = xent_denominator(red, N * HW, t.wsum, t.nonzero);
  // An empty denominator (every pixel ignored, or every weight zero) gives loss 0 and gradient 0 rather than
  // PyTorch's 0/0 = NaN (TF's SUM_BY_NONZERO_WEIGHTS uses div_no_nan the same way).
  h.grad_scale = h.denom != 0.0 ? scale / h.denom : 0.0;
  h.loss = h.grad_scale * t.loss;
  h.valid_pixels = t.valid;
  h.bad_index = t.first_bad;
  h.bad_value = t.first_bad >= 0 ? static_cast<int64_t>(labels[t.first_bad * ls]) : 0;
  *hdr = h;
  *y = static_cast<T>(h.loss);
}

template <class T, class L>
void softmax_xent_bwd(int64_t P, int64_t K, const T* x, int64_t xs, const L* labels, int64_t ls, const double* w,
                      int64_t ignore_index, double g, T* dx, int64_t dxs, bool accumulate) {
#pragma omp parallel for schedule(static) if (P * K >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const T* xp = x + p * xs;
    T* dp = dx + p * dxs;
    int64_t l;
    if (!label_ok(labels[p * ls], K, ignore_index, &l)) {
      if (!accumulate)
        for (int64_t k = 0; k < K; ++k) dp[k] = T(0);
      continue;
    }
    T m = xp[0];
    for (int64_t k = 1; k < K; ++k) m = xp[k] > m ? xp[k] : m;
    T se = T(0);
    for (int64_t k = 0; k < K; ++k) se += std::exp(xp[k] - m);
    const T f = static_cast<T>(g * w[l]);
    const T inv = T(1) / se;
    for (int64_t k = 0; k < K; ++k) {
      T d = f * (std::exp(xp[k] - m) * inv - (k == l ? T(1) : T(0)));
      dp[k] = accumulate ? dp[k] + d : d;
    }
  }
}

#define CS_INSTANTIATE(T, L)                                                                                      \
  template void softmax_xent_fwd<T, L>(int64_t, int64_t, int64_t, const T*, int64_t, const L*, int64_t,           \
                                       const double*, int64_t, XentReduction, double, T*, uint8_t*, int64_t*,     \
                                       XentHeader*);                                                              \
  template void softmax_xent_bwd<T, L>(int64_t, int64_t, const T*, int64_t, const L*, int64_t, const double*,     \
                                       int64_t, double, T*, int64_t, bool);
CS_INSTANTIATE(float, int32_t)
CS_INSTANTIATE(float, int64_t)
CS_INSTANTIATE(float, uint8_t)
CS_INSTANTIATE(double, int32_t)
CS_INSTANTIATE(double, int64_t)
CS_INSTANTIATE(double, uint8_t)
#undef CS_INSTANTIATE

}  // namespace cpu
}  // namespace climseg
