#include "kernels/cpu/gemm.h"

#include <cblas.h>

#include <limits>

#include "engine/check.h"

namespace climseg::cpu {

namespace {
blasint to_blas(int64_t v, const char* what) {
  CS_CHECK(v >= 0 && v <= std::numeric_limits<blasint>::max(), "GEMM ", what, " = ", v, " does not fit BLAS's int");
  return static_cast<blasint>(v);
}
}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, to_blas(m, "m"),
              to_blas(n, "n"), to_blas(k, "k"), alpha, A, to_blas(lda, "lda"), B, to_blas(ldb, "ldb"), beta, C,
              to_blas(ldc, "ldc"));
}

template <>
void gemm<double>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* A, int64_t lda,
                  const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, to_blas(m, "m"),
              to_blas(n, "n"), to_blas(k, "k"), alpha, A, to_blas(lda, "lda"), B, to_blas(ldb, "ldb"), beta, C,
              to_blas(ldc, "ldc"));
}

}  // namespace climseg::cpu
