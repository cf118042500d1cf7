#include "layers/resize.h"

#include <cmath>

#include "engine/dispatch.h"
#include "kernels/cpu/resize.h"
#include "kernels/cuda/resize.h"

namespace climseg {

cpu::ResizeGeom BilinearResize::geom(const Shape& in) const {
  CS_CHECK(in.h >= 1 && in.w >= 1 && in.c >= 1, name(), ": input ", in.str(), " is empty");
  CS_CHECK(cfg_.mode == ResizeMode::align_corners || cfg_.mode == ResizeMode::half_pixel ||
               cfg_.mode == ResizeMode::tf_legacy,
           name(), ": unknown coordinate mode ", static_cast<int>(cfg_.mode));
  cpu::ResizeGeom g;
  g.n = in.n;
  g.h = in.h;
  g.w = in.w;
  g.c = in.c;
  g.mode = cfg_.mode;
  if (cfg_.out_h > 0 || cfg_.out_w > 0) {
    CS_CHECK(cfg_.out_h >= 1 && cfg_.out_w >= 1, name(), ": output size ", cfg_.out_h, "x", cfg_.out_w,
             " must be positive");
    g.oh = cfg_.out_h;
    g.ow = cfg_.out_w;
  } else {
    CS_CHECK(cfg_.scale_h > 0 && cfg_.scale_w > 0, name(), ": needs an output size or positive scale factors, got ",
             cfg_.scale_h, "x", cfg_.scale_w);
    g.oh = static_cast<int64_t>(std::floor(static_cast<double>(in.h) * cfg_.scale_h));
    g.ow = static_cast<int64_t>(std::floor(static_cast<double>(in.w) * cfg_.scale_w));
    CS_CHECK(g.oh >= 1 && g.ow >= 1, name(), ": scale ", cfg_.scale_h, "x", cfg_.scale_w, " of ", in.str(),
             " gives an empty output");
  }
  return g;
}

Shape BilinearResize::output_shape(const std::vector<Shape>& in) const {
  const cpu::ResizeGeom g = geom(in.at(0));
  return Shape{g.n, g.oh, g.ow, g.c};
}

MemoryNeeds BilinearResize::memory_needs(const std::vector<Shape>& in, DType) const {
  MemoryNeeds m;
  m.bwd_workspace = cuda::resize_bwd_workspace_bytes(geom(in.at(0)));
  return m;
}

LayerCost BilinearResize::forward_cost(const std::vector<Shape>& in, DType t) const {
  const double es = static_cast<double>(dtype_size(t));
  const double out = static_cast<double>(output_shape(in).numel());
  return {6.0 * out, es * (static_cast<double>(in.at(0).numel()) + out)};  // 4 multiplies and 2 adds per output
}

LayerCost BilinearResize::backward_cost(const std::vector<Shape>& in, DType t) const {
  LayerCost c = forward_cost(in, t);
  c.flops += 2.0 * static_cast<double>(output_shape(in).numel());  // weight products in the gather
  return c;
}

void BilinearResize::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  const cpu::ResizeGeom g = geom(x.shape());
  dispatch_cpu_float(x.dtype(), "bilinear_resize", [&](auto tag) {
    using T = decltype(tag);
    cpu::resize_fwd<T>(g, x.data_as<T>(), x.pixel_stride(), a.y.data_as<T>(), a.y.pixel_stride());
  });
}

void BilinearResize::backward_cpu(ExecContext&, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  const Tensor& dx = a.dx[0];
  const cpu::ResizeGeom g = geom(dx.shape());
  dispatch_cpu_float(a.dy.dtype(), "bilinear_resize", [&](auto tag) {
    using T = decltype(tag);
    cpu::resize_bwd<T>(g, a.dy.data_as<T>(), a.dy.pixel_stride(), dx.data_as<T>(), dx.pixel_stride(),
                       a.dx_mode[0] == GradMode::accumulate);
  });
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(BilinearResize)
#endif

}  // namespace climseg
