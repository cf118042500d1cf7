#include "layers/pool.h"

#include <algorithm>

#include "engine/dispatch.h"
#include "kernels/cpu/pool.h"
#include "kernels/cuda/pool.h"

namespace climseg {

cpu::Pool2dGeom PoolConfig::geom(const Shape& in, const std::string& who) const {
  CS_CHECK(kh >= 1 && kw >= 1, who, ": pooling window must be at least 1x1, got ", kh, "x", kw);
  CS_CHECK(sh >= 1 && sw >= 1, who, ": pooling stride must be at least 1, got ", sh, "x", sw);
  CS_CHECK(in.h >= 1 && in.w >= 1 && in.c >= 1, who, ": input ", in.str(), " is empty");
  cpu::Pool2dGeom g;
  g.n = in.n;
  g.h = in.h;
  g.w = in.w;
  g.c = in.c;
  g.kh = kh;
  g.kw = kw;
  g.sh = sh;
  g.sw = sw;
  if (same) {
    // TF 'SAME': out = ceil(in / s); the padding is split with the extra row/column at the bottom/right.
    g.oh = (in.h + sh - 1) / sh;
    g.ow = (in.w + sw - 1) / sw;
    const int64_t th = std::max<int64_t>((g.oh - 1) * sh + kh - in.h, 0);
    const int64_t tw = std::max<int64_t>((g.ow - 1) * sw + kw - in.w, 0);
    g.pt = th / 2;
    g.pl = tw / 2;
  } else {
    CS_CHECK(ph >= 0 && pw >= 0, who, ": padding must be non-negative, got ", ph, "x", pw);
    CS_CHECK(2 * ph <= kh && 2 * pw <= kw, who, ": padding ", ph, "x", pw, " must be at most half the window ", kh,
             "x", kw, " (PyTorch's rule: every window must hold an image element)");
    CS_CHECK(in.h + 2 * ph >= kh && in.w + 2 * pw >= kw, who, ": padded input ", in.h + 2 * ph, "x", in.w + 2 * pw,
             " is smaller than the window ", kh, "x", kw);
    g.oh = (in.h + 2 * ph - kh) / sh + 1;
    g.ow = (in.w + 2 * pw - kw) / sw + 1;
    g.pt = ph;
    g.pl = pw;
  }
  return g;
}

namespace {
Shape pooled_shape(const cpu::Pool2dGeom& g) { return Shape{g.n, g.oh, g.ow, g.c}; }

LayerCost window_cost(const cpu::Pool2dGeom& g, DType t) {
  const double es = static_cast<double>(dtype_size(t));
  const double out = static_cast<double>(g.n * g.oh * g.ow * g.c);
  return {out * static_cast<double>(g.kh * g.kw), es * (static_cast<double>(g.n * g.h * g.w * g.c) + out)};
}
}  // namespace

// ---- MaxPool2d -------------------------------------------------------------------------------------------------

Shape MaxPool2d::output_shape(const std::vector<Shape>& in) const {
  CS_CHECK(cfg_.kh * cfg_.kw <= 256, name(), ": max-pool window ", cfg_.kh, "x", cfg_.kw,
           " has more than 256 elements (the saved argmax is one byte per output)");
  return pooled_shape(cfg_.geom(in.at(0), name()));
}

MemoryNeeds MaxPool2d::memory_needs(const std::vector<Shape>& in, DType) const {
  MemoryNeeds m;
  m.saved_bytes = static_cast<size_t>(output_shape(in).numel());  // u8 window-local argmax per output element
  return m;
}

LayerCost MaxPool2d::forward_cost(const std::vector<Shape>& in, DType t) const {
  LayerCost c = window_cost(cfg_.geom(in.at(0), name()), t);
  c.bytes += static_cast<double>(output_shape(in).numel());  // the argmax
  return c;
}

namespace {
uint8_t* saved_argmax(const Tensor& saved, int64_t n, const std::string& who) {
  CS_CHECK(saved.defined() && saved.dtype() == DType::u8 && saved.is_contiguous() && saved.numel() >= n, who,
           ": needs ", n, " bytes of saved state (memory_needs().saved_bytes) for the argmax");
  return saved.data_as<uint8_t>();
}
}  // namespace

void MaxPool2d::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  const cpu::Pool2dGeom g = cfg_.geom(x.shape(), name());
  uint8_t* am = saved_argmax(a.saved, a.y.numel(), name());
  dispatch_cpu_float(x.dtype(), "maxpool2d", [&](auto tag) {
    using T = decltype(tag);
    cpu::maxpool_fwd<T>(g, x.data_as<T>(), x.pixel_stride(), a.y.data_as<T>(), a.y.pixel_stride(), am);
  });
}

