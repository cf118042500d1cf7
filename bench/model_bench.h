// climseg-bench model: a whole network's step timed on one device, CSV out: forward, loss and backward, and with
// --train also the Adam update with dynamic loss scaling in fp16 (what `climseg train` does per step, without the
// input pipeline), counting the steps skipped for non-finite gradients. scripts/gpu-check runs it at 768x1152 in
// fp16 and bf16 beside bench/torch_model.py; on the CPU it runs small sizes.
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
  bool train = false;        // also the optimizer step and loss scaling
  // Inference (`climseg predict`'s compute): forward only, no loss, NetOptions::training false, the per-channel maps
  // folded into the convolutions (Net::fold_batchnorm) unless no_fold. Its own CSV (kInferHeader), which
  // bench/torch_model.py --infer also prints.
  bool infer = false;
  bool no_fold = false;
  double peak_tflops = 0;    // > 0: the pct_peak column is model TFLOP/s over this (the card's dense peak)
};

inline constexpr const char* kInferHeader =
    "model,framework,device,dtype,batch,height,width,width_mult,threads,fwd_ms,fwd_min_ms,samples_per_s,steps,"
    "folded_maps,gflop_per_step,gflops";

int run_model_bench(const ModelBenchOptions& o);

}  // namespace climseg::bench
