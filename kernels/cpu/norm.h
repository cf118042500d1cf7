// CPU reference kernels for normalisation-style layers: batch norm (statistics, fused apply with residual add and
// ReLU, backward), per-channel affine, constant scale, and inverted dropout with a Philox mask.
//
// Layout: NHWC, every operand a pixel-strided (P, C) matrix: element (p, c) at p * stride + c, so channel slices
// of concat buffers work. Per-channel vectors (mean, inv_std, gamma, ...) are contiguous (C).
// Templated on float and double; statistics and parameter-gradient sums accumulate in double in fixed-size pixel
// blocks combined in block order, so results do not depend on the OpenMP thread count (deterministic).
// These are the single source of truth for the layers' CPU paths and for tests (STYLE.md A).
#pragma once

#include <cstdint>

namespace climseg::cpu {

// ---- batch norm ------------------------------------------------------------------------------------------------
// Batch statistics over the P pixels of each channel: mean and the biased variance (sum (x - mean)^2 / P), two
// passes (mean first) for accuracy.                                    x: (P, C); mean, var: (C)
template <class T>
void bn_stats(int64_t P, int64_t C, const T* x, int64_t xs, T* mean, T* var);
// inv_std[c] = 1 / sqrt(var[c] + eps)
template <class T>
void bn_inv_std(int64_t C, const T* var, double eps, T* inv_std);
// Running statistics, PyTorch semantics: r = (1 - momentum) r + momentum * batch, with the unbiased variance
// var * M / (M - 1) for the running variance. M = 1 (one value per channel): the unbiased correction is taken as 1,
// TensorFlow's choice (fused_batch_norm_op.cc: rest_size_minus_one = max(rest_size - 1, 1)), so the update stays
// finite.
template <class T>
void bn_update_running(int64_t C, int64_t M, const T* mean, const T* var, double momentum, T* running_mean,
                       T* running_var);
// y = act((x - mean) * inv_std * gamma + beta [+ res])        act = ReLU when relu; res may be null
template <class T>
void bn_fwd_apply(int64_t P, int64_t C, const T* x, int64_t xs, const T* mean, const T* inv_std, const T* gamma,
                  const T* beta, const T* res, int64_t rs, bool relu, T* y, int64_t ys);
// Per-channel sums for backward: sum_dz = sum dz, sum_dz_xhat = sum dz * xhat, where xhat = (x - mean) * inv_std
// and dz = dy * (y > 0) when relu (y is then the fused output), else dz = dy (y may be null).
template <class T>
void bn_bwd_reduce(int64_t P, int64_t C, const T* x, int64_t xs, const T* y, int64_t ys, const T* dy, int64_t dys,
                   const T* mean, const T* inv_std, bool relu, T* sum_dz, T* sum_dz_xhat);
// Input gradients from the sums above (each output null when not wanted):
//   training:  dx = gamma * inv_std * (dz - (sum_dz + xhat * sum_dz_xhat) / P)
//   inference: dx = gamma * inv_std * dz                           (the affine map with running statistics)
//   dres = dz                                                      (fused residual)
template <class T>
void bn_bwd_data(int64_t P, int64_t C, const T* x, int64_t xs, const T* y, int64_t ys, const T* dy, int64_t dys,
                 const T* mean, const T* inv_std, const T* gamma, const T* sum_dz, const T* sum_dz_xhat, bool relu,
                 bool training, T* dx, int64_t dxs, bool dx_accumulate, T* dres, int64_t drs, bool dres_accumulate);

// ---- affine and scale --------------------------------------------------------------------------------------------
// y = x * scale[c] + shift[c]
template <class T>
void affine_fwd(int64_t P, int64_t C, const T* x, int64_t xs, const T* scale, const T* shift, T* y, int64_t ys);
// dscale (=|+=) sum dy * x, dshift (=|+=) sum dy; dx (=|+=) dy * scale[c] when dx is not null
template <class T>
void affine_bwd(int64_t P, int64_t C, const T* x, int64_t xs, const T* dy, int64_t dys, const T* scale, T* dx,
                int64_t dxs, bool dx_accumulate, T* dscale, T* dshift, bool param_accumulate);
// y = alpha * x;  dx (=|+=) alpha * dy
template <class T>
void scale_fwd(int64_t P, int64_t C, T alpha, const T* x, int64_t xs, T* y, int64_t ys);
template <class T>
void scale_bwd(int64_t P, int64_t C, T alpha, const T* dy, int64_t dys, T* dx, int64_t dxs, bool accumulate);

// ---- dropout -----------------------------------------------------------------------------------------------------
// Inverted dropout: element i (its NHWC logical index p * C + c) is kept when philox_uniform(seed, step, i) >= p,
// and kept elements are multiplied by dropout_scale(p) = 1 / (1 - p) (computed in fp32 so CPU and CUDA multiply
// by the same number). The uniforms carry 24 bits and compare exactly in fp32: the CUDA mask is bit-identical.
float dropout_scale(double p);
bool dropout_keep(uint64_t seed, uint64_t step, uint64_t index, float p);
// y = keep ? x * scale : 0
template <class T>
void dropout_fwd(int64_t P, int64_t C, double p, uint64_t seed, uint64_t step, const T* x, int64_t xs, T* y,
                 int64_t ys);
// dx (=|+=) keep ? dy * scale : 0    (the mask is regenerated from (seed, step), not stored)
template <class T>
void dropout_bwd(int64_t P, int64_t C, double p, uint64_t seed, uint64_t step, const T* dy, int64_t dys, T* dx,
                 int64_t dxs, bool accumulate);

}  // namespace climseg::cpu
