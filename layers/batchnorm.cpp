#include "layers/batchnorm.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/dispatch.h"
#include "kernels/cpu/norm.h"
#include "kernels/cuda/norm.h"

namespace climseg {

BatchNorm2d::BatchNorm2d(BatchNormConfig cfg) : cfg_(cfg) {
  CS_CHECK(cfg_.momentum >= 0.0 && cfg_.momentum <= 1.0, "batchnorm2d: momentum must be in [0, 1], got ",
           cfg_.momentum);
  CS_CHECK(cfg_.eps > 0.0, "batchnorm2d: eps must be positive, got ", cfg_.eps);
}

Shape BatchNorm2d::output_shape(const std::vector<Shape>& in) const {
  CS_CHECK(static_cast<int>(in.size()) == num_inputs(), name(), ": expected ", num_inputs(), " inputs, got ",
           in.size());
  CS_CHECK(in[0].c > 0, name(), ": input has no channels");
  if (cfg_.residual)
    CS_CHECK(in[1] == in[0], name(), ": residual ", in[1].str(), " does not match the input ", in[0].str());
  return in[0];
}

std::vector<ParamSpec> BatchNorm2d::param_specs(const std::vector<Shape>& in) const {
  const int64_t c = in.at(0).c;
  return {{"gamma", Shape{1, 1, 1, c}, Init::ones, 1}, {"beta", Shape{1, 1, 1, c}, Init::zeros, 1}};
}

std::vector<ParamSpec> BatchNorm2d::state_specs(const std::vector<Shape>& in) const {
  const int64_t c = in.at(0).c;
  return {{"running_mean", Shape{1, 1, 1, c}, Init::zeros, 1}, {"running_var", Shape{1, 1, 1, c}, Init::ones, 1}};
}

BatchNorm2d::SavedLayout BatchNorm2d::saved_layout(int64_t C, DType t) {
  const size_t es = dtype_size(stat_dtype(t));
  SavedLayout l;
  l.mean_offset = kHeaderBytes;
  l.inv_std_offset = l.mean_offset + static_cast<size_t>(C) * es;
  l.bytes = l.inv_std_offset + static_cast<size_t>(C) * es;
  return l;
}

MemoryNeeds BatchNorm2d::memory_needs(const std::vector<Shape>& in, DType t) const {
  const int64_t P = in.at(0).pixels(), C = in.at(0).c;
  MemoryNeeds m;
  m.saved_bytes = saved_layout(C, t).bytes;
  // Forward: room for the statistics (used when no saved buffer is bound), then the CUDA partial sums.
  m.fwd_workspace = cuda::norm_align(m.saved_bytes) + cuda::bn_fwd_workspace_bytes(P, C);
  m.bwd_workspace = cuda::bn_bwd_workspace_bytes(P, C);
  return m;
}

LayerCost BatchNorm2d::forward_cost(const std::vector<Shape>& in, DType t) const {
  const double n = static_cast<double>(in.at(0).numel()), es = static_cast<double>(dtype_size(t));
  // Training reads x three times (two statistics passes, apply) plus the residual, writes y; ~8 FLOPs/element.
  return {8.0 * n, es * n * (cfg_.residual ? 5.0 : 4.0)};
}

LayerCost BatchNorm2d::backward_cost(const std::vector<Shape>& in, DType t) const {
  const double n = static_cast<double>(in.at(0).numel()), es = static_cast<double>(dtype_size(t));
  // Reduce pass reads x, dy (and y); data pass reads them again and writes dx (and dresidual).
  const double reads = cfg_.relu ? 3.0 : 2.0;
  return {12.0 * n, es * n * (2.0 * reads + 1.0 + (cfg_.residual ? 1.0 : 0.0))};
}

void BatchNorm2d::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  const int64_t P = x.shape().pixels(), C = x.shape().c;
  CS_CHECK(a.training || !a.state.empty(), name(),
           ": inference needs the running statistics (ForwardArgs::state: running_mean, running_var)");
  dispatch_cpu_float(x.dtype(), "batchnorm2d", [&](auto tag) {
    using T = decltype(tag);
    // Statistics go to the saved buffer, or to local storage when there is no backward (no saved buffer).
    std::vector<T> local;
    T *mean, *inv_std;
    const SavedLayout l = saved_layout(C, x.dtype());
    if (a.saved.defined()) {
      CS_CHECK(a.saved.nbytes() >= l.bytes, name(), ": saved buffer has ", a.saved.nbytes(), " bytes, needs ",
               l.bytes);
      auto* base = static_cast<unsigned char*>(a.saved.data());
      const uint32_t header[kHeaderBytes / 4] = {a.training ? 1u : 0u, 0u, 0u, 0u};
      std::memcpy(base, header, kHeaderBytes);
      mean = reinterpret_cast<T*>(base + l.mean_offset);
      inv_std = reinterpret_cast<T*>(base + l.inv_std_offset);
    } else {
      local.resize(static_cast<size_t>(2 * C));
      mean = local.data();
      inv_std = local.data() + C;
    }
    if (a.training) {
      std::vector<T> var(static_cast<size_t>(C));
      cpu::bn_stats<T>(P, C, x.data_as<T>(), x.pixel_stride(), mean, var.data());
      if (!a.state.empty())
        cpu::bn_update_running<T>(C, P, mean, var.data(), cfg_.momentum, a.state[0].data_as<T>(),
                                  a.state[1].data_as<T>());
      cpu::bn_inv_std<T>(C, var.data(), cfg_.eps, inv_std);
    } else {
      std::memcpy(mean, a.state[0].data_as<T>(), static_cast<size_t>(C) * sizeof(T));
      cpu::bn_inv_std<T>(C, a.state[1].data_as<T>(), cfg_.eps, inv_std);
    }
    const T* res = cfg_.residual ? a.x[1].data_as<T>() : nullptr;
    const int64_t rs = cfg_.residual ? a.x[1].pixel_stride() : 0;
    cpu::bn_fwd_apply<T>(P, C, x.data_as<T>(), x.pixel_stride(), mean, inv_std, a.params[0].data_as<T>(),
                         a.params[1].data_as<T>(), res, rs, cfg_.relu, a.y.data_as<T>(), a.y.pixel_stride());
  });
}

