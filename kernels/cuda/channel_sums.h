// The deterministic per-channel sums over the pixels of NHWC operands shared by batch norm (kernels/cuda/norm.cu:
// mean, centred sum of squares, the two backward sums) and affine (kernels/cuda/affine.cu: the parameter
// gradients); the kernels are in kernels/cuda/channel_sums.cu. Plain C++ (no CUDA headers): the chunking and the
// workspace sizes are pure arithmetic that layers also use at plan time in CPU-only builds.
//
// Pass 1 gives each (32-channel tile, pixel chunk) block 8 pixel lanes that sum in a fixed order, combined in a
// fixed order through shared memory into fp32 partials (chunks, nout, C) in the caller's workspace; pass 2 sums
// each channel's partials in chunk order. The chunking depends on P only (norm_chunk), never on the GPU, so results
// are reproducible on any device; no atomics.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "engine/dtype.h"

namespace climseg::cuda {

// ---- workspace sizes (pure arithmetic, also in CPU-only builds: layers report them at plan time) --------------
inline size_t norm_align(size_t b) { return (b + 255) / 256 * 256; }
// Pixel chunk of the reductions: at least 256 pixels, at most 1024 chunks. Depends on P only.
inline int64_t norm_chunk(int64_t P) { return std::max<int64_t>(256, (P + 1023) / 1024); }
inline int64_t norm_chunks(int64_t P) { return P <= 0 ? 0 : (P + norm_chunk(P) - 1) / norm_chunk(P); }
// One output: one fp32 partial per (chunk, channel).
inline size_t channel_sums1_workspace_bytes(int64_t P, int64_t C) {
  return norm_align(static_cast<size_t>(norm_chunks(P) * C) * sizeof(float));
}
// Two outputs: two partials per (chunk, channel), then the two per-channel sums.
inline size_t channel_sums2_workspace_bytes(int64_t P, int64_t C) {
  return norm_align(static_cast<size_t>(norm_chunks(P) * 2 * C) * sizeof(float)) +
         norm_align(static_cast<size_t>(2 * C) * sizeof(float));
}

// ---- the sums (CUDA builds; called from .cu files) --------------------------------------------------------------
constexpr int kTile = 32;  // channels per block
constexpr int kLanes = 8;  // pixel lanes per block

enum ReduceMode : int {
  kSum = 0,        // a = x                                       (batch mean)
  kSqDev = 1,      // a = (x - mean)^2                            (batch variance)
  kBnBwd = 2,      // a = dz * xhat, b = dz                       (dgamma, dbeta; dz = dy masked by y > 0 if relu)
  kAffineBwd = 3,  // a = dy * x, b = dy                          (dscale, dshift)
};

struct ReduceArgs {
  int64_t P, C, chunk;
  const void* x;  // (P, C) data
  int64_t xs;
  const void* y;  // (P, C) fused output (kBnBwd with relu)
  int64_t ys;
  const void* dy;  // (P, C)
  int64_t dys;
  const float* mean;     // (C) fp32
  const float* inv_std;  // (C) fp32
  bool relu;
  float* partial;  // (chunks, nout, C) fp32
};

// Pass 1 for mode, data dtype dt (fp32, fp16 or bf16): partials (chunks, nout, C) fp32 into a.partial, nout = 2 for
// kBnBwd and kAffineBwd, else 1. Queued on stream (a cudaStream_t).
void channel_sums_partial(ReduceMode mode, DType dt, const ReduceArgs& a, void* stream);
// Pass 2 of the two-output modes: sums[0..C) = sum a, sums[C..2C) = sum b in chunk order (sums may be null);
// g0 (=|+=) sum a, g1 (=|+=) sum b, g0 and g1 (C) of dtype dt.
void channel_sums_final2(DType dt, int64_t chunks, int64_t C, const float* partial, float* sums, void* g0, void* g1,
                         bool accumulate, void* stream);

}  // namespace climseg::cuda
