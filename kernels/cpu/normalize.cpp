#include "kernels/cpu/normalize.h"

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

namespace {

// One pixel row of C channels: the fixed-C instantiation (C = 16, every climate sample) unrolls and vectorises.
template <class T, int64_t kC>
bool normalize_finite_rows(int64_t P, int64_t C, const float* __restrict x, T* __restrict y,
                           const float* __restrict shift, const float* __restrict scale) {
  const int64_t n = kC > 0 ? kC : C;
  uint32_t flag = 0;
  for (int64_t p = 0; p < P; ++p) {
    const float* xp = x + p * n;
    T* yp = y + p * n;
    for (int64_t c = 0; c < n; ++c) {
      const float v = xp[c];
      uint32_t u;
      std::memcpy(&u, &v, sizeof u);
      flag |= ((u & 0x7f800000u) + 0x00800000u) & 0x80000000u;  // carries into bit 31 only for exponent 0xff
      yp[c] = from_float<T>(scale[c] * (v - shift[c]));
    }
  }
  return flag == 0;
}

#if defined(__SSE2__)
// fp32, 16 channels, y 16-byte aligned: SSE with streaming stores. The batch being filled is far larger than the
// caches and is not read again before the next step, so stores that bypass the cache skip reading every destination
// line first (what makes a plain store loop twice as slow as memcpy here). The same IEEE single operations as the
// scalar loop (subtract, multiply, no FMA), so the same bits.
bool normalize_finite_16_stream(int64_t P, const float* x, float* y, const float* shift, const float* scale) {
  __m128 sh[4], sc[4];
  for (int k = 0; k < 4; ++k) {
    sh[k] = _mm_loadu_ps(shift + 4 * k);
    sc[k] = _mm_loadu_ps(scale + 4 * k);
  }
  const __m128i exp_mask = _mm_set1_epi32(0x7f800000), one_exp = _mm_set1_epi32(0x00800000);
  __m128i flag = _mm_setzero_si128();
  for (int64_t p = 0; p < P; ++p) {
    const float* xp = x + p * 16;
    float* yp = y + p * 16;
    for (int k = 0; k < 4; ++k) {
      const __m128 v = _mm_loadu_ps(xp + 4 * k);
      flag = _mm_or_si128(flag, _mm_add_epi32(_mm_and_si128(_mm_castps_si128(v), exp_mask), one_exp));
      _mm_stream_ps(yp + 4 * k, _mm_mul_ps(sc[k], _mm_sub_ps(v, sh[k])));
    }
  }
  _mm_sfence();
  return _mm_movemask_ps(_mm_castsi128_ps(flag)) == 0;  // bit 31 of a lane: an exponent of all ones
}
#endif

}  // namespace

template <class T>
bool minmax_normalize_finite(int64_t P, int64_t C, const float* x, T* y, const float* shift, const float* scale) {
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    if (C == 16 && reinterpret_cast<uintptr_t>(y) % 16 == 0) return normalize_finite_16_stream(P, x, y, shift, scale);
  }
#endif
  if (C == 16) return normalize_finite_rows<T, 16>(P, C, x, y, shift, scale);
  return normalize_finite_rows<T, 0>(P, C, x, y, shift, scale);
}

template bool minmax_normalize_finite<float>(int64_t, int64_t, const float*, float*, const float*, const float*);
template bool minmax_normalize_finite<double>(int64_t, int64_t, const float*, double*, const float*, const float*);
template bool minmax_normalize_finite<Half>(int64_t, int64_t, const float*, Half*, const float*, const float*);
template bool minmax_normalize_finite<BFloat16>(int64_t, int64_t, const float*, BFloat16*, const float*, const float*);

template void minmax_normalize<float>(int64_t, int64_t, const float*, int64_t, float*, int64_t, const float*,
                                      const float*);
template void minmax_normalize<double>(int64_t, int64_t, const float*, int64_t, double*, int64_t, const float*,
                                       const float*);
template void minmax_normalize<Half>(int64_t, int64_t, const float*, int64_t, Half*, int64_t, const float*,
                                     const float*);
template void minmax_normalize<BFloat16>(int64_t, int64_t, const float*, int64_t, BFloat16*, int64_t, const float*,
                                         const float*);

}  // namespace climseg::cpu
