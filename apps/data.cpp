#include "apps/data.h"

namespace climseg::apps {

std::vector<Subcommand> add_data_commands(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Dataset tools: generate, convert, check, stats, stage, bench");
  data->require_subcommand(1);
  std::vector<Subcommand> subs;
  // Each subcommand registers here once its file exists (apps/data_<name>.cpp).
  subs.push_back(add_data_generate(data));
  subs.push_back(add_data_stats(data));
  subs.push_back(add_data_check(data));
  subs.push_back(add_data_stage(data));
  subs.push_back(add_data_bench(data));
  subs.push_back(add_data_convert(data));
  if (subs.empty()) app.remove_subcommand(data);  // no empty group in --help
  return subs;
}

}  // namespace climseg::apps
