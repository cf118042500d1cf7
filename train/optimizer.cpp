#include "train/optimizer.h"

#include <cmath>
#include <limits>

#include "engine/dispatch.h"
#include "engine/profiler.h"
#include "kernels/cpu/optim.h"
#include "kernels/cuda/optim.h"

namespace climseg {

// ---- configuration ---------------------------------------------------------------------------------------------

void OptimizerConfig::validate() const {
  const char* name = optimizer_kind_name(kind);
  auto finite = [](double x) { return std::isfinite(x); };
  CS_CHECK(finite(momentum) && momentum >= 0 && momentum < 1, "--momentum must be in [0, 1), got ", momentum);
  CS_CHECK(!nesterov || kind == OptimizerKind::sgd, "--nesterov applies to sgd, not ", name);
  CS_CHECK(!nesterov || momentum > 0, "--nesterov needs a momentum > 0 (PyTorch SGD's rule)");
  CS_CHECK(finite(beta1) && beta1 >= 0 && beta1 < 1, "--beta1 must be in [0, 1), got ", beta1);
  CS_CHECK(finite(beta2) && beta2 >= 0 && beta2 < 1, "--beta2 must be in [0, 1), got ", beta2);
  CS_CHECK(finite(eps) && eps > 0, "--eps must be a positive number, got ", eps);
  CS_CHECK(finite(weight_decay) && weight_decay >= 0, "--weight-decay must be >= 0, got ", weight_decay);
  CS_CHECK(finite(max_grad_norm) && max_grad_norm >= 0, "--max-grad-norm must be >= 0 (0: no clipping), got ",
           max_grad_norm);
  CS_CHECK(finite(larc_eta) && larc_eta > 0, "--larc-eta must be a positive number, got ", larc_eta);
  CS_CHECK(finite(larc_eps) && larc_eps > 0, "--larc-eps must be a positive number, got ", larc_eps);
}

OptimizerKind parse_optimizer_kind(std::string_view s) {
  if (s == "sgd") return OptimizerKind::sgd;
  if (s == "adam") return OptimizerKind::adam;
  if (s == "adamw") return OptimizerKind::adamw;
  if (s == "lamb") return OptimizerKind::lamb;
  CS_THROW("unknown optimizer '", s, "' (choices: sgd, adam, adamw, lamb)");
}

LarcMode parse_larc_mode(std::string_view s) {
  if (s == "off") return LarcMode::off;
  if (s == "clip") return LarcMode::clip;
  if (s == "scale") return LarcMode::scale;
  CS_THROW("unknown LARC mode '", s, "' (choices: off, clip, scale)");
}

const char* optimizer_kind_name(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::sgd:
      return "sgd";
    case OptimizerKind::adam:
      return "adam";
    case OptimizerKind::adamw:
      return "adamw";
    case OptimizerKind::lamb:
      return "lamb";
  }
  return "?";
}

const char* larc_mode_name(LarcMode m) {
  switch (m) {
    case LarcMode::off:
      return "off";
    case LarcMode::clip:
      return "clip";
    case LarcMode::scale:
      return "scale";
  }
  return "?";
}

// ---- state -----------------------------------------------------------------------------------------------------

namespace {

optim::Update update_of(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::sgd:
      return optim::Update::sgd;
    case OptimizerKind::adam:
      return optim::Update::adam;
    case OptimizerKind::adamw:
      return optim::Update::adamw;
    case OptimizerKind::lamb:
      return optim::Update::lamb;
  }
  CS_THROW("optimizer: unknown kind ", static_cast<int>(k));
}

// The step's scalars, formed in double and rounded once to the master precision W. t: the step being applied
// (1 for the first), for the bias corrections.
template <class W>
optim::Scalars<W> make_scalars(const OptimizerConfig& c, double lr, double grad_scale, int64_t t) {
  optim::Scalars<W> s;
  s.grad_scale = static_cast<W>(grad_scale);
  s.lr = static_cast<W>(lr);
  s.weight_decay = static_cast<W>(c.weight_decay);
  s.momentum = static_cast<W>(c.momentum);
  s.has_momentum = c.momentum != 0;
  s.nesterov = c.nesterov;
  s.beta1 = static_cast<W>(c.beta1);
  s.one_minus_beta1 = static_cast<W>(1.0 - c.beta1);
  s.beta2 = static_cast<W>(c.beta2);
  s.one_minus_beta2 = static_cast<W>(1.0 - c.beta2);
  s.eps = static_cast<W>(c.eps);
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(t));
  s.step_size = static_cast<W>(lr / bc1);  // as torch.optim.Adam: lr / bias_correction1 in double
  s.bc2_sqrt = static_cast<W>(std::sqrt(bc2));
  s.bc1 = static_cast<W>(bc1);
  s.bc2 = static_cast<W>(bc2);
  s.decay = static_cast<W>(1.0 - lr * c.weight_decay);  // as torch.optim.AdamW
  return s;
}

