#include "kernels/cpu/normalize.h"

#include "engine/dtype.h"

namespace climseg::cpu {

namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;

template <class T>
inline T from_float(float v) {
  return static_cast<T>(v);
}
template <>
inline Half from_float<Half>(float v) {
  return float_to_half(v);
}
template <>
inline BFloat16 from_float<BFloat16>(float v) {
  return float_to_bf16(v);
}

}  // namespace

void minmax_coefficients(int64_t C, const double* minval, const double* maxval, float* shift, float* scale) {
  for (int64_t c = 0; c < C; ++c) {
    shift[c] = static_cast<float>(minval[c]);
    scale[c] = static_cast<float>(1.0 / (maxval[c] - minval[c]));
  }
}

template <class T>
void minmax_normalize(int64_t P, int64_t C, const float* x, int64_t xs, T* y, int64_t ys, const float* shift,
                      const float* scale) {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const float* xp = x + p * xs;
    T* yp = y + p * ys;
    for (int64_t c = 0; c < C; ++c) {
      const float d = xp[c] - shift[c];  // rounded to fp32 here (no contraction: -ffp-contract=off)
      yp[c] = from_float<T>(scale[c] * d);
    }
  }
}

template void minmax_normalize<float>(int64_t, int64_t, const float*, int64_t, float*, int64_t, const float*,
                                      const float*);
template void minmax_normalize<double>(int64_t, int64_t, const float*, int64_t, double*, int64_t, const float*,
                                       const float*);
template void minmax_normalize<Half>(int64_t, int64_t, const float*, int64_t, Half*, int64_t, const float*,
                                     const float*);
template void minmax_normalize<BFloat16>(int64_t, int64_t, const float*, int64_t, BFloat16*, int64_t, const float*,
                                         const float*);

}  // namespace climseg::cpu
