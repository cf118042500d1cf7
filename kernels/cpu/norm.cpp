// CPU reference kernels for batch norm, affine, scale and dropout (declarations and semantics: norm.h).
//
// Layout: NHWC pixel-strided (P, C) views; per-channel vectors contiguous.
// Algorithm: pointwise maps are one pass, OpenMP over pixels. Per-channel reductions (statistics, parameter
// gradients) sum kBlock-pixel blocks into double partials in parallel, then add the blocks in block order: the
// result depends on P only, never on the thread count. Batch statistics take two passes (mean, then the centred
// sum of squares), which avoids the cancellation of E[x^2] - E[x]^2 for data with a large mean.
// Bound: memory; forward reads x three times (two statistics passes and the apply), backward twice. This is the
// reference, not the fast path.
#include "kernels/cpu/norm.h"

#include <cmath>
#include <cstddef>
#include <vector>

#include "engine/philox.h"

namespace climseg::cpu {

namespace {

// Below this many elements a parallel region costs more than it saves (as in eltwise.cpp).
constexpr int64_t kParallelMin = 1 << 15;
constexpr int64_t kBlock = 1024;

// Fixed-order per-channel sums of f(p, c, s1, s2) contributions: f adds its terms to s1[c] (and s2[c]).
// out1, out2: (C) double.
template <class F>
void channel_sums(int64_t P, int64_t C, F&& f, std::vector<double>& out1, std::vector<double>& out2) {
  const int64_t nblocks = (P + kBlock - 1) / kBlock;
  std::vector<double> part1(static_cast<size_t>(nblocks * C), 0.0), part2(static_cast<size_t>(nblocks * C), 0.0);
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    double* a1 = part1.data() + blk * C;
    double* a2 = part2.data() + blk * C;
    const int64_t end = (blk + 1) * kBlock < P ? (blk + 1) * kBlock : P;
    for (int64_t p = blk * kBlock; p < end; ++p) f(p, a1, a2);
  }
  out1.assign(static_cast<size_t>(C), 0.0);
  out2.assign(static_cast<size_t>(C), 0.0);
  for (int64_t blk = 0; blk < nblocks; ++blk)
    for (int64_t c = 0; c < C; ++c) {
      out1[static_cast<size_t>(c)] += part1[static_cast<size_t>(blk * C + c)];
      out2[static_cast<size_t>(c)] += part2[static_cast<size_t>(blk * C + c)];
    }
}

}  // namespace

// ---- batch norm ------------------------------------------------------------------------------------------------

template <class T>
void bn_stats(int64_t P, int64_t C, const T* x, int64_t xs, T* mean, T* var) {
  std::vector<double> s1, s2;
  channel_sums(
      P, C,
      [&](int64_t p, double* a1, double*) {
        const T* xp = x + p * xs;
        for (int64_t c = 0; c < C; ++c) a1[c] += static_cast<double>(xp[c]);
      },
      s1, s2);
  std::vector<double> m(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) m[static_cast<size_t>(c)] = P > 0 ? s1[static_cast<size_t>(c)] / double(P) : 0.0;
  channel_sums(
      P, C,
      [&](int64_t p, double* a1, double*) {
        const T* xp = x + p * xs;
        for (int64_t c = 0; c < C; ++c) {
          double d = static_cast<double>(xp[c]) - m[static_cast<size_t>(c)];
          a1[c] += d * d;
        }
      },
      s1, s2);
  for (int64_t c = 0; c < C; ++c) {
    mean[c] = static_cast<T>(m[static_cast<size_t>(c)]);
    var[c] = static_cast<T>(P > 0 ? s1[static_cast<size_t>(c)] / double(P) : 0.0);
  }
}

template <class T>
void bn_inv_std(int64_t C, const T* var, double eps, T* inv_std) {
  for (int64_t c = 0; c < C; ++c) inv_std[c] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(var[c]) + eps));
}

template <class T>
void bn_update_running(int64_t C, int64_t M, const T* mean, const T* var, double momentum, T* running_mean,
                       T* running_var) {
  const double unbias = M > 1 ? double(M) / double(M - 1) : 1.0;
  for (int64_t c = 0; c < C; ++c) {
    running_mean[c] = static_cast<T>((1.0 - momentum) * double(running_mean[c]) + momentum * double(mean[c]));
    running_var[c] =
        static_cast<T>((1.0 - momentum) * double(running_var[c]) + momentum * double(var[c]) * unbias);
  }
}

