// Minimal .npy (NumPy format 1.0) reading and writing for test oracles: little-endian f64, f32, i64, i32, u8,
// C order. Tensors are written with their NHWC shape (4-D); any rank up to 4 is read, padded on the left with
// 1s to (N,H,W,C), except that 1-D arrays map to (1,1,1,C) and 0-d to (1,1,1,1).
#pragma once

#include <string>

#include "engine/tensor.h"

namespace climseg::test {

void npy_write(const std::string& path, const Tensor& t);  // host tensor, any pixel-strided view
Tensor npy_read(const std::string& path);                  // host tensor in the file's dtype

}  // namespace climseg::test
