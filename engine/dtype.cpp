#include "engine/dtype.h"

#include "engine/check.h"

namespace climseg {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  CS_THROW("invalid dtype ", static_cast<int>(t));
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "fp32";
    case DType::f16: return "fp16";
    case DType::bf16: return "bf16";
    case DType::f64: return "fp64";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
  }
  return "invalid";
}

DType parse_dtype(std::string_view s) {
  if (s == "fp32" || s == "f32" || s == "float32" || s == "float") return DType::f32;
  if (s == "fp16" || s == "f16" || s == "float16" || s == "half") return DType::f16;
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  if (s == "fp64" || s == "f64" || s == "float64" || s == "double") return DType::f64;
  if (s == "i32" || s == "int32") return DType::i32;
  if (s == "i64" || s == "int64") return DType::i64;
  if (s == "u8" || s == "uint8") return DType::u8;
  CS_THROW("unknown dtype '", s, "' (expected fp32, fp16, bf16, fp64, i32, i64 or u8)");
}

bool dtype_is_float(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64; }

const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

Device parse_device(std::string_view s) {
  if (s == "cpu") return Device::cpu;
  if (s == "cuda" || s == "gpu") return Device::cuda;
  CS_THROW("unknown device '", s, "' (expected cpu or cuda)");
}

// IEEE 754 binary32 -> binary16, round to nearest even, with subnormals, overflow to inf and NaN preserved.
Half float_to_half(float f) {
  uint32_t x = float_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx > 0x7f800000u) return Half{static_cast<uint16_t>(sign | 0x7e00u | ((absx >> 13) & 0x3ffu))};  // NaN
  if (absx >= 0x477ff000u) return Half{static_cast<uint16_t>(sign | 0x7c00u)};  // >= 65520 rounds to inf
  if (absx < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
    if (absx < 0x33000000u) return Half{static_cast<uint16_t>(sign)};  // < 2^-25 rounds to zero
    uint32_t e = absx >> 23;
    uint32_t m = (absx & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;  // 113 + 13 - e: bits to drop so the result is in units of 2^-24
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return Half{static_cast<uint16_t>(sign | r)};
  }
  uint32_t r = absx - 0x38000000u;  // rebias exponent 127 -> 15
  uint32_t lsb = (r >> 13) & 1u;
  r += 0xfffu + lsb;
  return Half{static_cast<uint16_t>(sign | (r >> 13))};
}

float half_to_float(Half h) {
  uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  uint32_t e = (h.bits >> 10) & 0x1fu;
  uint32_t m = h.bits & 0x3ffu;
  if (e == 0x1f) return bits_float(sign | 0x7f800000u | (m << 13));  // inf or NaN
  if (e == 0) {
    if (m == 0) return bits_float(sign);
    float v = static_cast<float>(m) * (1.0f / 16777216.0f);  // m * 2^-24
    return sign ? -v : v;
  }
  return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

void round_to_storage(int64_t P, int64_t C, float* y, int64_t ys, bool bf16) {
  constexpr int64_t kParallelMin = 1 << 15;  // as kernels/cpu: below this a parallel region costs more than it saves
  if (bf16) {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t c = 0; c < C; ++c) y[p * ys + c] = bf16_to_float(float_to_bf16(y[p * ys + c]));
  } else {
#pragma omp parallel for schedule(static) if (P * C >= kParallelMin)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t c = 0; c < C; ++c) y[p * ys + c] = half_to_float(float_to_half(y[p * ys + c]));
  }
}

}  // namespace climseg
