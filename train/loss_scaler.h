// Loss scaling for mixed-precision training (engine.md section 5): the loss gradient is multiplied by `scale()`
// before backward so small fp16 gradients do not flush to zero, and the optimizer multiplies the gradients by
// `inverse()` (its grad_scale) before using them.
//
// Modes:
//   none          scale 1 (fp32/fp64 or bf16 training).
//   static_scale  a fixed scale (init_scale); never changes.
//   dynamic       the state machine of torch.cuda.amp.GradScaler (update() below): start at 2^16; on a step whose
//                 gradients hold an inf/NaN the optimizer skips the step and the scale halves; after
//                 growth_interval (2000) consecutive clean steps it doubles.
// In every mode update() counts: clean_steps (consecutive finite steps since the last overflow or growth) and
// skipped_steps (total non-finite steps). The caller skips the optimizer step whenever the gradients are not all
// finite, whatever the mode; the scaler only records it.
//
// Differences from PyTorch, on purpose (docs/training.md "Loss scaling"):
//   - a floor, min_scale (default 1): backoff never takes the scale below it. PyTorch has none and halves towards
//     0 (in float32: 2^-149, then 0) under a gradient that is NaN at every scale; a scale below 1 would only shrink
//     gradients further, which cannot help fp16 (DeepSpeed and Megatron-LM also floor at 1). A run stuck at the
//     floor keeps skipping steps, which skipped_steps shows.
//   - a ceiling, max_scale (default 2^40): growth never takes the scale above it. PyTorch only refuses a growth
//     whose result is not finite in float32 (2^128). Any fp16 gradient times 2^40 overflows, so the ceiling is
//     never reached in fp16 training; it bounds the scale where nothing overflows (bf16 or fp32 runs with
//     dynamic scaling left on).
//   - the scale is a double. With the default factors (powers of 2) every scale is a power of 2 and inverse() is
//     exact; float32 would hold the same values.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace climseg {

enum class LossScaleMode : uint8_t { none, static_scale, dynamic };

struct LossScalerConfig {
  LossScaleMode mode = LossScaleMode::dynamic;
  double init_scale = 65536.0;              // dynamic: the first scale (2^16); static: the fixed scale; none: ignored
  double growth_factor = 2.0;               // dynamic: scale *= growth_factor after growth_interval clean steps (> 1)
  double backoff_factor = 0.5;              // dynamic: scale *= backoff_factor on a non-finite step (in (0, 1))
  int64_t growth_interval = 2000;           // dynamic: consecutive clean steps before growing (>= 1)
  double min_scale = 1.0;                   // dynamic: floor of backoff (> 0, <= init_scale)
  double max_scale = 16777216.0 * 65536.0;  // dynamic: ceiling of growth, 2^40 (>= init_scale, finite)
  // Throws climseg::Error naming the field for any value outside the ranges above (for the fields `mode` uses;
  // static: init_scale finite and > 0).
  void validate() const;
};

// "none", "static", "dynamic" (throws for anything else, listing these).
LossScaleMode parse_loss_scale_mode(std::string_view s);
const char* loss_scale_mode_name(LossScaleMode m);  // the names parse_loss_scale_mode reads

class LossScaler {
 public:
  explicit LossScaler(LossScalerConfig cfg = {});  // validates cfg

  double scale() const { return scale_; }          // multiply the loss gradient by this (1 for none)
  double inverse() const { return 1.0 / scale_; }  // 1/scale: the optimizer's grad_scale
  const LossScalerConfig& config() const { return cfg_; }

  // After a step; finite = every gradient was finite (the optimizer applied the step), else it skipped it.
  //   dynamic: non-finite -> scale = max(scale * backoff, min_scale), clean = 0;
  //            finite -> ++clean; when clean reaches growth_interval: scale = min(scale * growth, max_scale),
  //            clean = 0.
  //   static, none: the scale stays; clean and skipped are counted as above.
  // In every mode a non-finite step adds 1 to skipped_steps.
  void update(bool finite);

  struct State {
    double scale = 1.0;
    int64_t clean_steps = 0;    // consecutive clean steps since the last overflow (dynamic: or growth)
    int64_t skipped_steps = 0;  // non-finite steps so far
  };
  State state() const { return {scale_, clean_, skipped_}; }
  // For resuming from a checkpoint. Throws when the state cannot come from this configuration: a scale that is not
  // finite and positive; dynamic: outside [min_scale, max_scale] or clean_steps >= growth_interval; static/none: a
  // scale other than the fixed one; negative counters.
  void set_state(const State& s);

 private:
  LossScalerConfig cfg_;
  double scale_ = 1.0;
  int64_t clean_ = 0, skipped_ = 0;
};

// The state as checkpoint metadata (engine/checkpoint.h: a string -> string map), exactly: the scale is written as a
// C99 hexadecimal float ("0x1p+16"), so it reads back bit for bit. Keys: <prefix>scale, <prefix>clean_steps,
// <prefix>skipped_steps. read_loss_scaler_state throws naming the key that is missing or malformed.
void write_loss_scaler_state(const LossScaler::State& s, std::map<std::string, std::string>& meta,
                             const std::string& prefix = "loss_scaler.");
LossScaler::State read_loss_scaler_state(const std::map<std::string, std::string>& meta,
                                         const std::string& prefix = "loss_scaler.");

}  // namespace climseg
