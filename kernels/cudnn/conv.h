// Convolutions on the GPU through cuDNN 9's C API (kernels/cudnn/conv.cpp): forward, backward-data and
// backward-filter on NHWC activations and KRSC filters, and the staged layer-level passes that Conv2d and
// ConvTranspose2d use (layers/conv2d.cu). Plain C++ header (no cuDNN or CUDA
// includes), so the layers' CPU .cpp files can ask for workspace sizes; in CPU-only builds everything here is
// inline: the sizes are 0 and the passes throw.
//
// "The conv" below is always the cross-correlation X (n, in_h, in_w, in_c) -> Y (n, out_h, out_w, out_c) that a
// ConvGeometry describes (kernels/conv_geometry.h, built by conv_geometry() there). The output size is part of the
// geometry, so the bottom/right padding is implied (whatever rows or columns beyond X the last output reads are
// zeros). ConvTranspose2d is this conv's gradient (ConvGeometry::transposed): its input is the conv's Y and its output
// the conv's X, and each of its passes runs the conv pass ConvGeometry::conv_pass() names.
//
// Asymmetric padding (TF 'SAME' with an odd total, e.g. stride 2 on an even input pads (0, 1)): the legacy cuDNN
// descriptor only pads symmetrically. The conv runs with the symmetric pad (pad_top, pad_left); when cuDNN's output
// size with that pad falls short of (out_h, out_w) (the extra bottom row/column is read), X is staged into a zero-filled
// workspace buffer with extra_rows/extra_cols more rows/columns at the bottom/right, and gradients with respect to
// X are computed into such a buffer and the (in_h, in_w) window copied out (see extra_rows()).
//
// Pixel-strided views (channel slices): operands whose pixel stride exceeds their channel count are staged through
// packed workspace buffers (copy in, or compute then copy out), because cuDNN's NHWC kernels are specified for
// packed tensors only; packed operands are used in place. memory_needs() reports the worst case (every operand
// strided), since it sees shapes only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/tensor.h"
#include "kernels/conv_geometry.h"

namespace climseg::cudnn {

// Rows of zeros to append below X so that cuDNN's symmetric-pad output size equals p = out_h (h = in_h):
//   cuDNN's rows p' = (h + 2 pad_top - (dil (kernel_h - 1) + 1)) / stride + 1 (floor).
//   p' == p: 0 (rows below X that the last output would read, if any, are all zero padding either way).
//   p' <  p: the minimal e with (h + e + 2 pad_top - eff) / stride + 1 == p, i.e. e = (p-1) stride + eff - h - 2 pad_top.
//   p' >  p: the conv would need negative bottom padding (ConvTranspose2d with output_padding >= stride): throws.
inline int64_t extra_along(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t dil, int64_t pad,
                           const char* dim, const ConvGeometry& g) {
  const int64_t eff = dil * (k - 1) + 1;
  const int64_t num = in + 2 * pad - eff;
  const int64_t sym = num < 0 ? 0 : num / stride + 1;
  if (sym == out) return 0;
  CS_CHECK(sym < out, "cudnn conv: ", g.str(), ": the ", dim, " size ", out,
           " would need negative end padding (symmetric padding already gives ", sym,
           "); not supported on CUDA (ConvTranspose2d with output_padding >= stride)");
  const int64_t e = (out - 1) * stride + eff - in - 2 * pad;
  CS_CHECK(e > 0 && (in + e + 2 * pad - eff) / stride + 1 == out, "cudnn conv: ", g.str(), ": inconsistent ", dim,
           " geometry");
  return e;
}
inline int64_t extra_rows(const ConvGeometry& g) {
  return extra_along(g.in_h, g.out_h, g.kernel_h, g.stride_h, g.dilation_h, g.pad_top, "output height", g);
}
inline int64_t extra_cols(const ConvGeometry& g) {
  return extra_along(g.in_w, g.out_w, g.kernel_w, g.stride_w, g.dilation_w, g.pad_left, "output width", g);
}

// Workspace bytes for a pass of the layer that runs g (a pass of the conv, or with g.transposed of the transposed
// conv: conv_pass() maps it; the layer's backward needs the larger of backward_data and backward_filter): staging
// buffers, worst case, plus the chosen cuDNN algorithm's workspace, the larger of the deterministic and the default
// choice since memory_needs does not know ctx.deterministic. Plans with a process-wide cuDNN handle on the current
// device (algorithms cached per geometry, dtype, direction, determinism and device). Returns 0 when no CUDA device
// is visible or the build has no cuDNN: the CUDA path cannot run then, and CPU nets must still plan.
size_t conv_workspace_bytes(const ConvGeometry& g, DType dt, ConvPass pass);

// cudnnGetVersion() of the cuDNN library loaded at run time (9.x.y as 90000 + 100 x + y); 0 without cuDNN.
size_t runtime_version();

// ---- layer-level passes: any pixel-strided views; staging and padding handled here --------------------------
// `workspace`: u8 tensor of at least conv_workspace_bytes(g, dt, pass) bytes (the Net's plan), or undefined to
// use ctx.workspace(). Parameter tensors (filters) must be contiguous. accumulate: += (beta 1), else = (beta 0).
// x, y, dx, dy are the layer's: shapes g.layer_in() (x, dx) and g.layer_out() (y, dy); w and dw g.filter_shape().

// Layer forward, y overwritten (bias is the layer's business): y = conv(x); with g.transposed y (the conv's X) =
// backward-data of the conv applied to x (the conv's Y).
void conv_layer_forward(ExecContext& ctx, const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor& y,
                        const Tensor& workspace);
// Layer backward: dx (=|+=) the data gradient when dx is defined (the conv's backward-data of dy; with g.transposed
// the conv's forward of dy); dw (=|+=) backward-filter when dw is defined (the conv's X = x and dY = dy; with
// g.transposed X = dy and dY = x).
void conv_layer_backward(ExecContext& ctx, const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor& dy,
                         const Tensor& dx, bool dx_accumulate, const Tensor& dw, bool dw_accumulate,
                         const Tensor& workspace);

// ---- primitives: packed NHWC device pointers, geometry with extra_rows == extra_cols == 0 -------------------
// alpha = 1, beta = accumulate ? 1 : 0, applied by cuDNN in fp32. `ws` holds at least algo_workspace_bytes().
// `pass` is a pass of the conv g describes (g.transposed is ignored here).
size_t algo_workspace_bytes(ExecContext& ctx, const ConvGeometry& g, DType dt, ConvPass pass);
// The algorithm a pass runs with `max_ws` bytes of algorithm workspace. By default measured once per geometry,
// dtype, direction, determinism and device (cudnnFind*, as PyTorch's cudnn.benchmark): the fastest algorithm cuDNN
// ran successfully that is deterministic when ctx.deterministic, uses no TF32 for fp32 and fits in max_ws; the
// heuristic choice (algo_workspace_bytes' plan, which memory_needs sized the workspace for) when none does or the
// measurement fails. CLIMSEG_CUDNN_BENCHMARK=0: the heuristic choice only. CLIMSEG_CUDNN_LOG=1: each choice is
// printed once on stderr.
struct AlgoChoice {
  int algo = 0;
  size_t ws = 0;          // its workspace bytes
  bool measured = false;  // chosen by cudnnFind*, not by the heuristics
  float ms = -1;          // its measured time (-1: not measured)
};
AlgoChoice chosen_algorithm(ExecContext& ctx, const ConvGeometry& g, DType dt, ConvPass pass, size_t max_ws);
void forward(ExecContext& ctx, const ConvGeometry& g, DType dt, const void* x, const void* w, void* y,
             bool accumulate, void* ws, size_t ws_bytes);
void backward_data(ExecContext& ctx, const ConvGeometry& g, DType dt, const void* dy, const void* w, void* dx,
                   bool accumulate, void* ws, size_t ws_bytes);
void backward_filter(ExecContext& ctx, const ConvGeometry& g, DType dt, const void* x, const void* dy, void* dw,
                     bool accumulate, void* ws, size_t ws_bytes);

}  // namespace climseg::cudnn