void BatchNorm2d::backward_cpu(ExecContext&, const BackwardArgs& a) {
  const Tensor& x = a.x[0];
  const int64_t P = x.shape().pixels(), C = x.shape().c;
  const SavedLayout l = saved_layout(C, x.dtype());
  CS_CHECK(a.saved.defined() && a.saved.nbytes() >= l.bytes, name(),
           ": backward needs the saved statistics from forward");
  dispatch_cpu_float(x.dtype(), "batchnorm2d", [&](auto tag) {
    using T = decltype(tag);
    const auto* base = static_cast<const unsigned char*>(a.saved.data());
    uint32_t mode;
    std::memcpy(&mode, base, sizeof(mode));
    const T* mean = reinterpret_cast<const T*>(base + l.mean_offset);
    const T* inv_std = reinterpret_cast<const T*>(base + l.inv_std_offset);
    const T* y = cfg_.relu ? a.y.data_as<T>() : nullptr;
    const int64_t ys = cfg_.relu ? a.y.pixel_stride() : 0;
    std::vector<T> sums(static_cast<size_t>(2 * C));
    T* sum_dz = sums.data();
    T* sum_dzx = sums.data() + C;
    cpu::bn_bwd_reduce<T>(P, C, x.data_as<T>(), x.pixel_stride(), y, ys, a.dy.data_as<T>(), a.dy.pixel_stride(),
                          mean, inv_std, cfg_.relu, sum_dz, sum_dzx);
    const bool pacc = a.param_mode == GradMode::accumulate;
    T* dgamma = a.grads[0].data_as<T>();
    T* dbeta = a.grads[1].data_as<T>();
    for (int64_t c = 0; c < C; ++c) {
      dgamma[c] = pacc ? dgamma[c] + sum_dzx[c] : sum_dzx[c];
      dbeta[c] = pacc ? dbeta[c] + sum_dz[c] : sum_dz[c];
    }
    const bool want_dx = a.dx[0].defined();
    const bool want_dres = cfg_.residual && a.dx[1].defined();
    if (!want_dx && !want_dres) return;
    cpu::bn_bwd_data<T>(P, C, x.data_as<T>(), x.pixel_stride(), y, ys, a.dy.data_as<T>(), a.dy.pixel_stride(), mean,
                        inv_std, a.params[0].data_as<T>(), sum_dz, sum_dzx, cfg_.relu, mode != 0,
                        want_dx ? a.dx[0].data_as<T>() : nullptr, want_dx ? a.dx[0].pixel_stride() : 0,
                        a.dx_mode[0] == GradMode::accumulate, want_dres ? a.dx[1].data_as<T>() : nullptr,
                        want_dres ? a.dx[1].pixel_stride() : 0,
                        want_dres && a.dx_mode[1] == GradMode::accumulate);
  });
}

bool BatchNorm2d::inference_affine(const std::vector<Shape>& in, const std::vector<std::vector<double>>& params,
                                   const std::vector<std::vector<double>>& state, ChannelAffine* out) const {
  if (state.size() != 2) return false;
  const size_t C = static_cast<size_t>(in.at(0).c);
  out->scale.resize(C);
  out->shift.resize(C);
  for (size_t c = 0; c < C; ++c) {
    out->scale[c] = params[0][c] / std::sqrt(state[1][c] + cfg_.eps);
    out->shift[c] = params[1][c] - state[0][c] * out->scale[c];
  }
  out->residual = cfg_.residual;
  out->relu = cfg_.relu;
  return true;
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(BatchNorm2d)
#endif

}  // namespace climseg
