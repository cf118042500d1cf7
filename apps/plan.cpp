// `climseg plan`: the layer table, totals and memory plan of a model, without training or a GPU (models/plan.h).
#include "apps/plan.h"

#include <cstdio>

#include "models/plan.h"

namespace climseg::apps {

void add_plan_command(CLI::App& app, PlanCommand& c) {
  c.cmd = app.add_subcommand("plan", "Layers, parameters, FLOPs and the memory plan of a model (no training, no GPU)");
  add_model_options(c.cmd, c.model);
  c.cmd->add_option("--height", c.height, "Input height")->check(CLI::PositiveNumber)->capture_default_str();
  c.cmd->add_option("--width", c.width, "Input width")->check(CLI::PositiveNumber)->capture_default_str();
  c.cmd->add_option("--batch", c.batch, "Samples per step (per GPU)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c.cmd->add_option("--dtype", c.dtype, "Compute dtype: fp32, fp16, bf16")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}))
      ->capture_default_str();
  c.cmd->add_option("--optimizer", c.optimizer, "Optimizer whose state is counted: none, sgd, adam, adamw, lamb")
      ->check(CLI::IsMember({"none", "sgd", "adam", "adamw", "lamb"}))
      ->capture_default_str();
  c.cmd->add_flag("--inference", c.inference, "Plan a forward pass without gradients");
  c.cmd->add_flag("--summary", c.summary_only, "Totals and memory only, no layer table");
}

int run_plan(const PlanCommand& c) {
  ModelConfig m = c.model.config();
  PlanOptions o;
  o.batch = c.batch;
  o.height = c.height;
  o.width = c.width;
  o.dtype = parse_dtype(c.dtype);
  o.device = Device::cuda;  // the plan a GPU run would use; nothing is allocated
  o.training = !c.inference;
  o.optimizer = c.optimizer;
  ModelPlan p = plan_model(m, o);
  std::fputs(format_plan(m, o, p, c.summary_only).c_str(), stdout);
  return 0;
}

}  // namespace climseg::apps
