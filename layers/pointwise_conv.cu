// PointwiseConv, CUDA path: cuBLAS GEMMs over pixels (kernels/cublas/gemm.h) plus the bias kernels
// (kernels/cuda/eltwise.h). Same GEMMs, operands and leading dimensions as the CPU path (layers/pointwise_conv.cpp):
// pixel strides are the leading dimensions, so channel-slice inputs and outputs need no copies.
#include "kernels/cublas/gemm.h"
#include "kernels/cuda/eltwise.h"
#include "layers/conv2d.h"
#include "layers/pointwise_conv.h"

namespace climseg {

void PointwiseConv::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  const int64_t P = x.shape().pixels(), C = x.shape().c;
  // y (P x K) = x (P x C) * W^T (C x K)
  cuda::gemm(ctx, false, true, P, k_, C, 1.0, x.data(), x.pixel_stride(), a.params[0].data(), a.params[0].pixel_stride(), 0.0, a.y.data(),
             a.y.pixel_stride(), x.dtype());
  conv_epilogue_cuda(ctx, bias_ ? a.params[1] : Tensor(), a.epilogue, a.y);
}

void PointwiseConv::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  const Tensor& dy = a.dy;
  const int64_t P = dy.shape().pixels();
  const int64_t C = a.params[0].shape().c;
  const DType dt = dy.dtype();
  const bool pacc = a.param_mode == GradMode::accumulate;
  // dW (K x C) = dy^T (K x P) * x (P x C)
  cuda::gemm(ctx, true, false, k_, C, P, 1.0, dy.data(), dy.pixel_stride(), a.x[0].data(), a.x[0].pixel_stride(),
             pacc ? 1.0 : 0.0, a.grads[0].data(), a.grads[0].pixel_stride(), dt);
  if (bias_) cuda::bias_grad(ctx, dy, a.grads[1], pacc);
  // dx (P x C) = dy (P x K) * W (K x C)
  if (a.dx[0].defined()) {
    const double xbeta = a.dx_mode[0] == GradMode::accumulate ? 1.0 : 0.0;
    cuda::gemm(ctx, false, false, P, C, k_, 1.0, dy.data(), dy.pixel_stride(), a.params[0].data(), a.params[0].pixel_stride(), xbeta,
               a.dx[0].data(), a.dx[0].pixel_stride(), dt);
  }
}

}  // namespace climseg