// LARC's gradient multiplier for one tensor (reference-systems.md 3.1).
double larc_factor(const OptimizerConfig& c, double lr, double w_norm, double g_norm) {
  const double local_lr = (w_norm != 0 && g_norm != 0) ? c.larc_eta * w_norm / g_norm : c.larc_eps;
  if (c.larc == LarcMode::scale) return local_lr;
  return local_lr < lr ? local_lr / lr : 1.0;  // min(local_lr, lr) / lr, with its limit 1 at lr = 0
}

}  // namespace

struct Optimizer::Impl {
  Tensor model, grads;
  DType storage = DType::f32;
  std::vector<ParamRange> ranges;
  cpu::OptimChunks chunks;
  Tensor master, m, v;  // m: momentum buffer (sgd) or exp_avg; v: exp_avg_sq
  // Per-tensor host values of the current step.
  std::vector<int64_t> nonfinite;
  std::vector<double> g2, w2, u2, factor, lr_ratio;
  // CUDA only: device chunk table, scratch and per-tensor buffers; host staging of the sums.
  cuda::OptimDeviceChunks dchunks;
  Tensor d_scratch, d_sums, d_factor, d_usums, d_ratio, h_sums, h_factor;

  Device device() const { return model.device(); }
  int64_t ntensors() const { return static_cast<int64_t>(ranges.size()); }
};

Optimizer::Optimizer(OptimizerConfig cfg, Tensor model, Tensor grads, std::vector<ParamRange> ranges, DType storage,
                     ExecContext& ctx)
    : cfg_(cfg), impl_(std::make_unique<Impl>()) {
  cfg_.validate();
  CS_CHECK(model.defined() && grads.defined(), "optimizer: undefined parameter or gradient buffer");
  CS_CHECK(model.shape() == grads.shape() && model.dtype() == grads.dtype() && model.device() == grads.device(),
           "optimizer: parameters ", model.str(), " and gradients ", grads.str(), " differ");
  CS_CHECK(model.is_contiguous() && grads.is_contiguous(), "optimizer: flat buffers must be contiguous (", model.str(),
           ")");
  CS_CHECK(ctx.device() == model.device(), "optimizer: buffers on ", device_name(model.device()), ", context on ",
           device_name(ctx.device()));
  const DType md = model.dtype();
  if (model.device() == Device::cpu) {
    CS_CHECK(md == DType::f32 || md == DType::f64, "optimizer: a CPU model buffer is fp32 or fp64, not ",
             dtype_name(md));
    CS_CHECK(storage == md || (md == DType::f32 && (storage == DType::f16 || storage == DType::bf16)),
             "optimizer: storage ", dtype_name(storage), " with a ", dtype_name(md),
             " model buffer (the CPU emulates fp16/bf16 storage in an fp32 buffer only)");
  } else {
    CS_CHECK(md == DType::f32 || md == DType::f16 || md == DType::bf16,
             "optimizer: a CUDA model buffer is fp32, fp16 or bf16, not ", dtype_name(md));
    CS_CHECK(storage == md, "optimizer: storage ", dtype_name(storage), " with a ", dtype_name(md),
             " CUDA model buffer (on CUDA the storage is the model's dtype)");
  }
  const int64_t n = model.numel();
  std::vector<int64_t> offsets, numels;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const ParamRange& r = ranges[i];
    CS_CHECK(r.offset >= 0 && r.numel >= 0 && r.offset + r.numel <= n, "optimizer: parameter range ", i, " [", r.offset,
             ", ", r.offset + r.numel, ") is outside the buffer of ", n, " elements");
    CS_CHECK(i == 0 || r.offset >= ranges[i - 1].offset + ranges[i - 1].numel, "optimizer: parameter range ", i, " at ",
             r.offset, " overlaps or precedes range ", i - 1, " ending at ", ranges[i - 1].offset + ranges[i - 1].numel,
             " (ranges must be in increasing offset order)");
    offsets.push_back(r.offset);
    numels.push_back(r.numel);
  }
  CS_CHECK(ranges.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max()), "optimizer: too many tensors");

  Impl& im = *impl_;
  im.model = model;
  im.grads = grads;
  im.storage = storage;
  im.ranges = std::move(ranges);
  im.chunks = cpu::optim_chunks(offsets, numels);
  const int64_t T = im.ntensors();
  im.nonfinite.assign(T, 0);
  im.g2.assign(T, 0.0);
  im.w2.assign(T, 0.0);
  im.u2.assign(T, 0.0);
  im.factor.assign(T, 1.0);
  im.lr_ratio.assign(T, 0.0);

  const Device dev = model.device();
  const DType wd = master_dtype();
  const Shape flat{1, 1, 1, n};
  im.master = Tensor::empty(flat, wd, dev);
  if (dev == Device::cpu) {
    im.master.copy_from(model);
  } else {
    cuda::optim_init_master(ctx, model, im.master);
  }
  const bool has_m = cfg_.kind != OptimizerKind::sgd || cfg_.momentum != 0;
  const bool has_v = cfg_.kind != OptimizerKind::sgd;
  if (has_m) im.m = Tensor::zeros(flat, wd, dev, &ctx);
  if (has_v) im.v = Tensor::zeros(flat, wd, dev, &ctx);
  if (dev == Device::cuda) {
    im.dchunks = cuda::optim_chunks_to_device(ctx, im.chunks);
    const int64_t Tn = T > 0 ? T : 1;
    im.d_scratch = Tensor::empty({1, 1, 1, cuda::optim_scratch_elems(im.chunks.size())}, DType::f64, dev);
    im.d_sums = Tensor::zeros({1, 1, 1, 3 * Tn}, DType::f64, dev, &ctx);
    im.d_factor = Tensor::empty({1, 1, 1, Tn}, DType::f64, dev);
    im.d_usums = Tensor::empty({1, 1, 1, Tn}, DType::f64, dev);
    im.d_ratio = Tensor::empty({1, 1, 1, Tn}, DType::f64, dev);
    im.h_sums = Tensor::empty({1, 1, 1, 3 * Tn}, DType::f64, Device::cpu);
    im.h_factor = Tensor::empty({1, 1, 1, Tn}, DType::f64, Device::cpu);
    ctx.synchronize();  // the chunk table's host copies and the initial master are complete
  }
}

