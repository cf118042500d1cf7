// CPU reference kernels for pooling: max pool, average pool and global average pool, forward and backward.
//
// Layout: NHWC, every tensor a pixel-strided view (channels contiguous, pixels `*s` elements apart), so channel
// slices of concat buffers are read and written in place. Templated on float and double; OpenMP over output
// (forward) or input (backward) pixels.
//
// Window geometry (Pool2dGeom): output pixel (oh, ow) reads input rows oh * sh - pt + [0, kh) and columns
// ow * sw - pl + [0, kw); rows and columns outside [0, H) x [0, W) are padding. Explicit (PyTorch) padding and
// TF 'SAME' padding both reduce to (pt, pl) and an output size (layers/pool.cpp computes them).
//
// Algorithms:
// - max pool forward scans each window row-major and keeps the FIRST maximum (strict >), so ties go to the
//   earliest element in scan order; padded positions never win; the first NaN wins (NaNs propagate, as in
//   PyTorch). It saves the window-local index of the winner (kh * kw <= 256, one u8 per output element) for the
//   backward pass.
// - Every backward pass is in GATHER form: each input element sums the contributions of the output windows that
//   cover it, in a fixed order (oh ascending, then ow ascending), into a local sum that is then stored or added
//   to dx. No scatter, no races, and the CUDA kernels (kernels/cuda/pool.cu) use the same order, so both devices
//   are deterministic. The windows covering input row ih are oh in [pool_first_out(ih), pool_last_out(ih)].
// - global average pool sums each image's pixels in a fixed order that the CUDA kernel shares: chunks of
//   global_avgpool_chunk(H * W) pixels; within a chunk, 8 lanes (lane l sums pixels l, l + 8, ...), then the lanes
//   in order; then the chunks in order; then one division by H * W. Only additions, so the fp32 result is the same
//   on both devices, and blocking keeps the rounding error far below a sequential sum's over a whole image.
//
// Bound: memory-bound (k*k/s^2 reads per output in forward, at most ceil(k/s)^2 windows per input in backward).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define CS_POOL_HD __host__ __device__ __forceinline__
#else
#define CS_POOL_HD inline
#endif

namespace climseg::cpu {

struct Pool2dGeom {
  int64_t n = 0, h = 0, w = 0, c = 0;  // input (N, H, W, C)
  int64_t oh = 0, ow = 0;              // output (N, OH, OW, C)
  int64_t kh = 1, kw = 1;              // window
  int64_t sh = 1, sw = 1;              // stride
  int64_t pt = 0, pl = 0;              // padding before the first row / column
};

// Range of output indices whose window covers input index i along one axis (k window, s stride, p padding
// before, o outputs): [pool_first_out, pool_last_out], empty when first > last.
CS_POOL_HD int64_t pool_first_out(int64_t i, int64_t k, int64_t s, int64_t p) {
  // smallest o with o * s - p + k - 1 >= i
  const int64_t lo = i + p - k + 1;
  return lo <= 0 ? 0 : (lo + s - 1) / s;
}
CS_POOL_HD int64_t pool_last_out(int64_t i, int64_t s, int64_t p, int64_t o) {
  // largest o' with o' * s - p <= i, capped at o - 1 (i + p >= 0 since p >= 0)
  const int64_t hi = (i + p) / s;
  return hi < o - 1 ? hi : o - 1;
}

// Number of window elements inside the image (the average pool divisor without padding).
CS_POOL_HD int64_t pool_valid_count(int64_t o, int64_t k, int64_t s, int64_t p, int64_t size) {
  int64_t a = o * s - p, b = a + k;
  if (a < 0) a = 0;
  if (b > size) b = size;
  return b > a ? b - a : 0;
}

// Pixel chunking of the global average pool: chunks of at least 256 pixels, at most 64 per image; depends on H * W
// only, never on the device or the thread count.
constexpr int64_t kGlobalPoolLanes = 8;
CS_POOL_HD int64_t global_avgpool_chunk(int64_t hw) {
  const int64_t c = (hw + 63) / 64;
  return c > 256 ? c : 256;
}
CS_POOL_HD int64_t global_avgpool_chunks(int64_t hw) {
  return hw == 0 ? 0 : (hw + global_avgpool_chunk(hw) - 1) / global_avgpool_chunk(hw);
}

// y = max over the window; argmax (N, OH, OW, C) u8 contiguous = window-local index kh_i * kw + kw_i of the first
// maximum (may be null when no backward follows).
template <class T>
void maxpool_fwd(const Pool2dGeom& g, const T* x, int64_t xs, T* y, int64_t ys, uint8_t* argmax);
// dx (=|+=) sum over the windows covering each element of dy where the window chose that element.
template <class T>
void maxpool_bwd(const Pool2dGeom& g, const uint8_t* argmax, const T* dy, int64_t dys, T* dx, int64_t dxs,
                 bool accumulate);
// y = sum over the window / divisor; divisor = kh * kw (count_include_pad) or the valid element count.
template <class T>
void avgpool_fwd(const Pool2dGeom& g, bool count_include_pad, const T* x, int64_t xs, T* y, int64_t ys);
template <class T>
void avgpool_bwd(const Pool2dGeom& g, bool count_include_pad, const T* dy, int64_t dys, T* dx, int64_t dxs,
                 bool accumulate);
// y (N, 1, 1, C) = mean over the H * W pixels of each image (hw = H * W; x pixel-strided, images hw pixels apart).
template <class T>
void global_avgpool_fwd(int64_t n, int64_t hw, int64_t c, const T* x, int64_t xs, T* y, int64_t ys);
// dx (=|+=) dy / (H * W) for every pixel of the image.
template <class T>
void global_avgpool_bwd(int64_t n, int64_t hw, int64_t c, const T* dy, int64_t dys, T* dx, int64_t dxs,
                        bool accumulate);

}  // namespace climseg::cpu
