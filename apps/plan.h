#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "apps/model_options.h"

namespace climseg::apps {

struct PlanCommand {
  CLI::App* cmd = nullptr;
  ModelOptions model;
  int64_t height = 768, width = 1152, batch = 2;
  std::string dtype = "fp16", optimizer = "adam";
  bool inference = false, summary_only = false;
};

void add_plan_command(CLI::App& app, PlanCommand& c);
int run_plan(const PlanCommand& c);

}  // namespace climseg::apps
