// CPU reference kernels for 2-D convolution (and, with roles swapped, transposed convolution): NHWC activations,
// pixel-strided views (channels contiguous, pixels `*s` elements apart, so channel slices of concat buffers work),
// KRSC weights (K, R, S, C/groups) stored contiguously, templated on float and double.
//
// Everything is stated for the forward convolution x (N, IH, IW, C) -> y (N, OH, OW, K) that a ConvGeometry
// describes (kernels/conv_geometry.h: IH = in_h, ..., K = out_c, pt = pad_top, pl = pad_left):
//   y[n, oh, ow, g*Kg + k] = sum_{r, s, c} x[n, oh*sh - pt + r*dh, ow*sw - pl + s*dw, g*Cg + c] * w[g*Kg + k, r,
//   s, c]
// with x = 0 outside the image (Cg = C / groups, Kg = K / groups). A transposed convolution is the same relation
// read backwards: its forward is conv2d_bwd_data, its data gradient conv2d_fwd, its filter gradient
// conv2d_bwd_filter with x and dy swapped (ConvGeometry::conv_pass; layers/conv2d.cpp), so the maths exists once.
// The kernels ignore ConvGeometry::transposed.
//
// Algorithms (choice made from the shape, from whether the workspace holds one band or block of the shifted GEMM,
// direct kernel or Winograd, and for the fp32 direct kernel from the CPU having AVX-512; the same for every tile size
// beyond that and for every thread count):
// - general: im2col of a tile of output pixels into the workspace, col (T, R*S*Cg) laid out [r][s][c], then one
//   cpu::gemm per group: y_tile = col * W_g^T (forward), dcol = dy_tile * W_g then a col2im *gather* over input
//   pixels (data gradient: each input pixel sums its taps itself, so the loop is parallel with no atomics and a
//   fixed order), dW_g += dy_tile^T * col (filter gradient, beta = 1 after the first tile). Tiles hold as many
//   output pixels as the workspace allows (conv2d_workspace_bytes: at most kConvWorkspaceBudget, at least one
//   pixel), so the scratch stays bounded whatever the image size.
//   Kernel taps that reach the image for no output pixel (dilated convs on small maps: a 3x3 rate-12 conv on a
//   12x18 map keeps its centre tap only) are left out of im2col and of the GEMMs (their filter gradient is 0).
// - shifted GEMM (stride 1, one group, maps of >= 2048 output pixels, C >= 16, padded rows at most 25% wider than
//   the output): no im2col. A band of output rows of all images copies its input rows once into a
//   zero-padded buffer (rows OW + (S-1)*dw pixels wide); there every kernel tap is a constant shift of the flat
//   pixel index, so the band is one GEMM per tap, y_ext += x_pad_shifted * W_tap^T (beta = 1 after the first
//   tap), computed in blocks of ~512 extended pixels (fixed by the shape, so the result does not depend on the
//   thread count); the padded columns are computed and dropped when the block is copied out to y. It saves the
//   R*S-fold im2col copy at the price of (S-1)*dw/OW extra flops, which pays on large maps only (measured: 10-30%
//   faster from 48x72 up, slower on 12x18). A workspace too small for one band row falls back to im2col.
//   The same layout serves the backward passes where the im2col GEMMs are thin (few output channels K, such as
//   Tiramisu's K = 32): the data gradient of a stride-1 conv is the forward conv of dy with the flipped kernel
//   (wf[c,r,s,k] = w[k,R-1-r,S-1-s,c], padding dil*(k-1) - pad), run as a shifted GEMM when that geometry qualifies
//   and C >= 32; the filter gradient, for K <= 48 and C >= 64, is one GEMM per tap and image,
//   dW_tap += dy_band^T * x_band_shifted, the taps spread over the threads (measured 0.5-0.75x im2col's time there).
// - direct kernel (fp32 forward on a CPU with AVX-512; stride 1, one group, K of 16, 32, 48 or 64, C >= 16): on the
//   shifted layout, the K outputs of 6-12 pixels stay in vector registers while each kept tap and input channel is
//   added with one broadcast and K/16 fused multiply-adds; per-tap sums are added in order. It replaces the per-tap
//   GEMMs, whose packing of the (pixels x C) operand costs as much as the multiply-adds when K is this small
//   (Tiramisu's K = 32). Compiled with a target attribute and chosen at run time (the build's baseline is x86-64).
// - Winograd F(2x2, 3x3) (forward and data gradient; 3x3, stride 1, dilation 1, one group, every tap reaching the
//   image, C and K >= 64, C * K <= 512 * 512, and maps of >= 2048 output pixels unless C >= 256): each 2x2 output
//   tile from a 4x4 input patch, the sum over channels as 16 GEMMs over tiles (16 instead of 36 multiply-adds per tile,
//   channel pair), with input, weight and output transforms of +, - and exact halvings around them; tiles in blocks
//   that fit the workspace. Measured 0.58-0.83x the time of the other paths on DeepLabv3+'s wide 3x3 convs
//   (kernels/cpu/conv.cpp). The data gradient of such a conv is a 3x3 conv of dy with the rotated, channel-swapped
//   kernel and padding 2 - pad, and takes the same path when that geometry qualifies.
// - 1x1, stride 1, no padding: NHWC makes x a (pixels x C) matrix already, so the GEMMs run on the pixel-strided
//   tensors directly (no workspace).
// - depthwise (groups == C == K): direct loops over pixels, vectorised over channels; per-group GEMMs would be
//   1 x (R*S) products. The filter gradient sums pixel blocks in a fixed order (as cpu::bias_grad).
// Expected bound: the general and 1x1 paths are GEMM-bound (2*P*K*R*S*Cg flops per pass, im2col adds one write and
// one read of the col tile, cheap next to the GEMM for C >= 16); depthwise is memory-bound (x, y read/written
// once).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/conv_geometry.h"

