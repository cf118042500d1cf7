#include "kernels/cpu/pool.h"

#include <cstddef>
#include <vector>

namespace climseg::cpu {

namespace {
// Below this many elements a parallel region costs more than it saves (as kernels/cpu/eltwise.cpp).
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

template <class T>
void maxpool_fwd(const Pool2dGeom& g, const T* x, int64_t xs, T* y, int64_t ys, uint8_t* argmax) {
  const int64_t P = g.n * g.oh * g.ow, C = g.c;
#pragma omp parallel for schedule(static) if (P * C * g.kh * g.kw >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const int64_t ow = p % g.ow, oh = (p / g.ow) % g.oh, n = p / (g.ow * g.oh);
    T* yp = y + p * ys;
    uint8_t* ap = argmax ? argmax + p * C : nullptr;
    for (int64_t c = 0; c < C; ++c) {
      T best = T(0);
      int best_k = -1;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = oh * g.sh - g.pt + i;
        if (ih < 0 || ih >= g.h) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t iw = ow * g.sw - g.pl + j;
          if (iw < 0 || iw >= g.w) continue;
          const T v = x[((n * g.h + ih) * g.w + iw) * xs + c];
          // Strict >: the first maximum in scan order wins ties. A NaN wins over numbers and the first NaN stays
          // (v != v), so NaNs propagate as in PyTorch instead of vanishing under loss scaling.
          if (best_k < 0 || v > best || (v != v && best == best)) {
            best = v;
            best_k = static_cast<int>(i * g.kw + j);
          }
        }
      }
      // The layer guarantees every window holds at least one image element (padding <= kernel / 2, or SAME).
      yp[c] = best;
      if (ap) ap[c] = static_cast<uint8_t>(best_k);
    }
  }
}

template <class T>
void maxpool_bwd(const Pool2dGeom& g, const uint8_t* argmax, const T* dy, int64_t dys, T* dx, int64_t dxs,
                 bool accumulate) {
  const int64_t P = g.n * g.h * g.w, C = g.c;
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const int64_t iw = p % g.w, ih = (p / g.w) % g.h, n = p / (g.w * g.h);
    const int64_t oh0 = pool_first_out(ih, g.kh, g.sh, g.pt), oh1 = pool_last_out(ih, g.sh, g.pt, g.oh);
    const int64_t ow0 = pool_first_out(iw, g.kw, g.sw, g.pl), ow1 = pool_last_out(iw, g.sw, g.pl, g.ow);
    T* dxp = dx + p * dxs;
    for (int64_t c = 0; c < C; ++c) {
      T s = T(0);
      for (int64_t oh = oh0; oh <= oh1; ++oh) {
        const int64_t ki = ih - (oh * g.sh - g.pt);
        for (int64_t ow = ow0; ow <= ow1; ++ow) {
          const int64_t q = (n * g.oh + oh) * g.ow + ow;
          const int64_t k = ki * g.kw + (iw - (ow * g.sw - g.pl));
          if (argmax[q * C + c] == k) s += dy[q * dys + c];
        }
      }
      dxp[c] = accumulate ? dxp[c] + s : s;
    }
  }
}

template <class T>
void avgpool_fwd(const Pool2dGeom& g, bool count_include_pad, const T* x, int64_t xs, T* y, int64_t ys) {
  const int64_t P = g.n * g.oh * g.ow, C = g.c;
#pragma omp parallel for schedule(static) if (P * C * g.kh * g.kw >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const int64_t ow = p % g.ow, oh = (p / g.ow) % g.oh, n = p / (g.ow * g.oh);
    const int64_t div = count_include_pad ? g.kh * g.kw
                                          : pool_valid_count(oh, g.kh, g.sh, g.pt, g.h) *
                                                pool_valid_count(ow, g.kw, g.sw, g.pl, g.w);
    T* yp = y + p * ys;
    for (int64_t c = 0; c < C; ++c) {
      T s = T(0);
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = oh * g.sh - g.pt + i;
        if (ih < 0 || ih >= g.h) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t iw = ow * g.sw - g.pl + j;
          if (iw < 0 || iw >= g.w) continue;
          s += x[((n * g.h + ih) * g.w + iw) * xs + c];
        }
      }
      yp[c] = s / static_cast<T>(div);
    }
  }
}

