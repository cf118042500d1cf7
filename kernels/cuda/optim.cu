// Optimizer passes on CUDA: the norms pass (finite check, per-tensor sums of g'^2 and w^2), the fused update
// (sgd, adam, adamw; lamb's moments and sum of u^2), LAMB's trust-ratio apply, and the model-copy refresh. The CPU
// reference is kernels/cpu/optim.cpp; both evaluate the per-element formulas of kernels/optim_math.h, whose
// helpers use the explicitly rounded intrinsics here (no FMA contraction), so an fp32 update matches the CPU bit
// for bit given the same per-tensor factors.
//
// Layout: flat (1,1,1,n) buffers; model and gradients fp32, fp16 or bf16, master and moments fp32. The tensors are
// cut into the fixed chunks of cpu::OptimChunks (kOptimChunk elements), copied to the device once: chunk c covers
// [begin[c], end[c]) of tensor tensor[c]. This is the multi-tensor layout: one launch covers every tensor, and a
// per-tensor scalar (gradient factor, trust ratio) is one load per chunk, not a search per element.
//
// Algorithm: one block of 256 threads per chunk (grid-stride over chunks, at most kMaxBlocks blocks); the threads
// stride through the chunk, so warps read contiguous memory. Sums (non-finite count, g'^2, w^2, u^2) accumulate
// per thread in fp64, are combined by a fixed shared-memory tree into one value per chunk, and a second kernel adds
// each tensor's chunks in chunk order, one thread per tensor. fp64 accumulation costs nothing visible here (the
// passes are memory-bound; A100/H100 run fp64 at half the fp32 rate) and keeps the norms as exact as the CPU's.
// Nothing depends on the launch geometry or the GPU model, and there are no atomics: results are reproducible.
//
// Bound: memory. Adam in fp32: pass 1 reads 4 bytes per element (8 with LARC), pass 2 reads grad, master, m, v
// and writes master, m, v, model, 32 bytes per element; at ~2.7 TB/s (H100 SXM) that is ~0.7 ms for DeepCAM's
// 56.5 M parameters. LAMB adds a third pass (reads master, m, v, writes master, model: 20 bytes per element).
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "engine/check_cuda.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/optim.h"

namespace climseg::cuda {

namespace {

constexpr int kOptimThreads = 256;  // threads per chunk block (a power of two for the tree reduction)
static_assert((kOptimThreads & (kOptimThreads - 1)) == 0);

int chunk_grid(int64_t nchunks) { return static_cast<int>(std::clamp<int64_t>(nchunks, 1, kMaxBlocks)); }

// Adds v[k] over the block with a fixed tree (deterministic); the block's sums end up in sh[k][0].
template <int N>
__device__ void block_sum(const double (&v)[N], double (*sh)[kOptimThreads]) {
#pragma unroll
  for (int k = 0; k < N; ++k) sh[k][threadIdx.x] = v[k];
  __syncthreads();
  for (int s = kOptimThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) {
#pragma unroll
      for (int k = 0; k < N; ++k) sh[k][threadIdx.x] = __dadd_rn(sh[k][threadIdx.x], sh[k][threadIdx.x + s]);
    }
    __syncthreads();
  }
}

__device__ __forceinline__ double sq_add(double acc, double x) { return __dadd_rn(acc, __dmul_rn(x, x)); }

// ---- kernels -------------------------------------------------------------------------------------------------

template <class T>
__global__ void optim_sums_chunk_kernel(int64_t nchunks, const int64_t* begin, const int64_t* end, const T* grads,
                                        float grad_scale, const float* master, bool want_w, double* scratch) {
  // grads: (n) T; master: (n) fp32; scratch: (nchunks, 3) fp64 = non-finite count, sum g'^2, sum w^2
  __shared__ double sh[3][kOptimThreads];
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    double acc[3] = {0.0, 0.0, 0.0};
    for (int64_t i = begin[c] + threadIdx.x; i < end[c]; i += kOptimThreads) {
      const float g = optim::mul(grad_scale, to_f(grads[i]));
      acc[0] += isfinite(g) ? 0.0 : 1.0;
      acc[1] = sq_add(acc[1], static_cast<double>(g));
      if (want_w) acc[2] = sq_add(acc[2], static_cast<double>(master[i]));
    }
    block_sum<3>(acc, sh);
    if (threadIdx.x == 0) {
      scratch[3 * c] = sh[0][0];
      scratch[3 * c + 1] = sh[1][0];
      scratch[3 * c + 2] = sh[2][0];
    }
    __syncthreads();  // sh is reused by the next chunk
  }
}

