// CPU convolution kernels (the algorithms and their choice are described in conv.h). Algorithm choice for the
// forward pass of a groups == 1 conv: Winograd F(2x2,3x3) for wide 3x3 stride-1 convs (use_winograd below); else the
// shifted GEMM (implicit GEMM by kernel taps on a zero-padded copy of the input rows) when the map is large enough
// that the saved im2col traffic outweighs its padded columns and shorter GEMMs (use_shifted, thresholds measured on
// 2 cores); im2col + one GEMM otherwise, and for strided and grouped convs. Data gradient: Winograd on the flipped
// geometry (winograd_data_geom), else the shifted GEMM on it (shifted_data_geom), else the col2im gather. Filter
// gradient: per-tap GEMMs on the shifted layout for few output channels (use_shifted_filter), else im2col. All paths
// give the same sums up to rounding; thresholds, like the paths, depend on the shape (and, for the fp32 direct kernel,
// on the CPU having AVX-512), never on the thread count.
#include "kernels/cpu/conv.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CLIMSEG_CONV_AVX512 1
#endif

#include "engine/check.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa.h"

namespace climseg::cpu {

namespace {

// Below this many elements a parallel region costs more than it saves (as kernels/cpu/eltwise.cpp).
constexpr int64_t kParallelMin = 1 << 15;

int64_t cg_of(const ConvGeometry& g) { return g.in_c / g.groups; }
int64_t kg_of(const ConvGeometry& g) { return g.out_c / g.groups; }
int64_t row_of(const ConvGeometry& g) { return g.kernel_h * g.kernel_w * cg_of(g); }  // one weight row, elements

// Kernel taps that reach the image for at least one output pixel: rows [r0, r0 + nr), columns [s0, s0 + ns).
// The others only ever see padding (dilated convs on small maps: a 3x3 rate-12 conv on a 12x18 map has one
// useful kernel row), so im2col leaves them out and the GEMMs shrink by the same factor.
struct Taps {
  int64_t r0 = 0, nr = 0, s0 = 0, ns = 0;
  int64_t row(const ConvGeometry& g) const { return nr * ns * cg_of(g); }  // one im2col row, elements
  bool full(const ConvGeometry& g) const { return nr == g.kernel_h && ns == g.kernel_w; }
};

// Whether tap offset `off` (= r * dilation) reaches [0, in) for some output o in [0, out): o * stride - pad + off.
bool tap_reaches(int64_t out, int64_t in, int64_t stride, int64_t pad, int64_t off) {
  const int64_t first = pad - off;  // the smallest o with o * stride >= first
  const int64_t o = first <= 0 ? 0 : (first + stride - 1) / stride;
  return o < out && o * stride - pad + off < in;
}

Taps taps_of(const ConvGeometry& g) {
  auto range = [](int64_t k, int64_t out, int64_t in, int64_t stride, int64_t pad, int64_t dil, int64_t& lo,
                  int64_t& n) {
    int64_t first = -1, last = -1;
    for (int64_t r = 0; r < k; ++r)
      if (tap_reaches(out, in, stride, pad, r * dil)) {
        if (first < 0) first = r;
        last = r;
      }
    lo = first < 0 ? 0 : first;
    n = first < 0 ? 0 : last - first + 1;
  };
  Taps t;
  range(g.kernel_h, g.out_h, g.in_h, g.stride_h, g.pad_top, g.dilation_h, t.r0, t.nr);
  range(g.kernel_w, g.out_w, g.in_w, g.stride_w, g.pad_left, g.dilation_w, t.s0, t.ns);
  if (t.nr == 0 || t.ns == 0) t.nr = t.ns = 0;
  return t;
}

// Output rows [oh0, oh1) whose kept kernel rows that reach the image are taps.r0 .. taps.r0 + taps.nr - 1 (the kept
// columns unchanged); nr 0: none reaches. In order, covering every output row.
struct RowBand {
  int64_t oh0, oh1;
  Taps taps;
};
std::vector<RowBand> row_bands(const ConvGeometry& g, const Taps& tp) {
  std::vector<RowBand> out;
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    Taps t = tp;
    int64_t lo = -1, hi = -1;
    for (int64_t r = tp.r0; r < tp.r0 + tp.nr; ++r) {
      const int64_t ih = oh * g.stride_h - g.pad_top + r * g.dilation_h;
      if (ih < 0 || ih >= g.in_h) continue;
      if (lo < 0) lo = r;
      hi = r;
    }
    t.r0 = lo < 0 ? tp.r0 : lo;
    t.nr = lo < 0 ? 0 : hi - lo + 1;
    if (!out.empty() && out.back().taps.r0 == t.r0 && out.back().taps.nr == t.nr)
      out.back().oh1 = oh + 1;
    else
      out.push_back({oh, oh + 1, t});
  }
  return out;
}

// The GEMM pieces of one group: the im2col columns [col, col + len) meet the weight columns [w, w + len) of each
// output channel. One piece when every kernel column is kept (kept rows are contiguous in KRSC), else one per kept
// kernel row.
struct Piece {
  int64_t col, w, len;
};
std::vector<Piece> pieces_of(const ConvGeometry& g, const Taps& t) {
  const int64_t Cg = cg_of(g);
  if (t.ns == g.kernel_w) return {{0, t.r0 * g.kernel_w * Cg, t.row(g)}};
  std::vector<Piece> p;
  for (int64_t i = 0; i < t.nr; ++i) p.push_back({i * t.ns * Cg, ((t.r0 + i) * g.kernel_w + t.s0) * Cg, t.ns * Cg});
  return p;
}

void check_geom(const ConvGeometry& g) {
  CS_CHECK(g.n > 0 && g.in_h > 0 && g.in_w > 0 && g.in_c > 0 && g.out_h > 0 && g.out_w > 0 && g.out_c > 0,
           "conv2d kernel: empty tensor in the geometry");
  CS_CHECK(g.groups > 0 && g.in_c % g.groups == 0 && g.out_c % g.groups == 0, "conv2d kernel: groups ", g.groups,
           " must divide C = ", g.in_c, " and K = ", g.out_c);
  CS_CHECK(g.kernel_h > 0 && g.kernel_w > 0 && g.stride_h > 0 && g.stride_w > 0 && g.dilation_h > 0 &&
               g.dilation_w > 0 && g.pad_top >= 0 && g.pad_left >= 0,
           "conv2d kernel: kernel, stride and dilation must be positive and padding non-negative");
}

template <class T>
void zero_pixels(int64_t P, int64_t C, T* a, int64_t as) {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) std::fill(a + p * as, a + p * as + C, T(0));
}

// col (T, nr*ns*Cg), row i = patch of output pixel p0 + i for group grp over the kept taps, [r][s][c], zeros where
// the tap is padding.
template <class T>
void im2col(const ConvGeometry& g, const Taps& tp, const T* x, int64_t xs, int64_t p0, int64_t tile, int64_t grp, T* col) {
  const int64_t Cg = cg_of(g), row = tp.row(g), OHW = g.out_h * g.out_w;
#pragma omp parallel for schedule(static) if (tile * row >= kParallelMin)
  for (int64_t i = 0; i < tile; ++i) {
    const int64_t p = p0 + i, n = p / OHW, oh = (p % OHW) / g.out_w, ow = p % g.out_w;
    const T* xn = x + n * g.in_h * g.in_w * xs + grp * Cg;
    T* dst = col + i * row;
    for (int64_t r = tp.r0; r < tp.r0 + tp.nr; ++r) {
      const int64_t ih = oh * g.stride_h - g.pad_top + r * g.dilation_h;
      for (int64_t s = tp.s0; s < tp.s0 + tp.ns; ++s) {
        const int64_t iw = ow * g.stride_w - g.pad_left + s * g.dilation_w;
        T* d = dst + ((r - tp.r0) * tp.ns + (s - tp.s0)) * Cg;
        if (ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w) {
          const T* src = xn + (ih * g.in_w + iw) * xs;
          std::copy(src, src + Cg, d);
        } else {
          std::fill(d, d + Cg, T(0));
        }
      }
    }
  }
}