template <class T>
void bn_fwd_apply(int64_t P, int64_t C, const T* x, int64_t xs, const T* mean, const T* inv_std, const T* gamma,
                  const T* beta, const T* res, int64_t rs, bool relu, T* y, int64_t ys) {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const T* xp = x + p * xs;
    const T* rp = res ? res + p * rs : nullptr;
    T* yp = y + p * ys;
    for (int64_t c = 0; c < C; ++c) {
      T v = (xp[c] - mean[c]) * inv_std[c] * gamma[c] + beta[c];
      if (rp) v += rp[c];
      yp[c] = relu && v <= T(0) ? T(0) : v;  // NaN stays NaN (torch.relu)
    }
  }
}

template <class T>
void bn_bwd_reduce(int64_t P, int64_t C, const T* x, int64_t xs, const T* y, int64_t ys, const T* dy, int64_t dys,
                   const T* mean, const T* inv_std, bool relu, T* sum_dz, T* sum_dz_xhat) {
  std::vector<double> s1, s2;
  channel_sums(
      P, C,
      [&](int64_t p, double* a1, double* a2) {
        const T* xp = x + p * xs;
        const T* dyp = dy + p * dys;
        const T* yp = relu ? y + p * ys : nullptr;
        for (int64_t c = 0; c < C; ++c) {
          T dz = relu && !(yp[c] > T(0)) ? T(0) : dyp[c];
          T xhat = (xp[c] - mean[c]) * inv_std[c];
          a1[c] += static_cast<double>(dz);
          a2[c] += static_cast<double>(dz) * static_cast<double>(xhat);
        }
      },
      s1, s2);
  for (int64_t c = 0; c < C; ++c) {
    sum_dz[c] = static_cast<T>(s1[static_cast<size_t>(c)]);
    sum_dz_xhat[c] = static_cast<T>(s2[static_cast<size_t>(c)]);
  }
}

template <class T>
void bn_bwd_data(int64_t P, int64_t C, const T* x, int64_t xs, const T* y, int64_t ys, const T* dy, int64_t dys,
                 const T* mean, const T* inv_std, const T* gamma, const T* sum_dz, const T* sum_dz_xhat, bool relu,
                 bool training, T* dx, int64_t dxs, bool dx_accumulate, T* dres, int64_t drs, bool dres_accumulate) {
  const T inv_m = P > 0 ? T(1) / T(P) : T(0);
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const T* xp = x + p * xs;
    const T* dyp = dy + p * dys;
    const T* yp = relu ? y + p * ys : nullptr;
    for (int64_t c = 0; c < C; ++c) {
      T dz = relu && !(yp[c] > T(0)) ? T(0) : dyp[c];
      // dx before dres: when the residual is x itself, the Net gives dx the overwrite and dres the accumulate on one
      // buffer (slot order, as layers/add.h).
      if (dx) {
        T g = dz;
        if (training) g -= (sum_dz[c] + (xp[c] - mean[c]) * inv_std[c] * sum_dz_xhat[c]) * inv_m;
        g *= gamma[c] * inv_std[c];
        T* d = dx + p * dxs + c;
        *d = dx_accumulate ? *d + g : g;
      }
      if (dres) {
        T* d = dres + p * drs + c;
        *d = dres_accumulate ? *d + dz : dz;
      }
    }
  }
}

// ---- affine and scale --------------------------------------------------------------------------------------------

template <class T>
void affine_fwd(int64_t P, int64_t C, const T* x, int64_t xs, const T* scale, const T* shift, T* y, int64_t ys) {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const T* xp = x + p * xs;
    T* yp = y + p * ys;
    for (int64_t c = 0; c < C; ++c) yp[c] = xp[c] * scale[c] + shift[c];
  }
}

template <class T>
void affine_bwd(int64_t P, int64_t C, const T* x, int64_t xs, const T* dy, int64_t dys, const T* scale, T* dx,
                int64_t dxs, bool dx_accumulate, T* dscale, T* dshift, bool param_accumulate) {
  std::vector<double> s1, s2;
  channel_sums(
      P, C,
      [&](int64_t p, double* a1, double* a2) {
        const T* xp = x + p * xs;
        const T* dyp = dy + p * dys;
        for (int64_t c = 0; c < C; ++c) {
          a1[c] += static_cast<double>(dyp[c]) * static_cast<double>(xp[c]);
          a2[c] += static_cast<double>(dyp[c]);
        }
      },
      s1, s2);
  for (int64_t c = 0; c < C; ++c) {
    T g1 = static_cast<T>(s1[static_cast<size_t>(c)]), g2 = static_cast<T>(s2[static_cast<size_t>(c)]);
    dscale[c] = param_accumulate ? dscale[c] + g1 : g1;
    dshift[c] = param_accumulate ? dshift[c] + g2 : g2;
  }
  if (!dx) return;
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const T* dyp = dy + p * dys;
    T* dxp = dx + p * dxs;
    for (int64_t c = 0; c < C; ++c) dxp[c] = dx_accumulate ? dxp[c] + dyp[c] * scale[c] : dyp[c] * scale[c];
  }
}