void MaxPool2d::backward_cpu(ExecContext&, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  const Tensor& dx = a.dx[0];
  const cpu::Pool2dGeom g = cfg_.geom(dx.shape(), name());
  const uint8_t* am = saved_argmax(a.saved, a.dy.numel(), name());
  dispatch_cpu_float(a.dy.dtype(), "maxpool2d", [&](auto tag) {
    using T = decltype(tag);
    cpu::maxpool_bwd<T>(g, am, a.dy.data_as<T>(), a.dy.pixel_stride(), dx.data_as<T>(), dx.pixel_stride(),
                        a.dx_mode[0] == GradMode::accumulate);
  });
}

// ---- AvgPool2d -------------------------------------------------------------------------------------------------

Shape AvgPool2d::output_shape(const std::vector<Shape>& in) const {
  return pooled_shape(cfg_.geom(in.at(0), name()));
}

LayerCost AvgPool2d::forward_cost(const std::vector<Shape>& in, DType t) const {
  return window_cost(cfg_.geom(in.at(0), name()), t);
}

void AvgPool2d::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  const cpu::Pool2dGeom g = cfg_.geom(x.shape(), name());
  dispatch_cpu_float(x.dtype(), "avgpool2d", [&](auto tag) {
    using T = decltype(tag);
    cpu::avgpool_fwd<T>(g, cfg_.count_include_pad, x.data_as<T>(), x.pixel_stride(), a.y.data_as<T>(),
                        a.y.pixel_stride());
  });
}

void AvgPool2d::backward_cpu(ExecContext&, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  const Tensor& dx = a.dx[0];
  const cpu::Pool2dGeom g = cfg_.geom(dx.shape(), name());
  dispatch_cpu_float(a.dy.dtype(), "avgpool2d", [&](auto tag) {
    using T = decltype(tag);
    cpu::avgpool_bwd<T>(g, cfg_.count_include_pad, a.dy.data_as<T>(), a.dy.pixel_stride(), dx.data_as<T>(),
                        dx.pixel_stride(), a.dx_mode[0] == GradMode::accumulate);
  });
}

// ---- GlobalAvgPool ---------------------------------------------------------------------------------------------

Shape GlobalAvgPool::output_shape(const std::vector<Shape>& in) const {
  const Shape& s = in.at(0);
  CS_CHECK(s.h >= 1 && s.w >= 1 && s.c >= 1, name(), ": input ", s.str(), " is empty");
  return Shape{s.n, 1, 1, s.c};
}

MemoryNeeds GlobalAvgPool::memory_needs(const std::vector<Shape>& in, DType) const {
  const Shape s = in.at(0);
  MemoryNeeds m;
  m.fwd_workspace = cuda::global_avgpool_workspace_bytes(s.n, s.h * s.w, s.c);
  return m;
}

LayerCost GlobalAvgPool::forward_cost(const std::vector<Shape>& in, DType t) const {
  const double es = static_cast<double>(dtype_size(t));
  const double n = static_cast<double>(in.at(0).numel());
  return {n, es * (n + static_cast<double>(in.at(0).n * in.at(0).c))};
}

void GlobalAvgPool::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  const Shape& s = x.shape();
  dispatch_cpu_float(x.dtype(), "global_avgpool", [&](auto tag) {
    using T = decltype(tag);
    cpu::global_avgpool_fwd<T>(s.n, s.h * s.w, s.c, x.data_as<T>(), x.pixel_stride(), a.y.data_as<T>(),
                               a.y.pixel_stride());
  });
}

void GlobalAvgPool::backward_cpu(ExecContext&, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  const Tensor& dx = a.dx[0];
  const Shape& s = dx.shape();
  dispatch_cpu_float(a.dy.dtype(), "global_avgpool", [&](auto tag) {
    using T = decltype(tag);
    cpu::global_avgpool_bwd<T>(s.n, s.h * s.w, s.c, a.dy.data_as<T>(), a.dy.pixel_stride(), dx.data_as<T>(),
                               dx.pixel_stride(), a.dx_mode[0] == GradMode::accumulate);
  });
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(MaxPool2d)
CS_STUB_CUDA(AvgPool2d)
CS_STUB_CUDA(GlobalAvgPool)
#endif

}  // namespace climseg