// dx[., grp*Cg + c] += dcol taps of the output pixels [p0, p0 + tile), as a gather: each input pixel visits its
// taps in increasing output-pixel order (r and s descending), adding one at a time, so no two threads write the
// same element and the sum order is the same however the output pixels are split into tiles.
template <class T>
void col2im_gather(const ConvGeometry& g, const Taps& tp, const T* col, int64_t p0, int64_t tile, int64_t grp, T* dx,
                   int64_t dxs) {
  const int64_t Cg = cg_of(g), row = tp.row(g), OHW = g.out_h * g.out_w, p1 = p0 + tile;
  const int64_t n0 = p0 / OHW, n1 = (p1 - 1) / OHW;
  for (int64_t n = n0; n <= n1; ++n) {
    // Output rows of image n inside the tile, and the input rows their taps reach.
    const int64_t q0 = std::max<int64_t>(p0 - n * OHW, 0), q1 = std::min<int64_t>(p1 - n * OHW, OHW);
    const int64_t oh_lo = q0 / g.out_w, oh_hi = (q1 - 1) / g.out_w;
    const int64_t ih_lo = std::max<int64_t>(0, oh_lo * g.stride_h - g.pad_top);
    const int64_t ih_hi =
        std::min<int64_t>(g.in_h - 1, oh_hi * g.stride_h - g.pad_top + (g.kernel_h - 1) * g.dilation_h);
    if (ih_hi < ih_lo) continue;
    const int64_t count = (ih_hi - ih_lo + 1) * g.in_w;
    T* dxn = dx + n * g.in_h * g.in_w * dxs + grp * Cg;
#pragma omp parallel for schedule(static) if (count * g.kernel_h * g.kernel_w * Cg >= kParallelMin)
    for (int64_t idx = 0; idx < count; ++idx) {
      const int64_t ih = ih_lo + idx / g.in_w, iw = idx % g.in_w;
      T* d = dxn + (ih * g.in_w + iw) * dxs;
      for (int64_t r = tp.r0 + tp.nr - 1; r >= tp.r0; --r) {
        const int64_t th = ih + g.pad_top - r * g.dilation_h;
        if (th < 0 || th % g.stride_h != 0) continue;
        const int64_t oh = th / g.stride_h;
        if (oh >= g.out_h) continue;
        for (int64_t s = tp.s0 + tp.ns - 1; s >= tp.s0; --s) {
          const int64_t tw = iw + g.pad_left - s * g.dilation_w;
          if (tw < 0 || tw % g.stride_w != 0) continue;
          const int64_t ow = tw / g.stride_w;
          if (ow >= g.out_w) continue;
          const int64_t p = n * OHW + oh * g.out_w + ow;
          if (p < p0 || p >= p1) continue;
          const T* src = col + (p - p0) * row + ((r - tp.r0) * tp.ns + (s - tp.s0)) * Cg;
          for (int64_t c = 0; c < Cg; ++c) d[c] += src[c];
        }
      }
    }
  }
}

int64_t tile_pixels(const ConvGeometry& g, const Taps& tp, size_t elem_size, size_t ws_bytes, const char* pass) {
  const int64_t row_bytes = tp.row(g) * static_cast<int64_t>(elem_size);
  const int64_t tile = static_cast<int64_t>(ws_bytes) / row_bytes;
  CS_CHECK(tile >= 1, "conv2d ", pass, ": the workspace (", ws_bytes, " bytes) is smaller than one im2col row (",
           row_bytes, " bytes); use conv2d_workspace_bytes");
  return std::min<int64_t>(tile, g.n * g.out_h * g.out_w);
}

// Shifted GEMM (stride 1, groups 1): no im2col. A band of output rows [oh0, oh0 + bh) (of every image) reads the
// padded input rows [oh0, oh0 + bh + (nr-1)*dh) (coordinates relative to the first kept tap), copied once per
// image into a zero-padded buffer xb whose rows are wp = OW + (ns-1)*dw pixels wide. In that layout every kept tap (i,
// j) is a constant shift of the flat pixel index: extended output pixel q = (oh - oh0)*wp + ow reads xb[q + i*dh*wp +
// j*dw], so the band is one GEMM per tap, yb (m x K) += xb_shifted (m x C) * W_tap^T, with m = (bh-1)*wp + OW;
// the columns ow >= OW of yb are computed and discarded (the price: (wp - OW) / OW extra flops).
struct Shifted {
  int64_t extra_rows;  // (nr - 1) * dh: input rows a band needs beyond its output rows
  int64_t wp;          // padded row width in pixels
  int64_t top, left;   // padded coordinate of input pixel (0, 0)
};

Shifted shifted_of(const ConvGeometry& g, const Taps& t) {
  return {(t.nr - 1) * g.dilation_h, g.out_w + (t.ns - 1) * g.dilation_w, g.pad_top - t.r0 * g.dilation_h,
          g.pad_left - t.s0 * g.dilation_w};
}

// Elements of the band buffers for bh output rows of all N images: xb, then yb.
int64_t shifted_band_elems(const ConvGeometry& g, const Shifted& sh, int64_t bh) {
  return g.n * ((bh + sh.extra_rows) * sh.wp * g.in_c + bh * sh.wp * g.out_c);
}

// Output rows per band that ws_elems allows (at most OH; 0 if not even one row fits).
int64_t shifted_band_rows(const ConvGeometry& g, const Shifted& sh, int64_t ws_elems) {
  const int64_t fixed = g.n * sh.extra_rows * sh.wp * g.in_c, per_row = g.n * sh.wp * (g.in_c + g.out_c);
  if (ws_elems < fixed + per_row) return 0;
  return std::min(g.out_h, (ws_elems - fixed) / per_row);
}

// Rows of yb per GEMM call: about kShiftedBlock, so BLAS repacks a tap's weights once per ~512 rows and a block of
// yb stays in L2 across the taps; at least kShiftedMinBlocks blocks per band (over all images) so that both cores
// get work on small maps. Derived from the shape only, never from the thread count: every output element sees the
// same BLAS calls, taps in the same order, for any number of threads.
constexpr int64_t kShiftedBlock = 512, kShiftedMinBlocks = 8;

// ---- direct convolution for few output channels (fp32, AVX-512) ----
// On the shifted layout (below), a block of extended output pixels for K = 16, 32 or 48 channels: the K outputs of
// 8 pixels stay in 8 * K / 16 vector registers while every kept tap and input channel is added with one broadcast of
// the input value and K / 16 fused multiply-adds. No packing of the input: BLAS's GEMMs pack the (pixels x C) operand
// for every tap, which for so few output channels costs as much as the multiply-adds (Tiramisu's 5x5 convs with
// K = 32). Each output element is one sequential sum (taps, then channels), the same for any thread count. Compiled
// for AVX-512 with a target attribute and used only when the CPU has it (the build's baseline is x86-64).
#ifdef CLIMSEG_CONV_AVX512
bool have_avx512() { return cpu_use_avx512(); }  // the CPU has it and CLIMSEG_CPU_DISPATCH is not "portable"

// PX pixels from q on: each tap's sum over the channels is kept apart and then added to the pixel's total in yn (as
// the per-tap GEMMs do): one running sum over all taps and channels (up to thousands of terms) lost accuracy.
template <int NK, int PX>
__attribute__((target("avx512f"), always_inline)) inline void direct_pixels_avx512(const float* xn, int64_t C,
                                                                                   const float* wt,
                                                                                   const int64_t* shifts, int64_t ntaps,
                                                                                   float* yn, int64_t q) {
  constexpr int64_t K = 16 * NK;
  for (int64_t t = 0; t < ntaps; ++t) {
    __m512 acc[PX][NK];
    for (int i = 0; i < PX; ++i)
      for (int j = 0; j < NK; ++j) acc[i][j] = _mm512_setzero_ps();
    const float* xa = xn + (q + shifts[t]) * C;
    const float* wp = wt + t * C * K;
    for (int64_t c = 0; c < C; ++c) {
      __m512 wv[NK];
      for (int j = 0; j < NK; ++j) wv[j] = _mm512_loadu_ps(wp + c * K + 16 * j);
      for (int i = 0; i < PX; ++i) {
        const __m512 b = _mm512_set1_ps(xa[i * C + c]);
        for (int j = 0; j < NK; ++j) acc[i][j] = _mm512_fmadd_ps(b, wv[j], acc[i][j]);
      }
    }
    for (int i = 0; i < PX; ++i)
      for (int j = 0; j < NK; ++j) {
        float* d = yn + (q + i) * K + 16 * j;
        _mm512_storeu_ps(d, t == 0 ? acc[i][j] : _mm512_add_ps(_mm512_loadu_ps(d), acc[i][j]));
      }
  }
}

template <int NK>
__attribute__((target("avx512f"))) void direct_block_avx512(const float* xn, int64_t C, const float* wt,
                                                            const int64_t* shifts, int64_t ntaps, float* yn, int64_t q0,
                                                            int64_t len) {
  constexpr int PX = NK == 4 ? 6 : NK == 3 ? 8 : 12;  // 24 accumulators of the 32 vector registers
  int64_t q = q0;
  for (; q + PX <= q0 + len; q += PX) direct_pixels_avx512<NK, PX>(xn, C, wt, shifts, ntaps, yn, q);
  for (; q < q0 + len; ++q) direct_pixels_avx512<NK, 1>(xn, C, wt, shifts, ntaps, yn, q);  // the last pixels
}

