// The three networks as graph builders over the layers (reference-systems.md section 2; STYLE.md: models/ holds
// graph builders only). A builder adds nodes to a Net; compiling, initialising and running are the caller's.
//
//   Net net;
//   ModelConfig m = ModelConfig::defaults("deeplabv3plus");
//   ModelGraph g = build_model(net, m, /*batch*/ 2, /*height*/ 96, /*width*/ 144);
//   add_loss(net, g, SoftmaxXentConfig::gb_deeplab());   // training: labels input + loss node
//   net.compile({.device = Device::cpu, .dtype = DType::f32});
//
// Node names are dotted paths ("backbone.block1.unit_1.conv1"), so parameter names ("<node>.weight") are stable,
// documented (docs/models.md) and equal to the module paths of the PyTorch definitions in tests/torch/models/.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/net.h"
#include "layers/softmax_xent.h"

namespace climseg {

// What stands where the reference networks put batch norm.
enum class NormMode : uint8_t {
  batchnorm,  // BatchNorm2d (training: batch statistics; inference: running statistics)
  half,       // the 2018 DeepLabv3+ code without --use_batchnorm: every batch norm becomes "multiply by 0.5"
  none,       // nothing (Tiramisu's production setting)
};

// 2018 DeepLabv3+ decoders (reference-systems.md 2.1).
enum class DecoderMode : uint8_t {
  deconv1x,  // deconvolutions to full resolution plus the full-resolution input skip (production)
  deconv,    // deconvolutions to full resolution, no input skip
  bilinear,  // standard DeepLabv3+: x4 bilinear upsampling, decoder convs, x4 bilinear upsampling
};

struct ModelConfig {
  std::string name = "deeplabv3plus";  // deeplabv3plus (2018, ResNet-50 v2), tiramisu (2018), deepcam (Xception)
  int64_t in_channels = 16;
  int64_t num_classes = 3;
  double width = 1.0;  // width multiplier: every internal channel count c becomes max(1, round(c * width))
  NormMode norm = NormMode::batchnorm;
  DecoderMode decoder = DecoderMode::deconv1x;  // deeplabv3plus only
  // Batch-norm settings of the reference code: GB TF-slim decay 0.9997 (momentum 0.0003), eps 1e-3 (slim's
  // resnet_arg_scope); DeepCAM PyTorch defaults (momentum 0.1, eps 1e-5). ModelConfig::defaults sets them.
  double bn_momentum = 0.1, bn_eps = 1e-5;
  // Tiramisu (reference-systems.md 2.2).
  std::vector<int64_t> blocks = {2, 2, 2, 4, 5};  // dense block sizes, down path then bottleneck
  int64_t growth = 32;
  int64_t kernel = 5;
  int64_t stem_channels = 64;
  double dropout = 0.2;
  uint64_t seed = 0;  // dropout layers' seeds derive from it

  // The reference settings of each model: deeplabv3plus batch norm on (decay 0.9997, eps 1e-3) and deconv1x;
  // tiramisu batch norm off, blocks 2,2,2,4,5, growth 32, 5x5, dropout 0.2; deepcam batch norm (PyTorch defaults).
  // Throws for an unknown name, listing the known ones.
  static ModelConfig defaults(const std::string& name);
};

std::vector<std::string> model_names();

// The configuration as string metadata for weight files ("model", "norm", "decoder", "width", "blocks", ...), and
// back: a file's metadata rebuilds the network it was saved from (`climseg predict` without --model). Throws for
// metadata that is missing "model" or has unparsable values, naming the key.
std::map<std::string, std::string> model_metadata(const ModelConfig& m);
ModelConfig model_from_metadata(const std::map<std::string, std::string>& md);
NormMode parse_norm(const std::string& s);        // "batchnorm" | "half" | "none"
DecoderMode parse_decoder(const std::string& s);  // "deconv1x" | "deconv" | "bilinear"
const char* norm_name(NormMode m);
const char* decoder_name(DecoderMode m);

// The factor H and W must be divisible by (8 for deeplabv3plus, 16 for the others); check_input_size throws a
// clear error naming the model, the size and the nearest valid sizes.
int64_t input_multiple(const ModelConfig& m);
void check_input_size(const ModelConfig& m, int64_t height, int64_t width);

struct ModelGraph {
  Net::Id input = -1;   // (batch, H, W, in_channels), normalised fields
  Net::Id logits = -1;  // (batch, H, W, num_classes)
  Net::Id labels = -1;  // (batch, H, W, 1) class indices, after add_loss
  Net::Id loss = -1;    // (1, 1, 1, 1), after add_loss
};

// Adds the network to `net` (inputs named "input"); the logits are the net's output until add_loss.
ModelGraph build_model(Net& net, const ModelConfig& m, int64_t batch, int64_t height, int64_t width);
// The loss of the model's reference system: GB 2018 for deeplabv3plus and tiramisu, DeepCAM's for deepcam.
SoftmaxXentConfig reference_loss(const ModelConfig& m);

// Adds the labels input ("labels", `label_dtype`) and the loss node ("loss"), which becomes the net's output.
void add_loss(Net& net, ModelGraph& g, const SoftmaxXentConfig& loss, DType label_dtype = DType::i32);

}  // namespace climseg
