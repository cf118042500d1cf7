// cudasim: __half and __nv_bfloat16 storage types with conversions that match CUDA bit for bit: round to nearest
// even, overflow to infinity, subnormals kept, NaN to the canonical NaN (0x7fff, as cuda_fp16.hpp/cuda_bf16.hpp and
// the device's cvt.rn instructions). Only what climseg uses (plus the raw/bit helpers) is provided; there is
// deliberately no arithmetic on the 16-bit types, which our kernels never do (they widen to fp32).
#pragma once

#include <cstdint>
#include <cstring>

#include "cudasim/defs.h"

namespace cudasim::fp {

inline uint32_t f2u(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float u2f(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// fp32 -> binary16, round to nearest even (the algorithm of cuda_fp16.hpp's host path, written out).
inline uint16_t float_to_half_rn(float f) {
  const uint32_t x = f2u(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t u = x & 0x7fffffffu;
  if (u >= 0x7f800000u) return u == 0x7f800000u ? static_cast<uint16_t>(sign | 0x7c00u) : uint16_t{0x7fff};
  if (u > 0x477fefffu) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: infinity
  uint32_t result, rem;  // rem: the discarded bits, left-aligned (0x80000000 = exactly half an ulp)
  if (u >= 0x38800000u) {  // normal in binary16 (>= 2^-14)
    rem = u << 19;
    result = sign | ((u - 0x38000000u) >> 13);
  } else if (u <= 0x33000000u) {  // <= 2^-25: rounds to zero (2^-25 is a tie, even is 0)
    return static_cast<uint16_t>(sign);
  } else {  // subnormal in binary16
    const uint32_t shift = 0x7eu - (u >> 23);  // 14..24
    const uint32_t mant = (u & 0x7fffffu) | 0x800000u;
    rem = mant << (32u - shift);
    result = sign | (mant >> shift);
  }
  if (rem > 0x80000000u || (rem == 0x80000000u && (result & 1u))) ++result;  // may carry into the exponent: right
  return static_cast<uint16_t>(result);
}

// binary16 -> fp32, exact; NaN becomes 0x7fffffff (as cuda_fp16.hpp's host path).
inline float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return u2f(mant ? 0x7fffffffu : (sign | 0x7f800000u));
  if (exp == 0) {
    if (mant == 0) return u2f(sign);
    // subnormal: normalise
    exp = 113;  // 127 - 14: the exponent of 2^-14; one less per normalising shift
    while (!(mant & 0x400u)) {
      mant <<= 1;
      --exp;
    }
    mant &= 0x3ffu;
    return u2f(sign | (exp << 23) | (mant << 13));
  }
  return u2f(sign | ((exp + 112u) << 23) | (mant << 13));
}

// fp32 -> bfloat16, round to nearest even; NaN -> 0x7fff; overflow rounds to infinity by itself.
inline uint16_t float_to_bf16_rn(float f) {
  const uint32_t x = f2u(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  uint32_t r = x >> 16;
  const uint32_t rem = x << 16;
  if (rem > 0x80000000u || (rem == 0x80000000u && (r & 1u))) ++r;
  return static_cast<uint16_t>(r);
}

inline float bf16_to_float(uint16_t b) { return u2f(static_cast<uint32_t>(b) << 16); }

// Double -> fp32 -> 16 bits would round twice; the double paths round once, from the exact double.
inline uint16_t double_to_half_rn(double d) {
  // Round to fp32 with enough information kept: use round-to-odd to fp32, then RNE to binary16 (exact, since fp32
  // keeps >= 2 more bits than binary16 at every exponent binary16 can reach).
  float f = static_cast<float>(d);
  if (static_cast<double>(f) != d && f == f && (f2u(f) & 0x7f800000u) != 0x7f800000u) {
    uint32_t u = f2u(f);
    if (!(u & 1u)) {  // not odd: move towards d by one ulp to the odd neighbour
      const bool up = (static_cast<double>(f) < d) == !(u >> 31);
      u = up ? u + 1 : u - 1;
    }
    f = u2f(u);
  }
  return float_to_half_rn(f);
}

}  // namespace cudasim::fp

struct __half_raw {
  unsigned short x;
};
struct __nv_bfloat16_raw {
  unsigned short x;
};

struct __half {
  unsigned short __x;
  __half() = default;
  constexpr __half(const __half_raw& r) : __x(r.x) {}
  __half& operator=(const __half_raw& r) {
    __x = r.x;
    return *this;
  }
  operator __half_raw() const { return __half_raw{__x}; }
  // Implicit conversions, as cuda_fp16.hpp without __CUDA_NO_HALF_CONVERSIONS__ (round to nearest even).
  __half(float f) : __x(cudasim::fp::float_to_half_rn(f)) {}
  __half(double d) : __x(cudasim::fp::double_to_half_rn(d)) {}
  operator float() const { return cudasim::fp::half_to_float(__x); }
};

struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  constexpr __nv_bfloat16(const __nv_bfloat16_raw& r) : __x(r.x) {}
  __nv_bfloat16& operator=(const __nv_bfloat16_raw& r) {
    __x = r.x;
    return *this;
  }
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
  __nv_bfloat16(float f) : __x(cudasim::fp::float_to_bf16_rn(f)) {}
  operator float() const { return cudasim::fp::bf16_to_float(__x); }
};
typedef __half half;
typedef __nv_bfloat16 nv_bfloat16;

static_assert(sizeof(__half) == 2 && alignof(__half) == 2);
static_assert(sizeof(__nv_bfloat16) == 2 && alignof(__nv_bfloat16) == 2);

inline __half __float2half_rn(float a) { return __half_raw{cudasim::fp::float_to_half_rn(a)}; }
inline __half __float2half(float a) { return __float2half_rn(a); }
inline __half __double2half(double a) { return __half_raw{cudasim::fp::double_to_half_rn(a)}; }
inline float __half2float(__half a) { return cudasim::fp::half_to_float(a.__x); }
inline float __low2float(__half a) { return __half2float(a); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short u) { return __half_raw{u}; }
inline short __half_as_short(__half h) { return static_cast<short>(h.__x); }
inline __half __short_as_half(short s) { return __half_raw{static_cast<unsigned short>(s)}; }
inline bool __hisnan(__half a) { return (a.__x & 0x7fffu) > 0x7c00u; }
inline int __hisinf(__half a) { return a.__x == 0x7c00u ? 1 : a.__x == 0xfc00u ? -1 : 0; }

inline __nv_bfloat16 __float2bfloat16_rn(float a) { return __nv_bfloat16_raw{cudasim::fp::float_to_bf16_rn(a)}; }
inline __nv_bfloat16 __float2bfloat16(float a) { return __float2bfloat16_rn(a); }
inline float __bfloat162float(__nv_bfloat16 a) { return cudasim::fp::bf16_to_float(a.__x); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16_raw{u}; }
inline short __bfloat16_as_short(__nv_bfloat16 h) { return static_cast<short>(h.__x); }
inline __nv_bfloat16 __short_as_bfloat16(short s) { return __nv_bfloat16_raw{static_cast<unsigned short>(s)}; }
inline bool __hisnan(__nv_bfloat16 a) { return (a.__x & 0x7fffu) > 0x7f80u; }