void direct_block(const float* xn, int64_t C, int64_t K, const float* wt, const int64_t* shifts, int64_t ntaps,
                  float* yn, int64_t q0, int64_t len) {
  switch (K) {
    case 16:
      return direct_block_avx512<1>(xn, C, wt, shifts, ntaps, yn, q0, len);
    case 32:
      return direct_block_avx512<2>(xn, C, wt, shifts, ntaps, yn, q0, len);
    case 48:
      return direct_block_avx512<3>(xn, C, wt, shifts, ntaps, yn, q0, len);
    default:
      return direct_block_avx512<4>(xn, C, wt, shifts, ntaps, yn, q0, len);
  }
}
#else
bool have_avx512() { return false; }
void direct_block(const float*, int64_t, int64_t, const float*, const int64_t*, int64_t, float*, int64_t, int64_t) {
  CS_THROW("conv2d: the direct kernel needs an x86-64 build with AVX-512 support");
}
#endif

// xb[n][ph][pw] = x[n][oh0 + ph - top][pw - left] for the in_rows padded rows of a band, zero outside the image.
template <class T>
void fill_band_input(const ConvGeometry& g, const Shifted& sh, const T* x, int64_t xs, int64_t oh0, int64_t in_rows,
                     T* xb) {
  const int64_t C = g.in_c, wp = sh.wp;
#pragma omp parallel for schedule(static) if (g.n * in_rows * wp * C >= kParallelMin)
  for (int64_t row = 0; row < g.n * in_rows; ++row) {
    const int64_t n = row / in_rows, ih = oh0 + row % in_rows - sh.top;
    T* d = xb + row * wp * C;
    if (ih < 0 || ih >= g.in_h) {
      std::fill(d, d + wp * C, T(0));
      continue;
    }
    const T* xr = x + (n * g.in_h + ih) * g.in_w * xs;
    for (int64_t pw = 0; pw < wp; ++pw) {
      const int64_t iw = pw - sh.left;
      if (iw >= 0 && iw < g.in_w)
        std::copy(xr + iw * xs, xr + iw * xs + C, d + pw * C);
      else
        std::fill(d + pw * C, d + (pw + 1) * C, T(0));
    }
  }
}

// direct_w: fp32 only, the kept taps' weights as [tap][C][K] for the direct kernel instead of the per-tap GEMMs.
template <class T>
void conv2d_fwd_shifted(const ConvGeometry& g, const Taps& tp, const T* x, int64_t xs, const T* w, T* y, int64_t ys,
                        bool accumulate, T* ws, int64_t band_rows, const T* direct_w = nullptr) {
  const Shifted sh = shifted_of(g, tp);
  const int64_t C = g.in_c, K = g.out_c, RSC = row_of(g), wp = sh.wp;
  std::vector<int64_t> shifts;  // of the kept taps, in the order of direct_w
  for (int64_t i = 0; i < tp.nr; ++i)
    for (int64_t j = 0; j < tp.ns; ++j) shifts.push_back(i * g.dilation_h * wp + j * g.dilation_w);
  for (int64_t oh0 = 0; oh0 < g.out_h; oh0 += band_rows) {
    const int64_t bh = std::min(band_rows, g.out_h - oh0), in_rows = bh + sh.extra_rows;
    const int64_t xb_img = in_rows * wp * C, yb_img = bh * wp * K;
    T* xb = ws;                 // N images of (in_rows x wp) pixels
    T* yb = ws + g.n * xb_img;  // N images of (bh x wp) pixels
    fill_band_input(g, sh, x, xs, oh0, in_rows, xb);
    // Extended output pixels q = (oh - oh0) * wp + ow of one image; the last row stops at OW so that the largest
    // shift still reads inside xb.
    const int64_t m = (bh - 1) * wp + g.out_w;
    const int64_t per_img =
        std::max((m + kShiftedBlock - 1) / kShiftedBlock, std::min((kShiftedMinBlocks + g.n - 1) / g.n, (m + 31) / 32));
    const int64_t blk = (m + per_img - 1) / per_img;
#pragma omp parallel for schedule(static) if (g.n * m * K * C * tp.nr * tp.ns >= kParallelMin)
    for (int64_t b = 0; b < g.n * per_img; ++b) {
      const int64_t n = b / per_img, q0 = (b % per_img) * blk, len = std::min(blk, m - q0);
      if (len <= 0) continue;
      const T* xn = xb + n * xb_img;
      T* yn = yb + n * yb_img;
      if constexpr (std::is_same_v<T, float>) {
        if (direct_w != nullptr)
          direct_block(xn, C, K, direct_w, shifts.data(), static_cast<int64_t>(shifts.size()), yn, q0, len);
      }
      for (int64_t i = 0; i < tp.nr && direct_w == nullptr; ++i)
        for (int64_t j = 0; j < tp.ns; ++j) {
          const int64_t shift = i * g.dilation_h * wp + j * g.dilation_w;
          const T* wt = w + ((tp.r0 + i) * g.kernel_w + tp.s0 + j) * C;
          // yb (len x K) (+)= xb_shifted (len x C) * W_tap^T; serial here (cpu::gemm checks omp_in_parallel).
          gemm<T>(false, true, len, K, C, T(1), xn + (q0 + shift) * C, C, wt, RSC, (i | j) == 0 ? T(0) : T(1),
                  yn + q0 * K, K);
        }
      for (int64_t q = q0; q < q0 + len; ++q) {  // the valid columns out to y while the block is in cache
        const int64_t ow = q % wp;
        if (ow >= g.out_w) continue;
        const T* src = yn + q * K;
        T* d = y + ((n * g.out_h + oh0 + q / wp) * g.out_w + ow) * ys;
        if (accumulate)
          for (int64_t k = 0; k < K; ++k) d[k] += src[k];
        else
          std::copy(src, src + K, d);
      }
    }
  }
}

// Winograd F(2x2, 3x3) (Lavin and Gray, 2016) for 3x3, stride 1, dilation 1, one group: each 2x2 block of output
// pixels ("tile") comes from a 4x4 input patch d as Y = A^T [U (.) V] A, with V = B^T d B (per channel), U = G g G^T
// (per output and input channel) and the elementwise product summed over input channels, which for each of the 16
// positions xi of the 4x4 transform is one GEMM over the tiles: M_xi (tiles x K) = V_xi (tiles x C) * U_xi^T.
// 16 * C * K multiply-adds per tile instead of 36 * C * K, for the price of the three transforms (memory-bound, linear
// in C or K). The transforms use only +, - and halving (exact in binary), so the rounding error stays close to
// the direct sum's (measured in the tests against the fp64 im2col path).
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
// Tiles are processed in blocks whose V, M and U fit the workspace; the block size, like everything here, depends
// on the shape and the workspace only (each output element comes from one serial GEMM call per xi, the same for
// any thread count).
constexpr int64_t kWinoMaxBlock = 1024;  // tiles per block

struct Wino {
  int64_t th, tw, tiles;  // tiles per image in rows and columns; tiles in all images
};
Wino wino_of(const ConvGeometry& g) {
  const int64_t th = (g.out_h + 1) / 2, tw = (g.out_w + 1) / 2;
  return {th, tw, g.n * th * tw};
}
// Tiles per block that ws_elems allows (0: not even one).
int64_t wino_block_tiles(const ConvGeometry& g, int64_t ws_elems) {
  const int64_t fixed = 16 * g.out_c * g.in_c, per_tile = 16 * (g.in_c + g.out_c) + 0;
  if (ws_elems < fixed + per_tile + g.in_c) return 0;
  return std::min({wino_of(g).tiles, kWinoMaxBlock, (ws_elems - fixed - g.in_c) / per_tile});
}
int64_t wino_elems(const ConvGeometry& g, int64_t tb) {
  return 16 * g.out_c * g.in_c + tb * 16 * (g.in_c + g.out_c) + g.in_c;
}

// w (K,3,3,C) -> U [16][K][C]. flipped: g is the data-gradient geometry of a conv whose weights w are (C,3,3,K)
// (winograd_data_geom below), and the kernel used is w rotated by 180 degrees with its channel roles swapped.
template <class T>
void wino_weights(const ConvGeometry& g, const T* w, T* U, bool flipped) {
  const int64_t K = g.out_c, C = g.in_c, KC = K * C;
#pragma omp parallel for schedule(static) if (16 * KC >= kParallelMin)
  for (int64_t k = 0; k < K; ++k) {
    T* u = U + k * C;
    for (int64_t c = 0; c < C; ++c) {
      T gg[3][3], t[4][3];
      for (int r = 0; r < 3; ++r)
        for (int q = 0; q < 3; ++q)
          gg[r][q] = flipped ? w[(c * 9 + (2 - r) * 3 + (2 - q)) * K + k] : w[(k * 9 + r * 3 + q) * C + c];
      for (int q = 0; q < 3; ++q) {  // t = G g
        t[0][q] = gg[0][q];
        t[1][q] = T(0.5) * (gg[0][q] + gg[1][q] + gg[2][q]);
        t[2][q] = T(0.5) * (gg[0][q] - gg[1][q] + gg[2][q]);
        t[3][q] = gg[2][q];
      }
      for (int i = 0; i < 4; ++i) {  // U = t G^T
        u[(i * 4 + 0) * KC + c] = t[i][0];
        u[(i * 4 + 1) * KC + c] = T(0.5) * (t[i][0] + t[i][1] + t[i][2]);
        u[(i * 4 + 2) * KC + c] = T(0.5) * (t[i][0] - t[i][1] + t[i][2]);
        u[(i * 4 + 3) * KC + c] = t[i][2];
      }
    }
  }
}

