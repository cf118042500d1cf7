#include "layers/add.h"

#include "engine/dispatch.h"
#include "kernels/cpu/eltwise.h"

namespace climseg {

Shape Add::output_shape(const std::vector<Shape>& in) const {
  CS_CHECK(in.size() == 2, name(), ": add takes 2 inputs");
  CS_CHECK(in[0] == in[1], name(), ": add of different shapes ", in[0].str(), " and ", in[1].str());
  return in[0];
}

void Add::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor &x0 = a.x[0], &x1 = a.x[1];
  dispatch_cpu_float(x0.dtype(), "add", [&](auto tag) {
    using T = decltype(tag);
    cpu::add_fwd<T>(x0.shape().pixels(), x0.shape().c, x0.data_as<T>(), x0.pixel_stride(), x1.data_as<T>(),
                    x1.pixel_stride(), a.y.data_as<T>(), a.y.pixel_stride());
  });
}

void Add::backward_cpu(ExecContext&, const BackwardArgs& a) {
  dispatch_cpu_float(a.dy.dtype(), "add", [&](auto tag) {
    using T = decltype(tag);
    // Slot order matters when both slots are the same tensor (x + x): the Net asks slot 0 to overwrite and
    // slot 1 to accumulate. When dx0 shares dy's memory (in place), slot 0 is a no-op copy onto itself and dy
    // stays intact for slot 1.
    for (int i : {0, 1}) {
      if (!a.dx[i].defined()) continue;
      cpu::copy_or_accumulate<T>(a.dy.shape().pixels(), a.dy.shape().c, a.dy.data_as<T>(), a.dy.pixel_stride(),
                                 a.dx[i].data_as<T>(), a.dx[i].pixel_stride(), a.dx_mode[i] == GradMode::accumulate);
    }
  });
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(Add)
#endif

}  // namespace climseg
