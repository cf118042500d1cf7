// CPU reference kernels for pointwise layers: NHWC, pixel-strided views (channels contiguous, pixels `*s` elements
// apart, so channel slices of concat buffers work), templated on float and double, OpenMP over pixels.
// These are the single source of truth that layers, tests and benchmarks call (STYLE.md A).
#pragma once

#include <cstdint>

namespace climseg::cpu {

// y = max(x, 0)                                  x, y: (P, C), pixel strides xs, ys
template <class T>
void relu_fwd(int64_t P, int64_t C, const T* x, int64_t xs, T* y, int64_t ys);
// dx (=|+=) dy * (y > 0)                         uses the output, so it also works in place (x overwritten by y)
template <class T>
void relu_bwd(int64_t P, int64_t C, const T* y, int64_t ys, const T* dy, int64_t dys, T* dx, int64_t dxs,
              bool accumulate);
// y = a + b
template <class T>
void add_fwd(int64_t P, int64_t C, const T* a, int64_t as, const T* b, int64_t bs, T* y, int64_t ys);
// dst (=|+=) src; a no-op when dst and src are the same memory and accumulate is false
template <class T>
void copy_or_accumulate(int64_t P, int64_t C, const T* src, int64_t ss, T* dst, int64_t ds, bool accumulate);
// y[p, c] += b[c]
template <class T>
void add_bias(int64_t P, int64_t C, const T* b, T* y, int64_t ys);
// y[p, c] = act(y[p, c] + b[c] + r[p, c]), act = ReLU or identity; b or r may be null (left out). One pass over y:
// a convolution's inference epilogue (engine/layer.h Epilogue). Adds in that order (bias, then residual).
template <class T>
void bias_residual_relu(int64_t P, int64_t C, const T* b, const T* r, int64_t rs, bool relu, T* y, int64_t ys);
// db (=|+=) sum over pixels of dy
template <class T>
void bias_grad(int64_t P, int64_t C, const T* dy, int64_t dys, T* db, bool accumulate);
// y += alpha * x over a flat buffer (plain SGD: params += -lr * grads)
template <class T>
void axpy(int64_t n, T alpha, const T* x, T* y);

}  // namespace climseg::cpu