// One application of B^T to four channel vectors: (a0 - a2, a1 + a2, a2 - a1, a1 - a3). Used for the columns (B^T d)
// and, in place, for the rows (r B) of the input transform; element c is read before it is written.
template <class T>
void wino_bt(const T* a0, const T* a1, const T* a2, const T* a3, T* o0, T* o1, T* o2, T* o3, int64_t C) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    const T x0 = a0[c], x1 = a1[c], x2 = a2[c], x3 = a3[c];
    o0[c] = x0 - x2;
    o1[c] = x1 + x2;
    o2[c] = x2 - x1;
    o3[c] = x1 - x3;
  }
}

template <class T>
void conv2d_fwd_winograd(const ConvGeometry& g, const T* x, int64_t xs, const T* w, T* y, int64_t ys, bool accumulate,
                         T* ws, int64_t tb, bool flipped = false) {
  const int64_t C = g.in_c, K = g.out_c;
  const Wino wn = wino_of(g);
  const int64_t per_img = wn.th * wn.tw;
  T* U = ws;                   // [16][K][C]
  T* V = U + 16 * K * C;       // [16][tb][C]
  T* M = V + 16 * tb * C;      // [16][tb][K]
  T* zeros = M + 16 * tb * K;  // C zeros: the padding
  std::fill(zeros, zeros + C, T(0));
  wino_weights(g, w, U, flipped);
  for (int64_t t0 = 0; t0 < wn.tiles; t0 += tb) {
    const int64_t nt = std::min(tb, wn.tiles - t0);
    // V_xi[tile] = (B^T d B)_xi, over channels.
#pragma omp parallel for schedule(static) if (nt * 16 * C >= kParallelMin)
    for (int64_t tt = 0; tt < nt; ++tt) {
      const int64_t t = t0 + tt, n = t / per_img, th = (t % per_img) / wn.tw, tw = t % wn.tw;
      const int64_t ih0 = 2 * th - g.pad_top, iw0 = 2 * tw - g.pad_left;
      const T* d[4][4];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
          const int64_t ih = ih0 + i, iw = iw0 + j;
          d[i][j] =
              ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w ? x + ((n * g.in_h + ih) * g.in_w + iw) * xs : zeros;
        }
      T* v = V + tt * C;
      const int64_t vs = tb * C;  // between xi
      // Row by row of the patch: r = B^T d needs rows 0..3 of d, each row j-column a channel vector.
      for (int j = 0; j < 4; ++j)  // r = B^T d, column j: into the xi = i*4 + j planes
        wino_bt(d[0][j], d[1][j], d[2][j], d[3][j], v + j * vs, v + (4 + j) * vs, v + (8 + j) * vs, v + (12 + j) * vs,
                C);
      for (int i = 0; i < 4; ++i) {  // V = r B, in place on the row i planes
        T* p = v + i * 4 * vs;
        wino_bt(p, p + vs, p + 2 * vs, p + 3 * vs, p, p + vs, p + 2 * vs, p + 3 * vs, C);
      }
    }
    // M_xi (nt x K) = V_xi (nt x C) * U_xi^T: 16 serial GEMMs spread over the threads.
#pragma omp parallel for schedule(static) if (nt * K * C * 16 >= kParallelMin)
    for (int64_t xi = 0; xi < 16; ++xi)
      gemm<T>(false, true, nt, K, C, T(1), V + xi * tb * C, C, U + xi * K * C, C, T(0), M + xi * tb * K, K);
      // Y = A^T M A, the 2x2 outputs of each tile that lie inside the image.
#pragma omp parallel for schedule(static) if (nt * 16 * K >= kParallelMin)
    for (int64_t tt = 0; tt < nt; ++tt) {
      const int64_t t = t0 + tt, n = t / per_img, th = (t % per_img) / wn.tw, tw = t % wn.tw;
      const int64_t oh = 2 * th, ow = 2 * tw;
      const bool h2 = oh + 1 < g.out_h, w2 = ow + 1 < g.out_w;
      T* y00 = y + ((n * g.out_h + oh) * g.out_w + ow) * ys;
      T* y01 = w2 ? y00 + ys : nullptr;
      T* y10 = h2 ? y00 + g.out_w * ys : nullptr;
      T* y11 = h2 && w2 ? y10 + ys : nullptr;
      const T* m = M + tt * K;
      const int64_t ms = tb * K;
      const T* mp[16];
      for (int xi = 0; xi < 16; ++xi) mp[xi] = m + xi * ms;
      auto tile_out = [&](int64_t k, T& o00, T& o01, T& o10, T& o11) {  // Y = A^T M A for channel k
        const T s00 = mp[0][k] + mp[4][k] + mp[8][k], s01 = mp[1][k] + mp[5][k] + mp[9][k],
                s02 = mp[2][k] + mp[6][k] + mp[10][k], s03 = mp[3][k] + mp[7][k] + mp[11][k];
        const T s10 = mp[4][k] - mp[8][k] - mp[12][k], s11 = mp[5][k] - mp[9][k] - mp[13][k],
                s12 = mp[6][k] - mp[10][k] - mp[14][k], s13 = mp[7][k] - mp[11][k] - mp[15][k];
        o00 = s00 + s01 + s02;
        o01 = s01 - s02 - s03;
        o10 = s10 + s11 + s12;
        o11 = s11 - s12 - s13;
      };
      if (y01 != nullptr && y10 != nullptr) {  // all four outputs inside the image
        if (accumulate) {
#pragma omp simd
          for (int64_t k = 0; k < K; ++k) {
            T o00, o01, o10, o11;
            tile_out(k, o00, o01, o10, o11);
            y00[k] += o00;
            y01[k] += o01;
            y10[k] += o10;
            y11[k] += o11;
          }
        } else {
#pragma omp simd
          for (int64_t k = 0; k < K; ++k) {
            T o00, o01, o10, o11;
            tile_out(k, o00, o01, o10, o11);
            y00[k] = o00;
            y01[k] = o01;
            y10[k] = o10;
            y11[k] = o11;
          }
        }
      } else {  // the last row or column of an odd-sized output
        for (int64_t k = 0; k < K; ++k) {
          T o[4];
          tile_out(k, o[0], o[1], o[2], o[3]);
          T* dst[4] = {y00, y01, y10, y11};
          for (int e = 0; e < 4; ++e)
            if (dst[e] != nullptr) dst[e][k] = accumulate ? dst[e][k] + o[e] : o[e];
        }
      }
    }
  }
}

// Filter gradient by kernel taps in the same band layout (stride 1, one group): dyb holds dy of the band's output
// rows on the wp-wide extended grid with zeros in the columns ow >= OW, so for each kept tap (i, j)
//   dW_tap (K x C) (+)= dyb^T (K x m) * xb_shifted (m x C),  m = (bh - 1) * wp + OW per image,
// one GEMM per tap, channel block and image (no im2col copy). The (tap, channel block) items are spread over the
// threads (each dW element has one writer), and each element sums bands, then images, in a fixed order: the result
// does not depend on the thread count. The zero columns of yb make the extended pixels contribute exactly 0 for
// finite x; a NaN/inf in x may then also reach taps that never see that pixel (the gradient is not finite anyway).
template <class T>
void conv2d_bwd_filter_shifted(const ConvGeometry& g, const Taps& tp, const T* x, int64_t xs, const T* dy, int64_t dys,
                               T* dw, bool accumulate, T* ws, int64_t band_rows) {
  const Shifted sh = shifted_of(g, tp);
  const int64_t C = g.in_c, K = g.out_c, RSC = row_of(g), wp = sh.wp, ntaps = tp.nr * tp.ns;
  // Dropped taps have a zero gradient: in overwrite mode zero the whole filter first, then accumulate.
  if (!accumulate && !tp.full(g)) std::fill(dw, dw + K * RSC, T(0));
  const bool acc = accumulate || !tp.full(g);
  // Channel blocks per tap (from the shape only): each dW element is still one GEMM's, summed in the same order.
  constexpr int64_t kFilterItems = 16, kMinBlock = 16;
  const int64_t want = std::min((kFilterItems + ntaps - 1) / ntaps, std::max<int64_t>(1, C / kMinBlock));
  const int64_t cb = (C + want - 1) / want, cblocks = (C + cb - 1) / cb;
  for (int64_t oh0 = 0; oh0 < g.out_h; oh0 += band_rows) {
    const int64_t bh = std::min(band_rows, g.out_h - oh0), in_rows = bh + sh.extra_rows;
    const int64_t xb_img = in_rows * wp * C, yb_img = bh * wp * K;
    T* xb = ws;
    T* yb = ws + g.n * xb_img;
    fill_band_input(g, sh, x, xs, oh0, in_rows, xb);
#pragma omp parallel for schedule(static) if (g.n * yb_img >= kParallelMin)
    for (int64_t row = 0; row < g.n * bh; ++row) {  // yb[n][oh - oh0][ow] = dy[n][oh][ow], zero for ow >= OW
      const int64_t n = row / bh, oh = oh0 + row % bh;
      T* d = yb + row * wp * K;
      const T* src = dy + (n * g.out_h + oh) * g.out_w * dys;
      for (int64_t ow = 0; ow < g.out_w; ++ow) std::copy(src + ow * dys, src + ow * dys + K, d + ow * K);
      std::fill(d + g.out_w * K, d + wp * K, T(0));
    }
    const int64_t m = (bh - 1) * wp + g.out_w;
    const T beta0 = (oh0 == 0 && !acc) ? T(0) : T(1);
    // Work items: (tap, block of channels), at least kFilterItems of them when C allows (blocks of >= 16 channels),
    // so that few kept taps (a 3x3, or one row of a dilated kernel) still spread over the threads.
#pragma omp parallel for schedule(static) if (g.n * m * K * C * ntaps >= kParallelMin)
    for (int64_t it = 0; it < ntaps * cblocks; ++it) {
      const int64_t t = it / cblocks, c0 = (it % cblocks) * cb, cn = std::min(cb, C - c0);
      const int64_t i = t / tp.ns, j = t % tp.ns;
      const int64_t shift = i * g.dilation_h * wp + j * g.dilation_w;
      T* dwt = dw + ((tp.r0 + i) * g.kernel_w + tp.s0 + j) * C + c0;
      for (int64_t n = 0; n < g.n; ++n)  // serial here (cpu::gemm checks omp_in_parallel)
        gemm<T>(true, false, K, cn, m, T(1), yb + n * yb_img, K, xb + n * xb_img + shift * C + c0, C,
                n == 0 ? beta0 : T(1), dwt, RSC);
    }
  }
}