// ---- builds without cuDNN (CPU-only, or CUDA without cuDNN): sizes 0, passes throw ----------------------------
#if !defined(CLIMSEG_HAVE_CUDA) || !defined(CLIMSEG_HAVE_CUDNN)
namespace climseg::cudnn {
namespace detail {
[[noreturn]] inline void no_cudnn(const char* who) {
  CS_THROW("cudnn::", who, ": this climseg was built without ",
#if defined(CLIMSEG_HAVE_CUDA)
           "cuDNN"
#else
           "CUDA"
#endif
  );
}
}  // namespace detail
inline size_t conv_workspace_bytes(const ConvGeometry&, DType, ConvPass) { return 0; }
inline size_t runtime_version() { return 0; }
inline void conv_layer_forward(ExecContext&, const ConvGeometry&, const Tensor&, const Tensor&, const Tensor&,
                               const Tensor&) {
  detail::no_cudnn("conv_layer_forward");
}
inline void conv_layer_backward(ExecContext&, const ConvGeometry&, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, bool, const Tensor&, bool, const Tensor&) {
  detail::no_cudnn("conv_layer_backward");
}
inline size_t algo_workspace_bytes(ExecContext&, const ConvGeometry&, DType, ConvPass) {
  detail::no_cudnn("algo_workspace_bytes");
}
inline AlgoChoice chosen_algorithm(ExecContext&, const ConvGeometry&, DType, ConvPass, size_t) {
  detail::no_cudnn("chosen_algorithm");
}
inline void forward(ExecContext&, const ConvGeometry&, DType, const void*, const void*, void*, bool, void*, size_t) {
  detail::no_cudnn("forward");
}
inline void backward_data(ExecContext&, const ConvGeometry&, DType, const void*, const void*, void*, bool, void*,
                          size_t) {
  detail::no_cudnn("backward_data");
}
inline void backward_filter(ExecContext&, const ConvGeometry&, DType, const void*, const void*, void*, bool, void*,
                            size_t) {
  detail::no_cudnn("backward_filter");
}
}  // namespace climseg::cudnn
#endif
