// `climseg predict`: run a model with saved weights on
//   - DeepCAM-format (or 2018-format) HDF5 samples: the logits and the argmax mask to HDF5, optionally a PNG of the
//     mask over one channel; or
//   - CF-NetCDF climate model output (recognised by content; many files, many time steps): time steps streamed in
//     batches (reading overlapping compute), split over MPI ranks, the mask (and optionally class probabilities) to
//     one CF-NetCDF file with the inputs' coordinates (docs/data.md "NetCDF input" and "NetCDF output").
// The normalisation and channel names come from the weights file when it carries them (io/input_metadata.h).
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
  // NetCDF inputs.
  std::vector<std::string> channel_specs;  // --channel CHANNEL=VAR[@LEVEL][*SCALE][|VAR...]
  std::string channel_map;                 // --channel-map FILE
  std::string start, end;                  // ISO dates
  bool fill_missing = false;
  bool probabilities = false;
  bool no_fold = false;  // keep batch norms as separate layers (docs/inference.md)
};

void add_predict_command(CLI::App& app, PredictCommand& c);
int run_predict(const PredictCommand& c);

}  // namespace climseg::apps