template <class T>
void avgpool_bwd(const Pool2dGeom& g, bool count_include_pad, const T* dy, int64_t dys, T* dx, int64_t dxs,
                 bool accumulate) {
  const int64_t P = g.n * g.h * g.w, C = g.c;
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const int64_t iw = p % g.w, ih = (p / g.w) % g.h, n = p / (g.w * g.h);
    const int64_t oh0 = pool_first_out(ih, g.kh, g.sh, g.pt), oh1 = pool_last_out(ih, g.sh, g.pt, g.oh);
    const int64_t ow0 = pool_first_out(iw, g.kw, g.sw, g.pl), ow1 = pool_last_out(iw, g.sw, g.pl, g.ow);
    T* dxp = dx + p * dxs;
    for (int64_t c = 0; c < C; ++c) {
      T s = T(0);
      for (int64_t oh = oh0; oh <= oh1; ++oh) {
        for (int64_t ow = ow0; ow <= ow1; ++ow) {
          const int64_t div = count_include_pad ? g.kh * g.kw
                                                : pool_valid_count(oh, g.kh, g.sh, g.pt, g.h) *
                                                      pool_valid_count(ow, g.kw, g.sw, g.pl, g.w);
          s += dy[((n * g.oh + oh) * g.ow + ow) * dys + c] / static_cast<T>(div);
        }
      }
      dxp[c] = accumulate ? dxp[c] + s : s;
    }
  }
}

template <class T>
void global_avgpool_fwd(int64_t n, int64_t hw, int64_t c, const T* x, int64_t xs, T* y, int64_t ys) {
  // Pass 1, parallel over (image, chunk): lane sums, then the lanes in order -> partial (n, chunks, c).
  const int64_t chunk = global_avgpool_chunk(hw), chunks = global_avgpool_chunks(hw);
  constexpr int64_t L = kGlobalPoolLanes;
  std::vector<T> partial(static_cast<std::size_t>(n * chunks * c));
#pragma omp parallel if (n * hw * c >= kParallelMin)
  {
    std::vector<T> lanes(static_cast<std::size_t>(L * c));
#pragma omp for schedule(static)
    for (int64_t bj = 0; bj < n * chunks; ++bj) {
      const int64_t b = bj / chunks, j = bj - b * chunks;
      const int64_t p0 = j * chunk, p1 = p0 + chunk < hw ? p0 + chunk : hw;
      for (T& v : lanes) v = T(0);
      const T* xb = x + b * hw * xs;
      for (int64_t p = p0; p < p1; ++p) {
        T* lane = lanes.data() + ((p - p0) % L) * c;
        const T* xp = xb + p * xs;
        for (int64_t k = 0; k < c; ++k) lane[k] += xp[k];
      }
      T* out = partial.data() + bj * c;
      for (int64_t k = 0; k < c; ++k) {
        T s = T(0);
        for (int64_t l = 0; l < L; ++l) s += lanes[static_cast<std::size_t>(l * c + k)];
        out[k] = s;
      }
    }
  }
  // Pass 2: the chunks of each image in order.
  for (int64_t b = 0; b < n; ++b)
    for (int64_t k = 0; k < c; ++k) {
      T s = T(0);
      for (int64_t j = 0; j < chunks; ++j) s += partial[static_cast<std::size_t>((b * chunks + j) * c + k)];
      y[b * ys + k] = s / static_cast<T>(hw);
    }
}

template <class T>
void global_avgpool_bwd(int64_t n, int64_t hw, int64_t c, const T* dy, int64_t dys, T* dx, int64_t dxs,
                        bool accumulate) {
  const int64_t P = n * hw;
#pragma omp parallel for schedule(static) if (P * c >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const T* g = dy + (p / hw) * dys;
    T* d = dx + p * dxs;
    for (int64_t k = 0; k < c; ++k) {
      const T v = g[k] / static_cast<T>(hw);
      d[k] = accumulate ? d[k] + v : v;
    }
  }
}

#define CS_INSTANTIATE(T)                                                                                     \
  template void maxpool_fwd<T>(const Pool2dGeom&, const T*, int64_t, T*, int64_t, uint8_t*);                 \
  template void maxpool_bwd<T>(const Pool2dGeom&, const uint8_t*, const T*, int64_t, T*, int64_t, bool);     \
  template void avgpool_fwd<T>(const Pool2dGeom&, bool, const T*, int64_t, T*, int64_t);                     \
  template void avgpool_bwd<T>(const Pool2dGeom&, bool, const T*, int64_t, T*, int64_t, bool);               \
  template void global_avgpool_fwd<T>(int64_t, int64_t, int64_t, const T*, int64_t, T*, int64_t);            \
  template void global_avgpool_bwd<T>(int64_t, int64_t, int64_t, const T*, int64_t, T*, int64_t, bool);
CS_INSTANTIATE(float)
CS_INSTANTIATE(double)
#undef CS_INSTANTIATE

}  // namespace climseg::cpu
