// Conv2d and ConvTranspose2d (ConvLayer): shapes, memory needs, cost and the CPU passes, all from the layer's
// ConvGeometry (kernels/conv_geometry.h). A transposed layer runs its conv backwards (kernels/cpu/conv.h):
//   layer pass        Conv2d                                 ConvTranspose2d
//   forward           cpu::conv2d_fwd(x)                     cpu::conv2d_bwd_data (the conv's dy = x, dx = y)
//   data gradient     cpu::conv2d_bwd_data(dy)               cpu::conv2d_fwd (the conv's x = dy)
//   filter gradient   cpu::conv2d_bwd_filter(x, dy)          cpu::conv2d_bwd_filter (the conv's x = dy, dy = x)
#include "layers/conv2d.h"

#include <algorithm>
#include <string>

#include "engine/dispatch.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/eltwise.h"
#include "kernels/cudnn/conv.h"

namespace climseg {

namespace {

size_t workspace_of(const Tensor& ws) { return ws.defined() ? ws.nbytes() : 0; }

}  // namespace

ConvLayer::ConvLayer(const ConvSpec& spec, bool transposed, bool bias, const char* type)
    : spec_(spec), transposed_(transposed), bias_(bias) {
  check_conv_spec(spec_, transposed_, type);
}

Shape ConvLayer::output_shape(const std::vector<Shape>& in) const { return geometry(in.at(0)).layer_out(); }

MemoryNeeds ConvLayer::memory_needs(const std::vector<Shape>& in, DType t) const {
  const ConvGeometry g = geometry(in.at(0));
  // The CPU path's im2col tiles (kernels/cpu/conv.h); the same bound serves the forward and both backward passes.
  const size_t ws = cpu::conv2d_workspace_bytes(g, dtype_size(t));
  // The cuDNN path's staging buffers and algorithm workspace (0 without cuDNN or without a visible GPU).
  MemoryNeeds m;
  m.fwd_workspace = std::max(ws, cudnn::conv_workspace_bytes(g, t, ConvPass::forward));
  m.bwd_workspace = std::max({ws, cudnn::conv_workspace_bytes(g, t, ConvPass::backward_data),
                              cudnn::conv_workspace_bytes(g, t, ConvPass::backward_filter)});
  return m;
}

// Counted on the conv: every output pixel of the conv meets R*S*(C/groups) weights (for a transposed layer every
// input pixel meets R*S*(K/groups)).
LayerCost ConvLayer::forward_cost(const std::vector<Shape>& in, DType t) const {
  const ConvGeometry g = geometry(in.at(0));
  const double es = static_cast<double>(dtype_size(t));
  const double macs = static_cast<double>(g.out_shape().numel()) * static_cast<double>(g.kernel_h * g.kernel_w) *
                      static_cast<double>(g.in_c / g.groups);
  const double wts = static_cast<double>(g.filter_shape().numel());
  return {2.0 * macs, es * (static_cast<double>(g.in_shape().numel() + g.out_shape().numel()) + wts)};
}

LayerCost ConvLayer::backward_cost(const std::vector<Shape>& in, DType t) const {
  LayerCost f = forward_cost(in, t);  // data gradient and filter gradient: one forward-sized pass each
  return {2 * f.flops, 2 * f.bytes};
}

void ConvLayer::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  const Tensor& w = a.params[0];
  CS_CHECK(w.is_contiguous(), name(), ": the weight must be contiguous");
  const ConvGeometry g = geometry(x.shape());
  const size_t need = cpu::conv2d_workspace_bytes(g, x.element_size());
  CS_CHECK(workspace_of(a.workspace) >= need, name(), ": forward workspace is ", workspace_of(a.workspace),
           " bytes, memory_needs() asked for ", need);
  dispatch_cpu_float(x.dtype(), type(), [&](auto tag) {
    using T = decltype(tag);
    if (g.transposed)
      cpu::conv2d_bwd_data<T>(g, x.data_as<T>(), x.pixel_stride(), w.data_as<T>(), a.y.data_as<T>(),
                              a.y.pixel_stride(), false, a.workspace.data(), workspace_of(a.workspace));
    else
      cpu::conv2d_fwd<T>(g, x.data_as<T>(), x.pixel_stride(), w.data_as<T>(), a.y.data_as<T>(), a.y.pixel_stride(),
                         false, a.workspace.data(), workspace_of(a.workspace));
  });
  conv_epilogue_cpu(bias_ ? a.params[1] : Tensor(), a.epilogue, a.y);
}