// Weights (C, R, S, 1) of a depthwise conv as (R*S, C), so the channel loops are unit-stride.
template <class T>
std::vector<T> depthwise_weights_rsc(const ConvGeometry& g, const T* w) {
  const int64_t RS = g.kernel_h * g.kernel_w, C = g.in_c;
  std::vector<T> wt(static_cast<size_t>(RS * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t rs = 0; rs < RS; ++rs) wt[static_cast<size_t>(rs * C + c)] = w[c * RS + rs];
  return wt;
}

}  // namespace

ConvAlgo conv2d_algo(const ConvGeometry& g) {
  // Depthwise first: a depthwise 1x1 conv as per-group GEMMs would be C products of (P x 1) by (1 x 1).
  if (g.groups == g.in_c && g.groups == g.out_c) return ConvAlgo::depthwise;
  if (g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_top == 0 && g.pad_left == 0 &&
      g.in_h == g.out_h && g.in_w == g.out_w)
    return ConvAlgo::pointwise;
  return ConvAlgo::general;
}

namespace {

// Whether the forward pass takes the shifted GEMM (by shape only). It needs stride 1 and one group. Measured with
// DeepLabv3+ shapes (CPU time on one thread, wall time on 2): 10-30% faster than im2col from 48x72 maps up with
// C = 16..384, within +-5% at 24x36 (a gain for C = 256, a loss for C = 64), 1.4-1.7x slower at 12x18 (the GEMMs
// get short and the padded columns, 11-44% of the rows there, cost as much as im2col saves). Hence a minimum map
// size, and a cap on the wasted columns for large dilations; C < 16 was not measured, so it stays on im2col.
constexpr int64_t kShiftedMinPixels = 2048;  // output pixels per image
constexpr int64_t kShiftedMinC = 16;
bool use_shifted(const ConvGeometry& g, const Taps& tp) {
  if (conv2d_algo(g) != ConvAlgo::general || g.groups != 1 || g.stride_h != 1 || g.stride_w != 1 || tp.nr == 0)
    return false;
  if (g.out_h * g.out_w < kShiftedMinPixels || g.in_c < kShiftedMinC) return false;
  return 4 * shifted_of(g, tp).wp <= 5 * g.out_w;  // at most 25% wasted columns
}

// Whether the filter gradient takes conv2d_bwd_filter_shifted: the forward rule, and few output channels with enough
// input channels. Measured at 96x144 on 2 cores (fp32, against im2col): 0.74x the time for 5x5 96->32 and 224->32;
// 1.05-1.35x for K >= 64 or C = 16 (im2col's one wide GEMM is better there).
constexpr int64_t kShiftedFilterMaxK = 48, kShiftedFilterMinC = 64;
bool use_shifted_filter(const ConvGeometry& g, const Taps& tp) {
  return use_shifted(g, tp) && g.out_c <= kShiftedFilterMaxK && g.in_c >= kShiftedFilterMinC;
}

// Whether the fp32 forward pass takes the direct kernel (on the shifted layout): stride 1, one group, K of 16, 32, 48
// or 64, C >= 16, at most 50% wasted columns, any map size, and a CPU with AVX-512. Measured at 96x144 on 2 cores
// against the shifted GEMM or im2col taken before: 0.62-0.8x the time for Tiramisu's 5x5 convs to K = 32 (full and
// 1/8 resolution) and 16 -> 64, 0.6-0.8x for 3x3 convs to K = 32..64 with C of 16..64; about equal for 64 -> 64 at
// 96x144, slightly slower (1.1x) for 16 -> 32 3x3.
bool use_direct(const ConvGeometry& g, const Taps& tp) {
  if (!have_avx512() || conv2d_algo(g) != ConvAlgo::general || g.groups != 1 || g.stride_h != 1 || g.stride_w != 1 ||
      tp.nr == 0 || g.out_c % 16 != 0 || g.out_c > 64 || g.in_c < kShiftedMinC)
    return false;
  return 2 * shifted_of(g, tp).wp <= 3 * g.out_w;  // at most 50% wasted columns (small maps included)
}
int64_t direct_weight_elems(const ConvGeometry& g, const Taps& tp) { return tp.nr * tp.ns * g.in_c * g.out_c; }

bool shifted_allowed(const ConvGeometry& g, const Taps& tp) {
  return conv2d_algo(g) == ConvAlgo::general && g.groups == 1 && g.stride_h == 1 && g.stride_w == 1 && tp.nr > 0;
}

// Winograd F(2x2, 3x3): 3x3, stride 1, dilation 1, one group, every tap reaching the image (any padding).
bool winograd_allowed(const ConvGeometry& g, const Taps& tp) {
  return conv2d_algo(g) == ConvAlgo::general && g.groups == 1 && g.kernel_h == 3 && g.kernel_w == 3 &&
         g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 && g.dilation_w == 1 && tp.full(g);
}
// Whether the forward pass takes it (by shape only). Measured with DeepLabv3+'s 3x3 convs at 96x144 on 2 cores
// (fp32, against the shifted GEMM or im2col they took before): 0.58x the time for 384->256 at 96x144, 0.70x for
// 64->128 at 96x144, 0.76-0.83x for 256..304->256 at 24x36; but 1.13-1.2x for 64->64 at 24x36 and 128->128 at
// 12x18 (short GEMMs, transforms not amortised) and for 16->64 at 96x144 (C too small for the GEMMs to dominate).
constexpr int64_t kWinoMinC = 64;           // input and output channels
constexpr int64_t kWinoMinPixels = 2048;    // output pixels per image, below which ...
constexpr int64_t kWinoMinCSmallMap = 256;  // ... only convs this wide take it
// The transformed weights (16 * C * K elements, in the workspace) stay within half the workspace budget even in
// double: up to C * K = 512 * 512 here.
constexpr int64_t kWinoMaxWeights = static_cast<int64_t>(kConvWorkspaceBudget / 2 / sizeof(double) / 16);
bool use_winograd(const ConvGeometry& g, const Taps& tp) {
  if (!winograd_allowed(g, tp) || g.in_c < kWinoMinC || g.out_c < kWinoMinC) return false;
  if (g.in_c * g.out_c > kWinoMaxWeights) return false;
  return g.out_h * g.out_w >= kWinoMinPixels || g.in_c >= kWinoMinCSmallMap;
}

// The data gradient of a 3x3, stride-1, dilation-1 conv is itself such a conv: dx = corr(dy, w rotated by 180
// degrees, channels swapped) with padding 2 - pad, dy zero outside its map:
//   dx[ih, iw, c] = sum_{r', s', k} dy[ih - (2 - pt) + r', iw - (2 - pl) + s', k] * w[k, 2 - r', 2 - s', c].
// Returns whether the backward data pass takes Winograd on that geometry (*gd), by the forward pass's rule.
bool winograd_data_geom(const ConvGeometry& g, ConvGeometry* gd) {
  if (conv2d_algo(g) != ConvAlgo::general || g.groups != 1 || g.kernel_h != 3 || g.kernel_w != 3 || g.stride_h != 1 ||
      g.stride_w != 1 || g.dilation_h != 1 || g.dilation_w != 1 || g.pad_top > 2 || g.pad_left > 2)
    return false;
  ConvGeometry d = g;
  d.in_h = g.out_h, d.in_w = g.out_w, d.in_c = g.out_c;
  d.out_h = g.in_h, d.out_w = g.in_w, d.out_c = g.in_c;
  d.pad_top = 2 - g.pad_top, d.pad_left = 2 - g.pad_left;
  if (!use_winograd(d, taps_of(d))) return false;
  *gd = d;
  return true;
}

// The data gradient of any stride-1, one-group conv is the forward conv of dy with the flipped kernel
// wf[c, r, s, k] = w[k, R-1-r, S-1-s, c] and padding dil * (k - 1) - pad (dy zero outside its map); when that
// geometry (*gd) qualifies for the shifted GEMM by the forward rule, the backward data pass runs it there instead of
// materialising dcol (P x R*S*C) and gathering it. Measured at 96x144 on 2 cores (fp32, against the gather): 0.51x
// the time for 5x5 224->32, 0.56x for 5x5 96->32, 0.8x for 5x5 16->64, but 2x for 3x3 16->64 (the GEMMs' N = C
// is too narrow), so C >= 32 is required; Winograd, where it applies, is tried first.
constexpr int64_t kShiftedDataMinC = 32;
bool shifted_data_geom(const ConvGeometry& g, ConvGeometry* gd) {
  if (conv2d_algo(g) != ConvAlgo::general || g.groups != 1 || g.stride_h != 1 || g.stride_w != 1) return false;
  if (g.in_c < kShiftedDataMinC) return false;
  const int64_t ph = g.dilation_h * (g.kernel_h - 1) - g.pad_top, pw = g.dilation_w * (g.kernel_w - 1) - g.pad_left;
  if (ph < 0 || pw < 0) return false;
  ConvGeometry d = g;
  d.in_h = g.out_h, d.in_w = g.out_w, d.in_c = g.out_c;
  d.out_h = g.in_h, d.out_w = g.in_w, d.out_c = g.in_c;
  d.pad_top = ph, d.pad_left = pw;
  if (!use_shifted(d, taps_of(d))) return false;
  *gd = d;
  return true;
}
int64_t flipped_weight_elems(const ConvGeometry& g) { return g.out_c * g.kernel_h * g.kernel_w * g.in_c; }

// The algorithm each pass takes, by shape and workspace (the rules above; a workspace too small for a band or block
// falls back to im2col / the gather), and its band rows or tile block. The passes and conv2d_path use these only.
enum class Algo : uint8_t { winograd, direct, shifted, im2col, gather, pointwise, depthwise, none };
struct Choice {
  Algo algo;
  int64_t blocks = 0;  // Winograd: tiles per block; shifted: band rows
};

Algo plain_algo(const ConvGeometry& g, bool data) {
  switch (conv2d_algo(g)) {
    case ConvAlgo::pointwise:
      return Algo::pointwise;
    case ConvAlgo::depthwise:
      return Algo::depthwise;
    case ConvAlgo::general:
      break;
  }
  if (taps_of(g).nr == 0) return Algo::none;
  return data ? Algo::gather : Algo::im2col;
}

Choice choose_fwd(const ConvGeometry& g, int64_t elems, size_t elem_size) {
  const Taps tp = taps_of(g);
  if (use_winograd(g, tp)) {
    const int64_t tb = wino_block_tiles(g, elems);
    if (tb > 0) return {Algo::winograd, tb};
  }
  if (elem_size == sizeof(float) && use_direct(g, tp)) {
    const int64_t wt = direct_weight_elems(g, tp);
    const int64_t bh = elems > wt ? shifted_band_rows(g, shifted_of(g, tp), elems - wt) : 0;
    if (bh > 0) return {Algo::direct, bh};
  }
  if (use_shifted(g, tp)) {
    const int64_t bh = shifted_band_rows(g, shifted_of(g, tp), elems);
    if (bh > 0) return {Algo::shifted, bh};
  }
  return {plain_algo(g, false)};
}

// *gd: the flipped geometry when the choice is Winograd or shifted.
Choice choose_data(const ConvGeometry& g, int64_t elems, ConvGeometry* gd) {
  if (winograd_data_geom(g, gd)) {
    const int64_t tb = wino_block_tiles(*gd, elems);
    if (tb > 0) return {Algo::winograd, tb};
  }
  if (shifted_data_geom(g, gd)) {
    const int64_t wf = flipped_weight_elems(g);
    const int64_t bh = elems > wf ? shifted_band_rows(*gd, shifted_of(*gd, taps_of(*gd)), elems - wf) : 0;
    if (bh > 0) return {Algo::shifted, bh};
  }
  return {plain_algo(g, true)};
}

Choice choose_filter(const ConvGeometry& g, int64_t elems) {
  const Taps tp = taps_of(g);
  if (use_shifted_filter(g, tp)) {
    const int64_t bh = shifted_band_rows(g, shifted_of(g, tp), elems);
    if (bh > 0) return {Algo::shifted, bh};
  }
  return {plain_algo(g, false)};
}

}  // namespace

