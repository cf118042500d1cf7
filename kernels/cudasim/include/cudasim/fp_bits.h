// cudasim: the bit-level fp32 <-> binary16 / bfloat16 conversions behind __half and __nv_bfloat16 (half.h), kept
// apart from the types so that a checker can compare them with the CUDA toolkit's own header in one program.
#pragma once

#include <cstdint>
#include <cstring>

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
