#include "apps/model_options.h"

namespace climseg::apps {

ModelConfig ModelOptions::config() const {
  ModelConfig m = ModelConfig::defaults(model);
  if (!norm.empty()) m.norm = parse_norm(norm);
  if (!decoder.empty()) {
    CS_CHECK(model == "deeplabv3plus", "--decoder applies to deeplabv3plus only (", model, " has one decoder)");
    m.decoder = parse_decoder(decoder);
  }
  m.width = width;
  if (!blocks.empty()) m.blocks = blocks;
  if (growth > 0) m.growth = growth;
  if (kernel > 0) m.kernel = kernel;
  if (dropout >= 0) m.dropout = dropout;
  if (bn_momentum >= 0) m.bn_momentum = bn_momentum;
  m.seed = seed;
  return m;
}

void add_model_options(CLI::App* app, ModelOptions& o) {
  app->add_option("--model", o.model, "Network: deeplabv3plus (2018 ResNet-50 v2), tiramisu (2018), deepcam (Xception)")
      ->check(CLI::IsMember(model_names()))
      ->capture_default_str();
  app->add_option("--norm", o.norm,
                  "batchnorm, half (the 2018 DeepLabv3+ 'multiply by 0.5' without --use_batchnorm) or none; default: "
                  "the model's reference setting (tiramisu none, others batchnorm)")
      ->check(CLI::IsMember({"batchnorm", "half", "none"}));
  app->add_option("--decoder", o.decoder, "deeplabv3plus decoder: deconv1x (default), deconv, bilinear")
      ->check(CLI::IsMember({"deconv1x", "deconv", "bilinear"}));
  app->add_option("--width-multiplier", o.width, "Multiply every internal channel count (small CPU versions)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--blocks", o.blocks, "tiramisu dense block sizes, down path then bottleneck (default 2 2 2 4 5)");
  app->add_option("--growth", o.growth, "tiramisu growth rate (default 32)")->check(CLI::PositiveNumber);
  app->add_option("--kernel", o.kernel, "tiramisu kernel size, odd (default 5)")->check(CLI::PositiveNumber);
  app->add_option("--bn-momentum", o.bn_momentum,
                  "Batch-norm running-statistics momentum, PyTorch convention (default: the model's reference: "
                  "deeplabv3plus 0.0003 = TF decay 0.9997, deepcam 0.1)")
      ->check(CLI::Range(0.0, 1.0));
  app->add_option("--dropout", o.dropout, "tiramisu dropout probability (default 0.2)")->check(CLI::Range(0.0, 0.99));
}

}  // namespace climseg::apps
