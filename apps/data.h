// `climseg data ...`: the dataset tools (generate, check, stats, stage, bench). Each lives in its own file
// (apps/data_<name>.cpp) and registers itself here; they exist only in builds with HDF5 (climseg_io).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

namespace climseg::apps {

struct Subcommand {
  CLI::App* cmd = nullptr;
  std::function<int()> run;  // called after parsing when *cmd was given; returns the exit code, throws on error
};

// Adds the `data` group and its subcommands to `app`.
std::vector<Subcommand> add_data_commands(CLI::App& app);

// One per file. Each adds its subcommand to `data`, binding options to state it owns (static or captured).
Subcommand add_data_generate(CLI::App* data);  // apps/data_generate.cpp
Subcommand add_data_check(CLI::App* data);     // apps/data_check.cpp
Subcommand add_data_stats(CLI::App* data);     // apps/data_stats.cpp
Subcommand add_data_stage(CLI::App* data);     // apps/data_stage.cpp
Subcommand add_data_bench(CLI::App* data);     // apps/data_bench.cpp

}  // namespace climseg::apps
