// Tensor comparison for tests: elementwise |got - ref| <= atol + rtol * |ref| (llm.c validate_result), with a
// report of the worst element and the share of the error budget it used (llm.c PR #429: "% of budget"), plus the
// normalised mean squared error (ggml test-backend-ops) for large reductions. Tolerances come from
// docs/tolerances.md; tests name the row they use.
#pragma once

#include <string>

#include "engine/tensor.h"

namespace climseg::test {

struct CompareResult {
  bool ok = true;
  int64_t count = 0;        // elements compared
  int64_t failures = 0;     // elements outside the budget
  int64_t worst_index = -1; // flat NHWC index of the element using most of its budget
  Shape shape;
  double worst_got = 0, worst_ref = 0;
  double max_abs_err = 0;
  double max_rel_err = 0;
  double budget_used = 0;   // max over elements of |err| / (atol + rtol |ref|); <= 1 passes
  double nmse = 0;          // sum (got-ref)^2 / sum ref^2
  bool nonfinite = false;   // got has NaN/Inf where ref is finite
  std::string str() const;  // one line: verdict, worst element (n,h,w,c), errors, % of budget, NMSE
};

// Compares two tensors of the same shape (any dtypes, any devices: device tensors are copied to the host).
CompareResult compare(const Tensor& got, const Tensor& ref, double atol, double rtol);

}  // namespace climseg::test

// Catch2 assertion with the full report on failure (and on success with -s).
#define CS_REQUIRE_CLOSE(got, ref, atol, rtol)                               \
  do {                                                                       \
    auto cs_cmp_ = ::climseg::test::compare((got), (ref), (atol), (rtol));   \
    INFO(#got " vs " #ref ": " << cs_cmp_.str());                            \
    REQUIRE(cs_cmp_.ok);                                                     \
  } while (0)
