// PyTorch as a test oracle (Debian's python3-torch, run by /usr/bin/python3): a layer's forward and backward are
// computed by torch in float64 from the same inputs, parameters and output gradient, and returned in climseg's
// layouts. The op definitions live in tests/torch/ops/<op>.py; the driver is tests/torch/oracle.py (its docstring
// gives the exchange format). Tests under tests/torch/ are labelled `torch` and skipped (exit 77) when torch is
// not importable.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace climseg::test {

bool torch_available();  // /usr/bin/python3 can import torch (checked once)

struct TorchCall {
  std::string op;                       // tests/torch/ops/<op>.py
  nlohmann::json attrs = nlohmann::json::object();
  std::vector<Tensor> inputs;           // host NHWC: values (any float dtype) or class indices (integer dtypes)
  std::vector<Tensor> params;           // host, climseg's layouts
  Tensor dy;                            // host NHWC gradient of the output; undefined: forward only
  std::map<std::string, Tensor> state;  // extra named tensors (e.g. running statistics)
};

struct TorchResult {
  Tensor y;                             // fp64 NHWC ((1,1,1,1) for a scalar)
  std::vector<Tensor> dx;               // per input; undefined for class-index inputs or without dy
  std::vector<Tensor> dparams;          // climseg's layouts
  std::map<std::string, Tensor> state;  // what the op returned as state
};

// Runs the op in PyTorch; throws climseg::Error with Python's output when it fails.
TorchResult torch_run(const TorchCall& call);

// Runs /usr/bin/python3 <source dir>/<script> <args...> (a test's own driver, for what the op oracle does not
// cover); returns its output, or throws climseg::Error with it when the script fails.
std::string run_python_script(const std::string& script, const std::vector<std::string>& args);

}  // namespace climseg::test
