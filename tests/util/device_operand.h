// Helpers shared by the CUDA-vs-CPU parity tests (tests/cuda/): random host data and device operands that are
// either contiguous or a channel slice of a wider buffer whose other channels hold noise that must survive.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>

#include "engine/philox.h"
#include "engine/tensor.h"
#include "tests/util/compare.h"

namespace climseg::test {

// fp32 host tensor, U(-scale, scale) from Philox stream (seed, 0).
inline Tensor random_host(Shape s, uint64_t seed, double scale) {
  Tensor t = Tensor::empty(s, DType::f32, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set_flat(i, scale * (2.0 * philox_uniform(seed, 0, static_cast<uint64_t>(i)) - 1.0));
  return t;
}

// fp32 host tensor, U(lo, hi) from Philox stream (seed, 0).
inline Tensor random_host(Shape s, uint64_t seed, double lo, double hi) {
  Tensor t = Tensor::empty(s, DType::f32, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, lo + (hi - lo) * philox_uniform(seed, 0, static_cast<uint64_t>(i)));
  return t;
}

// The values of `t` after a round trip through dt: what the device stores, in fp32 for the CPU reference.
inline Tensor rounded(const Tensor& t, DType dt) {
  return dt == DType::f32 ? t.clone() : t.cast(dt).cast(DType::f32);
}

// Slice placement inside the wider buffer: odd, so 16-bit slices start off any vector alignment.
constexpr int64_t kSliceOffset = 3, kSlicePad = 7;

struct DevOperand {
  Tensor wide;       // device buffer
  Tensor view;       // what the layer sees
  Tensor wide_init;  // host copy of the buffer's initial contents (dtype dt)
  int64_t c0 = 0;    // first channel of the view in `wide`
};

// A device copy of ref in dt: contiguous, or channels [kSliceOffset, kSliceOffset + C) of a buffer with
// kSlicePad more channels filled with U(-8, 8) noise from `seed`.
inline DevOperand to_device(const Tensor& ref, DType dt, bool strided, uint64_t seed) {
  DevOperand d;
  if (!strided) {
    d.wide_init = ref.cast(dt);
    d.wide = d.wide_init.to(Device::cuda);
    d.view = d.wide;
    return d;
  }
  Shape ws = ref.shape();
  ws.c += kSlicePad;
  d.wide_init = random_host(ws, seed, 8.0).cast(dt);
  d.wide_init.channel_slice(kSliceOffset, ref.shape().c).copy_from(ref.cast(dt));
  d.wide = d.wide_init.to(Device::cuda);
  d.view = d.wide.channel_slice(kSliceOffset, ref.shape().c);
  d.c0 = kSliceOffset;
  return d;
}

// Channels outside the view are bit-identical to what they were.
inline void require_outside_untouched(const DevOperand& d, const char* what) {
  if (d.c0 == 0 && d.view.shape().c == d.wide.shape().c) return;
  INFO("channels outside the slice of " << what);
  Tensor now = d.wide.to(Device::cpu);
  const int64_t C = d.view.shape().c, W = d.wide.shape().c;
  CS_REQUIRE_CLOSE(now.channel_slice(0, d.c0), d.wide_init.channel_slice(0, d.c0), 0.0, 0.0);
  CS_REQUIRE_CLOSE(now.channel_slice(d.c0 + C, W - d.c0 - C), d.wide_init.channel_slice(d.c0 + C, W - d.c0 - C),
                   0.0, 0.0);
}

}  // namespace climseg::test
