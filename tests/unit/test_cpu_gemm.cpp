// kernels/cpu/gemm: row-major semantics with leading dimensions and transposes, against a naive loop, on sizes
// that take the single-call path and both split paths (rows, columns); results independent of the thread count.
#include <catch2/catch.hpp>

#include <omp.h>

#include <cmath>
#include <vector>

#include "engine/philox.h"
#include "kernels/cpu/gemm.h"

using namespace climseg;

namespace {

template <class T>
std::vector<T> random(size_t n, uint64_t stream) {
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<T>(2.0 * philox_uniform(3, stream, i) - 1.0);
  return v;
}

template <class T>
void check(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T beta) {
  const int64_t pad = 3;
  const int64_t rows_a = ta ? k : m, cols_a = ta ? m : k, rows_b = tb ? n : k, cols_b = tb ? k : n;
  const int64_t lda = cols_a + pad, ldb = cols_b + pad, ldc = n + pad;
  auto A = random<T>(static_cast<size_t>(rows_a * lda), 1);
  auto B = random<T>(static_cast<size_t>(rows_b * ldb), 2);
  auto C0 = random<T>(static_cast<size_t>(m * ldc), 3);
  auto C = C0;
  const T alpha = T(0.75);
  cpu::gemm<T>(ta, tb, m, n, k, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  double worst = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0, mag = 0;
      for (int64_t p = 0; p < k; ++p) {
        double a = ta ? A[p * lda + i] : A[i * lda + p];
        double b = tb ? B[j * ldb + p] : B[p * ldb + j];
        s += a * b;
        mag += std::fabs(a * b);
      }
      double want = alpha * s + beta * C0[i * ldc + j];
      double err = std::fabs(C[i * ldc + j] - want) / (1.0 + mag);
      worst = std::max(worst, err);
    }
    for (int64_t j = n; j < ldc; ++j) REQUIRE(C[i * ldc + j] == C0[i * ldc + j]);  // padding untouched
  }
  // fp32: k-term sums with rounding ~ k * 2^-24 relative to the magnitude; fp64: same with 2^-53.
  const double bound = (sizeof(T) == 4 ? 6e-8 : 1.2e-16) * static_cast<double>(k + 2);
  INFO("ta " << ta << " tb " << tb << " m " << m << " n " << n << " k " << k << " worst " << worst);
  REQUIRE(worst <= bound);
}

}  // namespace

TEST_CASE("cpu::gemm matches a naive loop for every transpose, with padding, on all paths", "[gemm]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      check<float>(ta, tb, 5, 7, 3, 0.0f);        // single call
      check<double>(ta, tb, 5, 7, 3, 1.0);
      check<float>(ta, tb, 2000, 40, 30, 0.0f);   // rows split
      check<double>(ta, tb, 2000, 40, 30, 1.0);
      check<float>(ta, tb, 40, 2000, 30, 1.0f);   // columns split
      check<double>(ta, tb, 33, 1999, 31, 0.0);
    }
}

TEST_CASE("cpu::gemm results do not depend on the number of threads", "[gemm]") {
  // The same bits with 1, 2 and 3 threads and inside a parallel region (where the blocks run one after another):
  // rows split (3001 x 48 x 64 failed before the blocks depended on the shape only, with OpenBLAS's Haswell kernels,
  // whose rounding of a row depends on the call's m), a split just above the parallel threshold, columns split, and
  // a filter-gradient shape (small m and n, long k).
  struct Case {
    bool ta, tb;
    int64_t m, n, k;
  };
  for (const Case& c : {Case{false, true, 3001, 48, 64}, Case{false, true, 600, 32, 64}, Case{false, false, 40, 2000, 30},
                        Case{true, false, 64, 200, 13824}}) {
    INFO("ta " << c.ta << " tb " << c.tb << " m " << c.m << " n " << c.n << " k " << c.k);
    const auto A = random<float>(static_cast<size_t>(c.m * c.k), 4);
    const auto B = random<float>(static_cast<size_t>(c.n * c.k), 5);
    const int64_t lda = c.ta ? c.m : c.k, ldb = c.tb ? c.k : c.n;
    const int saved = omp_get_max_threads();
    auto run = [&](int threads, bool nested) {
      std::vector<float> out(static_cast<size_t>(c.m * c.n));
      omp_set_num_threads(threads);
      if (nested) {
#pragma omp parallel num_threads(2)
#pragma omp single
        cpu::gemm<float>(c.ta, c.tb, c.m, c.n, c.k, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, out.data(), c.n);
      } else {
        cpu::gemm<float>(c.ta, c.tb, c.m, c.n, c.k, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, out.data(), c.n);
      }
      omp_set_num_threads(saved);
      return out;
    };
    const auto c1 = run(1, false);
    CHECK(run(2, false) == c1);
    CHECK(run(3, false) == c1);
    CHECK(run(2, true) == c1);
  }
}
