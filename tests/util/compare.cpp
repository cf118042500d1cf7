#include "tests/util/compare.h"

#include <cmath>
#include <cstdio>

namespace climseg::test {

std::string CompareResult::str() const {
  char buf[512];
  int64_t i = worst_index < 0 ? 0 : worst_index;
  int64_t c = shape.c ? i % shape.c : 0;
  int64_t rest = shape.c ? i / shape.c : 0;
  int64_t w = shape.w ? rest % shape.w : 0;
  rest = shape.w ? rest / shape.w : 0;
  int64_t h = shape.h ? rest % shape.h : 0;
  int64_t n = shape.h ? rest / shape.h : 0;
  std::snprintf(buf, sizeof buf,
                "%s: %lld/%lld outside budget; worst at (%lld,%lld,%lld,%lld) got %.9g ref %.9g; max abs err %.3g, "
                "max rel err %.3g, %.1f%% of budget, NMSE %.3g%s",
                ok ? "PASS" : "FAIL", static_cast<long long>(failures), static_cast<long long>(count),
                static_cast<long long>(n), static_cast<long long>(h), static_cast<long long>(w),
                static_cast<long long>(c), worst_got, worst_ref, max_abs_err, max_rel_err, budget_used * 100.0, nmse,
                nonfinite ? " (non-finite values)" : "");
  return buf;
}

CompareResult compare(const Tensor& got_in, const Tensor& ref_in, double atol, double rtol) {
  CS_CHECK(got_in.shape() == ref_in.shape(), "compare: shapes differ: ", got_in.str(), " vs ", ref_in.str());
  Tensor got = got_in.device() == Device::cpu ? got_in : got_in.to(Device::cpu);
  Tensor ref = ref_in.device() == Device::cpu ? ref_in : ref_in.to(Device::cpu);
  CompareResult r;
  r.shape = got.shape();
  r.count = got.numel();
  double se = 0, sr = 0;
  for (int64_t i = 0; i < r.count; ++i) {
    double g = got.get_flat(i), f = ref.get_flat(i);
    double err = std::fabs(g - f);
    double budget = atol + rtol * std::fabs(f);
    double used;
    if (!std::isfinite(g) || !std::isfinite(f)) {
      bool same = (std::isnan(g) && std::isnan(f)) || g == f;
      used = same ? 0.0 : INFINITY;
      if (!same) r.nonfinite = true;
      err = same ? 0.0 : INFINITY;
    } else {
      used = budget > 0 ? err / budget : (err > 0 ? INFINITY : 0.0);
      se += (g - f) * (g - f);
      sr += f * f;
    }
    if (used > 1.0) r.failures++;
    if (err > r.max_abs_err) r.max_abs_err = err;
    double rel = f != 0 ? err / std::fabs(f) : (err > 0 ? INFINITY : 0.0);
    if (rel > r.max_rel_err) r.max_rel_err = rel;
    if (r.worst_index < 0 || used > r.budget_used) {
      r.budget_used = used;
      r.worst_index = i;
      r.worst_got = g;
      r.worst_ref = f;
    }
  }
  r.nmse = sr > 0 ? se / sr : se;
  r.ok = r.failures == 0;
  return r;
}

}  // namespace climseg::test
