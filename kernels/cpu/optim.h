// CPU reference kernels of the optimizers (train/optimizer.h drives them; kernels/cuda/optim.h is the device twin).
// Templated on T = float or double, the element type of the flat buffers: on the CPU the master weights, moments,
// model copy and gradients all have the same type (an fp32 model with 16-bit storage keeps fp32 buffers whose
// model copy is rounded through fp16/bf16, see optim_store_model).
//
// Layout: the flat parameter/gradient buffers (1,1,1,n) with the parameter tensors at [offset, offset + numel) and
// padding between them, which is never read or written. Every pass walks a fixed chunking of the tensors
// (OptimChunks: each tensor cut into pieces of kOptimChunk elements, the last one shorter), the same chunking the
// CUDA kernels use. Chunks run in parallel (OpenMP, static schedule); sums are formed per chunk in double in
// element order and then added per tensor in chunk order, so every result is independent of the thread count.
//
// One step is two passes over memory (three for LAMB):
//   1. optim_sums: non-finite count, sum of g'^2 (g' = grad_scale * grad, in T) and, for LARC and LAMB, sum of w^2
//      per tensor; read-only, so a step refused for inf/NaN has changed nothing.
//   2. optim_update: the update of kernels/optim_math.h per element with the tensor's gradient factor (clip x
//      LARC), master and moments in place, model copy refreshed; LAMB instead updates the moments and sums u^2.
//   3. optim_lamb_apply (LAMB): w -= (lr * r) * u with the tensor's trust ratio, model copy refreshed.
// Bound: memory. Pass 1 reads 4-8 bytes per element per buffer read; pass 2 for Adam in fp32 reads grad, master,
// m, v and writes master, m, v, model: 32 bytes per element.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/dtype.h"
#include "kernels/optim_math.h"

namespace climseg::cpu {

// Elements per chunk: large enough that a chunk's loop dominates its scheduling cost, small enough that a few
// million parameters give hundreds of chunks to share among threads (and thousands of CUDA blocks).
constexpr int64_t kOptimChunk = 4096;

struct OptimChunks {
  std::vector<int64_t> begin, end;  // element range [begin, end) of each chunk in the flat buffers
  std::vector<int32_t> tensor;      // the tensor each chunk belongs to
  std::vector<int64_t> first;       // tensor t owns chunks [first[t], first[t + 1]); ntensors + 1 entries
  int64_t size() const { return static_cast<int64_t>(begin.size()); }
  int64_t ntensors() const { return first.empty() ? 0 : static_cast<int64_t>(first.size()) - 1; }
};
// Chunks of the tensors at offsets[t], numels[t] (in the given order; empty tensors own no chunk).
OptimChunks optim_chunks(const std::vector<int64_t>& offsets, const std::vector<int64_t>& numels,
                         int64_t chunk = kOptimChunk);

// Pass 1. Per tensor t: nonfinite[t] = number of elements whose g' = grad_scale * grads[i] (in T) is inf or NaN;
// g_sumsq[t] = sum of g'^2; w_sumsq[t] = sum of master[i]^2 when master is not null. Sums in double.
template <class T>
void optim_sums(const OptimChunks& ch, const T* grads, T grad_scale, const T* master, int64_t* nonfinite,
                double* g_sumsq, double* w_sumsq);

// Pass 2. factor[t]: the tensor's gradient multiplier (clip coefficient x LARC factor), rounded to T here.
// sgd: m is the momentum buffer (unused without momentum), v unused. adam/adamw: m, v the moments.
// lamb: updates m and v only and writes u_sumsq[t] = sum of u^2 (master and model untouched).
// storage: the model copy's precision (f32 or f64 = T; f16/bf16 with T = float: rounded through 16 bits).
template <class T>
void optim_update(const OptimChunks& ch, optim::Update kind, const optim::Scalars<T>& s, const double* factor,
                  const T* grads, T* master, T* m, T* v, T* model, DType storage, double* u_sumsq);

// Pass 3 (LAMB). master -= lr_ratio[t] * u, u recomputed from the moments exactly as in pass 2; model refreshed.
template <class T>
void optim_lamb_apply(const OptimChunks& ch, const optim::Scalars<T>& s, const double* lr_ratio, T* master, const T* m,
                      const T* v, T* model, DType storage);

// model = round_to_storage(master) over the tensors (after a restore of the master weights).
template <class T>
void optim_store_model(const OptimChunks& ch, const T* master, T* model, DType storage);

}  // namespace climseg::cpu
