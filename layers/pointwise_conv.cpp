#include "layers/pointwise_conv.h"

#include "engine/dispatch.h"
#include "kernels/cpu/eltwise.h"
#include "kernels/cpu/gemm.h"
#include "layers/conv2d.h"

namespace climseg {

Shape PointwiseConv::output_shape(const std::vector<Shape>& in) const {
  CS_CHECK(k_ > 0, name(), ": out_channels must be positive, got ", k_);
  CS_CHECK(in.at(0).c > 0, name(), ": input has no channels");
  Shape s = in.at(0);
  s.c = k_;
  return s;
}

std::vector<ParamSpec> PointwiseConv::param_specs(const std::vector<Shape>& in) const {
  int64_t c = in.at(0).c;
  std::vector<ParamSpec> p{{"weight", Shape{k_, 1, 1, c}, Init::he_normal, c, ParamLayout::conv_krsc}};
  if (bias_) p.push_back({"bias", Shape{1, 1, 1, k_}, Init::zeros, c});
  return p;
}

LayerCost PointwiseConv::forward_cost(const std::vector<Shape>& in, DType t) const {
  double es = static_cast<double>(dtype_size(t));
  double P = static_cast<double>(in[0].pixels()), C = static_cast<double>(in[0].c), K = static_cast<double>(k_);
  return {2.0 * P * C * K, es * (P * C + P * K + K * C)};
}

LayerCost PointwiseConv::backward_cost(const std::vector<Shape>& in, DType t) const {
  LayerCost f = forward_cost(in, t);  // data gradient and filter gradient: one GEMM each
  return {2 * f.flops, 2 * f.bytes};
}

void PointwiseConv::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  const int64_t P = x.shape().pixels(), C = x.shape().c;
  dispatch_cpu_float(x.dtype(), "conv1x1", [&](auto tag) {
    using T = decltype(tag);
    // y (P x K) = x (P x C) * W^T (C x K)
    cpu::gemm<T>(false, true, P, k_, C, T(1), x.data_as<T>(), x.pixel_stride(), a.params[0].data_as<T>(), a.params[0].pixel_stride(), T(0),
                 a.y.data_as<T>(), a.y.pixel_stride());
  });
  conv_epilogue_cpu(bias_ ? a.params[1] : Tensor(), a.epilogue, a.y);
}

void PointwiseConv::scale_output_channels(const std::vector<Shape>& in, double* w, const double* scale) const {
  const int64_t c = in.at(0).c;  // (K, 1, 1, C)
  for (int64_t k = 0; k < k_; ++k)
    for (int64_t i = 0; i < c; ++i) w[k * c + i] *= scale[k];
}

void PointwiseConv::backward_cpu(ExecContext&, const BackwardArgs& a) {
  const Tensor& dy = a.dy;
  const int64_t P = dy.shape().pixels();
  const int64_t C = a.params[0].shape().c;
  dispatch_cpu_float(dy.dtype(), "conv1x1", [&](auto tag) {
    using T = decltype(tag);
    const T pbeta = a.param_mode == GradMode::accumulate ? T(1) : T(0);
    // dW (K x C) = dy^T (K x P) * x (P x C)
    cpu::gemm<T>(true, false, k_, C, P, T(1), dy.data_as<T>(), dy.pixel_stride(), a.x[0].data_as<T>(),
                 a.x[0].pixel_stride(), pbeta, a.grads[0].data_as<T>(), a.grads[0].pixel_stride());
    if (bias_)
      cpu::bias_grad<T>(P, k_, dy.data_as<T>(), dy.pixel_stride(), a.grads[1].data_as<T>(),
                        a.param_mode == GradMode::accumulate);
    // dx (P x C) = dy (P x K) * W (K x C)
    if (a.dx[0].defined()) {
      const T xbeta = a.dx_mode[0] == GradMode::accumulate ? T(1) : T(0);
      cpu::gemm<T>(false, false, P, C, k_, T(1), dy.data_as<T>(), dy.pixel_stride(), a.params[0].data_as<T>(), a.params[0].pixel_stride(),
                   xbeta, a.dx[0].data_as<T>(), a.dx[0].pixel_stride());
    }
  });
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(PointwiseConv)
#endif

}  // namespace climseg