Optimizer::~Optimizer() = default;

DType Optimizer::master_dtype() const { return impl_->model.dtype() == DType::f64 ? DType::f64 : DType::f32; }
Device Optimizer::device() const { return impl_->device(); }

StepResult Optimizer::step(ExecContext& ctx, double lr, double grad_scale) {
  Impl& im = *impl_;
  CS_CHECK(ctx.device() == im.device(), "optimizer step: buffers on ", device_name(im.device()), ", context on ",
           device_name(ctx.device()));
  CS_CHECK(std::isfinite(lr) && lr >= 0, "optimizer step: learning rate ", lr, " must be finite and >= 0");
  CS_CHECK(std::isfinite(grad_scale) && grad_scale > 0, "optimizer step: grad_scale ", grad_scale,
           " must be finite and > 0");
  // Rough counts for the profile: ~12 FLOPs per element; bytes: gradient read once per pass, master, moments and
  // model read and written.
  const double n = static_cast<double>(im.model.numel());
  const double wsz = static_cast<double>(dtype_size(master_dtype()));
  const double msz = static_cast<double>(im.model.element_size());
  const double moments = (im.m.defined() ? 1.0 : 0.0) + (im.v.defined() ? 1.0 : 0.0);
  ProfileScope scope(ctx, ProfCategory::optimizer, optimizer_kind_name(cfg_.kind), 12.0 * n,
                     n * (2.0 * msz + wsz + 2.0 * wsz * (1.0 + moments) + msz));

  const int64_t T = im.ntensors();
  const bool want_w = cfg_.larc != LarcMode::off || cfg_.kind == OptimizerKind::lamb;
  const bool cpu = im.device() == Device::cpu;

  // Pass 1: finite check and norms (read-only).
  if (cpu) {
    dispatch_cpu_float(im.master.dtype(), "optimizer", [&](auto tag) {
      using W = decltype(tag);
      cpu::optim_sums<W>(im.chunks, im.grads.data_as<W>(), static_cast<W>(grad_scale),
                         want_w ? im.master.data_as<W>() : nullptr, im.nonfinite.data(), im.g2.data(), im.w2.data());
    });
  } else {
    cuda::optim_sums(ctx, im.dchunks, im.grads, grad_scale, im.master, want_w, im.d_scratch, im.d_sums);
    im.h_sums.copy_from(im.d_sums, &ctx);
    ctx.synchronize();
    const double* h = im.h_sums.data_as<double>();
    for (int64_t t = 0; t < T; ++t) {
      im.nonfinite[t] = static_cast<int64_t>(h[3 * t]);
      im.g2[t] = h[3 * t + 1];
      im.w2[t] = h[3 * t + 2];
    }
  }
  int64_t bad = 0;
  double gsum = 0;
  for (int64_t t = 0; t < T; ++t) {
    bad += im.nonfinite[t];
    gsum += im.g2[t];
  }
  const double norm = std::sqrt(gsum);
  if (bad > 0) return {false, std::isfinite(norm) ? std::numeric_limits<double>::quiet_NaN() : norm};

  // Per-tensor gradient factors: global clip, then LARC on the clipped gradient.
  const double clip = (cfg_.max_grad_norm > 0 && norm > cfg_.max_grad_norm) ? cfg_.max_grad_norm / norm : 1.0;
  for (int64_t t = 0; t < T; ++t) {
    double f = clip;
    if (cfg_.larc != LarcMode::off) f *= larc_factor(cfg_, lr, std::sqrt(im.w2[t]), clip * std::sqrt(im.g2[t]));
    im.factor[t] = f;
  }

  // Pass 2 (and 3 for LAMB): the update.
  const int64_t t_next = steps_ + 1;
  const optim::Update kind = update_of(cfg_.kind);
  if (cpu) {
    dispatch_cpu_float(im.master.dtype(), "optimizer", [&](auto tag) {
      using W = decltype(tag);
      const optim::Scalars<W> s = make_scalars<W>(cfg_, lr, grad_scale, t_next);
      W* m = im.m.defined() ? im.m.data_as<W>() : nullptr;
      W* v = im.v.defined() ? im.v.data_as<W>() : nullptr;
      cpu::optim_update<W>(im.chunks, kind, s, im.factor.data(), im.grads.data_as<W>(), im.master.data_as<W>(), m, v,
                           im.model.data_as<W>(), im.storage, im.u2.data());
      if (kind == optim::Update::lamb) {
        for (int64_t t = 0; t < T; ++t) im.lr_ratio[t] = lr * optim::lamb_trust_ratio(im.w2[t], im.u2[t]);
        cpu::optim_lamb_apply<W>(im.chunks, s, im.lr_ratio.data(), im.master.data_as<W>(), m, v, im.model.data_as<W>(),
                                 im.storage);
      }
    });
  } else {
    const optim::Scalars<float> s = make_scalars<float>(cfg_, lr, grad_scale, t_next);
    double* hf = im.h_factor.data_as<double>();
    for (int64_t t = 0; t < T; ++t) hf[t] = im.factor[t];
    im.d_factor.copy_from(im.h_factor, &ctx);
    cuda::optim_update(ctx, im.dchunks, kind, s, im.d_factor, im.grads, im.master, im.m, im.v, im.model, im.d_scratch,
                       im.d_usums);
    if (kind == optim::Update::lamb)
      cuda::optim_lamb_apply(ctx, im.dchunks, s, lr, im.d_sums, im.d_usums, im.d_ratio, im.master, im.m, im.v,
                             im.model);
  }
  steps_ = t_next;
  return {true, norm};
}

