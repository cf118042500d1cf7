// cudasim: __half and __nv_bfloat16 storage types with conversions that match CUDA bit for bit: round to nearest
// even, overflow to infinity, subnormals kept, NaN to the canonical NaN (0x7fff, as cuda_fp16.hpp/cuda_bf16.hpp and
// the device's cvt.rn instructions). Only what climseg uses (plus the raw/bit helpers) is provided; there is
// deliberately no arithmetic on the 16-bit types, which our kernels never do (they widen to fp32).
#pragma once

#include "cudasim/defs.h"
#include "cudasim/fp_bits.h"

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
