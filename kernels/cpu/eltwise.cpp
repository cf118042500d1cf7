#include "kernels/cpu/eltwise.h"

#include "engine/dtype.h"

#include <cstddef>
#include <vector>

namespace climseg::cpu {

// Below this many elements a parallel region costs more than it saves (thread wake-up is microseconds).
constexpr int64_t kParallelMin = 1 << 15;

template <class T>
void relu_fwd(int64_t P, int64_t C, const T* x, int64_t xs, T* y, int64_t ys) {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const T* xp = x + p * xs;
    T* yp = y + p * ys;
    for (int64_t c = 0; c < C; ++c) yp[c] = xp[c] <= T(0) ? T(0) : xp[c];  // NaN stays NaN (torch.relu)
  }
}

template <class T>
void relu_bwd(int64_t P, int64_t C, const T* y, int64_t ys, const T* dy, int64_t dys, T* dx, int64_t dxs,
              bool accumulate) {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const T* yp = y + p * ys;
    const T* dyp = dy + p * dys;
    T* dxp = dx + p * dxs;
    if (accumulate) {
      for (int64_t c = 0; c < C; ++c) dxp[c] += yp[c] > T(0) ? dyp[c] : T(0);
    } else {
      for (int64_t c = 0; c < C; ++c) dxp[c] = yp[c] > T(0) ? dyp[c] : T(0);
    }
  }
}

template <class T>
void add_fwd(int64_t P, int64_t C, const T* a, int64_t as, const T* b, int64_t bs, T* y, int64_t ys) {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const T* ap = a + p * as;
    const T* bp = b + p * bs;
    T* yp = y + p * ys;
    for (int64_t c = 0; c < C; ++c) yp[c] = ap[c] + bp[c];
  }
}

template <class T>
void copy_or_accumulate(int64_t P, int64_t C, const T* src, int64_t ss, T* dst, int64_t ds, bool accumulate) {
  if (!accumulate && src == dst && ss == ds) return;
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const T* sp = src + p * ss;
    T* dp = dst + p * ds;
    if (accumulate) {
      for (int64_t c = 0; c < C; ++c) dp[c] += sp[c];
    } else {
      for (int64_t c = 0; c < C; ++c) dp[c] = sp[c];
    }
  }
}

template <class T>
void add_bias(int64_t P, int64_t C, const T* b, T* y, int64_t ys) {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    T* yp = y + p * ys;
    for (int64_t c = 0; c < C; ++c) yp[c] += b[c];
  }
}

template <class T>
void bias_residual_relu(int64_t P, int64_t C, const T* b, const T* r, int64_t rs, bool relu, T* y, int64_t ys) {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    T* yp = y + p * ys;
    if (b)
      for (int64_t c = 0; c < C; ++c) yp[c] += b[c];
    if (r) {
      const T* rp = r + p * rs;
      for (int64_t c = 0; c < C; ++c) yp[c] += rp[c];
    }
    if (relu)
      for (int64_t c = 0; c < C; ++c) yp[c] = yp[c] <= T(0) ? T(0) : yp[c];  // NaN stays NaN
  }
}

template <class T>
void bias_grad(int64_t P, int64_t C, const T* dy, int64_t dys, T* db, bool accumulate) {
  // Sums in a fixed order (pixel blocks, then blocks in order) so results do not depend on the thread count.
  constexpr int64_t kBlock = 1024;
  const int64_t nblocks = (P + kBlock - 1) / kBlock;
  std::vector<T> partial(static_cast<std::size_t>(nblocks * C), T(0));
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    T* acc = partial.data() + blk * C;
    int64_t end = (blk + 1) * kBlock < P ? (blk + 1) * kBlock : P;
    for (int64_t p = blk * kBlock; p < end; ++p) {
      const T* dyp = dy + p * dys;
      for (int64_t c = 0; c < C; ++c) acc[c] += dyp[c];
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    T s = T(0);
    for (int64_t blk = 0; blk < nblocks; ++blk) s += partial[static_cast<std::size_t>(blk * C + c)];
    db[c] = accumulate ? db[c] + s : s;
  }
}

template <class T>
void axpy(int64_t n, T alpha, const T* x, T* y) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

#define CS_INSTANTIATE(T)                                                                                  \
  template void relu_fwd<T>(int64_t, int64_t, const T*, int64_t, T*, int64_t);                            \
  template void relu_bwd<T>(int64_t, int64_t, const T*, int64_t, const T*, int64_t, T*, int64_t, bool);   \
  template void add_fwd<T>(int64_t, int64_t, const T*, int64_t, const T*, int64_t, T*, int64_t);          \
  template void copy_or_accumulate<T>(int64_t, int64_t, const T*, int64_t, T*, int64_t, bool);            \
  template void add_bias<T>(int64_t, int64_t, const T*, T*, int64_t);                                     \
  template void bias_grad<T>(int64_t, int64_t, const T*, int64_t, T*, bool);                              \
  template void bias_residual_relu<T>(int64_t, int64_t, const T*, const T*, int64_t, bool, T*, int64_t);   \
  template void axpy<T>(int64_t, T, const T*, T*);
CS_INSTANTIATE(float)
CS_INSTANTIATE(double)
#undef CS_INSTANTIATE

}  // namespace climseg::cpu
