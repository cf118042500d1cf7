// A model's plan without running it (`climseg plan`): per-layer shapes, parameters and FLOPs, the totals counted as
// the 2018 work counted them, and the memory plan of a training (or inference) step. Nothing is allocated
// (NetOptions::plan_only), so full-size networks are planned on any machine.
#pragma once

#include <string>
#include <vector>

#include "engine/memory_plan.h"
#include "models/model.h"

namespace climseg {

struct PlanOptions {
  int64_t batch = 2, height = 768, width = 1152;
  DType dtype = DType::f16;
  Device device = Device::cuda;
  bool training = true;
  std::string optimizer = "adam";  // optimizer state per parameter: sgd 1, adam/adamw/lamb 2, none 0 (fp32 each)
};

struct PlanLayer {
  std::string name, op;
  Shape output;
  int64_t params = 0;
  double fwd_flops = 0;
  bool convolution = false;
};

struct ModelPlan {
  std::vector<PlanLayer> layers;
  int64_t trainable_params = 0;
  int64_t state_elements = 0;         // batch-norm running statistics
  double conv_fwd_flops = 0;          // forward convolutions and deconvolutions, whole batch (2 per multiply-add)
  double all_fwd_flops = 0;           // every layer's forward estimate, whole batch
  double train_tflop_per_sample = 0;  // 3 x conv_fwd_flops / batch / 1e12 (the 2018 work's count)
  MemoryPlan memory;                  // activations, gradients, saved state, workspace (one arena)
  size_t param_bytes = 0, grad_bytes = 0, master_bytes = 0, optimizer_bytes = 0, state_bytes = 0;
  int concat_inputs_aliased = 0, concat_inputs_copied = 0, concat_grads_aliased = 0, views = 0, inplace = 0;
};

ModelPlan plan_model(const ModelConfig& m, const PlanOptions& o);

// The report `climseg plan` prints: the layer table (unless summary_only), then totals and memory.
std::string format_plan(const ModelConfig& m, const PlanOptions& o, const ModelPlan& p, bool summary_only);

}  // namespace climseg
