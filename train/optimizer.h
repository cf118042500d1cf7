// Optimizers over the Net's flat buffers (engine.md section 7): SGD with momentum, Adam, AdamW, LAMB, and LARC
// (clip and scale) wrapping any of them, each one fused pass over the flat buffers after one read-only pass for
// norms. Formulas, variants and the numbers behind them: docs/training.md, "Optimizers and schedules".
//
// Mixed precision: the optimizer keeps master weights (fp64 for an fp64 model, else fp32) and the moments in the
// master precision; the model buffer (what the layers read) is rewritten from the master weights after every
// applied step, rounded to the storage precision. On the CPU an fp32 model buffer with storage f16/bf16 emulates
// 16-bit weights (its values are exactly representable in fp16/bf16).
//
// One step, in order (all in the master precision unless said otherwise):
//   1. g' = grad_scale * g; if any g' is inf/NaN the step is refused and nothing changes (weights, master,
//      moments, steps()): loss scaling's "skip the step" (engine.md section 5);
//   2. global norm N = ||g'|| over all tensors (sums in double); clip: if max_grad_norm > 0 and N > max_grad_norm,
//      every g' is multiplied by max_grad_norm / N (apex FusedLAMB's form: no epsilon);
//   3. LARC (reference-systems.md 3.1, the GB 2018 formula): per tensor, with the clipped gradient's norm ||g||
//      and the master's ||w||, local_lr = eta * ||w|| / ||g|| when both are non-zero, else larc_eps; clip mode
//      multiplies g by min(local_lr, lr) / lr (1 when lr = 0), scale mode by local_lr;
//   4. the optimizer's update of the master weights and moments (kernels/optim_math.h), LAMB with its
//      per-tensor trust ratio; the model copy refreshed.
// Deterministic: fixed chunking and fixed-order sums on both devices (no atomics), so the same inputs give
// bit-identical results on the same device. On CUDA a step waits once for the device (the finite flag and the
// per-tensor norms come back to the host to form the clip and LARC factors).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/context.h"
#include "engine/tensor.h"

namespace climseg {

enum class OptimizerKind : uint8_t { sgd, adam, adamw, lamb };
enum class LarcMode : uint8_t { off, clip, scale };

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::adam;
  double momentum = 0.9;                          // sgd (torch.optim.SGD semantics, dampening 0); 0: no momentum buffer
  bool nesterov = false;                          // sgd only; needs momentum > 0
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam, adamw, lamb
  // sgd/adam: L2 added to the gradient (PyTorch SGD/Adam); adamw: decoupled (PyTorch AdamW: w *= 1 - lr*wd);
  // lamb: inside the update (u = m^/(sqrt(v^)+eps) + wd*w).
  double weight_decay = 0;
  double max_grad_norm = 0;  // > 0: clip by the global gradient norm first (LAMB in DeepCAM: 1.0); any optimizer
  LarcMode larc = LarcMode::off;
  double larc_eta = 0.002, larc_eps = 1.0 / 16000;  // reference-systems.md 3.1 (GB 2018 defaults)
  // Throws climseg::Error naming the bad field in command-line terms ("--beta2 must be in [0, 1) ...").
  void validate() const;
};

OptimizerKind parse_optimizer_kind(std::string_view s);  // "sgd", "adam", "adamw", "lamb"; the error lists them
LarcMode parse_larc_mode(std::string_view s);            // "off", "clip", "scale"
const char* optimizer_kind_name(OptimizerKind k);
const char* larc_mode_name(LarcMode m);

struct ParamRange {  // one parameter tensor in the flat buffers
  int64_t offset = 0, numel = 0;
};

struct StepResult {
  bool applied = false;  // false: a gradient element was inf/NaN; NOTHING was changed (weights, master, moments,
                         // step count)
  double grad_norm = 0;  // global L2 norm of grad_scale * g (loss scale removed), before clipping (NaN/inf when
                         // not applied)
};

class Optimizer {
 public:
  // model: the net's flat parameter buffer (the weights the layers read; dtype f32/f64 on CPU, f32/f16/bf16 on
  //   CUDA), contiguous. grads: the flat gradient buffer, same shape, dtype and device as model.
  // ranges: the parameter tensors (from Net::params(): offset, spec.shape.numel()), in increasing offset order,
  //   not overlapping, inside the buffers. Elements outside them (padding) are never read or written.
  // storage: the precision the model copy is rounded to when written from the master weights: model.dtype(), or
  //   on the CPU f16/bf16 with an f32 model buffer (emulated 16-bit storage: values rounded to nearest even with
  //   float_to_half / float_to_bf16, overflow -> inf as the real conversion).
  // The master weights: a separate buffer of dtype f64 for an f64 model, else f32, on the model's device,
  // initialised from `model` here (the model itself is not rewritten until the first applied step).
  Optimizer(OptimizerConfig cfg, Tensor model, Tensor grads, std::vector<ParamRange> ranges, DType storage,
            ExecContext& ctx);
  ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One step with learning rate lr (>= 0, finite). grad_scale (> 0, finite) multiplies every gradient element
  // first (1/loss_scale for loss scaling, 1 otherwise), in master precision. See the header comment for the order.
  // Runs inside ProfileScope(ctx, ProfCategory::optimizer, <kind name>).
  StepResult step(ExecContext& ctx, double lr, double grad_scale = 1.0);
  int64_t steps() const { return steps_; }  // applied steps (Adam's bias-correction t)
  const OptimizerConfig& config() const { return cfg_; }
  DType master_dtype() const;
  Device device() const;

  // Checkpoint state: named tensors (on the optimizer's device) that fully determine future steps:
  // "master" (the master weights), and per kind the moments ("momentum" for sgd with momentum != 0;
  // "exp_avg", "exp_avg_sq" for adam/adamw/lamb), each a flat (1,1,1,n) buffer; plus steps().
  struct StateTensor {
    std::string name;
    Tensor tensor;
  };
  std::vector<StateTensor> state() const;  // views of the live buffers (copy them out to save)
  void set_steps(int64_t s);
  // Restore: copies `t` (any device, same shape and dtype as the named state tensor) into that buffer and, for
  // "master", refreshes the model copy. Throws naming the tensor on unknown name or shape/dtype mismatch.
  void load_state(const std::string& name, const Tensor& t, ExecContext& ctx);

 private:
  struct Impl;
  OptimizerConfig cfg_;
  int64_t steps_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace climseg
