// CUDA launcher for the input pipeline's min-max normalisation (kernels/cuda/normalize.cu): the device counterpart
// of kernels/cpu/normalize.h, bit-identical with it. Plain C++ (no CUDA headers), so io/pipeline.cpp and tests call it.
#pragma once

#include "engine/check.h"
#include "engine/context.h"
#include "engine/tensor.h"

namespace climseg::cuda {

// y[p, c] = scale[c] * (x[p, c] - shift[c]) in fp32, rounded once to y's dtype.
//   x: (N,H,W,C) fp32, pixel-strided, on ctx's device (the raw batch as copied from the host)
//   y: same shape, fp32, fp16 or bf16, pixel-strided (y may be x when fp32: in place)
//   shift, scale: C fp32 values each, contiguous, on the device (cpu::minmax_coefficients)
// Queued on ctx.stream() (asynchronous); the caller makes ctx's device current.
void minmax_normalize(ExecContext& ctx, const Tensor& x, const Tensor& shift, const Tensor& scale, const Tensor& y);

}  // namespace climseg::cuda

// ---- CPU-only build (backend boundary): the launcher exists and throws --------------------------------------------
#if !defined(CLIMSEG_HAVE_CUDA)
namespace climseg::cuda {
inline void minmax_normalize(ExecContext&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  CS_THROW("cuda::minmax_normalize: this climseg was built without CUDA");
}
}  // namespace climseg::cuda
#endif
