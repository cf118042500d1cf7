// CUDA launchers for inverted dropout (kernels/cuda/dropout.cu): the device counterparts of kernels/cpu/norm.h's
// dropout, with the same mask bit for bit. Plain C++ (no CUDA headers).
//
// Operands are Tensors on ctx's CUDA device: pixel-strided NHWC views for data (x, y, dy, dx), fp32, fp16 or bf16
// (16-bit types are storage, maths in fp32). Work is queued on ctx.stream(); nothing synchronises with the host.
#pragma once

#include <cstdint>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/tensor.h"
#include "kernels/cuda/no_cuda.h"

namespace climseg::cuda {

// Dropout key buffer `key` (u8, >= 24 bytes): u64 seed, u64 step, u64 training (written by the forward kernel).
// Forward: training: y = keep ? x * cpu::dropout_scale(p) : 0 with keep = philox_uniform(seed, step, i) >= p for
// the NHWC logical index i (bit-identical with the CPU mask); inference: y = x. key may be undefined (no backward).
void dropout_fwd(ExecContext& ctx, double p, uint64_t seed, uint64_t step, bool training, const Tensor& x,
                 const Tensor& y, const Tensor& key);
// dx (=|+=) the same mask and scale applied to dy, regenerated from the key on the device (no host read).
void dropout_bwd(ExecContext& ctx, double p, const Tensor& key, const Tensor& dy, const Tensor& dx, bool accumulate);
// mask[i] = 1 where element i is kept (u8, contiguous, shape of the data): for tests of CPU/GPU mask identity.
void dropout_mask(ExecContext& ctx, double p, uint64_t seed, uint64_t step, const Tensor& mask);

}  // namespace climseg::cuda

// ---- CPU-only build (backend boundary): the launchers exist and throw --------------------------------------------
#if !defined(CLIMSEG_HAVE_CUDA)
namespace climseg::cuda {
inline void dropout_fwd(ExecContext&, double, uint64_t, uint64_t, bool, const Tensor&, const Tensor&,
                        const Tensor&) {
  detail::no_cuda("dropout_fwd");
}
inline void dropout_bwd(ExecContext&, double, const Tensor&, const Tensor&, const Tensor&, bool) {
  detail::no_cuda("dropout_bwd");
}
inline void dropout_mask(ExecContext&, double, uint64_t, uint64_t, const Tensor&) {
  detail::no_cuda("dropout_mask");
}
}  // namespace climseg::cuda
#endif
