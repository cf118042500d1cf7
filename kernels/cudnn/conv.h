// Convolutions on the GPU through cuDNN 9's C API (kernels/cudnn/conv.cpp): forward, backward-data and
// backward-filter on NHWC activations and KRSC filters, and the staged layer-level passes that Conv2d and
// ConvTranspose2d use (layers/conv2d.cu, layers/conv_transpose2d.cu). Plain C++ header (no cuDNN or CUDA
// includes), so the layers' CPU .cpp files can ask for workspace sizes; in CPU-only builds everything here is
// inline: the sizes are 0 and the passes throw.
//
// "The conv" below is always a cross-correlation X (n, h, w, c) -> Y (n, p, q, k) with filter F (k, r, s, c/groups):
//   Y[b, i, j, o] = sum_{y, x, ci} X[b, i*stride_h - pad_top + y*dil_h, j*stride_w - pad_left + x*dil_w, g(o)*c/G + ci]
//                                 * F[o, y, x, ci]                       (X is zero outside [0, h) x [0, w))
// The output size (p, q) is part of the geometry, so the bottom/right padding is implied (whatever rows or columns
// beyond X the last output reads are zeros). ConvTranspose2d is this conv's gradient: its input is the conv's Y and
// its output the conv's X.
//
// Asymmetric padding (TF 'SAME' with an odd total, e.g. stride 2 on an even input pads (0, 1)): the legacy cuDNN
// descriptor only pads symmetrically. The conv runs with the symmetric pad (pad_top, pad_left); when cuDNN's output
// size with that pad falls short of (p, q) (the extra bottom row/column is read), X is staged into a zero-filled
// workspace buffer with extra_rows/extra_cols more rows/columns at the bottom/right, and gradients with respect to
// X are computed into such a buffer and the (h, w) window copied out (see extra_rows()).
//
// Pixel-strided views (channel slices): operands whose pixel stride exceeds their channel count are staged through
// packed workspace buffers (copy in, or compute then copy out), because cuDNN's NHWC kernels are specified for
// packed tensors only; packed operands are used in place. memory_needs() reports the worst case (every operand
// strided), since it sees shapes only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/tensor.h"

namespace climseg::cudnn {

struct ConvGeometry {
  int64_t n = 0, h = 0, w = 0, c = 0;  // X
  int64_t k = 0, r = 1, s = 1;         // filter (k, r, s, c / groups)
  int64_t p = 0, q = 0;                // Y spatial size
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  int64_t pad_top = 0, pad_left = 0;

  std::string str() const {
    std::ostringstream o;
    o << "X(" << n << "," << h << "," << w << "," << c << ") F(" << k << "," << r << "," << s << ","
      << (groups > 0 ? c / groups : 0) << ") Y(" << n << "," << p << "," << q << "," << k << ") stride " << stride_h
      << "x" << stride_w << " dilation " << dilation_h << "x" << dilation_w << " groups " << groups << " pad "
      << pad_top << "," << pad_left;
    return o.str();
  }
};

// Rows of zeros to append below X so that cuDNN's symmetric-pad output size equals p:
//   cuDNN's rows p' = (h + 2 pad_top - (dil (r - 1) + 1)) / stride + 1 (floor).
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
  return extra_along(g.h, g.p, g.r, g.stride_h, g.dilation_h, g.pad_top, "output height", g);
}
inline int64_t extra_cols(const ConvGeometry& g) {
  return extra_along(g.w, g.q, g.s, g.stride_w, g.dilation_w, g.pad_left, "output width", g);
}

// Which pass of which layer: workspace needs differ (see conv.cpp, "workspace layout").
enum class ConvPass : uint8_t { conv_forward, conv_backward, deconv_forward, deconv_backward };