std::vector<Optimizer::StateTensor> Optimizer::state() const {
  std::vector<StateTensor> out;
  out.push_back({"master", impl_->master});
  if (cfg_.kind == OptimizerKind::sgd) {
    if (impl_->m.defined()) out.push_back({"momentum", impl_->m});
  } else {
    out.push_back({"exp_avg", impl_->m});
    out.push_back({"exp_avg_sq", impl_->v});
  }
  return out;
}

void Optimizer::set_steps(int64_t s) {
  CS_CHECK(s >= 0, "optimizer: step count ", s, " is negative");
  steps_ = s;
}

void Optimizer::load_state(const std::string& name, const Tensor& t, ExecContext& ctx) {
  CS_CHECK(ctx.device() == impl_->device(), "optimizer load_state: optimizer on ", device_name(impl_->device()),
           ", context on ", device_name(ctx.device()));
  const std::vector<StateTensor> st = state();
  const StateTensor* target = nullptr;
  std::string names;
  for (const StateTensor& s : st) {
    names += (names.empty() ? "" : ", ") + s.name;
    if (s.name == name) target = &s;
  }
  CS_CHECK(target != nullptr, "optimizer load_state: unknown state tensor '", name, "' for ",
           optimizer_kind_name(cfg_.kind), " (expected one of: ", names, ")");
  CS_CHECK(t.defined(), "optimizer load_state: '", name, "' is undefined");
  CS_CHECK(t.shape() == target->tensor.shape() && t.dtype() == target->tensor.dtype(), "optimizer load_state: '", name,
           "' is ", dtype_name(t.dtype()), " ", t.shape().str(), ", expected ", dtype_name(target->tensor.dtype()), " ",
           target->tensor.shape().str());
  target->tensor.copy_from(t, &ctx);
  if (name == "master") {
    Impl& im = *impl_;
    if (im.device() == Device::cpu) {
      dispatch_cpu_float(im.master.dtype(), "optimizer", [&](auto tag) {
        using W = decltype(tag);
        cpu::optim_store_model<W>(im.chunks, im.master.data_as<W>(), im.model.data_as<W>(), im.storage);
      });
    } else {
      cuda::optim_store_model(ctx, im.dchunks, im.master, im.model);
    }
  }
  ctx.synchronize();  // `t` may be pageable host memory the caller frees next
}

}  // namespace climseg
