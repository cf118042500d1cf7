#include "layers/affine.h"

#include "engine/dispatch.h"
#include "kernels/cpu/norm.h"
#include "kernels/cuda/affine.h"

namespace climseg {

Shape Affine::output_shape(const std::vector<Shape>& in) const {
  CS_CHECK(in.at(0).c > 0, name(), ": input has no channels");
  return in[0];
}

std::vector<ParamSpec> Affine::param_specs(const std::vector<Shape>& in) const {
  const int64_t c = in.at(0).c;
  return {{scale_name_, Shape{1, 1, 1, c}, Init::ones, 1, layout_}, {shift_name_, Shape{1, 1, 1, c}, Init::zeros, 1, layout_}};
}

MemoryNeeds Affine::memory_needs(const std::vector<Shape>& in, DType) const {
  MemoryNeeds m;
  m.bwd_workspace = cuda::affine_bwd_workspace_bytes(in.at(0).pixels(), in.at(0).c);
  return m;
}

LayerCost Affine::forward_cost(const std::vector<Shape>& in, DType t) const {
  const double n = static_cast<double>(in.at(0).numel());
  return {2.0 * n, 2.0 * n * static_cast<double>(dtype_size(t))};
}

void Affine::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  dispatch_cpu_float(x.dtype(), "affine", [&](auto tag) {
    using T = decltype(tag);
    cpu::affine_fwd<T>(x.shape().pixels(), x.shape().c, x.data_as<T>(), x.pixel_stride(), a.params[0].data_as<T>(),
                       a.params[1].data_as<T>(), a.y.data_as<T>(), a.y.pixel_stride());
  });
}

void Affine::backward_cpu(ExecContext&, const BackwardArgs& a) {
  const Tensor& x = a.x[0];
  dispatch_cpu_float(x.dtype(), "affine", [&](auto tag) {
    using T = decltype(tag);
    const bool want_dx = a.dx[0].defined();
    cpu::affine_bwd<T>(x.shape().pixels(), x.shape().c, x.data_as<T>(), x.pixel_stride(), a.dy.data_as<T>(),
                       a.dy.pixel_stride(), a.params[0].data_as<T>(), want_dx ? a.dx[0].data_as<T>() : nullptr,
                       want_dx ? a.dx[0].pixel_stride() : 0, a.dx_mode[0] == GradMode::accumulate,
                       a.grads[0].data_as<T>(), a.grads[1].data_as<T>(), a.param_mode == GradMode::accumulate);
  });
}

LayerCost Scale::forward_cost(const std::vector<Shape>& in, DType t) const {
  const double n = static_cast<double>(in.at(0).numel());
  return {n, 2.0 * n * static_cast<double>(dtype_size(t))};
}

void Scale::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  dispatch_cpu_float(x.dtype(), "scale", [&](auto tag) {
    using T = decltype(tag);
    cpu::scale_fwd<T>(x.shape().pixels(), x.shape().c, static_cast<T>(alpha_), x.data_as<T>(), x.pixel_stride(),
                      a.y.data_as<T>(), a.y.pixel_stride());
  });
}

void Scale::backward_cpu(ExecContext&, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  dispatch_cpu_float(a.dy.dtype(), "scale", [&](auto tag) {
    using T = decltype(tag);
    cpu::scale_bwd<T>(a.dy.shape().pixels(), a.dy.shape().c, static_cast<T>(alpha_), a.dy.data_as<T>(),
                      a.dy.pixel_stride(), a.dx[0].data_as<T>(), a.dx[0].pixel_stride(),
                      a.dx_mode[0] == GradMode::accumulate);
  });
}

bool Affine::inference_affine(const std::vector<Shape>& in, const std::vector<std::vector<double>>& params,
                              const std::vector<std::vector<double>>&, ChannelAffine* out) const {
  out->scale = params.at(0);
  out->shift = params.at(1);
  return true;
}

bool Scale::inference_affine(const std::vector<Shape>& in, const std::vector<std::vector<double>>&,
                             const std::vector<std::vector<double>>&, ChannelAffine* out) const {
  const size_t C = static_cast<size_t>(in.at(0).c);
  out->scale.assign(C, alpha_);
  out->shift.assign(C, 0.0);
  return true;
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(Affine)
CS_STUB_CUDA(Scale)
#endif

}  // namespace climseg
