#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "engine/context.h"
#include "engine/tensor.h"

using namespace climseg;

TEST_CASE("shapes, strides and channel-slice views", "[tensor]") {
  Tensor t = Tensor::zeros(Shape{2, 3, 4, 10}, DType::f32, Device::cpu);
  REQUIRE(t.is_contiguous());
  REQUIRE(t.strides() == std::array<int64_t, 4>{120, 40, 10, 1});
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, static_cast<double>(i));

  Tensor s = t.channel_slice(3, 4);
  REQUIRE(s.shape() == Shape{2, 3, 4, 4});
  REQUIRE_FALSE(s.is_contiguous());
  REQUIRE(s.is_pixel_strided());
  REQUIRE(s.pixel_stride() == 10);
  REQUIRE(s.buffer() == t.buffer());  // a view, not a copy
  REQUIRE(s.get(1, 2, 3, 0) == t.get(1, 2, 3, 3));
  REQUIRE(s.get_flat(5) == t.get(0, 0, 1, 4));

  // Slice of a slice keeps the parent's pixel stride.
  Tensor ss = s.channel_slice(1, 2);
  REQUIRE(ss.get(0, 0, 0, 0) == t.get(0, 0, 0, 4));
  REQUIRE(ss.pixel_stride() == 10);

  // Writes through a view land in the parent.
  s.set(0, 0, 0, 0, -7.0);
  REQUIRE(t.get(0, 0, 0, 3) == -7.0);

  REQUIRE_THROWS_WITH(t.channel_slice(8, 4), Catch::Contains("out of range"));
  REQUIRE_THROWS_WITH(s.reshape(Shape{1, 1, 1, 96}), Catch::Contains("non-contiguous"));
  REQUIRE_THROWS_WITH(t.reshape(Shape{1, 1, 1, 5}), Catch::Contains("element count"));
  REQUIRE(t.reshape(Shape{1, 1, 1, 240}).get_flat(239) == 239.0);
  REQUIRE_THROWS_WITH(t.get(2, 0, 0, 0), Catch::Contains("out of range"));
}

TEST_CASE("copies between strided views and zeroing a slice", "[tensor]") {
  Tensor a = Tensor::zeros(Shape{1, 2, 3, 8}, DType::f64, Device::cpu);
  for (int64_t i = 0; i < a.numel(); ++i) a.set_flat(i, 1.0 + static_cast<double>(i));
  Tensor dense = Tensor::empty(Shape{1, 2, 3, 3}, DType::f64, Device::cpu);
  dense.copy_from(a.channel_slice(2, 3));
  REQUIRE(dense.get(0, 1, 2, 1) == a.get(0, 1, 2, 3));

  Tensor b = a.clone();
  b.channel_slice(5, 3).copy_from(dense);  // into a strided destination
  REQUIRE(b.get(0, 1, 1, 6) == a.get(0, 1, 1, 3));
  REQUIRE(b.get(0, 1, 1, 4) == a.get(0, 1, 1, 4));  // other channels untouched

  b.channel_slice(0, 2).zero();
  REQUIRE(b.get(0, 1, 2, 0) == 0.0);
  REQUIRE(b.get(0, 1, 2, 1) == 0.0);
  REQUIRE(b.get(0, 1, 2, 2) == a.get(0, 1, 2, 2));

  REQUIRE_THROWS_WITH(dense.copy_from(a), Catch::Contains("shapes differ"));
  Tensor f = Tensor::empty(dense.shape(), DType::f32, Device::cpu);
  REQUIRE_THROWS_WITH(f.copy_from(dense), Catch::Contains("dtypes differ"));
  REQUIRE_THROWS_WITH(a.data_as<float>(), Catch::Contains("accessed as fp32"));
}

TEST_CASE("every dtype stores and converts", "[tensor][dtype]") {
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i32, DType::i64, DType::u8}) {
    Tensor x = Tensor::zeros(Shape{1, 1, 2, 3}, t, Device::cpu);
    REQUIRE(x.nbytes() == 6 * dtype_size(t));
    x.set_flat(4, 3.0);
    REQUIRE(x.get_flat(4) == 3.0);
    REQUIRE(parse_dtype(dtype_name(t)) == t);
  }
  REQUIRE_THROWS_WITH(parse_dtype("fp8"), Catch::Contains("unknown dtype 'fp8'"));
  REQUIRE(parse_device("cuda") == Device::cuda);
  REQUIRE_THROWS_WITH(parse_device("tpu"), Catch::Contains("unknown device"));
}

