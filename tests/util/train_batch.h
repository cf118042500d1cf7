// A synthetic training batch for the Trainer tests (tests/train/test_trainer.cpp, tests/cuda/test_cuda_trainer.cpp):
// 16 fields in [0, 1) on the host, with a cyclone-like disc (class 1, shifted per sample) and a river-like band
// (class 2) that the fields show, so that a few steps visibly learn.
#pragma once

#include <cmath>
#include <cstdint>

#include "engine/philox.h"
#include "engine/tensor.h"

namespace climseg::test {

struct TrainBatch {
  Tensor data, labels;  // (B, H, W, 16) f32, (B, H, W, 1) i32
};

inline TrainBatch make_train_batch(uint64_t seed, int64_t B, int64_t H, int64_t W) {
  TrainBatch b;
  b.data = Tensor::empty(Shape{B, H, W, 16}, DType::f32, Device::cpu);
  b.labels = Tensor::empty(Shape{B, H, W, 1}, DType::i32, Device::cpu);
  for (int64_t n = 0; n < B; ++n)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const int64_t p = (n * H + y) * W + x;
        const bool disc = (y - 10 - 4 * n) * (y - 10 - 4 * n) + (x - 12) * (x - 12) < 25;
        const bool band = !disc && std::abs(y - x / 2 - 4) < 2;
        const int32_t c = disc ? 1 : band ? 2 : 0;
        b.labels.data_as<int32_t>()[p] = c;
        for (int64_t k = 0; k < 16; ++k)
          b.data.data_as<float>()[p * 16 + k] =
              static_cast<float>(0.5 * philox_uniform(seed, static_cast<uint64_t>(k), p) + 0.5 * (c == k % 3));
      }
  return b;
}

}  // namespace climseg::test