// out[t * ncols + k] = sum over tensor t's chunks c (in order) of scratch[3c + k], k < ncols.
__global__ void optim_tensor_sums_kernel(int64_t ntensors, const int64_t* first, const double* scratch, int ncols,
                                         double* out) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < ntensors; t += int64_t(gridDim.x) * blockDim.x) {
    for (int k = 0; k < ncols; ++k) {
      double s = 0.0;
      for (int64_t c = first[t]; c < first[t + 1]; ++c) s = __dadd_rn(s, scratch[3 * c + k]);
      out[t * ncols + k] = s;
    }
  }
}

template <class T, optim::Update K>
__global__ void optim_update_kernel(int64_t nchunks, const int64_t* begin, const int64_t* end, const int32_t* tensor,
                                    optim::Scalars<float> s, const double* factor, const T* grads, float* master,
                                    float* m, float* v, T* model, double* scratch) {
  // grads, model: (n) T; master, m, v: (n) fp32 (m null for sgd without momentum); factor: (ntensors) fp64;
  // scratch (lamb): (nchunks, 3) fp64, column 0 = sum u^2
  __shared__ double sh[1][kOptimThreads];
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const float f = static_cast<float>(factor[tensor[c]]);
    double acc[1] = {0.0};
    for (int64_t i = begin[c] + threadIdx.x; i < end[c]; i += kOptimThreads) {
      const float g = optim::effective_grad(s, to_f(grads[i]), f);
      float w = master[i];
      if constexpr (K == optim::Update::sgd) {
        float b = s.has_momentum ? m[i] : 0.0f;
        optim::sgd_update(s, g, w, b);
        if (s.has_momentum) m[i] = b;
        master[i] = w;
        model[i] = from_f<T>(w);
      } else if constexpr (K == optim::Update::adam || K == optim::Update::adamw) {
        float mm = m[i], vv = v[i];
        optim::adam_update(s, g, w, mm, vv, K == optim::Update::adamw);
        m[i] = mm;
        v[i] = vv;
        master[i] = w;
        model[i] = from_f<T>(w);
      } else {
        float mm = m[i], vv = v[i];
        optim::adam_moments(s, g, mm, vv);
        m[i] = mm;
        v[i] = vv;
        const double u = static_cast<double>(optim::lamb_direction(s, w, mm, vv));
        acc[0] = sq_add(acc[0], u);
      }
    }
    if constexpr (K == optim::Update::lamb) {
      block_sum<1>(acc, sh);
      if (threadIdx.x == 0) scratch[3 * c] = sh[0][0];
      __syncthreads();
    }
  }
}

__global__ void optim_lamb_ratio_kernel(int64_t ntensors, double lr, const double* sums, const double* u_sums,
                                        double* ratio) {
  // sums: (ntensors, 3) with sum w^2 in column 2; u_sums, ratio: (ntensors)
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < ntensors; t += int64_t(gridDim.x) * blockDim.x)
    ratio[t] = __dmul_rn(lr, optim::lamb_trust_ratio(sums[3 * t + 2], u_sums[t]));
}

template <class T>
__global__ void optim_lamb_apply_kernel(int64_t nchunks, const int64_t* begin, const int64_t* end,
                                        const int32_t* tensor, optim::Scalars<float> s, const double* ratio,
                                        float* master, const float* m, const float* v, T* model) {
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const float a = static_cast<float>(ratio[tensor[c]]);
    for (int64_t i = begin[c] + threadIdx.x; i < end[c]; i += kOptimThreads) {
      const float w = master[i];
      const float u = optim::lamb_direction(s, w, m[i], v[i]);
      const float w1 = optim::sub(w, optim::mul(a, u));
      master[i] = w1;
      model[i] = from_f<T>(w1);
    }
  }
}

template <class T>
__global__ void optim_store_model_kernel(int64_t nchunks, const int64_t* begin, const int64_t* end, const float* master,
                                         T* model) {
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x)
    for (int64_t i = begin[c] + threadIdx.x; i < end[c]; i += kOptimThreads) model[i] = from_f<T>(master[i]);
}

template <class T>
__global__ void optim_init_master_kernel(int64_t n, const T* model, float* master) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    master[i] = to_f(model[i]);
}

// ---- launch helpers ------------------------------------------------------------------------------------------

void check_buffer(const char* who, const char* what, const Tensor& t, DType dt, int64_t numel) {
  CS_CHECK(t.defined(), "cuda::", who, ": ", what, " is undefined");
  CS_CHECK(t.device() == Device::cuda && t.is_contiguous(), "cuda::", who, ": ", what, " ", t.str(),
           " must be a contiguous CUDA buffer");
  CS_CHECK(t.dtype() == dt, "cuda::", who, ": ", what, " is ", dtype_name(t.dtype()), ", expected ", dtype_name(dt));
  CS_CHECK(t.numel() >= numel, "cuda::", who, ": ", what, " has ", t.numel(), " elements, needs ", numel);
}