namespace climseg::cpu {

// Upper bound on the im2col workspace of one convolution pass (64 MiB): large enough that the networks' convs at
// 96x144 run in one or a few tiles, small enough that full-resolution (768x1152) layers do not need gigabytes.
inline constexpr size_t kConvWorkspaceBudget = size_t(64) << 20;

enum class ConvAlgo : uint8_t { general, pointwise, depthwise };
ConvAlgo conv2d_algo(const ConvGeometry& g);

// Workspace for any of the three passes below: 0 for the pointwise and depthwise paths (and when no tap reaches
// the image), otherwise min(all output pixels, budget / row) rows of (kept taps) * Cg elements, at least one row;
// when the forward pass takes the shifted GEMM, at least its bands (as many output rows as the budget allows, at
// least one); when the forward or the data-gradient pass takes Winograd, its transformed weights and at least one
// block of tiles (up to 1024). At most the budget, except that one im2col row or band row is always granted.
size_t conv2d_workspace_bytes(const ConvGeometry& g, size_t elem_size, size_t budget = kConvWorkspaceBudget);

// The algorithm a pass takes for this shape and workspace, by the rules above (what the functions below run):
// "winograd", "shifted", "im2col", "gather" (the data gradient's col2im), "pointwise", "depthwise", or "none" (no
// tap reaches the image). For tests, benchmarks and profiles. `pass` is a pass of the conv g describes (g.transposed
// is ignored here, as by every kernel).
const char* conv2d_path(const ConvGeometry& g, ConvPass pass, size_t elem_size, size_t ws_bytes);
// Whether this CPU runs the fp32 direct kernel (x86-64 with AVX-512, unless CLIMSEG_CPU_DISPATCH=portable: see
// kernels/cpu/isa.h); elsewhere those shapes take the shifted GEMM or im2col, so fp32 results differ in rounding
// between such machines (never between thread counts).
bool conv2d_direct_kernel_available();

// y (=|+=) conv(x, w)                    x: (N,IH,IW,C) pixel stride xs; w: (K,R,S,Cg); y: (N,OH,OW,K) stride ys
// ws: workspace of ws_bytes (>= one row of R*S*Cg elements on the general path; more rows = fewer, larger tiles)
// path: automatic (by shape, see above), or force im2col, the shifted GEMM or Winograd (tests and benchmarks).
enum class ConvFwdPath : uint8_t { automatic, im2col, shifted, winograd };
template <class T>
void conv2d_fwd(const ConvGeometry& g, const T* x, int64_t xs, const T* w, T* y, int64_t ys, bool accumulate, void* ws,
                size_t ws_bytes, ConvFwdPath path = ConvFwdPath::automatic);
// dx (=|+=) conv^T(dy, w)                dy: (N,OH,OW,K) stride dys; dx: (N,IH,IW,C) stride dxs
template <class T>
void conv2d_bwd_data(const ConvGeometry& g, const T* dy, int64_t dys, const T* w, T* dx, int64_t dxs, bool accumulate,
                     void* ws, size_t ws_bytes);
// dw (=|+=) sum over pixels of dy (x) x-patches     dw: (K,R,S,Cg) contiguous
template <class T>
void conv2d_bwd_filter(const ConvGeometry& g, const T* x, int64_t xs, const T* dy, int64_t dys, T* dw, bool accumulate,
                       void* ws, size_t ws_bytes);

}  // namespace climseg::cpu
