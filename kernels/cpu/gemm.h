// CPU GEMM through BLAS (OpenBLAS), row-major: C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C.
// Leading dimensions are in elements, so pixel-strided NHWC views are matrices (pixels x channels, ld = stride).
#pragma once

#include <cstdint>

namespace climseg::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace climseg::cpu
