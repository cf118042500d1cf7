// `climseg demo`: a short end-to-end demonstration of the engine until `climseg train` exists: a small net of the
// foundation layers (1x1 convolutions, ReLU, a residual add, a zero-copy concat) is planned, bound and trained with
// plain SGD to regress a fixed random "teacher" network's output on random 16-channel fields.
#pragma once

#include <cstdint>
#include <string>

namespace climseg::apps {

struct DemoOptions {
  std::string device = "auto";  // auto: CUDA when a device is present, else CPU
  int batch = 4, height = 48, width = 72, steps = 150;
  double lr = 0.05;
  uint64_t seed = 42;
  bool profile = false;
  std::string profile_csv;  // write the profile report as CSV here
};

// Returns the process exit code; throws climseg::Error on bad input.
int run_demo(const DemoOptions& opt);

}  // namespace climseg::apps
