#include "layers/conv2d.h"

#include <algorithm>
#include <string>

#include "engine/dispatch.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/eltwise.h"
#include "layers/conv_geometry.h"

namespace climseg {

namespace {

// Padding of one spatial dimension. Explicit: symmetric. TF 'SAME': out = ceil(in / stride) and
// total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0), split top = total / 2, bottom = total - top
// (the extra row/column goes to the bottom/right, as in TensorFlow's GetWindowedOutputSize).
void resolve_dim(PaddingMode mode, int64_t in, int64_t k, int64_t stride, int64_t dilation, int64_t pad,
                 int64_t& begin, int64_t& end) {
  if (mode == PaddingMode::explicit_symmetric) {
    begin = end = pad;
    return;
  }
  const int64_t out = (in + stride - 1) / stride;
  const int64_t total = std::max<int64_t>((out - 1) * stride + (k - 1) * dilation + 1 - in, 0);
  begin = total / 2;
  end = total - begin;
}

void check_config(const Conv2dConfig& c, const std::string& who) {
  CS_CHECK(c.out_channels > 0, who, ": out_channels must be positive, got ", c.out_channels);
  CS_CHECK(c.kernel_h > 0 && c.kernel_w > 0, who, ": kernel must be positive, got ", c.kernel_h, "x", c.kernel_w);
  CS_CHECK(c.stride_h > 0 && c.stride_w > 0, who, ": stride must be positive, got ", c.stride_h, "x", c.stride_w);
  CS_CHECK(c.dilation_h > 0 && c.dilation_w > 0, who, ": dilation must be positive, got ", c.dilation_h, "x",
           c.dilation_w);
  CS_CHECK(c.pad_h >= 0 && c.pad_w >= 0, who, ": padding must be non-negative, got ", c.pad_h, "x", c.pad_w);
  CS_CHECK(c.groups > 0 && c.out_channels % c.groups == 0, who, ": groups (", c.groups,
           ") must divide out_channels (", c.out_channels, ")");
}

cpu::ConvGeom geom_of(const Conv2dConfig& cfg, const Shape& x, const Shape& y) {
  Pads p = resolve_conv_pads(cfg, x.h, x.w);
  cpu::ConvGeom g;
  g.n = x.n;
  g.in_h = x.h, g.in_w = x.w, g.in_c = x.c;
  g.out_h = y.h, g.out_w = y.w, g.out_c = y.c;
  g.kernel_h = cfg.kernel_h, g.kernel_w = cfg.kernel_w;
  g.stride_h = cfg.stride_h, g.stride_w = cfg.stride_w;
  g.dilation_h = cfg.dilation_h, g.dilation_w = cfg.dilation_w;
  g.pad_top = p.top, g.pad_left = p.left;
  g.groups = cfg.groups;
  return g;
}

size_t workspace_of(const Tensor& ws) { return ws.defined() ? ws.nbytes() : 0; }

}  // namespace

Pads resolve_conv_pads(const Conv2dConfig& cfg, int64_t in_h, int64_t in_w) {
  Pads p;
  resolve_dim(cfg.padding, in_h, cfg.kernel_h, cfg.stride_h, cfg.dilation_h, cfg.pad_h, p.top, p.bottom);
  resolve_dim(cfg.padding, in_w, cfg.kernel_w, cfg.stride_w, cfg.dilation_w, cfg.pad_w, p.left, p.right);
  return p;
}

Conv2d::Conv2d(const Conv2dConfig& cfg) : cfg_(cfg) { check_config(cfg_, "conv2d"); }

Shape Conv2d::output_shape(const std::vector<Shape>& in) const {
  const Shape& x = in.at(0);
  CS_CHECK(x.c > 0 && x.h > 0 && x.w > 0 && x.n > 0, name(), ": empty input ", x.str());
  CS_CHECK(x.c % cfg_.groups == 0, name(), ": groups (", cfg_.groups, ") must divide the input channels (", x.c,
           ")");
  Pads p = resolve_conv_pads(cfg_, x.h, x.w);
  const int64_t eh = cfg_.dilation_h * (cfg_.kernel_h - 1) + 1, ew = cfg_.dilation_w * (cfg_.kernel_w - 1) + 1;
  CS_CHECK(x.h + p.top + p.bottom >= eh && x.w + p.left + p.right >= ew, name(), ": input ", x.str(),
           " padded by (", p.top, ",", p.bottom, ")x(", p.left, ",", p.right,
           ") is smaller than the dilated kernel ", eh, "x", ew);
  Shape y = x;
  y.h = (x.h + p.top + p.bottom - eh) / cfg_.stride_h + 1;
  y.w = (x.w + p.left + p.right - ew) / cfg_.stride_w + 1;
  y.c = cfg_.out_channels;
  return y;
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

MemoryNeeds Conv2d::memory_needs(const std::vector<Shape>& in, DType t) const {
  // The CPU path's im2col tiles (kernels/cpu/conv.h); the same bound serves the forward and both backward passes.
  const size_t ws = cpu::conv2d_workspace_bytes(geom_of(cfg_, in.at(0), output_shape(in)), dtype_size(t));
  // The cuDNN path's staging buffers and algorithm workspace (0 without cuDNN or without a visible GPU).
  const cudnn::ConvGeometry cg = cudnn::conv2d_geometry(*this, in.at(0));
  MemoryNeeds m;
  m.fwd_workspace = std::max(ws, cudnn::conv_workspace_bytes(cg, t, cudnn::ConvPass::conv_forward));
  m.bwd_workspace = std::max(ws, cudnn::conv_workspace_bytes(cg, t, cudnn::ConvPass::conv_backward));
  return m;
}

LayerCost Conv2d::forward_cost(const std::vector<Shape>& in, DType t) const {
  const Shape y = output_shape(in);
  const double es = static_cast<double>(dtype_size(t));
  const double macs = static_cast<double>(y.numel()) * static_cast<double>(cfg_.kernel_h * cfg_.kernel_w) *
                      static_cast<double>(in[0].c / cfg_.groups);
  const double wts =
      static_cast<double>(cfg_.out_channels * cfg_.kernel_h * cfg_.kernel_w * (in[0].c / cfg_.groups));
  return {2.0 * macs, es * (static_cast<double>(in[0].numel() + y.numel()) + wts)};
}

LayerCost Conv2d::backward_cost(const std::vector<Shape>& in, DType t) const {
  LayerCost f = forward_cost(in, t);  // data gradient and filter gradient: one forward-sized pass each
  return {2 * f.flops, 2 * f.bytes};
}

void Conv2d::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  const Tensor& w = a.params[0];
  CS_CHECK(w.is_contiguous(), name(), ": the weight must be contiguous");
  const cpu::ConvGeom g = geom_of(cfg_, x.shape(), a.y.shape());
  const size_t need = cpu::conv2d_workspace_bytes(g, x.element_size());
  CS_CHECK(workspace_of(a.workspace) >= need, name(), ": forward workspace is ", workspace_of(a.workspace),
           " bytes, memory_needs() asked for ", need);
  dispatch_cpu_float(x.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    cpu::conv2d_fwd<T>(g, x.data_as<T>(), x.pixel_stride(), w.data_as<T>(), a.y.data_as<T>(), a.y.pixel_stride(),
                       false, a.workspace.data(), workspace_of(a.workspace));
  });
  conv_epilogue_cpu(cfg_.bias ? a.params[1] : Tensor(), a.epilogue, a.y);
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

void Conv2d::backward_cpu(ExecContext&, const BackwardArgs& a) {
  const Tensor& x = a.x[0];
  const Tensor& dy = a.dy;
  const Tensor& w = a.params[0];
  CS_CHECK(w.is_contiguous() && a.grads[0].is_contiguous(), name(),
           ": the weight and its gradient must be contiguous");
  const cpu::ConvGeom g = geom_of(cfg_, x.shape(), dy.shape());
  const size_t need = cpu::conv2d_workspace_bytes(g, dy.element_size());
  CS_CHECK(workspace_of(a.workspace) >= need, name(), ": backward workspace is ", workspace_of(a.workspace),
           " bytes, memory_needs() asked for ", need);
  const bool pacc = a.param_mode == GradMode::accumulate;
  dispatch_cpu_float(dy.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    cpu::conv2d_bwd_filter<T>(g, x.data_as<T>(), x.pixel_stride(), dy.data_as<T>(), dy.pixel_stride(),
                              a.grads[0].data_as<T>(), pacc, a.workspace.data(), workspace_of(a.workspace));
    if (cfg_.bias)
      cpu::bias_grad<T>(dy.shape().pixels(), cfg_.out_channels, dy.data_as<T>(), dy.pixel_stride(),
                        a.grads[1].data_as<T>(), pacc);
    if (a.dx[0].defined())
      cpu::conv2d_bwd_data<T>(g, dy.data_as<T>(), dy.pixel_stride(), w.data_as<T>(), a.dx[0].data_as<T>(),
                              a.dx[0].pixel_stride(), a.dx_mode[0] == GradMode::accumulate, a.workspace.data(),
                              workspace_of(a.workspace));
  });
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(Conv2d)
#endif

}  // namespace climseg
