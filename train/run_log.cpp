#include "train/run_log.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>

#include "engine/check.h"

namespace climseg {

namespace fs = std::filesystem;
using json = nlohmann::json;

MetricsLog::MetricsLog(const std::string& path, bool mllog) : mllog_(mllog) {
  if (path.empty()) return;
  // Append (a resumed run continues its file). A killed run may have left a partial last line: end it first, so
  // every complete line stays valid JSON.
  bool needs_newline = false;
  if (const fs::path parent = fs::path(path).parent_path(); !parent.empty()) fs::create_directories(parent);
  if (fs::exists(path) && fs::file_size(path) > 0) {
    std::ifstream in(path, std::ios::binary);
    in.seekg(-1, std::ios::end);
    needs_newline = in.get() != '\n';
  }
  f_ = std::fopen(path.c_str(), "a");
  CS_CHECK(f_ != nullptr, "cannot open --metrics file ", path, " for appending");
  if (needs_newline) std::fputc('\n', f_);
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const json& j) {
  if (!f_) return;
  const std::string s = j.dump();
  std::fprintf(f_, "%s\n", s.c_str());
  std::fflush(f_);
}

void MetricsLog::mllog(const std::string& key, const json& value, const json& metadata) {
  if (!mllog_) return;
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  json j;
  j["namespace"] = "";
  j["time_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(now).count();
  j["event_type"] = key.ends_with("_start") ? "INTERVAL_START"
                    : key.ends_with("_stop") ? "INTERVAL_END"
                                             : "POINT_IN_TIME";
  j["key"] = key;
  j["value"] = value;
  j["metadata"] = metadata;
  std::printf(":::MLLOG %s\n", j.dump().c_str());
}

void mllog_run_description(MetricsLog& log, const MllogRun& r) {
  const OptimizerConfig& ocfg = r.optimizer;
  const ScheduleConfig& sched = r.schedule;
  log.mllog("submission_benchmark", "deepcam");
  log.mllog("submission_org", r.org);
  log.mllog("submission_platform", r.platform);
  log.mllog("submission_division", r.division);
  log.mllog("submission_status", r.status);
  log.mllog("cache_clear", true);
  log.mllog("seed", r.seed);
  log.mllog("number_of_ranks", r.ranks);
  log.mllog("number_of_nodes", r.nodes);
  log.mllog("accelerators_per_node", r.accelerators_per_node);
  log.mllog("global_batch_size", r.global_batch);
  log.mllog("batchnorm_group_size", 1);
  log.mllog("gradient_accumulation_frequency", 1);
  static const std::map<std::string, std::string> kOptNames = {
      {"sgd", "SGD"}, {"adam", "Adam"}, {"adamw", "AdamW"}, {"lamb", "LAMB"}};
  const std::string kind = optimizer_kind_name(ocfg.kind);
  log.mllog("opt_name", kOptNames.count(kind) ? kOptNames.at(kind) : kind);
  log.mllog("opt_lr", sched.base_lr);
  if (ocfg.kind == OptimizerKind::sgd) {
    log.mllog("opt_momentum", ocfg.momentum);
  } else {
    log.mllog("opt_betas", json::array({ocfg.beta1, ocfg.beta2}));
    log.mllog("opt_eps", ocfg.eps);
  }
  log.mllog("opt_weight_decay", ocfg.weight_decay);
  if (ocfg.max_grad_norm > 0) log.mllog("opt_max_grad_norm", ocfg.max_grad_norm);
  const std::string sk = schedule_kind_name(sched.kind);
  log.mllog("scheduler_type", sk == "cosine" ? std::string("cosine_annealing") : sk);
  if (sched.kind == ScheduleKind::multistep) {
    log.mllog("scheduler_milestones", sched.milestones);
    log.mllog("scheduler_decay_rate", sched.decay_rate);
  } else if (sched.kind == ScheduleKind::cosine) {
    log.mllog("scheduler_t_max", sched.t_max);
    log.mllog("scheduler_eta_min", sched.eta_min);
  } else if (sched.kind == ScheduleKind::poly) {
    log.mllog("scheduler_t_max", sched.t_max);
    log.mllog("scheduler_power", sched.power);
  }
  log.mllog("scheduler_lr_warmup_steps", sched.warmup_steps);
  log.mllog("scheduler_lr_warmup_factor", sched.warmup_factor);
  log.mllog("train_samples", r.train_samples);
  log.mllog("eval_samples", r.eval_samples);
}

}  // namespace climseg
