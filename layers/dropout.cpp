#include "layers/dropout.h"

#include <cstring>

#include "engine/dispatch.h"
#include "kernels/cpu/eltwise.h"
#include "kernels/cpu/norm.h"

namespace climseg {

Dropout::Dropout(double p, uint64_t seed) : p_(p), seed_(seed) {
  CS_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
}

MemoryNeeds Dropout::memory_needs(const std::vector<Shape>&, DType) const {
  MemoryNeeds m;
  m.saved_bytes = kKeyBytes;
  return m;
}

LayerCost Dropout::forward_cost(const std::vector<Shape>& in, DType t) const {
  const double n = static_cast<double>(in.at(0).numel());
  return {n, 2.0 * n * static_cast<double>(dtype_size(t))};
}

void Dropout::forward_cpu(ExecContext&, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  if (a.saved.defined()) {
    CS_CHECK(a.saved.nbytes() >= kKeyBytes, name(), ": saved buffer has ", a.saved.nbytes(), " bytes, needs ",
             kKeyBytes);
    const uint64_t key[4] = {seed_, a.step, a.training ? 1u : 0u, 0};
    std::memcpy(a.saved.data(), key, sizeof(key));
  }
  dispatch_cpu_float(x.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    const int64_t P = x.shape().pixels(), C = x.shape().c;
    if (a.training)
      cpu::dropout_fwd<T>(P, C, p_, seed_, a.step, x.data_as<T>(), x.pixel_stride(), a.y.data_as<T>(),
                          a.y.pixel_stride());
    else
      cpu::copy_or_accumulate<T>(P, C, x.data_as<T>(), x.pixel_stride(), a.y.data_as<T>(), a.y.pixel_stride(), false);
  });
}

void Dropout::backward_cpu(ExecContext&, const BackwardArgs& a) {
  if (!a.dx[0].defined()) return;
  CS_CHECK(a.saved.defined() && a.saved.nbytes() >= kKeyBytes, name(), ": backward needs the key saved by forward");
  uint64_t key[4];
  std::memcpy(key, a.saved.data(), sizeof(key));
  dispatch_cpu_float(a.dy.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    const int64_t P = a.dy.shape().pixels(), C = a.dy.shape().c;
    const bool acc = a.dx_mode[0] == GradMode::accumulate;
    if (key[2] != 0)
      cpu::dropout_bwd<T>(P, C, p_, key[0], key[1], a.dy.data_as<T>(), a.dy.pixel_stride(), a.dx[0].data_as<T>(),
                          a.dx[0].pixel_stride(), acc);
    else
      cpu::copy_or_accumulate<T>(P, C, a.dy.data_as<T>(), a.dy.pixel_stride(), a.dx[0].data_as<T>(),
                                 a.dx[0].pixel_stride(), acc);
  });
}

#if !defined(CLIMSEG_HAVE_CUDA)
CS_STUB_CUDA(Dropout)
#endif

}  // namespace climseg
