// `climseg-bench op`: one layer from a one-line descriptor, verified against the CPU reference, then timed.
//
// Descriptor: the op name, then key=value pairs (spaces or commas between them):
//   conv2d n=2 h=96 w=144 c=256 k=256 r=3 s=3 stride=1 pad=2 dil=2 groups=1 dtype=fp32 device=cpu
// Keys: n h w c (input NHWC), k (output channels), r s (kernel), stride, pad (explicit symmetric, or "same" for
// TF 'SAME'), dil, groups, extra (op-specific: deconv output_padding, resize output "HxW", concat input count,
// dropout p, batchnorm "relu" for the fused ReLU, softmax_xent classes), dtype, device. Unset keys take defaults
// (n=1, k=c, r=s=1, stride=1, pad=0, dil=1, groups=1, dtype=fp32, device=cpu).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/layer.h"

namespace climseg::bench {

struct OpDesc {
  std::string network, name;  // from the shape list (empty for a command-line descriptor)
  std::string op;
  int64_t n = 1, h = 1, w = 1, c = 1, k = -1, r = 1, s = 1, stride = 1, dil = 1, groups = 1;
  std::string pad = "0";
  std::string extra;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  std::string str() const;  // the descriptor, re-serialised
};

OpDesc parse_op_descriptor(const std::string& text);
std::vector<OpDesc> load_op_shapes(const std::string& csv_path);  // bench/shapes/networks.csv format

// A layer instance and its input shapes for a descriptor (index inputs are marked).
struct OpInstance {
  std::unique_ptr<Layer> layer;
  std::vector<Shape> inputs;
  std::vector<bool> index_input;
  int64_t classes = 0;  // for index inputs: values in [0, classes)
};
OpInstance make_op(const OpDesc& d);  // throws a clear error for an unknown op or a bad descriptor

struct OpRunOptions {
  int reps = 10;
  int warmup = 2;
  bool backward = true;
  bool torch = false;         // CPU only: also time PyTorch's layer (bench/torch_ops.py) and print the ratio
  bool header = true;
};

// Verifies, times and prints CSV rows for each descriptor; returns the number of rows whose verify failed.
int run_ops(const std::vector<OpDesc>& descs, const OpRunOptions& opt);

}  // namespace climseg::bench
