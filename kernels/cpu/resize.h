// CPU reference kernels for bilinear resize (upsampling and downsampling), forward and backward.
//
// Layout: NHWC, pixel-strided views (channels contiguous, pixels `*s` elements apart), templated on float and
// double, OpenMP over output (forward) or input (backward) pixels.
//
// Coordinate rules, per axis, for output index d, input size I and output size O (resize_coord below, shared with
// the CUDA kernels so both devices pick the same source pixels and weights; computed in double):
//   align_corners (PyTorch align_corners=True):   src = d * (I - 1) / (O - 1)   (0 when O == 1)
//   half_pixel    (PyTorch align_corners=False):  src = max((d + 0.5) * I / O - 0.5, 0)
//   tf_legacy     (TF1 tf.image.resize_bilinear default, align_corners=False, half_pixel_centers=False, what the
//                  2018 DeepLabv3+ code used for the ASPP image-level branch and the bilinear decoder):
//                                                 src = d * I / O
// then i0 = min(floor(src), I - 1), i1 = min(i0 + 1, I - 1), lambda = src - i0, and
//   y = (1 - lh) * ((1 - lw) * x[i0h, i0w] + lw * x[i0h, i1w]) + lh * ((1 - lw) * x[i1h, i0w] + lw * x[i1h, i1w])
// (PyTorch's upsample_bilinear2d order of operations; TF's lerp gives the same value up to rounding. TF1 computes
// the legacy scale and src in float32; the coordinates here are double: identical for power-of-two factors (exact
// scales), otherwise lambda can differ from TF's in its last float bits.)
//
// Backward in GATHER form: dx[ih, iw] = sum over output rows dh and columns dw that sample ih / iw of
// wh(dh, ih) * ww(dw, iw) * dy[dh, dw], where w(d, i) = (i0(d) == i ? 1 - lambda : 0) + (i1(d) == i ? lambda : 0).
// Since i0(d) is non-decreasing in d and i1(d) is in {i0(d), i0(d) + 1}, the outputs sampling input i are exactly
// those with i0(d) in {i - 1, i}: one contiguous range [resize_first_out(i - 1), resize_first_out(i + 1)),
// where resize_first_out(v) = the first d with i0(d) >= v, found by binary search on i0. Sums run in a fixed
// order (dh, then dw ascending), so the result is deterministic with no atomics; the CUDA kernels use the same
// order and the same weights (computed in double, rounded to T, multiplied wh * ww in T).
// resize_bwd_scatter is the plain scatter form, kept as the test oracle for the gather form.
//
// Bound: memory-bound; forward reads 4 input pixels per output pixel (mostly cached), backward reads about
// (O/I)^2 + 2 O/I + 1 output pixels per input pixel when upsampling.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define CS_RESIZE_HD __host__ __device__ __forceinline__
#else
#define CS_RESIZE_HD inline
#endif

namespace climseg::cpu {

enum class ResizeMode : int { align_corners = 0, half_pixel = 1, tf_legacy = 2 };

struct ResizeCoord {
  int64_t i0, i1;
  double lambda;  // weight of i1; i0 gets 1 - lambda
};

// Double products and sums that are never fused into an FMA: the device compiler contracts a * b + c by default,
// which would move src by an ulp and could flip floor(src) at exact integers; the host build uses
// -ffp-contract=off. With these, both devices compute bit-identical coordinates and weights.
CS_RESIZE_HD double resize_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
CS_RESIZE_HD double resize_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

CS_RESIZE_HD ResizeCoord resize_coord(int64_t d, int64_t in, int64_t out, ResizeMode mode) {
  const double dd = static_cast<double>(d);
  double src;
  if (mode == ResizeMode::align_corners) {
    src = out > 1 ? resize_mul(dd, static_cast<double>(in - 1) / static_cast<double>(out - 1)) : 0.0;
  } else if (mode == ResizeMode::half_pixel) {
    src = resize_add(resize_mul(resize_add(dd, 0.5), static_cast<double>(in) / static_cast<double>(out)), -0.5);
    if (src < 0.0) src = 0.0;
  } else {
    src = resize_mul(dd, static_cast<double>(in) / static_cast<double>(out));
  }
  int64_t i0 = static_cast<int64_t>(src);  // src >= 0: truncation is floor
  if (i0 > in - 1) i0 = in - 1;
  ResizeCoord r;
  r.i0 = i0;
  r.i1 = i0 < in - 1 ? i0 + 1 : i0;
  r.lambda = src - static_cast<double>(i0);
  return r;
}

// First output index d in [0, out] with i0(d) >= v (out when none): the outputs sampling input i are
// [resize_first_out(i - 1), resize_first_out(i + 1)).
CS_RESIZE_HD int64_t resize_first_out(int64_t v, int64_t in, int64_t out, ResizeMode mode) {
  int64_t lo = 0, hi = out;  // invariant: answer in [lo, hi]
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (resize_coord(mid, in, out, mode).i0 >= v)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

// Weight of input index i in output d's interpolation along one axis (0 when d does not sample i).
CS_RESIZE_HD double resize_weight(const ResizeCoord& r, int64_t i) {
  return resize_add(r.i0 == i ? 1.0 - r.lambda : 0.0, r.i1 == i ? r.lambda : 0.0);
}

struct ResizeGeom {
  int64_t n = 0, h = 0, w = 0, c = 0;  // input
  int64_t oh = 0, ow = 0;              // output
  ResizeMode mode = ResizeMode::half_pixel;
};

template <class T>
void resize_fwd(const ResizeGeom& g, const T* x, int64_t xs, T* y, int64_t ys);
// Gather form (see above). dx (=|+=) ...
template <class T>
void resize_bwd(const ResizeGeom& g, const T* dy, int64_t dys, T* dx, int64_t dxs, bool accumulate);
// Scatter form, serial: dx = 0 then dx[i0/i1 taps] += weights * dy for every output pixel. Test oracle only.
template <class T>
void resize_bwd_scatter(const ResizeGeom& g, const T* dy, int64_t dys, T* dx, int64_t dxs);

}  // namespace climseg::cpu
