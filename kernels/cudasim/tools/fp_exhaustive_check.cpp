// Compares cudasim's fp32 <-> fp16/bf16 conversions with the CUDA toolkit's own (its headers' host implementation;
// the device's cvt.rn instructions round the same way, IEEE nearest-even; NaN payloads are not checked on a GPU
// here) for every fp32 and every 16-bit pattern. Built and run as the
// ctest cudasim_fp_exhaustive where the toolkit's cuda_fp16.h is installed (no GPU, no nvcc needed): ~10 s.
// Compiled with the toolkit's include directory first, so <cuda_fp16.h> here is NVIDIA's, not the stand-in.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cstdio>
#include "cudasim/fp_bits.h"
int main() {
  unsigned long long bad_h = 0, bad_b = 0;
  for (uint64_t u = 0; u <= 0xffffffffull; ++u) {
    float f = cudasim::fp::u2f(static_cast<uint32_t>(u));
    __half h = __float2half_rn(f);
    __nv_bfloat16 b = __float2bfloat16_rn(f);
    unsigned short hr, br;
    std::memcpy(&hr, &h, 2); std::memcpy(&br, &b, 2);
    if (hr != cudasim::fp::float_to_half_rn(f) && bad_h++ < 5) std::printf("half mismatch %08llx: %04x vs %04x\n", (unsigned long long)u, hr, cudasim::fp::float_to_half_rn(f));
    if (br != cudasim::fp::float_to_bf16_rn(f) && bad_b++ < 5) std::printf("bf16 mismatch %08llx: %04x vs %04x\n", (unsigned long long)u, br, cudasim::fp::float_to_bf16_rn(f));
  }
  unsigned long long bad_h2f = 0, bad_b2f = 0;
  for (uint32_t x = 0; x <= 0xffff; ++x) {
    __half_raw r; r.x = static_cast<unsigned short>(x);
    float a = __half2float(__half(r)), c = cudasim::fp::half_to_float(static_cast<uint16_t>(x));
    if (cudasim::fp::f2u(a) != cudasim::fp::f2u(c) && bad_h2f++ < 5) std::printf("half2float mismatch %04x: %08x vs %08x\n", x, cudasim::fp::f2u(a), cudasim::fp::f2u(c));
    __nv_bfloat16_raw rb; rb.x = static_cast<unsigned short>(x);
    float d = __bfloat162float(__nv_bfloat16(rb)), e = cudasim::fp::bf16_to_float(static_cast<uint16_t>(x));
    if (cudasim::fp::f2u(d) != cudasim::fp::f2u(e) && bad_b2f++ < 5) std::printf("bf162float mismatch %04x: %08x vs %08x\n", x, cudasim::fp::f2u(d), cudasim::fp::f2u(e));
  }
  std::printf("float->half mismatches %llu, float->bf16 %llu, half->float %llu, bf16->float %llu (of 2^32 / 2^16)\n", bad_h, bad_b, bad_h2f, bad_b2f);
  return (bad_h || bad_b || bad_h2f || bad_b2f) ? 1 : 0;
}