bool conv2d_direct_kernel_available() { return have_avx512(); }

const char* conv2d_path(const ConvGeometry& g, ConvPass pass, size_t elem_size, size_t ws_bytes) {
  check_geom(g);
  CS_CHECK(elem_size > 0, "conv2d_path: elem_size 0");
  const auto elems = static_cast<int64_t>(ws_bytes / elem_size);
  ConvGeometry gd;
  const Choice c = pass == ConvPass::forward         ? choose_fwd(g, elems, elem_size)
                   : pass == ConvPass::backward_data ? choose_data(g, elems, &gd)
                                                     : choose_filter(g, elems);
  switch (c.algo) {
    case Algo::winograd:
      return "winograd";
    case Algo::direct:
      return "direct";
    case Algo::shifted:
      return "shifted";
    case Algo::im2col:
      return "im2col";
    case Algo::gather:
      return "gather";
    case Algo::pointwise:
      return "pointwise";
    case Algo::depthwise:
      return "depthwise";
    case Algo::none:
      return "none";
  }
  return "?";
}

size_t conv2d_workspace_bytes(const ConvGeometry& g, size_t elem_size, size_t budget) {
  if (conv2d_algo(g) != ConvAlgo::general) return 0;
  const Taps tp = taps_of(g);
  const size_t row_bytes = static_cast<size_t>(tp.row(g)) * elem_size;
  if (row_bytes == 0) return 0;  // every tap is padding: no GEMM
  const size_t pixels = static_cast<size_t>(g.n * g.out_h * g.out_w);
  const size_t rows = std::clamp<size_t>(budget / row_bytes, 1, pixels);
  size_t bytes = rows * row_bytes;  // im2col tiles: the backward passes (and the forward pass otherwise)
  // Each pass below takes the largest of these it can use (a smaller workspace falls back to im2col / the gather).
  ConvGeometry gd;
  if (winograd_data_geom(g, &gd)) {  // the data gradient's Winograd blocks (at least one tile)
    const int64_t tb = std::max<int64_t>(1, wino_block_tiles(gd, static_cast<int64_t>(budget / elem_size)));
    bytes = std::max(bytes, static_cast<size_t>(wino_elems(gd, tb)) * elem_size);
  } else if (shifted_data_geom(g, &gd)) {  // the data gradient's flipped weights and shifted-GEMM bands
    const int64_t wf = flipped_weight_elems(g), elems = static_cast<int64_t>(budget / elem_size);
    const Shifted sh = shifted_of(gd, taps_of(gd));
    const int64_t bh = std::max<int64_t>(1, shifted_band_rows(gd, sh, elems - wf));
    bytes = std::max(bytes, static_cast<size_t>(wf + shifted_band_elems(gd, sh, bh)) * elem_size);
  }
  if (use_winograd(g, tp)) {  // the forward pass's Winograd blocks (at least one tile)
    const int64_t tb = std::max<int64_t>(1, wino_block_tiles(g, static_cast<int64_t>(budget / elem_size)));
    bytes = std::max(bytes, static_cast<size_t>(wino_elems(g, tb)) * elem_size);
  }
  if (elem_size == sizeof(float) && use_direct(g, tp)) {  // the direct kernel's bands and weights
    const int64_t wt = direct_weight_elems(g, tp), elems = static_cast<int64_t>(budget / elem_size);
    const Shifted sh = shifted_of(g, tp);
    const int64_t bh = std::max<int64_t>(1, shifted_band_rows(g, sh, elems - wt));
    bytes = std::max(bytes, static_cast<size_t>(wt + shifted_band_elems(g, sh, bh)) * elem_size);
  }
  if ((use_shifted(g, tp) && !use_winograd(g, tp)) || use_shifted_filter(g, tp)) {
    // The shifted GEMM's bands (at least one output row): the forward pass, the filter gradient.
    const Shifted sh = shifted_of(g, tp);
    const int64_t bh = std::max<int64_t>(1, shifted_band_rows(g, sh, static_cast<int64_t>(budget / elem_size)));
    bytes = std::max(bytes, static_cast<size_t>(shifted_band_elems(g, sh, bh)) * elem_size);
  }
  return bytes;
}

