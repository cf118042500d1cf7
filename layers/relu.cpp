#include "layers/relu.h"

#include "engine/dispatch.h"
#include "kernels/cpu/eltwise.h"

namespace climseg {

void Relu::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  dispatch_cpu_float(x.dtype(), "relu", [&](auto tag) {
    using T = decltype(tag);
    cpu::relu_fwd<T>(x.shape().pixels(), x.shape().c, x.data_as<T>(), x.pixel_stride(), a.y.data_as<T>(),
                     a.y.pixel_stride());
  });
}

void Relu::backward_cpu(ExecContext&, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  dispatch_cpu_float(a.dy.dtype(), "relu", [&](auto tag) {
    using T = decltype(tag);
    cpu::relu_bwd<T>(a.dy.shape().pixels(), a.dy.shape().c, a.y.data_as<T>(), a.y.pixel_stride(), a.dy.data_as<T>(),
                     a.dy.pixel_stride(), a.dx[0].data_as<T>(), a.dx[0].pixel_stride(),
                     a.dx_mode[0] == GradMode::accumulate);
  });
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(Relu)
#endif

}  // namespace climseg
