// The cuDNN geometry of the Conv2d and ConvTranspose2d layers (layers/conv2d.h), shared by their CUDA paths
// (layers/conv2d.cu, layers/conv_transpose2d.cu) and their memory_needs (layers/conv2d.cpp,
// layers/conv_transpose2d.cpp), so the workspace a Net plans is computed from the same numbers the kernels use.
// Plain C++ (no CUDA headers); the geometry is pure arithmetic, the workspace sizes are 0 in builds without cuDNN.
//
// memory_needs, for example:
//   const cudnn::ConvGeometry g = cudnn::conv2d_geometry(*this, in.at(0));
//   m.fwd_workspace = cudnn::conv_workspace_bytes(g, t, cudnn::ConvPass::conv_forward);
//   m.bwd_workspace = cudnn::conv_workspace_bytes(g, t, cudnn::ConvPass::conv_backward);
// and for ConvTranspose2d the same with conv_transpose2d_geometry and ConvPass::deconv_forward / deconv_backward.
#pragma once

#include "kernels/cudnn/conv.h"
#include "layers/conv2d.h"

namespace climseg::cudnn {

// Conv2d: the conv is the layer itself. Pads from resolve_conv_pads (explicit symmetric, or TF 'SAME' with the
// extra row/column at the bottom/right); the output size from the layer, so the implied bottom/right padding is
// exactly the layer's (conv.h, extra_rows).
inline ConvGeometry conv2d_geometry(const Conv2d& layer, const Shape& x) {
  const Conv2dConfig& cfg = layer.config();
  const Pads pd = resolve_conv_pads(cfg, x.h, x.w);
  const Shape y = layer.output_shape({x});
  ConvGeometry g;
  g.n = x.n;
  g.h = x.h;
  g.w = x.w;
  g.c = x.c;
  g.k = cfg.out_channels;
  g.r = cfg.kernel_h;
  g.s = cfg.kernel_w;
  g.p = y.h;
  g.q = y.w;
  g.stride_h = cfg.stride_h;
  g.stride_w = cfg.stride_w;
  g.dilation_h = cfg.dilation_h;
  g.dilation_w = cfg.dilation_w;
  g.groups = cfg.groups;
  g.pad_top = pd.top;
  g.pad_left = pd.left;
  return g;
}

// ConvTranspose2d of input x (n, hi, wi, C_in) -> y (n, ho, wo, C_out) is the gradient of the conv
// X = y-shaped (n, ho, wo, C_out) -> Y = x-shaped (n, hi, wi, C_in), filter (C_in, R, S, C_out / groups): the
// layer's weight layout as it is. Index math (per spatial dim, stride st, dilation d, kernel k):
//   deconv:  y[o] += x[i] * W[r]  for every i, r with  o = i * st - pad + r * d
//   conv:    Y[i]  = sum_r X[i * st - pad + r * d] * W[r],  X zero outside [0, ho)
// so y = conv^T(x) with the conv's begin padding `pad`:
//   explicit: pad = pad_h, ho = (hi - 1) st - 2 pad + d (k - 1) + output_padding + 1. The conv with symmetric pad
//     gives (ho + 2 pad - d (k - 1) - 1) / st + 1 = hi - 1 + floor(output_padding / st) + 1 = hi when
//     output_padding < st: cuDNN's own descriptor fits. The conv's last output reads up to row
//     (hi - 1) st - pad + d (k - 1) = ho - 1 + pad - output_padding; rows >= ho are zero (cuDNN's end padding), so
//     the extra output_padding rows of y get exactly the contributions PyTorch gives them. output_padding >= st
//     (PyTorch allows it when < dilation) would need negative end padding: the CUDA path throws for it.
//   tf_same: ho = hi * st and pad = the 'SAME' begin padding of a conv on ho (TF's conv2d_transpose is the
//     gradient of conv2d(padding='SAME') on the output size): total = max((hi - 1) st + d (k - 1) + 1 - ho, 0),
//     pad = total / 2, end padding total - pad (one more when odd). When the end padding is read, the conv's X
//     is extended by extra_rows() zero rows in the workspace: deconv forward computes into the extended buffer and
//     crops (contributions beyond ho fall in TF's end padding and are dropped); backward zero-extends dy.
inline ConvGeometry conv_transpose2d_geometry(const ConvTranspose2d& layer, const Shape& x) {
  const ConvTranspose2dConfig& cfg = layer.config();
  const Shape y = layer.output_shape({x});
  ConvGeometry g;
  g.n = x.n;
  g.h = y.h;
  g.w = y.w;
  g.c = cfg.out_channels;
  g.k = x.c;
  g.r = cfg.kernel_h;
  g.s = cfg.kernel_w;
  g.p = x.h;
  g.q = x.w;
  g.stride_h = cfg.stride_h;
  g.stride_w = cfg.stride_w;
  g.dilation_h = cfg.dilation_h;
  g.dilation_w = cfg.dilation_w;
  g.groups = cfg.groups;
  if (cfg.padding == PaddingMode::tf_same) {
    Conv2dConfig c;
    c.out_channels = x.c;
    c.kernel_h = cfg.kernel_h;
    c.kernel_w = cfg.kernel_w;
    c.stride_h = cfg.stride_h;
    c.stride_w = cfg.stride_w;
    c.dilation_h = cfg.dilation_h;
    c.dilation_w = cfg.dilation_w;
    c.groups = cfg.groups;
    c.padding = PaddingMode::tf_same;
    const Pads pd = resolve_conv_pads(c, y.h, y.w);
    g.pad_top = pd.top;
    g.pad_left = pd.left;
  } else {
    g.pad_top = cfg.pad_h;
    g.pad_left = cfg.pad_w;
  }
  return g;
}

}  // namespace climseg::cudnn