template <class T>
void conv2d_fwd(const ConvGeometry& g, const T* x, int64_t xs, const T* w, T* y, int64_t ys, bool accumulate, void* ws,
                size_t ws_bytes, ConvFwdPath path) {
  check_geom(g);
  const auto elems = static_cast<int64_t>(ws_bytes / sizeof(T));
  if (path == ConvFwdPath::automatic) {
    const Choice c = choose_fwd(g, elems, sizeof(T));
    if constexpr (std::is_same_v<T, float>) {
      if (c.algo == Algo::direct) {
        const Taps tp = taps_of(g);
        // The kept taps' weights as [tap][C][K] after the bands: wt[t][c][k] = w[k][r][s][c].
        T* wt = static_cast<T*>(ws) + (elems - direct_weight_elems(g, tp));
        const int64_t C = g.in_c, K = g.out_c, RSC = row_of(g);
        int64_t t = 0;
        for (int64_t i = 0; i < tp.nr; ++i)
          for (int64_t j = 0; j < tp.ns; ++j, ++t) {
            const int64_t off = ((tp.r0 + i) * g.kernel_w + tp.s0 + j) * C;
            for (int64_t c = 0; c < C; ++c)
              for (int64_t k = 0; k < K; ++k) wt[(t * C + c) * K + k] = w[k * RSC + off + c];
          }
        conv2d_fwd_shifted(g, tp, x, xs, w, y, ys, accumulate, static_cast<T*>(ws), c.blocks, wt);
        return;
      }
    }
    if (c.algo == Algo::winograd) {
      conv2d_fwd_winograd(g, x, xs, w, y, ys, accumulate, static_cast<T*>(ws), c.blocks);
      return;
    }
    if (c.algo == Algo::shifted) {
      conv2d_fwd_shifted(g, taps_of(g), x, xs, w, y, ys, accumulate, static_cast<T*>(ws), c.blocks);
      return;
    }
  } else if (path == ConvFwdPath::winograd) {
    CS_CHECK(winograd_allowed(g, taps_of(g)), "conv2d forward: Winograd F(2x2,3x3) needs a 3x3 kernel, stride 1, ",
             "dilation 1, one group and every tap reaching the image");
    const int64_t tb = wino_block_tiles(g, elems);
    CS_CHECK(tb > 0, "conv2d forward: the workspace (", ws_bytes,
             " bytes) is smaller than one Winograd block; use conv2d_workspace_bytes");
    conv2d_fwd_winograd(g, x, xs, w, y, ys, accumulate, static_cast<T*>(ws), tb);
    return;
  } else if (path == ConvFwdPath::shifted) {
    const Taps tp = taps_of(g);
    CS_CHECK(shifted_allowed(g, tp), "conv2d forward: the shifted GEMM needs stride 1, one group, the general path ",
             "and a tap that reaches the image");
    const int64_t bh = shifted_band_rows(g, shifted_of(g, tp), elems);
    CS_CHECK(bh > 0, "conv2d forward: the workspace (", ws_bytes,
             " bytes) is smaller than one band of the shifted GEMM; use conv2d_workspace_bytes");
    conv2d_fwd_shifted(g, tp, x, xs, w, y, ys, accumulate, static_cast<T*>(ws), bh);
    return;
  }
  // im2col (forced, or the automatic choice), 1x1 and depthwise.
  const int64_t P = g.n * g.out_h * g.out_w, Cg = cg_of(g), Kg = kg_of(g), row = row_of(g);
  const T beta = accumulate ? T(1) : T(0);
  switch (conv2d_algo(g)) {
    case ConvAlgo::pointwise:
      for (int64_t grp = 0; grp < g.groups; ++grp)  // y_g (P x Kg) = x_g (P x Cg) * W_g^T
        gemm<T>(false, true, P, Kg, Cg, T(1), x + grp * Cg, xs, w + grp * Kg * Cg, Cg, beta, y + grp * Kg, ys);
      return;
    case ConvAlgo::depthwise: {
      const int64_t C = g.in_c, OHW = g.out_h * g.out_w;
      const std::vector<T> wt = depthwise_weights_rsc(g, w);
#pragma omp parallel for schedule(static) if (P * C * g.kernel_h * g.kernel_w >= kParallelMin)
      for (int64_t p = 0; p < P; ++p) {
        const int64_t n = p / OHW, oh = (p % OHW) / g.out_w, ow = p % g.out_w;
        T* yp = y + p * ys;
        if (!accumulate) std::fill(yp, yp + C, T(0));
        for (int64_t r = 0; r < g.kernel_h; ++r) {
          const int64_t ih = oh * g.stride_h - g.pad_top + r * g.dilation_h;
          if (ih < 0 || ih >= g.in_h) continue;
          for (int64_t s = 0; s < g.kernel_w; ++s) {
            const int64_t iw = ow * g.stride_w - g.pad_left + s * g.dilation_w;
            if (iw < 0 || iw >= g.in_w) continue;
            const T* xp = x + ((n * g.in_h + ih) * g.in_w + iw) * xs;
            const T* wp = wt.data() + (r * g.kernel_w + s) * C;
            for (int64_t c = 0; c < C; ++c) yp[c] += xp[c] * wp[c];
          }
        }
      }
      return;
    }
    case ConvAlgo::general: {
      const Taps tp = taps_of(g);
      if (tp.nr == 0) {  // every tap is padding: y = 0
        if (!accumulate) zero_pixels(P, g.out_c, y, ys);
        return;
      }
      const int64_t tile = tile_pixels(g, tp, sizeof(T), ws_bytes, "forward");
      T* col = static_cast<T*>(ws);
      // Bands of output rows whose kept kernel rows reach the image: where some do not (dilated convs, whose outer
      // taps fall in the padding for the first and last rows), im2col and the GEMMs leave them out for that band
      // instead of multiplying zeros (DeepCAM's and DeepLabv3+'s ASPP: rate 18 on a 48x72 map keeps 2.25 of 3
      // kernel rows on average). Pixels of a band are contiguous within an image.
      std::vector<RowBand> bands = row_bands(g, tp);
      if (bands.size() == 1 && bands[0].taps.nr == tp.nr) bands = {RowBand{0, g.out_h, tp}};
      const bool whole = bands.size() == 1;  // one band covering every row: tile across images as before
      for (int64_t n = 0; n < (whole ? 1 : g.n); ++n)
        for (const RowBand& band : bands) {
          const int64_t b0 = whole ? 0 : (n * g.out_h + band.oh0) * g.out_w;
          const int64_t b1 = whole ? P : (n * g.out_h + band.oh1) * g.out_w;
          if (band.taps.nr == 0) {  // no kernel row reaches these output rows: zeros
            if (!accumulate) zero_pixels(b1 - b0, g.out_c, y + b0 * ys, ys);
            continue;
          }
          const Taps& bt = band.taps;
          const int64_t crow = bt.row(g);
          const std::vector<Piece> pieces = pieces_of(g, bt);
          for (int64_t p0 = b0; p0 < b1; p0 += tile) {
            const int64_t t = std::min(tile, b1 - p0);
            for (int64_t grp = 0; grp < g.groups; ++grp) {
              im2col(g, bt, x, xs, p0, t, grp, col);
              // y_tile_g (t x Kg) = col (t x crow) * W_g^T, piece by piece (one piece unless taps were dropped)
              for (size_t i = 0; i < pieces.size(); ++i)
                gemm<T>(false, true, t, Kg, pieces[i].len, T(1), col + pieces[i].col, crow,
                        w + grp * Kg * row + pieces[i].w, row, i == 0 ? beta : T(1), y + p0 * ys + grp * Kg, ys);
            }
          }
        }
      return;
    }
  }
}

