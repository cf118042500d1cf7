// `climseg-bench events`: the speed of `climseg events`' analysis (docs/perf/, docs/events.md) on a long series of
// 768x1152 masks, side by side with a numpy + scipy implementation of the same object finding and overlap tracking
// (bench/events_reference.py) run on the same file in the same run, with a verify column: both must find the same
// objects (count and total area per step) and the same number of events.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace climseg::bench {

struct EventsBenchOptions {
  int64_t steps = 1000, height = 768, width = 1152;
  int64_t reference_steps = 200;  // steps the Python reference runs (it is slower); 0: skip it
  std::string dir;                // where the mask file goes (default: a temporary directory, removed after)
  std::string csv;                // also write the table here
};

CLI::App* add_events_subcommand(CLI::App& app, EventsBenchOptions& o);
int run_events_bench(const EventsBenchOptions& o);

}  // namespace climseg::bench
