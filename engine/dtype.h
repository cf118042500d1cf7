// Element types and devices. f16/bf16 are storage types on the CPU (converted to float for maths) and compute types
// on GPU tensor cores with fp32 accumulation (engine.md section 5). f64 is for gradient checks on the CPU.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace climseg {

enum class DType : uint8_t { f32, f16, bf16, f64, i32, i64, u8 };
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
DType parse_dtype(std::string_view s);  // "fp32"/"f32"/"float32", "fp16"/"half", "bf16", "fp64", "i32", "i64", "u8"
bool dtype_is_float(DType t);
const char* device_name(Device d);
Device parse_device(std::string_view s);  // "cpu" or "cuda"

// ---- 16-bit floating-point storage types (bit-exact with IEEE binary16 / bfloat16) ------------------------------
// Conversions round to nearest even; NaN stays NaN, overflow goes to infinity (as __float2half_rn/__float2bfloat16).
struct Half {
  uint16_t bits = 0;
};
struct BFloat16 {
  uint16_t bits = 0;
};

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline BFloat16 float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return BFloat16{static_cast<uint16_t>((u >> 16) | 0x0040u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return BFloat16{static_cast<uint16_t>(u >> 16)};
}
inline float bf16_to_float(BFloat16 h) { return bits_float(static_cast<uint32_t>(h.bits) << 16); }

Half float_to_half(float f);
float half_to_float(Half h);
// y[p, c] = float(round_to_16bit(y[p, c])) in place over P pixels of C channels at pixel stride ys: f16 (IEEE
// binary16) or bf16, round to nearest even, overflow to inf, NaN kept. Emulated 16-bit storage on the CPU
// (NetOptions::emulate_storage) and the fp16/bf16 model copy of fp32 master weights.
void round_to_storage(int64_t P, int64_t C, float* y, int64_t ys, bool bf16);

// Maps C++ element types to DType (used by typed accessors and the CPU kernels' dispatch).
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<Half> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<BFloat16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };

}  // namespace climseg
