#include "train/loss_scaler.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "engine/check.h"

namespace climseg {

void LossScalerConfig::validate() const {
  switch (mode) {
    case LossScaleMode::none:
      return;
    case LossScaleMode::static_scale:
      CS_CHECK(std::isfinite(init_scale) && init_scale > 0, "loss scaler: static scale (init_scale) must be finite ",
               "and > 0, got ", init_scale);
      return;
    case LossScaleMode::dynamic:
      break;
  }
  CS_CHECK(std::isfinite(init_scale) && init_scale > 0, "loss scaler: init_scale must be finite and > 0, got ",
           init_scale);
  CS_CHECK(std::isfinite(growth_factor) && growth_factor > 1, "loss scaler: growth_factor must be > 1, got ",
           growth_factor);
  CS_CHECK(backoff_factor > 0 && backoff_factor < 1, "loss scaler: backoff_factor must be in (0, 1), got ",
           backoff_factor);
  CS_CHECK(growth_interval >= 1, "loss scaler: growth_interval must be >= 1, got ", growth_interval);
  CS_CHECK(std::isfinite(min_scale) && min_scale > 0, "loss scaler: min_scale must be finite and > 0, got ", min_scale);
  CS_CHECK(std::isfinite(max_scale), "loss scaler: max_scale must be finite, got ", max_scale);
  CS_CHECK(min_scale <= init_scale && init_scale <= max_scale,
           "loss scaler: need min_scale <= init_scale <= max_scale, got ", min_scale, " <= ", init_scale,
           " <= ", max_scale);
}

LossScaleMode parse_loss_scale_mode(std::string_view s) {
  if (s == "none") return LossScaleMode::none;
  if (s == "static") return LossScaleMode::static_scale;
  if (s == "dynamic") return LossScaleMode::dynamic;
  CS_THROW("unknown loss scale mode '", s, "' (none, static, dynamic)");
}

const char* loss_scale_mode_name(LossScaleMode m) {
  switch (m) {
    case LossScaleMode::none:
      return "none";
    case LossScaleMode::static_scale:
      return "static";
    case LossScaleMode::dynamic:
      return "dynamic";
  }
  CS_THROW("bad LossScaleMode ", static_cast<int>(m));
}

LossScaler::LossScaler(LossScalerConfig cfg) : cfg_(cfg) {
  cfg_.validate();
  scale_ = cfg_.mode == LossScaleMode::none ? 1.0 : cfg_.init_scale;
}

// torch.cuda.amp.GradScaler.update() (torch/amp/grad_scaler.py; the op torch._amp_update_scale_, CUDA kernel
// amp_update_scale_cuda_kernel in aten/src/ATen/native/cuda/AmpKernels.cu). Its documentation: when optimizer
// steps were skipped (inf/NaN gradients) the scale is multiplied by backoff_factor; after growth_interval
// consecutive unskipped iterations it is multiplied by growth_factor. The kernel:
//   if found_inf:  scale *= backoff;  tracker = 0
//   else:          successful = tracker + 1
//                  if successful == growth_interval: new = scale * growth; if isfinite(new): scale = new; tracker = 0
//                  else: tracker = successful
// The transitions below are the same, tracker = clean_, with two bounds PyTorch does not have: backoff stops at
// min_scale and growth at max_scale (loss_scaler.h says why). Like PyTorch, reaching the ceiling still resets the
// counter, and the step that overflowed is skipped by the caller (torch: scaler.step() skips optimizer.step()).
void LossScaler::update(bool finite) {
  if (!finite) {
    ++skipped_;
    clean_ = 0;
    if (cfg_.mode == LossScaleMode::dynamic) scale_ = std::max(scale_ * cfg_.backoff_factor, cfg_.min_scale);
    return;
  }
  ++clean_;
  if (cfg_.mode == LossScaleMode::dynamic && clean_ == cfg_.growth_interval) {
    scale_ = std::min(scale_ * cfg_.growth_factor, cfg_.max_scale);
    clean_ = 0;
  }
}

void LossScaler::set_state(const State& s) {
  CS_CHECK(std::isfinite(s.scale) && s.scale > 0, "loss scaler state: scale must be finite and > 0, got ", s.scale);
  CS_CHECK(s.clean_steps >= 0 && s.skipped_steps >= 0, "loss scaler state: negative counters (clean_steps ",
           s.clean_steps, ", skipped_steps ", s.skipped_steps, ")");
  switch (cfg_.mode) {
    case LossScaleMode::dynamic:
      CS_CHECK(s.scale >= cfg_.min_scale && s.scale <= cfg_.max_scale, "loss scaler state: scale ", s.scale,
               " is outside this run's [min_scale, max_scale] = [", cfg_.min_scale, ", ", cfg_.max_scale, "]");
      CS_CHECK(s.clean_steps < cfg_.growth_interval, "loss scaler state: clean_steps ", s.clean_steps,
               " must be below growth_interval ", cfg_.growth_interval, " (the counter resets when it grows)");
      break;
    case LossScaleMode::static_scale:
      CS_CHECK(s.scale == cfg_.init_scale, "loss scaler state: scale ", s.scale, " differs from this run's static ",
               "scale ", cfg_.init_scale);
      break;
    case LossScaleMode::none:
      CS_CHECK(s.scale == 1.0, "loss scaler state: scale ", s.scale, " but this run has no loss scaling (scale 1)");
      break;
  }
  scale_ = s.scale;
  clean_ = s.clean_steps;
  skipped_ = s.skipped_steps;
}

// ---- metadata ---------------------------------------------------------------------------------------------------

namespace {

const std::string& need(const std::map<std::string, std::string>& meta, const std::string& key) {
  auto it = meta.find(key);
  CS_CHECK(it != meta.end(), "loss scaler state: metadata key '", key, "' is missing");
  return it->second;
}

int64_t parse_count(const std::map<std::string, std::string>& meta, const std::string& key) {
  const std::string& v = need(meta, key);
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  CS_CHECK(!v.empty() && errno == 0 && end == v.c_str() + v.size() && x >= 0, "loss scaler state: metadata '", key,
           "' = '", v, "' is not a non-negative integer");
  return x;
}

}  // namespace

void write_loss_scaler_state(const LossScaler::State& s, std::map<std::string, std::string>& meta,
                             const std::string& prefix) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", s.scale);  // hexadecimal: exact
  meta[prefix + "scale"] = buf;
  meta[prefix + "clean_steps"] = std::to_string(s.clean_steps);
  meta[prefix + "skipped_steps"] = std::to_string(s.skipped_steps);
}

LossScaler::State read_loss_scaler_state(const std::map<std::string, std::string>& meta, const std::string& prefix) {
  LossScaler::State s;
  const std::string key = prefix + "scale";
  const std::string& v = need(meta, key);
  char* end = nullptr;
  errno = 0;
  s.scale = std::strtod(v.c_str(), &end);
  CS_CHECK(!v.empty() && errno == 0 && end == v.c_str() + v.size() && std::isfinite(s.scale) && s.scale > 0,
           "loss scaler state: metadata '", key, "' = '", v, "' is not a finite positive number");
  s.clean_steps = parse_count(meta, prefix + "clean_steps");
  s.skipped_steps = parse_count(meta, prefix + "skipped_steps");
  return s;
}

}  // namespace climseg