Tensor upload(ExecContext& ctx, const void* host, int64_t n, DType dt) {
  if (n == 0) return Tensor::zeros({1, 1, 1, 1}, dt, Device::cuda, &ctx);  // never a zero-size allocation
  Tensor d = Tensor::empty({1, 1, 1, n}, dt, Device::cuda);
  d.copy_from(Tensor::wrap(const_cast<void*>(host), {1, 1, 1, n}, dt, Device::cpu), &ctx);
  return d;
}

}  // namespace

// ---- launchers ---------------------------------------------------------------------------------------------------

OptimDeviceChunks optim_chunks_to_device(ExecContext& ctx, const cpu::OptimChunks& ch) {
  check_ctx(ctx, "optim_chunks_to_device");
  OptimDeviceChunks d;
  d.nchunks = ch.size();
  d.ntensors = ch.ntensors();
  d.begin = upload(ctx, ch.begin.data(), d.nchunks, DType::i64);
  d.end = upload(ctx, ch.end.data(), d.nchunks, DType::i64);
  d.tensor = upload(ctx, ch.tensor.data(), d.nchunks, DType::i32);
  d.first = upload(ctx, ch.first.data(), static_cast<int64_t>(ch.first.size()), DType::i64);
  ctx.synchronize();  // the host vectors may go away after this returns
  return d;
}

void optim_sums(ExecContext& ctx, const OptimDeviceChunks& ch, const Tensor& grads, double grad_scale,
                const Tensor& master, bool want_w, const Tensor& scratch, const Tensor& sums) {
  check_ctx(ctx, "optim_sums");
  const int64_t n = master.numel();
  check_buffer("optim_sums", "master", master, DType::f32, 0);
  check_buffer("optim_sums", "grads", grads, grads.dtype(), n);
  check_buffer("optim_sums", "scratch", scratch, DType::f64, optim_scratch_elems(ch.nchunks));
  check_buffer("optim_sums", "sums", sums, DType::f64, 3 * ch.ntensors);
  if (ch.ntensors == 0) return;
  cudaStream_t st = stream_of(ctx);
  dispatch(grads.dtype(), "optim_sums", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if (ch.nchunks > 0) {
      optim_sums_chunk_kernel<T><<<chunk_grid(ch.nchunks), kOptimThreads, 0, st>>>(
          ch.nchunks, cptr<int64_t>(ch.begin), cptr<int64_t>(ch.end), cptr<T>(grads),
          static_cast<float>(grad_scale), cptr<float>(master), want_w, mptr<double>(scratch));
      CUDA_CHECK_LAUNCH();
    }
    optim_tensor_sums_kernel<<<grid_for(ch.ntensors), kThreads, 0, st>>>(
        ch.ntensors, cptr<int64_t>(ch.first), cptr<double>(scratch), 3, mptr<double>(sums));
    CUDA_CHECK_LAUNCH();
  });
}

void optim_update(ExecContext& ctx, const OptimDeviceChunks& ch, optim::Update kind, const optim::Scalars<float>& s,
                  const Tensor& factor, const Tensor& grads, const Tensor& master, const Tensor& m, const Tensor& v,
                  const Tensor& model, const Tensor& scratch, const Tensor& u_sums) {
  check_ctx(ctx, "optim_update");
  const int64_t n = master.numel();
  check_buffer("optim_update", "master", master, DType::f32, 0);
  check_buffer("optim_update", "model", model, model.dtype(), n);
  check_buffer("optim_update", "grads", grads, model.dtype(), n);
  check_buffer("optim_update", "factor", factor, DType::f64, ch.ntensors);
  const bool needs_m = kind != optim::Update::sgd || s.has_momentum;
  if (needs_m) check_buffer("optim_update", "m", m, DType::f32, n);
  if (kind != optim::Update::sgd) check_buffer("optim_update", "v", v, DType::f32, n);
  if (kind == optim::Update::lamb) {
    check_buffer("optim_update", "scratch", scratch, DType::f64, optim_scratch_elems(ch.nchunks));
    check_buffer("optim_update", "u_sums", u_sums, DType::f64, ch.ntensors);
  }
  if (ch.ntensors == 0) return;
  cudaStream_t st = stream_of(ctx);
  dispatch(model.dtype(), "optim_update", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    auto launch = [&](auto kconst) {
      constexpr optim::Update K = decltype(kconst)::value;
      if (ch.nchunks > 0) {
        optim_update_kernel<T, K><<<chunk_grid(ch.nchunks), kOptimThreads, 0, st>>>(
            ch.nchunks, cptr<int64_t>(ch.begin), cptr<int64_t>(ch.end), cptr<int32_t>(ch.tensor), s,
            cptr<double>(factor), cptr<T>(grads), mptr<float>(master), needs_m ? mptr<float>(m) : nullptr,
            kind != optim::Update::sgd ? mptr<float>(v) : nullptr, mptr<T>(model),
            K == optim::Update::lamb ? mptr<double>(scratch) : nullptr);
        CUDA_CHECK_LAUNCH();
      }
      if constexpr (K == optim::Update::lamb) {
        optim_tensor_sums_kernel<<<grid_for(ch.ntensors), kThreads, 0, st>>>(
            ch.ntensors, cptr<int64_t>(ch.first), cptr<double>(scratch), 1, mptr<double>(u_sums));
        CUDA_CHECK_LAUNCH();
      }
    };
    switch (kind) {
      case optim::Update::sgd:
        launch(std::integral_constant<optim::Update, optim::Update::sgd>{});
        return;
      case optim::Update::adam:
        launch(std::integral_constant<optim::Update, optim::Update::adam>{});
        return;
      case optim::Update::adamw:
        launch(std::integral_constant<optim::Update, optim::Update::adamw>{});
        return;
      case optim::Update::lamb:
        launch(std::integral_constant<optim::Update, optim::Update::lamb>{});
        return;
    }
    CS_THROW("cuda::optim_update: unknown update kind ", static_cast<int>(kind));
  });
}