template <class T>
void scale_fwd(int64_t P, int64_t C, T alpha, const T* x, int64_t xs, T* y, int64_t ys) {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const T* xp = x + p * xs;
    T* yp = y + p * ys;
    for (int64_t c = 0; c < C; ++c) yp[c] = alpha * xp[c];
  }
}

template <class T>
void scale_bwd(int64_t P, int64_t C, T alpha, const T* dy, int64_t dys, T* dx, int64_t dxs, bool accumulate) {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const T* dyp = dy + p * dys;
    T* dxp = dx + p * dxs;
    for (int64_t c = 0; c < C; ++c) dxp[c] = accumulate ? dxp[c] + alpha * dyp[c] : alpha * dyp[c];
  }
}

// ---- dropout -----------------------------------------------------------------------------------------------------

float dropout_scale(double p) { return p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f; }

bool dropout_keep(uint64_t seed, uint64_t step, uint64_t index, float p) {
  return philox_uniform(seed, step, index) >= p;
}

namespace {
// f(p, c, keep) for every element, one Philox call per 4 consecutive logical indices.
template <class F>
void for_each_mask(int64_t P, int64_t C, uint64_t seed, uint64_t step, float pf, F&& f) {
  const int64_t n = P * C;
  const int64_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    Philox4 r = philox_block(seed, step, static_cast<uint64_t>(b));
    for (int j = 0; j < 4; ++j) {
      int64_t i = 4 * b + j;
      if (i >= n) break;
      int64_t p = i / C, c = i - p * C;
      f(p, c, philox_uniform_from_bits(r.v[j]) >= pf);
    }
  }
}
}  // namespace

template <class T>
void dropout_fwd(int64_t P, int64_t C, double p, uint64_t seed, uint64_t step, const T* x, int64_t xs, T* y,
                 int64_t ys) {
  const T s = static_cast<T>(dropout_scale(p));
  for_each_mask(P, C, seed, step, static_cast<float>(p), [&](int64_t q, int64_t c, bool keep) {
    y[q * ys + c] = keep ? x[q * xs + c] * s : T(0);
  });
}

template <class T>
void dropout_bwd(int64_t P, int64_t C, double p, uint64_t seed, uint64_t step, const T* dy, int64_t dys, T* dx,
                 int64_t dxs, bool accumulate) {
  const T s = static_cast<T>(dropout_scale(p));
  for_each_mask(P, C, seed, step, static_cast<float>(p), [&](int64_t q, int64_t c, bool keep) {
    T g = keep ? dy[q * dys + c] * s : T(0);
    T* d = dx + q * dxs + c;
    *d = accumulate ? *d + g : g;
  });
}

#define CS_INSTANTIATE(T)                                                                                          \
  template void bn_stats<T>(int64_t, int64_t, const T*, int64_t, T*, T*);                                         \
  template void bn_inv_std<T>(int64_t, const T*, double, T*);                                                     \
  template void bn_update_running<T>(int64_t, int64_t, const T*, const T*, double, T*, T*);                       \
  template void bn_fwd_apply<T>(int64_t, int64_t, const T*, int64_t, const T*, const T*, const T*, const T*,      \
                                const T*, int64_t, bool, T*, int64_t);                                            \
  template void bn_bwd_reduce<T>(int64_t, int64_t, const T*, int64_t, const T*, int64_t, const T*, int64_t,       \
                                 const T*, const T*, bool, T*, T*);                                               \
  template void bn_bwd_data<T>(int64_t, int64_t, const T*, int64_t, const T*, int64_t, const T*, int64_t,         \
                               const T*, const T*, const T*, const T*, const T*, bool, bool, T*, int64_t, bool,  \
                               T*, int64_t, bool);                                                                \
  template void affine_fwd<T>(int64_t, int64_t, const T*, int64_t, const T*, const T*, T*, int64_t);             \
  template void affine_bwd<T>(int64_t, int64_t, const T*, int64_t, const T*, int64_t, const T*, T*, int64_t,     \
                              bool, T*, T*, bool);                                                                \
  template void scale_fwd<T>(int64_t, int64_t, T, const T*, int64_t, T*, int64_t);                                \
  template void scale_bwd<T>(int64_t, int64_t, T, const T*, int64_t, T*, int64_t, bool);                          \
  template void dropout_fwd<T>(int64_t, int64_t, double, uint64_t, uint64_t, const T*, int64_t, T*, int64_t);     \
  template void dropout_bwd<T>(int64_t, int64_t, double, uint64_t, uint64_t, const T*, int64_t, T*, int64_t, bool);
CS_INSTANTIATE(float)
CS_INSTANTIATE(double)
#undef CS_INSTANTIATE

}  // namespace climseg::cpu
