#include "kernels/cpu/resize.h"

#include <cstddef>
#include <vector>

namespace climseg::cpu {

namespace {
// Below this many elements a parallel region costs more than it saves (as kernels/cpu/eltwise.cpp).
constexpr int64_t kParallelMin = 1 << 15;

std::vector<ResizeCoord> coords(int64_t in, int64_t out, ResizeMode mode) {
  std::vector<ResizeCoord> r(static_cast<std::size_t>(out));
  for (int64_t d = 0; d < out; ++d) r[static_cast<std::size_t>(d)] = resize_coord(d, in, out, mode);
  return r;
}
}  // namespace

template <class T>
void resize_fwd(const ResizeGeom& g, const T* x, int64_t xs, T* y, int64_t ys) {
  const std::vector<ResizeCoord> ch = coords(g.h, g.oh, g.mode), cw = coords(g.w, g.ow, g.mode);
  const int64_t P = g.n * g.oh * g.ow, C = g.c;
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const int64_t dw = p % g.ow, dh = (p / g.ow) % g.oh, n = p / (g.ow * g.oh);
    const ResizeCoord& rh = ch[static_cast<std::size_t>(dh)];
    const ResizeCoord& rw = cw[static_cast<std::size_t>(dw)];
    const T h1l = static_cast<T>(rh.lambda), h0l = static_cast<T>(1.0 - rh.lambda);
    const T w1l = static_cast<T>(rw.lambda), w0l = static_cast<T>(1.0 - rw.lambda);
    const T* x00 = x + ((n * g.h + rh.i0) * g.w + rw.i0) * xs;
    const T* x01 = x + ((n * g.h + rh.i0) * g.w + rw.i1) * xs;
    const T* x10 = x + ((n * g.h + rh.i1) * g.w + rw.i0) * xs;
    const T* x11 = x + ((n * g.h + rh.i1) * g.w + rw.i1) * xs;
    T* yp = y + p * ys;
    for (int64_t c = 0; c < C; ++c)
      yp[c] = h0l * (w0l * x00[c] + w1l * x01[c]) + h1l * (w0l * x10[c] + w1l * x11[c]);
  }
}

template <class T>
void resize_bwd(const ResizeGeom& g, const T* dy, int64_t dys, T* dx, int64_t dxs, bool accumulate) {
  const std::vector<ResizeCoord> ch = coords(g.h, g.oh, g.mode), cw = coords(g.w, g.ow, g.mode);
  // first_h[v] = first output row with i0 >= v - 1, for v in [0, H + 1]: rows sampling ih are
  // [first_h[ih], first_h[ih + 2]).
  std::vector<int64_t> first_h(static_cast<std::size_t>(g.h + 2)), first_w(static_cast<std::size_t>(g.w + 2));
  for (int64_t v = 0; v < g.h + 2; ++v)
    first_h[static_cast<std::size_t>(v)] = resize_first_out(v - 1, g.h, g.oh, g.mode);
  for (int64_t v = 0; v < g.w + 2; ++v)
    first_w[static_cast<std::size_t>(v)] = resize_first_out(v - 1, g.w, g.ow, g.mode);
  const int64_t P = g.n * g.h * g.w, C = g.c;
#pragma omp parallel if (P * C >= kParallelMin)
  {
    std::vector<T> acc(static_cast<std::size_t>(C));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p) {
      const int64_t iw = p % g.w, ih = (p / g.w) % g.h, n = p / (g.w * g.h);
      const int64_t dh0 = first_h[static_cast<std::size_t>(ih)], dh1 = first_h[static_cast<std::size_t>(ih + 2)];
      const int64_t dw0 = first_w[static_cast<std::size_t>(iw)], dw1 = first_w[static_cast<std::size_t>(iw + 2)];
      for (int64_t c = 0; c < C; ++c) acc[static_cast<std::size_t>(c)] = T(0);
      for (int64_t dh = dh0; dh < dh1; ++dh) {
        const T wh = static_cast<T>(resize_weight(ch[static_cast<std::size_t>(dh)], ih));
        for (int64_t dw = dw0; dw < dw1; ++dw) {
          const T w = wh * static_cast<T>(resize_weight(cw[static_cast<std::size_t>(dw)], iw));
          const T* g0 = dy + ((n * g.oh + dh) * g.ow + dw) * dys;
          for (int64_t c = 0; c < C; ++c) acc[static_cast<std::size_t>(c)] += w * g0[c];
        }
      }
      T* dxp = dx + p * dxs;
      for (int64_t c = 0; c < C; ++c)
        dxp[c] = accumulate ? dxp[c] + acc[static_cast<std::size_t>(c)] : acc[static_cast<std::size_t>(c)];
    }
  }
}

template <class T>
void resize_bwd_scatter(const ResizeGeom& g, const T* dy, int64_t dys, T* dx, int64_t dxs) {
  for (int64_t p = 0; p < g.n * g.h * g.w; ++p)
    for (int64_t c = 0; c < g.c; ++c) dx[p * dxs + c] = T(0);
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t dh = 0; dh < g.oh; ++dh) {
      const ResizeCoord rh = resize_coord(dh, g.h, g.oh, g.mode);
      for (int64_t dw = 0; dw < g.ow; ++dw) {
        const ResizeCoord rw = resize_coord(dw, g.w, g.ow, g.mode);
        const T h1l = static_cast<T>(rh.lambda), h0l = static_cast<T>(1.0 - rh.lambda);
        const T w1l = static_cast<T>(rw.lambda), w0l = static_cast<T>(1.0 - rw.lambda);
        const T* gp = dy + ((n * g.oh + dh) * g.ow + dw) * dys;
        T* d00 = dx + ((n * g.h + rh.i0) * g.w + rw.i0) * dxs;
        T* d01 = dx + ((n * g.h + rh.i0) * g.w + rw.i1) * dxs;
        T* d10 = dx + ((n * g.h + rh.i1) * g.w + rw.i0) * dxs;
        T* d11 = dx + ((n * g.h + rh.i1) * g.w + rw.i1) * dxs;
        for (int64_t c = 0; c < g.c; ++c) {
          d00[c] += h0l * w0l * gp[c];
          d01[c] += h0l * w1l * gp[c];
          d10[c] += h1l * w0l * gp[c];
          d11[c] += h1l * w1l * gp[c];
        }
      }
    }
}

#define CS_INSTANTIATE(T)                                                                         \
  template void resize_fwd<T>(const ResizeGeom&, const T*, int64_t, T*, int64_t);                \
  template void resize_bwd<T>(const ResizeGeom&, const T*, int64_t, T*, int64_t, bool);          \
  template void resize_bwd_scatter<T>(const ResizeGeom&, const T*, int64_t, T*, int64_t);
CS_INSTANTIATE(float)
CS_INSTANTIATE(double)
#undef CS_INSTANTIATE

}  // namespace climseg::cpu
