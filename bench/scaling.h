// climseg-bench scaling: the command line of the scaling simulator (bench/scaling_model.h). It sweeps machines x
// networks x gradient dtypes x GPU counts x allreduce algorithms x {no overlap, bucketed overlap, gradient lag 1}
// and writes one CSV row per case, then a summary (the best algorithm per mode at the largest count, and the
// 2018 paper's measured efficiencies next to the model's). With --calibrate it fits alpha and beta per algorithm
// to measured allreduce times and adds the resulting one-node "host" machine. docs/scaling.md describes it.
//
// CSV columns (stable): machine,model,dtype,gpus,algo,overlap,lag,allreduce_ms,compute_ms,step_ms,efficiency
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace climseg::bench {

struct ScalingOptions {
  std::vector<std::string> machines = {"summit", "h100"};
  std::vector<std::string> models = {"deeplabv3plus", "tiramisu", "deepcam"};
  std::vector<std::string> dtypes = {"fp16", "fp32"};
  std::vector<std::string> algos = {"ring", "rhd", "dbt", "hier", "hybrid2018"};
  std::vector<int64_t> gpus;      // empty: each machine's own sweep
  std::vector<std::string> sets;  // key=value machine constants (applied to every machine)
  int64_t batch = 2;              // samples per GPU (2018: 2)
  double bucket_mib = 64;         // overlap bucket size (engine spec section 8)
  std::string calibrate;          // CSV of measured allreduce times
  int64_t calibrate_ranks = 0;    // rank count when the CSV has no ranks column
  double host_tflops = 1.0;       // compute rate of the calibrated host machine
  std::string out;                // CSV file (summary then goes to stdout); empty: CSV to stdout, summary to stderr
  bool header = true, list_constants = false;
};

// Adds the `scaling` subcommand to app, storing its options in o (which must outlive the parse).
CLI::App* add_scaling_subcommand(CLI::App& app, ScalingOptions& o);
int run_scaling(const ScalingOptions& o);

}  // namespace climseg::bench
