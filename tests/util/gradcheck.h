// Generic finite-difference gradient checker for any Layer, in double on the CPU path (Caffe's GradientChecker,
// ggml's grad mode). The loss is L = sum(y * r) for a fixed random r, so dL/dy = r is fed to backward; every
// checked element of every input and parameter is perturbed by +-h and (L+ - L-) / 2h is compared with the
// analytic gradient: |analytic - numeric| <= tol * max(1, |analytic|, |numeric|) (Caffe's relative test, floored
// at 1). Nonsmooth points are skipped with a kink window (ReLU and max-pool at 0), and at most max_elements
// elements per tensor are checked (spread over the tensor) to keep big shapes affordable.
//
// Beyond the derivative itself it checks the rest of the contract:
// - accumulate mode: dx and parameter gradients pre-filled with noise end up as noise + the overwrite result;
// - strided views: inputs, output and gradients given as channel slices of wider buffers give the same numbers,
//   and nothing outside the slices is written (what zero-copy concatenation relies on).
#pragma once

#include <string>
#include <vector>

#include "engine/layer.h"
#include "tests/util/tolerances.h"

namespace climseg::test {

struct GradCheckOptions {
  double step = 1e-5;        // h, in double
  double tol = tol::gradcheck_f64.rtol;  // relative, floored at 1 (row "gradcheck fp64")
  double kink = 0.0;         // nonsmooth point of the layer's inputs, when kink_range > 0
  double kink_range = 0.0;   // skip input elements with |x - kink| < kink_range
  int max_elements = 64;     // per tensor
  uint64_t seed = 1234;
  double input_scale = 1.0;  // inputs ~ U(-scale, scale)
  bool check_modes = true;   // accumulate mode
  bool check_strided = true; // channel-slice views
  bool training = true;
};

struct GradCheckResult {
  bool ok = true;
  int checked = 0;
  int skipped = 0;
  double max_rel_err = 0;            // max of |a - n| / max(1, |a|, |n|)
  std::vector<std::string> failures;  // first few, with tensor name, index, analytic and numeric values
  std::string str() const;
};

GradCheckResult check_gradients(Layer& layer, const std::vector<Shape>& input_shapes,
                                const GradCheckOptions& opt = {});

}  // namespace climseg::test
