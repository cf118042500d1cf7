// Philox4x32-10 counter-based RNG (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC11), written
// once for host and device so CPU and GPU produce the same bits for the same (key, counter).
//
// Streams: the n-th 32-bit word of stream (seed, subsequence) is word n%4 of
//     philox4x32_10(ctr = {n/4 lo, n/4 hi, subsequence lo, subsequence hi}, key = {seed lo, seed hi}).
// Any element can be generated independently (no state to carry), which is what dropout masks and parallel
// initialisation need. Uniforms use the top 24 bits, exactly representable in fp32, so they are bit-identical
// on every device; transcendental transforms (normal) agree to within libm's rounding only.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define CS_HD __host__ __device__ __forceinline__
#else
#define CS_HD inline
#endif

namespace climseg {

struct Philox4 {
  uint32_t v[4];
};

CS_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

CS_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(M0, ctr.v[0], hi0, lo0);
    philox_mulhilo(M1, ctr.v[2], hi1, lo1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += W0;
    k1 += W1;
  }
  return ctr;
}

// The 4 words of block `block` (= element index / 4) of stream (seed, subsequence).
CS_HD Philox4 philox_block(uint64_t seed, uint64_t subsequence, uint64_t block) {
  Philox4 ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), static_cast<uint32_t>(subsequence),
               static_cast<uint32_t>(subsequence >> 32)}};
  return philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

CS_HD uint32_t philox_u32(uint64_t seed, uint64_t subsequence, uint64_t index) {
  return philox_block(seed, subsequence, index >> 2).v[index & 3];
}

// Uniform in [0, 1) with 24 random bits: exact in fp32, identical on CPU and GPU.
CS_HD float philox_uniform_from_bits(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }
CS_HD float philox_uniform(uint64_t seed, uint64_t subsequence, uint64_t index) {
  return philox_uniform_from_bits(philox_u32(seed, subsequence, index));
}

}  // namespace climseg
