// Learning-rate schedules, stepped per optimizer step (engine.md section 7; reference-systems.md section 3.2).
// The step index s = 0, 1, 2, ... is the number of optimizer steps already applied, so the first step uses
// schedule_lr(c, 0); a caller that skips a step (non-finite gradients) and does not advance s repeats that lr.
//
// Linear warmup over W = warmup_steps steps with factor F = warmup_factor (DeepCAM utils/schedulers.py, the
// formula of reference-systems.md 3.2):
//     s < W:   lr(s) = base * s / W                      when F == 1 (from 0 up to base)
//              lr(s) = base * ((F - 1) * s / W + 1)      otherwise   (from base up to base * F)
// After warmup the main schedule runs on j = s - W starting at its own step 0, from the peak P = base * F (P = base
// when F == 1), which is where the warmup line arrives at s = W:
//     constant:   lr = P
//     multistep:  lr = P * decay_rate^k, k = number of milestones m with m <= j (PyTorch MultiStepLR; the product is
//                 formed by repeated multiplication, as PyTorch's chained form, so it matches it bit for bit)
//     cosine:     lr = eta_min + (P - eta_min) * (1 + cos(pi * j / t_max)) / 2   (PyTorch CosineAnnealingLR, closed
//                 form, periodic past t_max as PyTorch's recursive form)
//     poly:       lr = P * (1 - min(j, t_max) / t_max)^power                     (PyTorch PolynomialLR; 0 past t_max)
// Without warmup (W = 0) every kind equals the PyTorch scheduler at last_epoch = s.
//
// Where DeepCAM's own code differs (mlcommons/hpc deepcam/src/deepCam/utils/schedulers.py, MultiStepLRWarmup and
// CosineAnnealingLRWarmup, used only when lr_warmup_steps > 0), we take the formula above and not the quirks:
// - its chained form returns the previous lr at s = W, so the post-warmup lr stays at base * (W-1)/W (F == 1)
//   instead of reaching base; here lr(W) = P;
// - its milestones are stored as m + W + 1, so each decay happens one step later than here (s = W + m + 1 there,
//   s = W + m here, which is PyTorch MultiStepLR's position when W = 0);
// - one revision uses an undefined `self.multiplier` for F != 1 (a crash); the intended formula is used here.
// warmup_factor must be >= 1 (the GradualWarmupScheduler convention DeepCAM follows: "multiplier >= 1").
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace climseg {

enum class ScheduleKind : uint8_t { constant, multistep, cosine, poly };

struct ScheduleConfig {
  ScheduleKind kind = ScheduleKind::constant;
  double base_lr = 1e-3;
  std::vector<int64_t> milestones;  // multistep: steps counted from the end of warmup, increasing, > 0
  double decay_rate = 0.1;          // multistep factor, in (0, 1]
  int64_t t_max = 0;                // cosine: half period in steps (after warmup); poly: total steps (after warmup)
  double eta_min = 0;               // cosine floor, >= 0
  double power = 1.0;               // poly exponent, > 0
  int64_t warmup_steps = 0;         // linear warmup length W, >= 0 (0: none)
  double warmup_factor = 1.0;       // F >= 1: warmup from base to base * F (F == 1: from 0 to base)
  // Throws climseg::Error naming the bad field in command-line terms ("--milestones must be increasing ...").
  void validate() const;
};

// The learning rate for step index `step` (>= 0). Does not call validate(); an invalid config gives unspecified
// values (t_max <= 0 for cosine/poly, for example), so validate once when the config is made.
double schedule_lr(const ScheduleConfig& c, int64_t step);

// "constant", "multistep", "cosine", "poly"; the error lists the choices.
ScheduleKind parse_schedule_kind(std::string_view s);
const char* schedule_kind_name(ScheduleKind k);

}  // namespace climseg
