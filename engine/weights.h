// A Net's weights as safetensors files (engine/safetensors.h; docs/checkpoint-format.md), in two conventions:
//
// Native (save_weights / load_weights): climseg's own names and layouts. Every trainable parameter (Net::params())
// and every piece of layer state (Net::state(): batch-norm running statistics) under its Net name
// ("<node>.<local name>", e.g. "enc.conv.weight", "enc.bn.running_mean"), with its 4-D shape (KRSC convolution
// weights, (1,1,1,C) vectors) and its dtype in the net (parameters: the net's dtype; state: stat_dtype). Metadata:
// format = "climseg-weights", version = "1", plus whatever the caller adds (the model configuration).
//
// PyTorch (export_pytorch / import_pytorch): a state_dict that `load_state_dict(strict=True)` accepts for the
// equivalent nn.Module whose module paths are the node names. Names and layouts follow pytorch_layout() below, the
// one place where the mapping rule lives; data are float32. Metadata: format = "pt", version = "1".
//
// Loading checks the whole file against the net before changing anything: every expected name present, no
// unexpected names, every shape equal, float dtypes. One error lists every problem (missing names, unexpected
// names, shape mismatches with the expected and the found shape), naming the file. Values of another float dtype
// are converted (an fp32 file into an fp16 or fp64 net), rounding to nearest even. Nets on the CPU and on CUDA
// both work: tensors travel through host memory with the Tensor API's synchronous copies, so the caller need not
// synchronise, and the whole file is read into host memory before the net is written (on any error the net is
// unchanged). All four functions take a compiled net (its parameters and state exist only after compile()).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/net.h"

namespace climseg {

inline constexpr const char* kWeightsFormat = "climseg-weights";  // metadata "format" of native files
inline constexpr const char* kWeightsVersion = "1";               // metadata "version" of both conventions
inline constexpr const char* kPytorchFormat = "pt";  // what safetensors.torch.save_file writes for PyTorch data

// Native convention. `metadata` must not use the reserved keys "format" and "version".
void save_weights(const Net& net, const std::string& path, const std::map<std::string, std::string>& metadata = {});
void load_weights(Net& net, const std::string& path);

// A training checkpoint (engine/checkpoint.h: verified by its checksum first) holds the parameters under their net
// names (from the fp32 master weights) and the layer state, besides optimizer state (ignored here): they are
// copied into the net (converted to its dtype). Throws naming the file and the first missing or mismatched tensor.
void load_checkpoint_weights(Net& net, const std::string& path);
// True when `path` is a training checkpoint (its metadata says climseg.format = climseg-checkpoint).
bool is_checkpoint_file(const std::string& path);

// PyTorch convention.
void export_pytorch(const Net& net, const std::string& path, const std::map<std::string, std::string>& metadata = {});
void import_pytorch(Net& net, const std::string& path);

// ---- the PyTorch mapping rule ---------------------------------------------------------------------------------
//
// Name:   "<node>.<local>", with the local name renamed by layer type where PyTorch's module uses another name:
//           batchnorm2d: gamma -> weight, beta -> bias        (nn.BatchNorm2d)
//           affine:      scale -> weight, shift -> bias       (a module with per-channel weight and bias)
//         Everything else keeps its name (conv weight/bias, running_mean, running_var).
// Layout: ParamLayout::vector      (1,1,1,C)        -> (C,)
//         ParamLayout::vector_c11  (1,1,1,C)        -> (C,1,1)      (DeepCAM's TrainableAffine)
//         ParamLayout::conv_krsc   (K,R,S,C/g)      -> (K,C/g,R,S)   nn.Conv2d (OIHW)
//         ParamLayout::deconv_crsk (C_in,R,S,K/g)   -> (C_in,K/g,R,S) nn.ConvTranspose2d
//         Layer state is a vector.
// Extra:  "<node>.num_batches_tracked" for each batchnorm2d node: an I64 scalar (shape []) holding 0, which
//         nn.BatchNorm2d's state_dict has and strict loading requires; import ignores it.
std::string pytorch_local_name(const std::string& layer_type, const std::string& local_name);

struct PytorchTensor {
  std::string name;            // state_dict key
  std::vector<int64_t> shape;  // PyTorch shape
  ParamLayout layout = ParamLayout::vector;
  const Net::Param* source = nullptr;  // the Net's parameter or state it comes from; null for num_batches_tracked
};
// The state_dict of `net` (after compile), in net order: parameters and state of each node, then its
// num_batches_tracked. Used by export and import, and printable as the documentation of a model's names.
std::vector<PytorchTensor> pytorch_layout(const Net& net);

}  // namespace climseg
