#include "kernels/cpu/conv.h"

#include <algorithm>
#include <vector>

#include "engine/check.h"
#include "kernels/cpu/gemm.h"

namespace climseg::cpu {

namespace {

// Below this many elements a parallel region costs more than it saves (as kernels/cpu/eltwise.cpp).
constexpr int64_t kParallelMin = 1 << 15;

int64_t cg_of(const ConvGeom& g) { return g.in_c / g.groups; }
int64_t kg_of(const ConvGeom& g) { return g.out_c / g.groups; }
int64_t row_of(const ConvGeom& g) { return g.kernel_h * g.kernel_w * cg_of(g); }  // one im2col row, elements

void check_geom(const ConvGeom& g) {
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

// col (T, R*S*Cg), row i = patch of output pixel p0 + i for group grp, [r][s][c], zeros where the tap is padding.
template <class T>
void im2col(const ConvGeom& g, const T* x, int64_t xs, int64_t p0, int64_t tile, int64_t grp, T* col) {
  const int64_t Cg = cg_of(g), row = row_of(g), OHW = g.out_h * g.out_w;
#pragma omp parallel for schedule(static) if (tile * row >= kParallelMin)
  for (int64_t i = 0; i < tile; ++i) {
    const int64_t p = p0 + i, n = p / OHW, oh = (p % OHW) / g.out_w, ow = p % g.out_w;
    const T* xn = x + n * g.in_h * g.in_w * xs + grp * Cg;
    T* dst = col + i * row;
    for (int64_t r = 0; r < g.kernel_h; ++r) {
      const int64_t ih = oh * g.stride_h - g.pad_top + r * g.dilation_h;
      for (int64_t s = 0; s < g.kernel_w; ++s) {
        const int64_t iw = ow * g.stride_w - g.pad_left + s * g.dilation_w;
        T* d = dst + (r * g.kernel_w + s) * Cg;
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
void col2im_gather(const ConvGeom& g, const T* col, int64_t p0, int64_t tile, int64_t grp, T* dx, int64_t dxs) {
  const int64_t Cg = cg_of(g), row = row_of(g), OHW = g.out_h * g.out_w, p1 = p0 + tile;
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
      for (int64_t r = g.kernel_h - 1; r >= 0; --r) {
        const int64_t th = ih + g.pad_top - r * g.dilation_h;
        if (th < 0 || th % g.stride_h != 0) continue;
        const int64_t oh = th / g.stride_h;
        if (oh >= g.out_h) continue;
        for (int64_t s = g.kernel_w - 1; s >= 0; --s) {
          const int64_t tw = iw + g.pad_left - s * g.dilation_w;
          if (tw < 0 || tw % g.stride_w != 0) continue;
          const int64_t ow = tw / g.stride_w;
          if (ow >= g.out_w) continue;
          const int64_t p = n * OHW + oh * g.out_w + ow;
          if (p < p0 || p >= p1) continue;
          const T* src = col + (p - p0) * row + (r * g.kernel_w + s) * Cg;
          for (int64_t c = 0; c < Cg; ++c) d[c] += src[c];
        }
      }
    }
  }
}

int64_t tile_pixels(const ConvGeom& g, size_t elem_size, size_t ws_bytes, const char* pass) {
  const int64_t row_bytes = row_of(g) * static_cast<int64_t>(elem_size);
  const int64_t tile = static_cast<int64_t>(ws_bytes) / row_bytes;
  CS_CHECK(tile >= 1, "conv2d ", pass, ": the workspace (", ws_bytes, " bytes) is smaller than one im2col row (",
           row_bytes, " bytes); use conv2d_workspace_bytes");
  return std::min<int64_t>(tile, g.n * g.out_h * g.out_w);
}

// Weights (C, R, S, 1) of a depthwise conv as (R*S, C), so the channel loops are unit-stride.
template <class T>
std::vector<T> depthwise_weights_rsc(const ConvGeom& g, const T* w) {
  const int64_t RS = g.kernel_h * g.kernel_w, C = g.in_c;
  std::vector<T> wt(static_cast<size_t>(RS * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t rs = 0; rs < RS; ++rs) wt[static_cast<size_t>(rs * C + c)] = w[c * RS + rs];
  return wt;
}

}  // namespace

ConvAlgo conv2d_algo(const ConvGeom& g) {
  // Depthwise first: a depthwise 1x1 conv as per-group GEMMs would be C products of (P x 1) by (1 x 1).
  if (g.groups == g.in_c && g.groups == g.out_c) return ConvAlgo::depthwise;
  if (g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_top == 0 &&
      g.pad_left == 0 && g.in_h == g.out_h && g.in_w == g.out_w)
    return ConvAlgo::pointwise;
  return ConvAlgo::general;
}

size_t conv2d_workspace_bytes(const ConvGeom& g, size_t elem_size, size_t budget) {
  if (conv2d_algo(g) != ConvAlgo::general) return 0;
  const size_t row_bytes = static_cast<size_t>(row_of(g)) * elem_size;
  const size_t pixels = static_cast<size_t>(g.n * g.out_h * g.out_w);
  const size_t rows = std::clamp<size_t>(budget / row_bytes, 1, pixels);
  return rows * row_bytes;
}

template <class T>
void conv2d_fwd(const ConvGeom& g, const T* x, int64_t xs, const T* w, T* y, int64_t ys, bool accumulate, void* ws,
                size_t ws_bytes) {
  check_geom(g);
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
      const int64_t tile = tile_pixels(g, sizeof(T), ws_bytes, "forward");
      T* col = static_cast<T*>(ws);
      for (int64_t p0 = 0; p0 < P; p0 += tile) {
        const int64_t t = std::min(tile, P - p0);
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          im2col(g, x, xs, p0, t, grp, col);
          // y_tile_g (t x Kg) = col (t x R*S*Cg) * W_g^T
          gemm<T>(false, true, t, Kg, row, T(1), col, row, w + grp * Kg * row, row, beta, y + p0 * ys + grp * Kg,
                  ys);
        }
      }
      return;
    }
  }
}

template <class T>
void conv2d_bwd_data(const ConvGeom& g, const T* dy, int64_t dys, const T* w, T* dx, int64_t dxs, bool accumulate,
                     void* ws, size_t ws_bytes) {
  check_geom(g);
  const int64_t P = g.n * g.out_h * g.out_w, Cg = cg_of(g), Kg = kg_of(g), row = row_of(g);
  switch (conv2d_algo(g)) {
    case ConvAlgo::pointwise: {
      const T beta = accumulate ? T(1) : T(0);
      for (int64_t grp = 0; grp < g.groups; ++grp)  // dx_g (P x Cg) = dy_g (P x Kg) * W_g
        gemm<T>(false, false, P, Cg, Kg, T(1), dy + grp * Kg, dys, w + grp * Kg * Cg, Cg, beta, dx + grp * Cg,
                dxs);
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
      const int64_t tile = tile_pixels(g, sizeof(T), ws_bytes, "backward data");
      T* col = static_cast<T*>(ws);
      if (!accumulate) zero_pixels(g.n * g.in_h * g.in_w, g.in_c, dx, dxs);
      for (int64_t p0 = 0; p0 < P; p0 += tile) {
        const int64_t t = std::min(tile, P - p0);
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          // dcol (t x R*S*Cg) = dy_tile_g (t x Kg) * W_g (Kg x R*S*Cg)
          gemm<T>(false, false, t, row, Kg, T(1), dy + p0 * dys + grp * Kg, dys, w + grp * Kg * row, row, T(0),
                  col, row);
          col2im_gather(g, col, p0, t, grp, dx, dxs);
        }
      }
      return;
    }
  }
}

template <class T>
void conv2d_bwd_filter(const ConvGeom& g, const T* x, int64_t xs, const T* dy, int64_t dys, T* dw, bool accumulate,
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
      const int64_t tile = tile_pixels(g, sizeof(T), ws_bytes, "backward filter");
      T* col = static_cast<T*>(ws);
      for (int64_t p0 = 0; p0 < P; p0 += tile) {
        const int64_t t = std::min(tile, P - p0);
        const T beta = (p0 == 0 && !accumulate) ? T(0) : T(1);
        for (int64_t grp = 0; grp < g.groups; ++grp) {
          im2col(g, x, xs, p0, t, grp, col);
          // dW_g (Kg x R*S*Cg) (+)= dy_tile_g^T (Kg x t) * col (t x R*S*Cg)
          gemm<T>(true, false, Kg, row, t, T(1), dy + p0 * dys + grp * Kg, dys, col, row, beta,
                  dw + grp * Kg * row, row);
        }
      }
      return;
    }
  }
}

#define CS_INSTANTIATE(T)                                                                                      \
  template void conv2d_fwd<T>(const ConvGeom&, const T*, int64_t, const T*, T*, int64_t, bool, void*, size_t); \
  template void conv2d_bwd_data<T>(const ConvGeom&, const T*, int64_t, const T*, T*, int64_t, bool, void*,     \
                                   size_t);                                                                    \
  template void conv2d_bwd_filter<T>(const ConvGeom&, const T*, int64_t, const T*, int64_t, T*, bool, void*,   \
                                     size_t);
CS_INSTANTIATE(float)
CS_INSTANTIATE(double)
#undef CS_INSTANTIATE

}  // namespace climseg::cpu
