#include "layers/concat.h"

#include "engine/dispatch.h"
#include "kernels/cpu/eltwise.h"

namespace climseg {

Shape Concat::output_shape(const std::vector<Shape>& in) const {
  CS_CHECK(!in.empty(), name(), ": concat needs at least one input");
  Shape s = in[0];
  s.c = 0;
  for (const Shape& t : in) {
    CS_CHECK(t.n == s.n && t.h == s.h && t.w == s.w, name(), ": concat of ", in[0].str(), " and ", t.str(),
             " (N, H, W must match)");
    s.c += t.c;
  }
  return s;
}

LayerCost Concat::forward_cost(const std::vector<Shape>& in, DType t) const {
  return {0.0, 0.0};  // zero-copy in a planned Net; the profiler counts real copies under copy_transpose
}

void Concat::forward_cpu(ExecContext&, const ForwardArgs& a) {
  int64_t c0 = 0;
  for (const Tensor& x : a.x) {
    Tensor dst = a.y.channel_slice(c0, x.shape().c);
    c0 += x.shape().c;
    if (same_view(dst, x)) continue;
    dispatch_cpu_float(x.dtype(), "concat", [&](auto tag) {
      using T = decltype(tag);
      cpu::copy_or_accumulate<T>(x.shape().pixels(), x.shape().c, x.data_as<T>(), x.pixel_stride(),
                                 dst.data_as<T>(), dst.pixel_stride(), false);
    });
  }
}

void Concat::backward_cpu(ExecContext&, const BackwardArgs& a) {
  int64_t c0 = 0;
  for (size_t i = 0; i < a.dx.size(); ++i) {
    int64_t c = a.x[i].defined() ? a.x[i].shape().c : a.dx[i].shape().c;
    Tensor src = a.dy.channel_slice(c0, c);
    c0 += c;
    if (!a.dx[i].defined()) continue;
    bool acc = a.dx_mode[i] == GradMode::accumulate;
    if (!acc && same_view(src, a.dx[i])) continue;
    dispatch_cpu_float(a.dy.dtype(), "concat", [&](auto tag) {
      using T = decltype(tag);
      cpu::copy_or_accumulate<T>(src.shape().pixels(), c, src.data_as<T>(), src.pixel_stride(),
                                 a.dx[i].data_as<T>(), a.dx[i].pixel_stride(), acc);
    });
  }
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(Concat)
#endif

}  // namespace climseg