// Workspace bytes for a pass (staging buffers, worst case, plus the chosen cuDNN algorithms' workspace, the larger
// of the deterministic and the default choice since memory_needs does not know ctx.deterministic). Plans with a
// process-wide cuDNN handle on the current device (algorithms cached per geometry, dtype, direction, determinism
// and device). Returns 0 when no CUDA device is visible or the build has no cuDNN: the CUDA path cannot run then,
// and CPU nets must still plan.
size_t conv_workspace_bytes(const ConvGeometry& g, DType dt, ConvPass pass);

// cudnnGetVersion() of the cuDNN library loaded at run time (9.x.y as 90000 + 100 x + y); 0 without cuDNN.
size_t runtime_version();

// ---- layer-level passes: any pixel-strided views; staging and padding handled here --------------------------
// `workspace`: u8 tensor of at least conv_workspace_bytes(g, dt, pass) bytes (the Net's plan), or undefined to
// use ctx.workspace(). Parameter tensors (filters) must be contiguous. accumulate: += (beta 1), else = (beta 0).

// Conv2d forward: y = conv(x) (overwritten; bias is the layer's business).
void conv2d_forward(ExecContext& ctx, const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor& y,
                    const Tensor& workspace);
// Conv2d backward: dx (=|+=) conv backward-data(dy) when dx is defined; dw (=|+=) backward-filter(x, dy) when
// dw is defined.
void conv2d_backward(ExecContext& ctx, const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor& dy,
                     const Tensor& dx, bool dx_accumulate, const Tensor& dw, bool dw_accumulate,
                     const Tensor& workspace);
// ConvTranspose2d forward: y (the conv's X) = backward-data of the conv applied to x (the conv's Y), overwritten.
void conv_transpose2d_forward(ExecContext& ctx, const ConvGeometry& g, const Tensor& x, const Tensor& w,
                              const Tensor& y, const Tensor& workspace);
// ConvTranspose2d backward: dx (the conv's Y shape) (=|+=) conv forward(dy); dw (=|+=) backward-filter with the
// conv's X = dy and the conv's dY = x.
void conv_transpose2d_backward(ExecContext& ctx, const ConvGeometry& g, const Tensor& x, const Tensor& w,
                               const Tensor& dy, const Tensor& dx, bool dx_accumulate, const Tensor& dw,
                               bool dw_accumulate, const Tensor& workspace);

// ---- primitives: packed NHWC device pointers, geometry with extra_rows == extra_cols == 0 -------------------
// alpha = 1, beta = accumulate ? 1 : 0, applied by cuDNN in fp32. `ws` holds at least algo_workspace_bytes().
enum class ConvDir : uint8_t { forward, backward_data, backward_filter };
size_t algo_workspace_bytes(ExecContext& ctx, const ConvGeometry& g, DType dt, ConvDir dir);
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
AlgoChoice chosen_algorithm(ExecContext& ctx, const ConvGeometry& g, DType dt, ConvDir dir, size_t max_ws);
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
inline void conv2d_forward(ExecContext&, const ConvGeometry&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&) {
  detail::no_cudnn("conv2d_forward");
}
inline void conv2d_backward(ExecContext&, const ConvGeometry&, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, bool, const Tensor&, bool, const Tensor&) {
  detail::no_cudnn("conv2d_backward");
}
inline void conv_transpose2d_forward(ExecContext&, const ConvGeometry&, const Tensor&, const Tensor&, const Tensor&,
                                     const Tensor&) {
  detail::no_cudnn("conv_transpose2d_forward");
}
inline void conv_transpose2d_backward(ExecContext&, const ConvGeometry&, const Tensor&, const Tensor&, const Tensor&,
                                      const Tensor&, bool, const Tensor&, bool, const Tensor&) {
  detail::no_cudnn("conv_transpose2d_backward");
}
inline size_t algo_workspace_bytes(ExecContext&, const ConvGeometry&, DType, ConvDir) {
  detail::no_cudnn("algo_workspace_bytes");
}
inline AlgoChoice chosen_algorithm(ExecContext&, const ConvGeometry&, DType, ConvDir, size_t) {
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