TEST_CASE("fp16 conversion is IEEE binary16 with round-to-nearest-even", "[dtype]") {
  // Every finite half converts to float and back to itself.
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    Half h{static_cast<uint16_t>(b)};
    float f = half_to_float(h);
    if (std::isnan(f)) {
      REQUIRE(std::isnan(half_to_float(float_to_half(f))));
      continue;
    }
    REQUIRE(float_to_half(f).bits == h.bits);
  }
  REQUIRE(half_to_float(Half{0x3c00}) == 1.0f);
  REQUIRE(half_to_float(Half{0x7bff}) == 65504.0f);
  REQUIRE(half_to_float(Half{0x0001}) == std::ldexp(1.0f, -24));
  // Ties to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 -> 1; 1 + 3*2^-11 -> 1 + 2^-9.
  REQUIRE(float_to_half(1.0f + std::ldexp(1.0f, -11)).bits == 0x3c00);
  REQUIRE(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)).bits == 0x3c02);
  REQUIRE(float_to_half(65519.0f).bits == 0x7bff);  // below the halfway point to 65536: max finite
  REQUIRE(float_to_half(65520.0f).bits == 0x7c00);  // halfway rounds to even = infinity
  REQUIRE(float_to_half(-1e9f).bits == 0xfc00);
  REQUIRE(float_to_half(std::ldexp(1.0f, -25)).bits == 0x0000);                        // tie to even (zero)
  REQUIRE(float_to_half(std::ldexp(1.0f, -25) * 1.0001f).bits == 0x0001);              // above the tie
  REQUIRE(float_to_half(std::ldexp(3.0f, -25)).bits == 0x0002);                        // 1.5 ulp -> even 2
  // Every halfway point between adjacent finite halves rounds to the even one.
  for (uint32_t b = 0; b < 0x7bffu; ++b) {
    double lo = half_to_float(Half{static_cast<uint16_t>(b)});
    double hi = half_to_float(Half{static_cast<uint16_t>(b + 1)});
    float mid = static_cast<float>((lo + hi) / 2);
    if (static_cast<double>(mid) != (lo + hi) / 2) continue;  // not representable in float (never, but be safe)
    uint16_t want = (b & 1u) ? static_cast<uint16_t>(b + 1) : static_cast<uint16_t>(b);
    REQUIRE(float_to_half(mid).bits == want);
  }
}

TEST_CASE("bf16 conversion rounds to nearest even and keeps NaN", "[dtype]") {
  REQUIRE(float_to_bf16(1.0f).bits == 0x3f80);
  REQUIRE(bf16_to_float(BFloat16{0x3f80}) == 1.0f);
  REQUIRE(float_to_bf16(1.0f + std::ldexp(1.0f, -8)).bits == 0x3f80);      // tie -> even
  REQUIRE(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)).bits == 0x3f82);  // tie -> even (up)
  REQUIRE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  REQUIRE(float_to_bf16(std::numeric_limits<float>::infinity()).bits == 0x7f80);
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    BFloat16 h{static_cast<uint16_t>(b)};
    float f = bf16_to_float(h);
    if (!std::isnan(f)) REQUIRE(float_to_bf16(f).bits == h.bits);
  }
}

TEST_CASE("CPU contexts and device queries", "[tensor][context]") {
  ExecContext ctx(Device::cpu);
  REQUIRE(ctx.stream() == nullptr);
  void* w = ctx.workspace(1000);
  REQUIRE(w != nullptr);
  REQUIRE(ctx.workspace_bytes() >= 1000);
  REQUIRE(ctx.workspace(10) == w);  // does not shrink or move for smaller requests
  REQUIRE_THROWS(ctx.cublas());
  REQUIRE(cuda_device_count() >= 0);  // never throws, also without a driver
#if !defined(CLIMSEG_HAVE_CUDA)
  REQUIRE(cuda_device_count() == 0);
  REQUIRE_THROWS_WITH(ExecContext(Device::cuda), Catch::Contains("built without CUDA"));
  REQUIRE_THROWS_WITH(Tensor::empty(Shape{1, 1, 1, 4}, DType::f32, Device::cuda), Catch::Contains("without CUDA"));
#endif
}
