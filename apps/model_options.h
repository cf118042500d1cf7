// Model options shared by the subcommands that build a network (plan, predict; later train and eval): the model
// name and the options users of the reference codes have (norm, decoder, Tiramisu shape, width multiplier).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "models/model.h"

namespace climseg::apps {

struct ModelOptions {
  std::string model = "deeplabv3plus";
  std::string norm;     // empty: the model's reference setting
  std::string decoder;  // empty: deconv1x
  double width = 1.0;
  std::vector<int64_t> blocks;     // empty: 2 2 2 4 5
  int64_t growth = 0, kernel = 0;  // 0: 32, 5
  double dropout = -1;             // < 0: 0.2
  double bn_momentum = -1;         // < 0: the model's reference (deeplabv3plus 0.0003, i.e. TF decay 0.9997; deepcam 0.1)
  uint64_t seed = 0;

  // The ModelConfig these options describe (model defaults, then the options given).
  ModelConfig config() const;
};

void add_model_options(CLI::App* app, ModelOptions& o);

}  // namespace climseg::apps
