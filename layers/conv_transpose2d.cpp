// ConvTranspose2d on the CPU: the data gradient of a convolution, so every pass is a convolution pass with the
// roles of input and output swapped (kernels/cpu/conv.h). With the "forward conv" G mapping this layer's output
// (size OH x OW, K channels) back to its input (IH x IW, C channels) and weights (C, R, S, K/groups) = G's KRSC
// weights:
//   forward:          y  = G^T(x)             cpu::conv2d_bwd_data  (dy of G = x, dx of G = y)
//   data gradient:    dx = G(dy)              cpu::conv2d_fwd       (x of G = dy)
//   filter gradient:  dw = G's filter grad    cpu::conv2d_bwd_filter(x of G = dy, dy of G = x)
#include <algorithm>
#include <string>

#include "engine/dispatch.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/eltwise.h"
#include "layers/conv_geometry.h"
#include "layers/conv2d.h"

namespace climseg {

namespace {

void check_config(const ConvTranspose2dConfig& c, const std::string& who) {
  CS_CHECK(c.out_channels > 0, who, ": out_channels must be positive, got ", c.out_channels);
  CS_CHECK(c.kernel_h > 0 && c.kernel_w > 0, who, ": kernel must be positive, got ", c.kernel_h, "x", c.kernel_w);
  CS_CHECK(c.stride_h > 0 && c.stride_w > 0, who, ": stride must be positive, got ", c.stride_h, "x", c.stride_w);
  CS_CHECK(c.dilation_h > 0 && c.dilation_w > 0, who, ": dilation must be positive, got ", c.dilation_h, "x",
           c.dilation_w);
  CS_CHECK(c.groups > 0 && c.out_channels % c.groups == 0, who, ": groups (", c.groups,
           ") must divide out_channels (", c.out_channels, ")");
  if (c.padding == PaddingMode::explicit_symmetric) {
    CS_CHECK(c.pad_h >= 0 && c.pad_w >= 0, who, ": padding must be non-negative, got ", c.pad_h, "x", c.pad_w);
    // PyTorch's rule: output_padding only selects among the output sizes that map to the same input size.
    CS_CHECK(c.output_padding_h >= 0 && c.output_padding_w >= 0 &&
                 (c.output_padding_h < c.stride_h || c.output_padding_h < c.dilation_h) &&
                 (c.output_padding_w < c.stride_w || c.output_padding_w < c.dilation_w),
             who, ": output_padding (", c.output_padding_h, "x", c.output_padding_w,
             ") must be non-negative and smaller than either the stride or the dilation");
  }
}

// The forward conv G: its input is this layer's output y, its output this layer's input x.
cpu::ConvGeom geom_of(const ConvTranspose2dConfig& cfg, const Shape& x, const Shape& y) {
  Pads p = resolve_deconv_pads(cfg, x.h, x.w);
  cpu::ConvGeom g;
  g.n = x.n;
  g.in_h = y.h, g.in_w = y.w, g.in_c = y.c;
  g.out_h = x.h, g.out_w = x.w, g.out_c = x.c;
  g.kernel_h = cfg.kernel_h, g.kernel_w = cfg.kernel_w;
  g.stride_h = cfg.stride_h, g.stride_w = cfg.stride_w;
  g.dilation_h = cfg.dilation_h, g.dilation_w = cfg.dilation_w;
  g.pad_top = p.top, g.pad_left = p.left;
  g.groups = cfg.groups;
  return g;
}

size_t workspace_of(const Tensor& ws) { return ws.defined() ? ws.nbytes() : 0; }

}  // namespace

Pads resolve_deconv_pads(const ConvTranspose2dConfig& cfg, int64_t in_h, int64_t in_w) {
  Pads p;
  if (cfg.padding == PaddingMode::explicit_symmetric) {
    p.top = cfg.pad_h, p.bottom = cfg.pad_h - cfg.output_padding_h;
    p.left = cfg.pad_w, p.right = cfg.pad_w - cfg.output_padding_w;
    return p;
  }
  auto same = [](int64_t in, int64_t k, int64_t s, int64_t d, int64_t& begin, int64_t& end) {
    const int64_t total = std::max<int64_t>((in - 1) * s + (k - 1) * d + 1 - in * s, 0);
    begin = total / 2;
    end = total - begin;
  };
  same(in_h, cfg.kernel_h, cfg.stride_h, cfg.dilation_h, p.top, p.bottom);
  same(in_w, cfg.kernel_w, cfg.stride_w, cfg.dilation_w, p.left, p.right);
  return p;
}

ConvTranspose2d::ConvTranspose2d(const ConvTranspose2dConfig& cfg) : cfg_(cfg) { check_config(cfg_, "deconv2d"); }

Shape ConvTranspose2d::output_shape(const std::vector<Shape>& in) const {
  const Shape& x = in.at(0);
  CS_CHECK(x.c > 0 && x.h > 0 && x.w > 0 && x.n > 0, name(), ": empty input ", x.str());
  CS_CHECK(x.c % cfg_.groups == 0, name(), ": groups (", cfg_.groups, ") must divide the input channels (", x.c,
           ")");
  Shape y = x;
  y.c = cfg_.out_channels;
  if (cfg_.padding == PaddingMode::tf_same) {
    y.h = x.h * cfg_.stride_h;
    y.w = x.w * cfg_.stride_w;
  } else {
    y.h = (x.h - 1) * cfg_.stride_h - 2 * cfg_.pad_h + cfg_.dilation_h * (cfg_.kernel_h - 1) +
          cfg_.output_padding_h + 1;
    y.w = (x.w - 1) * cfg_.stride_w - 2 * cfg_.pad_w + cfg_.dilation_w * (cfg_.kernel_w - 1) +
          cfg_.output_padding_w + 1;
    CS_CHECK(y.h > 0 && y.w > 0, name(), ": input ", x.str(), " gives an empty output (padding ", cfg_.pad_h, "x",
             cfg_.pad_w, " too large)");
  }
  return y;
}

std::vector<ParamSpec> ConvTranspose2d::param_specs(const std::vector<Shape>& in) const {
  const int64_t kg = cfg_.out_channels / cfg_.groups;
  // fan_in as PyTorch and TensorFlow count it for a transposed conv's kernel: (K / groups) * R * S.
  const int64_t fan_in = kg * cfg_.kernel_h * cfg_.kernel_w;
  std::vector<ParamSpec> p{
      {"weight", Shape{in.at(0).c, cfg_.kernel_h, cfg_.kernel_w, kg}, Init::he_normal, fan_in,
       ParamLayout::deconv_crsk}};
  if (cfg_.bias) p.push_back({"bias", Shape{1, 1, 1, cfg_.out_channels}, Init::zeros, fan_in});
  return p;
}

MemoryNeeds ConvTranspose2d::memory_needs(const std::vector<Shape>& in, DType t) const {
  const size_t ws = cpu::conv2d_workspace_bytes(geom_of(cfg_, in.at(0), output_shape(in)), dtype_size(t));
  // The cuDNN path's staging buffers and algorithm workspace (0 without cuDNN or without a visible GPU).
  const cudnn::ConvGeometry cg = cudnn::conv_transpose2d_geometry(*this, in.at(0));
  MemoryNeeds m;
  m.fwd_workspace = std::max(ws, cudnn::conv_workspace_bytes(cg, t, cudnn::ConvPass::deconv_forward));
  m.bwd_workspace = std::max(ws, cudnn::conv_workspace_bytes(cg, t, cudnn::ConvPass::deconv_backward));
  return m;
}

LayerCost ConvTranspose2d::forward_cost(const std::vector<Shape>& in, DType t) const {
  const Shape y = output_shape(in);
  const double es = static_cast<double>(dtype_size(t));
  const double kg = static_cast<double>(cfg_.out_channels / cfg_.groups);
  const double rs = static_cast<double>(cfg_.kernel_h * cfg_.kernel_w);
  const double macs = static_cast<double>(in[0].numel()) * rs * kg;  // every input element meets R*S*K/g weights
  const double wts = static_cast<double>(in[0].c) * rs * kg;
  return {2.0 * macs, es * (static_cast<double>(in[0].numel() + y.numel()) + wts)};
}

LayerCost ConvTranspose2d::backward_cost(const std::vector<Shape>& in, DType t) const {
  LayerCost f = forward_cost(in, t);
  return {2 * f.flops, 2 * f.bytes};
}

void ConvTranspose2d::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  const Tensor& w = a.params[0];
  CS_CHECK(w.is_contiguous(), name(), ": the weight must be contiguous");
  const cpu::ConvGeom g = geom_of(cfg_, x.shape(), a.y.shape());
  const size_t need = cpu::conv2d_workspace_bytes(g, x.element_size());
  CS_CHECK(workspace_of(a.workspace) >= need, name(), ": forward workspace is ", workspace_of(a.workspace),
           " bytes, memory_needs() asked for ", need);
  dispatch_cpu_float(x.dtype(), "deconv2d", [&](auto tag) {
    using T = decltype(tag);
    cpu::conv2d_bwd_data<T>(g, x.data_as<T>(), x.pixel_stride(), w.data_as<T>(), a.y.data_as<T>(),
                            a.y.pixel_stride(), false, a.workspace.data(), workspace_of(a.workspace));
  });
  conv_epilogue_cpu(cfg_.bias ? a.params[1] : Tensor(), a.epilogue, a.y);
}

