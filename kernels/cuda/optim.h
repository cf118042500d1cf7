// CUDA launchers of the optimizer passes (kernels/cuda/optim.cu): the device counterparts of kernels/cpu/optim.h,
// driven by train/optimizer.cpp. Plain C++ (no CUDA headers), so .cpp files call them.
//
// Buffers: the model and gradient buffers are flat (1,1,1,n) fp32, fp16 or bf16 on the device of ctx; master and
// moments are fp32. The chunking is cpu::OptimChunks copied to the device (OptimDeviceChunks), so both devices
// cut the tensors identically. Per-chunk sums go to a caller-owned fp64 scratch of 3 values per chunk and are then
// added per tensor in chunk order into fp64 outputs: no atomics, no dependence on the GPU model.
// Work is queued on ctx.stream() (asynchronous); the caller makes ctx's device current (ExecContext::activate).
#pragma once

#include <cstdint>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/tensor.h"
#include "kernels/cpu/optim.h"
#include "kernels/cuda/no_cuda.h"

namespace climseg::cuda {

// cpu::OptimChunks on the device: begin, end (i64), tensor (i32) per chunk; first (i64) per tensor + 1.
struct OptimDeviceChunks {
  Tensor begin, end, tensor, first;
  int64_t nchunks = 0, ntensors = 0;
};
OptimDeviceChunks optim_chunks_to_device(ExecContext& ctx, const cpu::OptimChunks& ch);

// Scratch elements (fp64) the passes need: 3 per chunk.
inline int64_t optim_scratch_elems(int64_t nchunks) { return 3 * (nchunks > 0 ? nchunks : 1); }

// Pass 1. sums (fp64, 3 * ntensors): per tensor t, sums[3t] = number of non-finite g' = grad_scale * grad (in
// fp32), sums[3t+1] = sum g'^2, sums[3t+2] = sum master^2 (0 unless want_w).
void optim_sums(ExecContext& ctx, const OptimDeviceChunks& ch, const Tensor& grads, double grad_scale,
                const Tensor& master, bool want_w, const Tensor& scratch, const Tensor& sums);

// Pass 2. factor (fp64, ntensors): per-tensor gradient multipliers. sgd: m = momentum buffer (may be undefined
// without momentum); adam/adamw: m, v. lamb: moments only, u_sums (fp64, ntensors) = per-tensor sum of u^2.
void optim_update(ExecContext& ctx, const OptimDeviceChunks& ch, optim::Update kind, const optim::Scalars<float>& s,
                  const Tensor& factor, const Tensor& grads, const Tensor& master, const Tensor& m, const Tensor& v,
                  const Tensor& model, const Tensor& scratch, const Tensor& u_sums);

// Pass 3 (LAMB). ratio[t] = lr * lamb_trust_ratio(sums[3t+2], u_sums[t]) formed on the device (fp64 scratch
// `ratio`, ntensors), then master -= ratio[t] * u and the model refreshed.
void optim_lamb_apply(ExecContext& ctx, const OptimDeviceChunks& ch, const optim::Scalars<float>& s, double lr,
                      const Tensor& sums, const Tensor& u_sums, const Tensor& ratio, const Tensor& master,
                      const Tensor& m, const Tensor& v, const Tensor& model);

// model = master rounded to the model's dtype, over the tensors.
void optim_store_model(ExecContext& ctx, const OptimDeviceChunks& ch, const Tensor& master, const Tensor& model);
// master = float(model) over the whole buffer (padding included): the master weights' initial values.
void optim_init_master(ExecContext& ctx, const Tensor& model, const Tensor& master);

}  // namespace climseg::cuda

// ---- CPU-only build (backend boundary): the launchers exist, so code naming them links, and they throw --------
#if !defined(CLIMSEG_HAVE_CUDA)
namespace climseg::cuda {
inline OptimDeviceChunks optim_chunks_to_device(ExecContext&, const cpu::OptimChunks&) {
  detail::no_cuda("optim_chunks_to_device");
}
inline void optim_sums(ExecContext&, const OptimDeviceChunks&, const Tensor&, double, const Tensor&, bool,
                       const Tensor&, const Tensor&) {
  detail::no_cuda("optim_sums");
}
inline void optim_update(ExecContext&, const OptimDeviceChunks&, optim::Update, const optim::Scalars<float>&,
                         const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, const Tensor&) {
  detail::no_cuda("optim_update");
}
inline void optim_lamb_apply(ExecContext&, const OptimDeviceChunks&, const optim::Scalars<float>&, double,
                             const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             const Tensor&) {
  detail::no_cuda("optim_lamb_apply");
}
inline void optim_store_model(ExecContext&, const OptimDeviceChunks&, const Tensor&, const Tensor&) {
  detail::no_cuda("optim_store_model");
}
inline void optim_init_master(ExecContext&, const Tensor&, const Tensor&) {
  detail::no_cuda("optim_init_master");
}
}  // namespace climseg::cuda
#endif
