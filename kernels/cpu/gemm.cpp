// CPU GEMM through OpenBLAS, parallelised by us with OpenMP.
//
// Why not OpenBLAS's own threads: the pthread build of OpenBLAS keeps its own pool of busy-waiting threads next to
// OpenMP's pool, and on a small machine the two pools fight for the cores (measured on 2 cores: the engine demo
// ran 3x faster with either pool at one thread). So OpenBLAS runs single-threaded and the GEMM is split here into
// independent blocks of rows of C (or of columns, when C has few rows), one single-threaded BLAS call per block on
// the OpenMP pool the rest of the CPU path uses. The blocks depend on the shape only, never on the thread count or on
// whether the call is made inside a parallel region (then they run one after another): BLAS's result for a row can
// depend on the call's shape (OpenBLAS's Haswell sgemm kernels round rows differently with another m; measured on
// an AMD EPYC with OPENBLAS_CORETYPE=Haswell), so only the same calls give the same bits for any number of threads.
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
// Larger GEMMs are split along the larger of m and n into blocks of at least kMinBlock rows or columns (the other
// operand is packed again for every block: 1/kMinBlock of the work at most), at least 2 and at most kMaxBlocks
// (enough for 2-16 threads with little imbalance), rounded to 16 for the BLAS micro-kernels.
constexpr int64_t kMinBlock = 128, kMaxBlocks = 16;

struct Blocks {
  int64_t block = 0, count = 1;
};
Blocks gemm_blocks(int64_t m, int64_t n, int64_t k) {
  const int64_t extent = std::max(m, n);
  if (m * n * k < kParallelMacs || extent < 32) return {extent, 1};
  const int64_t want = std::clamp<int64_t>(extent / kMinBlock, 2, kMaxBlocks);
  const int64_t block = ((extent + want - 1) / want + 15) / 16 * 16;
  return {block, (extent + block - 1) / block};
}

template <class T>
void gemm_impl(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda, const T* B,
               int64_t ldb, T beta, T* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  single_threaded_blas();
  const blasint bm = to_blas(m, "m"), bn = to_blas(n, "n"), bk = to_blas(k, "k");
  const blasint blda = to_blas(lda, "lda"), bldb = to_blas(ldb, "ldb"), bldc = to_blas(ldc, "ldc");
  const Blocks bl = gemm_blocks(m, n, k);
  if (bl.count == 1) {
    blas_gemm(ta, tb, bm, bn, bk, alpha, A, blda, B, bldb, beta, C, bldc);
    return;
  }
  const bool split_rows = m >= n;
  const int64_t extent = split_rows ? m : n, block = bl.block, nblocks = bl.count;
  const bool parallel = omp_get_max_threads() > 1 && !omp_in_parallel();
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
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
