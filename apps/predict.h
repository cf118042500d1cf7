// `climseg predict`: run a model with saved weights on DeepCAM-format (or 2018-format) samples and write the logits
// and the argmax mask to HDF5, optionally a PNG of the mask over one channel.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "apps/model_options.h"

namespace climseg::apps {

struct PredictCommand {
  CLI::App* cmd = nullptr;
  ModelOptions model;
  std::string weights;
  std::vector<std::string> inputs;
  std::string output, png, stats;
  bool no_normalize = false;
  std::string device = "auto", dtype = "fp32";
  int64_t batch = 1;
  std::vector<int64_t> crop;  // H W
  int64_t stride = 1;
  int64_t png_sample = 0;
  std::string png_channel = "TMQ";
};

void add_predict_command(CLI::App& app, PredictCommand& c);
int run_predict(const PredictCommand& c);

}  // namespace climseg::apps
