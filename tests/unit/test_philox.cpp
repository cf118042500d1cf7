#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "engine/philox.h"

using namespace climseg;

// Known-answer tests of Philox4x32-10 from Random123's kat_vectors (philox4x32 10 rounds).
TEST_CASE("Philox4x32-10 known-answer vectors", "[philox]") {
  struct Kat {
    Philox4 ctr;
    uint32_t k0, k1;
    Philox4 out;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu,
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u,
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const Kat& k : kats) {
    Philox4 r = philox4x32_10(k.ctr, k.k0, k.k1);
    for (int i = 0; i < 4; ++i) REQUIRE(r.v[i] == k.out.v[i]);
  }
}

TEST_CASE("Philox streams: element-wise access, independent subsequences, uniform range", "[philox]") {
  // Element n of a stream is word n%4 of block n/4.
  for (uint64_t n = 0; n < 64; ++n) REQUIRE(philox_u32(7, 3, n) == philox_block(7, 3, n / 4).v[n % 4]);
  // 64-bit seeds, subsequences and block indices all reach the counter/key.
  REQUIRE(philox_u32(1, 0, 0) != philox_u32(1ull << 33, 0, 0));
  REQUIRE(philox_u32(1, 0, 0) != philox_u32(1, 1ull << 33, 0));
  REQUIRE(philox_u32(1, 0, 0) != philox_u32(1, 0, 1ull << 34));
  // Uniforms lie in [0, 1) with mean ~ 1/2 and variance ~ 1/12.
  double s = 0, s2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    float u = philox_uniform(42, 0, static_cast<uint64_t>(i));
    REQUIRE(u >= 0.0f);
    REQUIRE(u < 1.0f);
    s += u;
    s2 += static_cast<double>(u) * u;
  }
  double mean = s / n, var = s2 / n - mean * mean;
  REQUIRE(std::fabs(mean - 0.5) < 0.005);
  REQUIRE(std::fabs(var - 1.0 / 12.0) < 0.002);
  REQUIRE(philox_uniform_from_bits(0xffffffffu) < 1.0f);
  REQUIRE(philox_uniform_from_bits(0) == 0.0f);
}