void ConvLayer::backward_cpu(ExecContext&, const BackwardArgs& a) {
  const Tensor& x = a.x[0];
  const Tensor& dy = a.dy;
  const Tensor& w = a.params[0];
  CS_CHECK(w.is_contiguous() && a.grads[0].is_contiguous(), name(),
           ": the weight and its gradient must be contiguous");
  const ConvGeometry g = geometry(x.shape());
  const size_t need = cpu::conv2d_workspace_bytes(g, dy.element_size());
  CS_CHECK(workspace_of(a.workspace) >= need, name(), ": backward workspace is ", workspace_of(a.workspace),
           " bytes, memory_needs() asked for ", need);
  const bool pacc = a.param_mode == GradMode::accumulate;
  // The conv's input and output gradient: (x, dy), or (dy, x) for a transposed layer.
  const Tensor& cx = g.transposed ? dy : x;
  const Tensor& cdy = g.transposed ? x : dy;
  dispatch_cpu_float(dy.dtype(), type(), [&](auto tag) {
    using T = decltype(tag);
    cpu::conv2d_bwd_filter<T>(g, cx.data_as<T>(), cx.pixel_stride(), cdy.data_as<T>(), cdy.pixel_stride(),
                              a.grads[0].data_as<T>(), pacc, a.workspace.data(), workspace_of(a.workspace));
    if (bias_)
      cpu::bias_grad<T>(dy.shape().pixels(), spec_.out_channels, dy.data_as<T>(), dy.pixel_stride(),
                        a.grads[1].data_as<T>(), pacc);
    const Tensor& dx = a.dx[0];
    if (!dx.defined()) return;
    const bool dx_acc = a.dx_mode[0] == GradMode::accumulate;
    if (g.transposed)
      cpu::conv2d_fwd<T>(g, dy.data_as<T>(), dy.pixel_stride(), w.data_as<T>(), dx.data_as<T>(), dx.pixel_stride(),
                         dx_acc, a.workspace.data(), workspace_of(a.workspace));
    else
      cpu::conv2d_bwd_data<T>(g, dy.data_as<T>(), dy.pixel_stride(), w.data_as<T>(), dx.data_as<T>(),
                              dx.pixel_stride(), dx_acc, a.workspace.data(), workspace_of(a.workspace));
  });
}

std::vector<ParamSpec> Conv2d::param_specs(const std::vector<Shape>& in) const {
  const int64_t cg = in.at(0).c / cfg_.groups;
  const int64_t fan_in = cg * cfg_.kernel_h * cfg_.kernel_w;
  std::vector<ParamSpec> p{
      {"weight", Shape{cfg_.out_channels, cfg_.kernel_h, cfg_.kernel_w, cg}, Init::he_normal, fan_in,
       ParamLayout::conv_krsc}};
  if (cfg_.bias) p.push_back({"bias", Shape{1, 1, 1, cfg_.out_channels}, Init::zeros, fan_in});
  return p;
}

void Conv2d::scale_output_channels(const std::vector<Shape>& in, double* w, const double* scale) const {
  const int64_t per_k = param_specs(in).at(0).shape.numel() / cfg_.out_channels;  // KRSC: K outermost
  for (int64_t k = 0; k < cfg_.out_channels; ++k)
    for (int64_t i = 0; i < per_k; ++i) w[k * per_k + i] *= scale[k];
}

void conv_epilogue_cpu(const Tensor& own_bias, const Epilogue& e, const Tensor& y) {
  const Tensor& b = e.bias.defined() ? e.bias : own_bias;
  if (!b.defined() && !e.residual.defined() && !e.relu) return;
  dispatch_cpu_float(y.dtype(), "conv epilogue", [&](auto tag) {
    using T = decltype(tag);
    if (!e.residual.defined() && !e.relu) {
      cpu::add_bias<T>(y.shape().pixels(), y.shape().c, b.data_as<T>(), y.data_as<T>(), y.pixel_stride());
      return;
    }
    cpu::bias_residual_relu<T>(y.shape().pixels(), y.shape().c, b.defined() ? b.data_as<T>() : nullptr,
                               e.residual.defined() ? e.residual.data_as<T>() : nullptr,
                               e.residual.defined() ? e.residual.pixel_stride() : 0, e.relu, y.data_as<T>(),
                               y.pixel_stride());
  });
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(ConvLayer)
#endif

}  // namespace climseg