template <class T>
void conv2d_bwd_data(const ConvGeometry& g, const T* dy, int64_t dys, const T* w, T* dx, int64_t dxs, bool accumulate,
                     void* ws, size_t ws_bytes) {
  check_geom(g);
  ConvGeometry gd;
  const Choice c = choose_data(g, static_cast<int64_t>(ws_bytes / sizeof(T)), &gd);
  if (c.algo == Algo::winograd) {
    conv2d_fwd_winograd(gd, dy, dys, w, dx, dxs, accumulate, static_cast<T*>(ws), c.blocks, /*flipped=*/true);
    return;
  }
  if (c.algo == Algo::shifted) {
    T* wflip = static_cast<T*>(ws);
    const int64_t R = g.kernel_h, S = g.kernel_w, C = g.in_c, K = g.out_c, wf = flipped_weight_elems(g);
#pragma omp parallel for schedule(static) if (wf >= kParallelMin)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < R; ++r)
        for (int64_t q = 0; q < S; ++q)
          for (int64_t k = 0; k < K; ++k)
            wflip[((c * R + r) * S + q) * K + k] = w[((k * R + (R - 1 - r)) * S + (S - 1 - q)) * C + c];
    conv2d_fwd_shifted(gd, taps_of(gd), dy, dys, wflip, dx, dxs, accumulate, wflip + wf, c.blocks);
    return;
  }
  const int64_t P = g.n * g.out_h * g.out_w, Cg = cg_of(g), Kg = kg_of(g), row = row_of(g);
  switch (conv2d_algo(g)) {
    case ConvAlgo::pointwise: {
      const T beta = accumulate ? T(1) : T(0);
      for (int64_t grp = 0; grp < g.groups; ++grp)  // dx_g (P x Cg) = dy_g (P x Kg) * W_g
        gemm<T>(false, false, P, Cg, Kg, T(1), dy + grp * Kg, dys, w + grp * Kg * Cg, Cg, beta, dx + grp * Cg, dxs);
      return;
    }
    case ConvAlgo::depthwise: {
      const int64_t C = g.in_c, Pin = g.n * g.in_h * g.in_w, IHW = g.in_h * g.in_w;
      const std::vector<T> wt = depthwise_weights_rsc(g, w);
#pragma omp parallel for schedule(static) if (Pin * C * g.kernel_h * g.kernel_w >= kParallelMin)
      for (int64_t q = 0; q < Pin; ++q) {  // gather: each input pixel sums the outputs its taps feed
        const int64_t n = q / IHW, ih = (q % IHW) / g.in_w, iw = q % g.in_w;
        T* d = dx + q * dxs;
        if (!accumulate) std::fill(d, d + C, T(0));
        for (int64_t r = 0; r < g.kernel_h; ++r) {
          const int64_t th = ih + g.pad_top - r * g.dilation_h;
          if (th < 0 || th % g.stride_h != 0 || th / g.stride_h >= g.out_h) continue;
          for (int64_t s = 0; s < g.kernel_w; ++s) {
            const int64_t tw = iw + g.pad_left - s * g.dilation_w;
            if (tw < 0 || tw % g.stride_w != 0 || tw / g.stride_w >= g.out_w) continue;
            const T* dyp = dy + ((n * g.out_h + th / g.stride_h) * g.out_w + tw / g.stride_w) * dys;
            const T* wp = wt.data() + (r * g.kernel_w + s) * C;
            for (int64_t c = 0; c < C; ++c) d[c] += dyp[c] * wp[c];
          }
        }
      }
      return;
    }
    case ConvAlgo::general: {
      const Taps tp = taps_of(g);
      if (!accumulate) zero_pixels(g.n * g.in_h * g.in_w, g.in_c, dx, dxs);
      if (tp.nr == 0) return;  // every tap is padding: no input pixel is used
      const int64_t tile = tile_pixels(g, tp, sizeof(T), ws_bytes, "backward data"), crow = tp.row(g);
      const std::vector<Piece> pieces = pieces_of(g, tp);
      T* col = static_cast<T*>(ws);
      for (int64_t p0 = 0; p0 < P; p0 += tile) {
        const int64_t t = std::min(tile, P - p0);
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          // dcol (t x crow) = dy_tile_g (t x Kg) * W_g (Kg x crow), piece by piece
          for (const Piece& pc : pieces)
            gemm<T>(false, false, t, pc.len, Kg, T(1), dy + p0 * dys + grp * Kg, dys, w + grp * Kg * row + pc.w, row,
                    T(0), col + pc.col, crow);
          col2im_gather(g, tp, col, p0, t, grp, dx, dxs);
        }
      }
      return;
    }
  }
}

template <class T>
void conv2d_bwd_filter(const ConvGeometry& g, const T* x, int64_t xs, const T* dy, int64_t dys, T* dw, bool accumulate,
                       void* ws, size_t ws_bytes) {
  check_geom(g);
  const int64_t P = g.n * g.out_h * g.out_w, Cg = cg_of(g), Kg = kg_of(g), row = row_of(g);
  switch (conv2d_algo(g)) {
    case ConvAlgo::pointwise: {
      const T beta = accumulate ? T(1) : T(0);
      for (int64_t grp = 0; grp < g.groups; ++grp)  // dW_g (Kg x Cg) = dy_g^T (Kg x P) * x_g (P x Cg)
        gemm<T>(true, false, Kg, Cg, P, T(1), dy + grp * Kg, dys, x + grp * Cg, xs, beta, dw + grp * Kg * Cg, Cg);
      return;
    }
    case ConvAlgo::depthwise: {
      // Fixed-order reduction: the pixel blocks depend on P only (not on the thread count); each block sums into
      // its own partial, and the partials are added in block order.
      const int64_t C = g.in_c, RS = g.kernel_h * g.kernel_w, OHW = g.out_h * g.out_w;
      const int64_t nblocks = std::min<int64_t>(64, (P + 1023) / 1024), block = (P + nblocks - 1) / nblocks;
      std::vector<T> partial(static_cast<size_t>(nblocks * RS * C), T(0));
#pragma omp parallel for schedule(static) if (P * C * RS >= kParallelMin)
      for (int64_t b = 0; b < nblocks; ++b) {
        T* acc = partial.data() + b * RS * C;
        for (int64_t p = b * block; p < std::min(P, (b + 1) * block); ++p) {
          const int64_t n = p / OHW, oh = (p % OHW) / g.out_w, ow = p % g.out_w;
          const T* dyp = dy + p * dys;
          for (int64_t r = 0; r < g.kernel_h; ++r) {
            const int64_t ih = oh * g.stride_h - g.pad_top + r * g.dilation_h;
            if (ih < 0 || ih >= g.in_h) continue;
            for (int64_t s = 0; s < g.kernel_w; ++s) {
              const int64_t iw = ow * g.stride_w - g.pad_left + s * g.dilation_w;
              if (iw < 0 || iw >= g.in_w) continue;
              const T* xp = x + ((n * g.in_h + ih) * g.in_w + iw) * xs;
              T* a = acc + (r * g.kernel_w + s) * C;
              for (int64_t c = 0; c < C; ++c) a[c] += dyp[c] * xp[c];
            }
          }
        }
      }
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t rs = 0; rs < RS; ++rs) {
          T sum = T(0);
          for (int64_t b = 0; b < nblocks; ++b) sum += partial[static_cast<size_t>((b * RS + rs) * C + c)];
          T& d = dw[c * RS + rs];
          d = accumulate ? d + sum : sum;
        }
      }
      return;
    }
    case ConvAlgo::general: {
      const Taps tp = taps_of(g);
      const Choice c = choose_filter(g, static_cast<int64_t>(ws_bytes / sizeof(T)));
      if (c.algo == Algo::shifted) {
        conv2d_bwd_filter_shifted(g, tp, x, xs, dy, dys, dw, accumulate, static_cast<T*>(ws), c.blocks);
        return;
      }
      // Dropped taps have a zero gradient: in overwrite mode zero the whole filter first, then accumulate.
      if (!accumulate && !tp.full(g)) std::fill(dw, dw + g.out_c * row, T(0));
      const bool acc = accumulate || !tp.full(g);
      if (tp.nr == 0) return;
      const int64_t tile = tile_pixels(g, tp, sizeof(T), ws_bytes, "backward filter"), crow = tp.row(g);
      const std::vector<Piece> pieces = pieces_of(g, tp);
      T* col = static_cast<T*>(ws);
      for (int64_t p0 = 0; p0 < P; p0 += tile) {
        const int64_t t = std::min(tile, P - p0);
        const T beta = (p0 == 0 && !acc) ? T(0) : T(1);
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          im2col(g, tp, x, xs, p0, t, grp, col);
          // dW_g (Kg x crow) (+)= dy_tile_g^T (Kg x t) * col (t x crow), piece by piece
          for (const Piece& pc : pieces)
            gemm<T>(true, false, Kg, pc.len, t, T(1), dy + p0 * dys + grp * Kg, dys, col + pc.col, crow, beta,
                    dw + grp * Kg * row + pc.w, row);
        }
      }
      return;
    }
  }
}

#define CS_INSTANTIATE(T)                                                                                           \
  template void conv2d_fwd<T>(const ConvGeometry&, const T*, int64_t, const T*, T*, int64_t, bool, void*, size_t,       \
                              ConvFwdPath);                                                                         \
  template void conv2d_bwd_data<T>(const ConvGeometry&, const T*, int64_t, const T*, T*, int64_t, bool, void*, size_t); \
  template void conv2d_bwd_filter<T>(const ConvGeometry&, const T*, int64_t, const T*, int64_t, T*, bool, void*, size_t);
CS_INSTANTIATE(float)
CS_INSTANTIATE(double)
#undef CS_INSTANTIATE

}  // namespace climseg::cpu