void optim_lamb_apply(ExecContext& ctx, const OptimDeviceChunks& ch, const optim::Scalars<float>& s, double lr,
                      const Tensor& sums, const Tensor& u_sums, const Tensor& ratio, const Tensor& master,
                      const Tensor& m, const Tensor& v, const Tensor& model) {
  check_ctx(ctx, "optim_lamb_apply");
  const int64_t n = master.numel();
  check_buffer("optim_lamb_apply", "master", master, DType::f32, 0);
  check_buffer("optim_lamb_apply", "m", m, DType::f32, n);
  check_buffer("optim_lamb_apply", "v", v, DType::f32, n);
  check_buffer("optim_lamb_apply", "model", model, model.dtype(), n);
  check_buffer("optim_lamb_apply", "sums", sums, DType::f64, 3 * ch.ntensors);
  check_buffer("optim_lamb_apply", "u_sums", u_sums, DType::f64, ch.ntensors);
  check_buffer("optim_lamb_apply", "ratio", ratio, DType::f64, ch.ntensors);
  if (ch.ntensors == 0) return;
  cudaStream_t st = stream_of(ctx);
  optim_lamb_ratio_kernel<<<grid_for(ch.ntensors), kThreads, 0, st>>>(ch.ntensors, lr, cptr<double>(sums),
                                                                      cptr<double>(u_sums), mptr<double>(ratio));
  CUDA_CHECK_LAUNCH();
  if (ch.nchunks == 0) return;
  dispatch(model.dtype(), "optim_lamb_apply", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    optim_lamb_apply_kernel<T><<<chunk_grid(ch.nchunks), kOptimThreads, 0, st>>>(
        ch.nchunks, cptr<int64_t>(ch.begin), cptr<int64_t>(ch.end), cptr<int32_t>(ch.tensor), s,
        cptr<double>(ratio), mptr<float>(master), cptr<float>(m), cptr<float>(v), mptr<T>(model));
    CUDA_CHECK_LAUNCH();
  });
}

void optim_store_model(ExecContext& ctx, const OptimDeviceChunks& ch, const Tensor& master, const Tensor& model) {
  check_ctx(ctx, "optim_store_model");
  check_buffer("optim_store_model", "master", master, DType::f32, 0);
  check_buffer("optim_store_model", "model", model, model.dtype(), master.numel());
  if (ch.nchunks == 0) return;
  cudaStream_t st = stream_of(ctx);
  dispatch(model.dtype(), "optim_store_model", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    optim_store_model_kernel<T><<<chunk_grid(ch.nchunks), kOptimThreads, 0, st>>>(
        ch.nchunks, cptr<int64_t>(ch.begin), cptr<int64_t>(ch.end), cptr<float>(master), mptr<T>(model));
    CUDA_CHECK_LAUNCH();
  });
}

void optim_init_master(ExecContext& ctx, const Tensor& model, const Tensor& master) {
  check_ctx(ctx, "optim_init_master");
  const int64_t n = model.numel();
  check_buffer("optim_init_master", "master", master, DType::f32, n);
  check_buffer("optim_init_master", "model", model, model.dtype(), n);
  if (n == 0) return;
  cudaStream_t st = stream_of(ctx);
  dispatch(model.dtype(), "optim_init_master", [&](auto tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    optim_init_master_kernel<T><<<grid_for(n), kThreads, 0, st>>>(n, cptr<T>(model), mptr<float>(master));
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace climseg::cuda
