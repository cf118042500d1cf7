// `climseg data ...`: the dataset tools (generate, check, stats, stage, bench). Each lives in its own file
// (apps/data_<name>.cpp) and registers itself here; they exist only in builds with HDF5 (climseg_io).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace climseg::apps {

struct Subcommand {
  CLI::App* cmd = nullptr;
  std::function<int()> run;  // called after parsing when *cmd was given; returns the exit code, throws on error
};

// `climseg data generate` (also called by `climseg train` to make its default synthetic dataset).
struct GenerateOptions {
  std::string out;
  int64_t samples = 16;
  int64_t height = 768, width = 1152;
  uint64_t seed = 0;
  double valid_fraction = 0.1;
  int gzip = 0;
  bool force = false;
  bool quiet = false;  // only the summary lines (no per-sample report)
};
// Writes the dataset (train/, validation/, stats.h5) and prints its report; throws on bad options or I/O errors.
int run_generate(const GenerateOptions& o);

// Adds the `data` group and its subcommands to `app`.
std::vector<Subcommand> add_data_commands(CLI::App& app);

// One per file. Each adds its subcommand to `data`, binding options to state it owns (static or captured).
Subcommand add_data_generate(CLI::App* data);  // apps/data_generate.cpp
Subcommand add_data_check(CLI::App* data);     // apps/data_check.cpp
Subcommand add_data_stats(CLI::App* data);     // apps/data_stats.cpp
Subcommand add_data_stage(CLI::App* data);     // apps/data_stage.cpp
Subcommand add_data_bench(CLI::App* data);     // apps/data_bench.cpp

}  // namespace climseg::apps
