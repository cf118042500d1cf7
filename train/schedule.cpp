#include "train/schedule.h"

#include <cmath>
#include <numbers>
#include <string>

#include "engine/check.h"

namespace climseg {

void ScheduleConfig::validate() const {
  CS_CHECK(std::isfinite(base_lr) && base_lr > 0, "--lr must be a positive number, got ", base_lr);
  CS_CHECK(warmup_steps >= 0, "--warmup-steps must be >= 0, got ", warmup_steps);
  CS_CHECK(std::isfinite(warmup_factor) && warmup_factor >= 1.0,
           "--warmup-factor must be >= 1 (warmup runs from base lr to base lr * factor; 1: from 0 to base lr), got ",
           warmup_factor);
  const char* name = schedule_kind_name(kind);
  CS_CHECK(kind == ScheduleKind::multistep || milestones.empty(),
           "--milestones applies to the multistep schedule, "
           "not ",
           name);
  CS_CHECK(kind == ScheduleKind::cosine || kind == ScheduleKind::poly || t_max == 0,
           "--t-max applies to the cosine and poly schedules, not ", name);
  switch (kind) {
    case ScheduleKind::constant:
      break;
    case ScheduleKind::multistep:
      for (size_t i = 0; i < milestones.size(); ++i) {
        CS_CHECK(milestones[i] > 0, "--milestones must be positive step counts (after warmup), got ", milestones[i]);
        CS_CHECK(i == 0 || milestones[i] > milestones[i - 1], "--milestones must be increasing, got ",
                 milestones[i - 1], " then ", milestones[i]);
      }
      CS_CHECK(std::isfinite(decay_rate) && decay_rate > 0 && decay_rate <= 1, "--decay-rate must be in (0, 1], got ",
               decay_rate);
      break;
    case ScheduleKind::cosine:
      CS_CHECK(t_max > 0, "--t-max must be a positive number of steps for the cosine schedule, got ", t_max);
      CS_CHECK(std::isfinite(eta_min) && eta_min >= 0, "--eta-min must be >= 0, got ", eta_min);
      break;
    case ScheduleKind::poly:
      CS_CHECK(t_max > 0, "--t-max must be a positive number of steps for the poly schedule, got ", t_max);
      CS_CHECK(std::isfinite(power) && power > 0, "--power must be a positive number, got ", power);
      break;
  }
}

double schedule_lr(const ScheduleConfig& c, int64_t step) {
  CS_CHECK(step >= 0, "schedule_lr: step ", step, " is negative");
  const double base = c.base_lr, F = c.warmup_factor;
  const int64_t W = c.warmup_steps;
  if (step < W) {
    const double t = static_cast<double>(step) / static_cast<double>(W);
    return F == 1.0 ? base * t : base * ((F - 1.0) * t + 1.0);
  }
  const double peak = F == 1.0 ? base : base * F;
  const int64_t j = step - W;
  switch (c.kind) {
    case ScheduleKind::constant:
      return peak;
    case ScheduleKind::multistep: {
      double lr = peak;
      for (int64_t m : c.milestones)
        if (m <= j) lr *= c.decay_rate;
      return lr;
    }
    case ScheduleKind::cosine: {
      const double x = std::numbers::pi * static_cast<double>(j) / static_cast<double>(c.t_max);
      return c.eta_min + (peak - c.eta_min) * (1.0 + std::cos(x)) / 2.0;
    }
    case ScheduleKind::poly: {
      if (j >= c.t_max) return 0.0;
      return peak * std::pow(1.0 - static_cast<double>(j) / static_cast<double>(c.t_max), c.power);
    }
  }
  CS_THROW("schedule_lr: unknown schedule kind ", static_cast<int>(c.kind));
}

ScheduleKind parse_schedule_kind(std::string_view s) {
  if (s == "constant") return ScheduleKind::constant;
  if (s == "multistep") return ScheduleKind::multistep;
  if (s == "cosine") return ScheduleKind::cosine;
  if (s == "poly") return ScheduleKind::poly;
  CS_THROW("unknown learning-rate schedule '", s, "' (choices: constant, multistep, cosine, poly)");
}

const char* schedule_kind_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::constant:
      return "constant";
    case ScheduleKind::multistep:
      return "multistep";
    case ScheduleKind::cosine:
      return "cosine";
    case ScheduleKind::poly:
      return "poly";
  }
  return "?";
}

}  // namespace climseg
