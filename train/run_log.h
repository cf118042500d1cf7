// The machine-readable outputs of a training run (docs/training.md, "Metrics" and "MLPerf logging"):
// - the JSONL metrics file, one object per line (steps and validations), appended to by a resumed run;
// - MLPerf logging (mlperf_logging's format): ":::MLLOG {...}" lines on stdout, with the run description the MLPerf
//   HPC DeepCAM rules (hpc_3.0.0) require.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "train/optimizer.h"
#include "train/schedule.h"

namespace climseg {

class MetricsLog {
 public:
  // path: the JSONL file (empty: none); mllog: print the :::MLLOG lines.
  MetricsLog(const std::string& path, bool mllog);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void write(const nlohmann::json& j);  // one line, flushed
  // Keys ending in _start / _stop are the INTERVAL_START / INTERVAL_END events of mlperf_logging's log_start /
  // log_end, the rest POINT_IN_TIME.
  void mllog(const std::string& key, const nlohmann::json& value,
             const nlohmann::json& metadata = nlohmann::json::object());

 private:
  FILE* f_ = nullptr;
  bool mllog_;
};

// The run's description, as the MLPerf HPC DeepCAM rules require it.
struct MllogRun {
  std::string org, platform, division, status;  // submission_*
  uint64_t seed = 0;
  int ranks = 1, nodes = 1, accelerators_per_node = 0;
  int64_t global_batch = 0;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  int64_t train_samples = 0, eval_samples = 0;
};
void mllog_run_description(MetricsLog& log, const MllogRun& r);

}  // namespace climseg
