// CPU reference kernel for the input pipeline's min-max normalisation (reference-systems.md 1.3): per channel
// x' = (x - min_c) / (max_c - min_c), computed as the DeepCAM reference does, with data_shift = min and data_scale =
// 1 / (max - min) taken in double and rounded to float once, then x' = scale_c * (x - shift_c) in fp32.
//
// Layout: NHWC, x and y pixel-strided (P, C) matrices (element (p, c) at p * stride + c). x is fp32 (what
// io::read_sample returns); y is the compute dtype: the fp32 result is rounded once to T (round to nearest even for
// fp16/bf16, exact widening for double). Two roundings per element (the subtraction, the product), no fused
// multiply-add (the build uses -ffp-contract=off), so kernels/cuda/normalize.cu (__fsub_rn, __fmul_rn) gives the same
// bits; io::normalize (io/hdf5_sample.cpp) calls this kernel in place on fp32.
//
// Bound: memory (1 FLOP pair per 4 + sizeof(T) bytes); one core streams a 768x1152x16 sample (56.6 MB in,
// 56.6 MB out) in a few tens of milliseconds.
#pragma once

#include <cstdint>

namespace climseg::cpu {

// shift[c] = float(minval[c]), scale[c] = float(1.0 / (maxval[c] - minval[c])) (the division in double).
// The caller has checked max > min (io::read_stats does).                 minval, maxval: (C) double; shift, scale: (C)
void minmax_coefficients(int64_t C, const double* minval, const double* maxval, float* shift, float* scale);

// y[p, c] = T(scale[c] * (x[p, c] - shift[c]))                           x: (P, C) fp32, y: (P, C) T
// T: float, double, Half, BFloat16. y may be x (T = float, same stride: in place). OpenMP over pixels when the
// calling thread's team size allows it (the pipeline's reader threads set it to 1).
template <class T>
void minmax_normalize(int64_t P, int64_t C, const float* x, int64_t xs, T* y, int64_t ys, const float* shift,
                      const float* scale);

// The same on dense (P, C) rows (stride C), one thread, fused with the finite check the input pipeline needs: returns
// false when any x is NaN or +-inf (y then holds the results regardless). y must not overlap x. Equal results, bit for
// bit, to minmax_normalize.                                               x: (P, C) fp32, y: (P, C) T
template <class T>
bool minmax_normalize_finite(int64_t P, int64_t C, const float* x, T* y, const float* shift, const float* scale);

}  // namespace climseg::cpu