void ConvTranspose2d::scale_output_channels(const std::vector<Shape>& in, double* w, const double* scale) const {
  // (C_in, R, S, K/g): input channel ci belongs to group ci / (C_in / g), whose outputs are g * K/g + k.
  const Shape ws = param_specs(in).at(0).shape;
  const int64_t cin = ws.n, kg = ws.c, rs = ws.h * ws.w, cg = cin / cfg_.groups;
  for (int64_t ci = 0; ci < cin; ++ci) {
    const double* sg = scale + (ci / cg) * kg;
    for (int64_t t = 0; t < rs; ++t) {
      double* wp = w + (ci * rs + t) * kg;
      for (int64_t k = 0; k < kg; ++k) wp[k] *= sg[k];
    }
  }
}

void ConvTranspose2d::backward_cpu(ExecContext&, const BackwardArgs& a) {
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
  dispatch_cpu_float(dy.dtype(), "deconv2d", [&](auto tag) {
    using T = decltype(tag);
    cpu::conv2d_bwd_filter<T>(g, dy.data_as<T>(), dy.pixel_stride(), x.data_as<T>(), x.pixel_stride(),
                              a.grads[0].data_as<T>(), pacc, a.workspace.data(), workspace_of(a.workspace));
    if (cfg_.bias)
      cpu::bias_grad<T>(dy.shape().pixels(), cfg_.out_channels, dy.data_as<T>(), dy.pixel_stride(),
                        a.grads[1].data_as<T>(), pacc);
    if (a.dx[0].defined())
      cpu::conv2d_fwd<T>(g, dy.data_as<T>(), dy.pixel_stride(), w.data_as<T>(), a.dx[0].data_as<T>(),
                         a.dx[0].pixel_stride(), a.dx_mode[0] == GradMode::accumulate, a.workspace.data(),
                         workspace_of(a.workspace));
  });
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(ConvTranspose2d)
#endif

}  // namespace climseg
