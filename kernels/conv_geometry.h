// The geometry of one 2-D convolution, shared by the CPU kernels (kernels/cpu/conv.h), the cuDNN wrapper
// (kernels/cudnn/conv.h) and the Conv2d / ConvTranspose2d layers (layers/conv2d.h), and built in one place:
// conv_geometry() below (kernels/conv_geometry.cpp).
//
// A ConvGeometry always describes a forward convolution (cross-correlation) X (n, in_h, in_w, in_c) -> Y (n, out_h,
// out_w, out_c) with filter F (out_c, kernel_h, kernel_w, in_c / groups), KRSC:
//   Y[b, i, j, o] = sum_{r, s, c} X[b, i*stride_h - pad_top + r*dilation_h, j*stride_w - pad_left + s*dilation_w,
//                                   g(o)*in_c/groups + c] * F[o, r, s, c]           (X zero outside the image)
// The output size is part of the geometry, so the bottom/right padding is implied (rows or columns beyond X that
// the last output reads are zeros).
//
// A transposed convolution (ConvTranspose2d) is that conv run backwards, Caffe's reverse_dimensions(): `transposed`
// is set, the layer's input is the conv's Y and its output the conv's X, its weight (C_in, R, S, C_out / groups) is
// the conv's filter as it is, and each pass of the layer is a pass of the conv (conv_pass()):
//   layer forward          = the conv's backward_data   (the conv's dY = x, its dX = y)
//   layer data gradient    = the conv's forward          (the conv's X = dy)
//   layer filter gradient  = the conv's backward_filter  (the conv's X = dy, its dY = x)
// so every kernel exists once, for the conv; kernels ignore the flag, only layer-level code reads it.
//
// Padding (per spatial dim, input `in`, kernel k, stride st, dilation d; conv_pads()):
//   conv, explicit:        begin = end = pad                                          (PyTorch's `padding`)
//   conv, 'SAME':          out = ceil(in / st), total = max((out - 1) st + d (k - 1) + 1 - in, 0),
//                          begin = total / 2, end = total - begin (the extra row/column at the bottom/right, TF)
//   transposed, explicit:  out = (in - 1) st - 2 pad + d (k - 1) + output_padding + 1 (PyTorch); the conv maps out
//                          back to in with begin = pad, end = pad - output_padding
//   transposed, 'SAME':    out = in st (TF conv2d_transpose, the gradient of conv2d(padding='SAME') on out): the
//                          conv's 'SAME' padding on out, total = max((in - 1) st + d (k - 1) + 1 - in st, 0), so
//                          k3 s2 pads (0, 1)
// Both 'SAME' cases are the one rule total = max((conv_out - 1) st + d (k - 1) + 1 - conv_in, 0).
#pragma once

#include <cstdint>
#include <string>

#include "engine/tensor.h"

namespace climseg {

enum class PaddingMode : uint8_t { explicit_symmetric, tf_same };

// The three passes of a convolution. For kernels: passes of the conv the geometry describes. For layer-level calls
// (the layers, cudnn::conv_workspace_bytes): passes of the layer, which conv_pass() maps onto the conv.
enum class ConvPass : uint8_t { forward, backward_data, backward_filter };

// What a conv layer's configuration says about its geometry, whatever the input size: the common part of
// Conv2dConfig and ConvTranspose2dConfig (layers/conv2d.h). out_channels is the layer's (the conv's in_c when
// transposed).
struct ConvSpec {
  int64_t out_channels = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  PaddingMode padding = PaddingMode::explicit_symmetric;
  int64_t pad_h = 0, pad_w = 0;                        // explicit_symmetric only
  int64_t output_padding_h = 0, output_padding_w = 0;  // transposed and explicit_symmetric only
};

// Throws (`who`: the layer) unless the spec is valid: positive out_channels, kernel, stride and dilation;
// non-negative padding; groups dividing out_channels; output_padding 0 for a conv, and for a transposed conv with
// explicit padding non-negative and smaller than either the stride or the dilation (PyTorch's rule: it only selects
// among the output sizes that map to the same input size).
void check_conv_spec(const ConvSpec& s, bool transposed, const std::string& who);

// The conv's padding for a layer input of in_h x in_w (for a transposed layer: the padding of the conv that maps its
// output back to its input; bottom/right may then be negative). top/left are the rows/columns of zeros before the
// conv's X.
struct Pads {
  int64_t top = 0, bottom = 0, left = 0, right = 0;
};
Pads conv_pads(const ConvSpec& s, bool transposed, int64_t in_h, int64_t in_w);

struct ConvGeometry {
  int64_t n = 0;
  int64_t in_h = 0, in_w = 0, in_c = 0;     // X
  int64_t out_h = 0, out_w = 0, out_c = 0;  // Y
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0;  // the bottom/right padding follows from the sizes
  int64_t groups = 1;
  bool transposed = false;  // the layer runs this conv backwards: its input is Y, its output X

  Shape in_shape() const { return {n, in_h, in_w, in_c}; }
  Shape out_shape() const { return {n, out_h, out_w, out_c}; }
  Shape filter_shape() const { return {out_c, kernel_h, kernel_w, groups > 0 ? in_c / groups : 0}; }
  Shape layer_in() const { return transposed ? out_shape() : in_shape(); }
  Shape layer_out() const { return transposed ? in_shape() : out_shape(); }
  // The conv's pass that runs the layer's pass `layer_pass` (Caffe's reverse_dimensions).
  ConvPass conv_pass(ConvPass layer_pass) const {
    if (!transposed || layer_pass == ConvPass::backward_filter) return layer_pass;
    return layer_pass == ConvPass::forward ? ConvPass::backward_data : ConvPass::forward;
  }
  // "X(n,h,w,c) F(k,r,s,c/g) Y(n,p,q,k) stride .. dilation .. groups .. pad top,left": the conv only (the cuDNN
  // plans are cached under it, whichever layer runs the conv).
  std::string str() const;
};

// The one builder: the geometry of a Conv2d (transposed = false) or ConvTranspose2d (true) layer with this spec on
// input x, sizes and padding as in the header comment. Throws (`who`: the layer) for an empty input, groups not
// dividing the input channels, an input smaller than the dilated kernel after padding, or an empty output.
ConvGeometry conv_geometry(const ConvSpec& s, bool transposed, const Shape& x, const std::string& who);

}  // namespace climseg
