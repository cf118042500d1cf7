// CPU GEMM through OpenBLAS, parallelised by us with OpenMP.
//
// Why not OpenBLAS's own threads: the pthread build of OpenBLAS keeps its own pool of busy-waiting threads next to
// OpenMP's pool, and on a small machine the two pools fight for the cores (measured on 2 cores: the engine demo
// ran 3x faster with either pool at one thread). So OpenBLAS runs single-threaded and the GEMM is split here into
// independent blocks of rows of C (or of columns, when C has few rows), one single-threaded BLAS call per block on
// the OpenMP pool the rest of the CPU path uses. Each element of C is computed by exactly one call with the same
// k-loop, so results do not depend on the number of threads.
#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <limits>
#include <mutex>

#include "engine/check.h"

namespace climseg::cpu {

namespace {

blasint to_blas(int64_t v, const char* what) {
  CS_CHECK(v >= 0 && v <= std::numeric_limits<blasint>::max(), "GEMM ", what, " = ", v, " does not fit BLAS's int");
  return static_cast<blasint>(v);
}

void single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void blas_gemm(bool ta, bool tb, blasint m, blasint n, blasint k, float alpha, const float* A, blasint lda,
               const float* B, blasint ldb, float beta, float* C, blasint ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda,
              B, ldb, beta, C, ldc);
}
void blas_gemm(bool ta, bool tb, blasint m, blasint n, blasint k, double alpha, const double* A, blasint lda,
               const double* B, blasint ldb, double beta, double* C, blasint ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda,
              B, ldb, beta, C, ldc);
}

// Below this many multiply-adds one call on one thread is faster than waking the pool.
constexpr int64_t kParallelMacs = int64_t(1) << 20;

template <class T>
void gemm_impl(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda, const T* B,
               int64_t ldb, T beta, T* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  single_threaded_blas();
  const blasint bm = to_blas(m, "m"), bn = to_blas(n, "n"), bk = to_blas(k, "k");
  const blasint blda = to_blas(lda, "lda"), bldb = to_blas(ldb, "ldb"), bldc = to_blas(ldc, "ldc");
  const int threads = omp_get_max_threads();
  if (threads <= 1 || m * n * k < kParallelMacs || omp_in_parallel()) {
    blas_gemm(ta, tb, bm, bn, bk, alpha, A, blda, B, bldb, beta, C, bldc);
    return;
  }
  // Split the larger of m and n into `threads` blocks (rounded to 16 for the BLAS micro-kernels).
  const bool split_rows = m >= n;
  const int64_t extent = split_rows ? m : n;
  int64_t block = (extent + threads - 1) / threads;
  block = (block + 15) / 16 * 16;
  const int64_t nblocks = (extent + block - 1) / block;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t lo = b * block;
    const blasint len = static_cast<blasint>(std::min(block, extent - lo));
    if (split_rows) {
      // Rows lo.. of C come from rows lo.. of op(A): element (i, p) of op(A) is A[i*lda + p], or A[p*lda + i]
      // when transposed.
      const T* a = ta ? A + lo : A + lo * lda;
      blas_gemm(ta, tb, len, bn, bk, alpha, a, blda, B, bldb, beta, C + lo * ldc, bldc);
    } else {
      // Columns lo.. of C come from columns lo.. of op(B).
      const T* b_ = tb ? B + lo * ldb : B + lo;
      blas_gemm(ta, tb, bm, len, bk, alpha, A, blda, b_, bldb, beta, C + lo, bldc);
    }
  }
}

}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_impl<float>(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <>
void gemm<double>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* A, int64_t lda,
                  const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_impl<double>(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace climseg::cpu
