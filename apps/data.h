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
  // "hdf5" (DeepCAM layout: train/, validation/, stats.h5) or "netcdf" (CAM-like history files, labels/, stats.h5;
  // needs a build with libnetcdf). The next two are for netcdf only.
  std::string format = "hdf5";
  int64_t steps_per_file = 8;                   // 3-hourly steps per history file (8: one day)
  std::string start_date = "2000-01-01 00:00";  // first step, noleap calendar, from 2000-01-01, hour a multiple of 3
  bool sequence = false;  // netcdf: events that persist and move, with a truth catalogue (io::SyntheticSequence)
};
// Writes the dataset and prints its report; throws on bad options or I/O errors.
int run_generate(const GenerateOptions& o);

// Adds the `data` group and its subcommands to `app`.
std::vector<Subcommand> add_data_commands(CLI::App& app);

// One per file. Each adds its subcommand to `data`, binding options to state it owns (static or captured).
Subcommand add_data_generate(CLI::App* data);  // apps/data_generate.cpp
Subcommand add_data_check(CLI::App* data);     // apps/data_check.cpp
Subcommand add_data_stats(CLI::App* data);     // apps/data_stats.cpp
Subcommand add_data_stage(CLI::App* data);     // apps/data_stage.cpp
Subcommand add_data_bench(CLI::App* data);     // apps/data_bench.cpp
Subcommand add_data_convert(CLI::App* data);   // apps/data_convert.cpp

}  // namespace climseg::apps
