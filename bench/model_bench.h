// climseg-bench model: a whole network's training step (forward, loss, backward; no optimizer) timed on one
// device, CSV out. The GPU runs of the models issue use it at 768x1152 fp16; on the CPU it runs small sizes.
#pragma once

#include <string>

namespace climseg::bench {

struct ModelBenchOptions {
  std::string model = "deeplabv3plus";
  double width = 1.0;
  int64_t batch = 2, height = 768, width_px = 1152;
  std::string device = "cuda", dtype = "fp16";
  int warmup = 2, steps = 10;
  bool header = true, profile = false;
};

int run_model_bench(const ModelBenchOptions& o);

}  // namespace climseg::bench
