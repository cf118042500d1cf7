// CPU reference for the weighted softmax cross-entropy loss fused with argmax and per-class TP/FP/FN counts
// (layers/softmax_xent.h). The CUDA path (kernels/cuda/loss.h) shares the reduction modes, the saved-state layout
// and the header struct defined here, so both devices write the same bytes in the same places.
//
// Layout: logits (P, K) pixel-strided (channels contiguous, pixels `xs` elements apart: channel slices of wider
// buffers work), labels (P, 1) pixel-strided integer class indices, P = N * HW pixels, sample n owning pixels
// [n * HW, (n + 1) * HW).
//
// Algorithm: one pass per pixel: m = max_k x_k (and the first k reaching it: the argmax), s = sum_k exp(x_k - m),
// nll = m + log(s) - x_label (numerically stable log-softmax), weighted by w[label]. The sums run over fixed pixel
// blocks of each sample (kXentBlock pixels, the same for any thread count), accumulated in double and combined in
// block order, so the loss does not depend on OpenMP's thread count. Backward recomputes the softmax from the
// logits (see SoftmaxXent for why nothing per-pixel but the argmax is saved).
//
// Bound: memory-bound, about K + 2 exponentials per pixel; reads K logits and one label, writes one byte.
#pragma once

#include <cstddef>
#include <cstdint>

namespace climseg {

// How the per-pixel losses w[label] * nll are reduced to the scalar loss (before the `scale` factor).
// Ignored pixels (label == ignore_index) contribute nothing to any sum.
enum class XentReduction : uint8_t {
  sum,                     // sum of w*nll (GB 2018 DeepLabv3+: TF Reduction.SUM, times scale_factor 0.1)
  mean,                    // sum of w*nll / (N*H*W), every pixel counted, ignored ones too (DeepCAM: CrossEntropyLoss(
                           // weight, reduction='none') followed by .mean())
  weighted_mean,           // sum of w*nll / sum of w[label] over non-ignored pixels (PyTorch CrossEntropyLoss(weight,
                           // reduction='mean'))
  sum_by_nonzero_weights,  // sum of w*nll / #non-ignored pixels with w[label] != 0 (GB 2018 Tiramisu: TF
                           // Reduction.SUM_BY_NONZERO_WEIGHTS, times 0.1)
};
const char* xent_reduction_name(XentReduction r);

// The fixed-size head of the layer's saved state (64 bytes). Written by forward on either device, read by backward
// (grad_scale) and by SoftmaxXent::read_metrics.
struct XentHeader {
  double loss;           // scale * weighted_sum / denom (0 when denom is 0)
  double grad_scale;     // d loss / d weighted_sum = scale / denom (0 when denom is 0)
  double weighted_sum;   // sum of w[label] * nll over non-ignored pixels
  double denom;          // the reduction's denominator (1 for sum)
  int64_t valid_pixels;  // pixels whose label is in [0, K) and not ignore_index
  int64_t bad_index;     // flat pixel index (n*HW + h*W + w) of the first label outside [0, K) that is not
                         // ignore_index; -1 when there is none
  int64_t bad_value;     // that label's value
  int64_t reserved;
};
static_assert(sizeof(XentHeader) == 64);

// Saved-state layout, in bytes from the start of the saved buffer:
//   [0, 64)             XentHeader
//   [counts, +24*N*K)   int64 counts (N, 3, K): per sample, TP[K], FP[K], FN[K] over non-ignored pixels
//   [mask, +P)          u8 argmax class per pixel (N, H, W)
struct XentSavedLayout {
  size_t counts = 0;
  size_t mask = 0;
  size_t total = 0;
};
XentSavedLayout xent_saved_layout(int64_t N, int64_t HW, int64_t K);

// The CUDA forward's per-block partials (kernels/cuda/loss.cu), in the layer's forward workspace. Declared here
// because memory_needs() must size them in CPU-only builds too. Blocks of kXentCudaChunk pixels of one sample;
// struct of arrays, each array 256-byte aligned:
//   f32 loss[nb], f32 wsum[nb], i32 nonzero[nb], i32 valid[nb], i64 first_bad[nb], i32 counts[nb][3K]
constexpr int64_t kXentCudaChunk = 1024;
struct XentCudaPartials {
  int64_t blocks_per_sample = 0, blocks = 0;
  size_t loss = 0, wsum = 0, nonzero = 0, valid = 0, first_bad = 0, counts = 0, total = 0;
};
XentCudaPartials xent_cuda_partials(int64_t N, int64_t HW, int64_t K);
inline size_t xent_cuda_workspace_bytes(int64_t N, int64_t HW, int64_t K) { return xent_cuda_partials(N, HW, K).total; }

// The reduction's denominator from the three sums; 1 for sum.
double xent_denominator(XentReduction r, int64_t total_pixels, double weight_sum, int64_t nonzero_weight_pixels);

namespace cpu {

// Pixels per reduction block (per sample): fixed, so the summation order never depends on the thread count.
constexpr int64_t kXentBlock = 4096;

// Forward: writes y (the scalar loss, in T), argmax (P bytes), counts (N, 3, K) and the header. A label outside
// [0, K) that is not ignore_index contributes nothing and is reported in hdr->bad_index / bad_value (the first in
// pixel order); the caller decides what to do with it (the layer throws). L: int32_t, int64_t or uint8_t.
template <class T, class L>
void softmax_xent_fwd(int64_t N, int64_t HW, int64_t K, const T* x, int64_t xs, const L* labels, int64_t ls,
                      const double* w, int64_t ignore_index, XentReduction red, double scale, T* y, uint8_t* argmax,
                      int64_t* counts, XentHeader* hdr);

// Backward: dx (=|+=) g * w[label] * (softmax(x) - onehot(label)) per pixel, with g = dy * grad_scale; zero for
// ignored pixels and labels outside [0, K).
template <class T, class L>
void softmax_xent_bwd(int64_t P, int64_t K, const T* x, int64_t xs, const L* labels, int64_t ls, const double* w,
                      int64_t ignore_index, double g, T* dx, int64_t dxs, bool accumulate);

}  // namespace cpu
}  // namespace climseg
