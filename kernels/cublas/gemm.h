// GEMM on the GPU through cuBLAS, with the row-major semantics of kernels/cpu/gemm.h:
//   C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C
// Leading dimensions are in elements, so pixel-strided NHWC views are matrices (pixels x channels, ld = stride).
// A, B, C are device pointers of one dtype (fp32, fp16 or bf16); the product accumulates in fp32 and alpha/beta
// are applied in fp32. Queued on ctx.stream() through ctx.cublas(). Plain C++ header (no CUDA includes).
#pragma once

#include <cstdint>

#include "engine/check.h"
#include "engine/context.h"
#include "engine/dtype.h"

namespace climseg::cuda {

void gemm(ExecContext& ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const void* A,
          int64_t lda, const void* B, int64_t ldb, double beta, void* C, int64_t ldc, DType dtype);

// The version of the cuBLAS library loaded at run time (cublasGetProperty: major * 10000 + minor * 100 + patch);
// 0 without CUDA or when the query fails.
int cublas_runtime_version();

}  // namespace climseg::cuda

// ---- CPU-only build (backend boundary): gemm exists, so code naming it links, and throws ----------------------
#if !defined(CLIMSEG_HAVE_CUDA)
inline void climseg::cuda::gemm(ExecContext&, bool, bool, int64_t, int64_t, int64_t, double, const void*, int64_t,
                                const void*, int64_t, double, void*, int64_t, DType) {
  CS_THROW("cuda::gemm: this climseg was built without CUDA");
}
inline int climseg::cuda::cublas_runtime_version() { return 0; }
#endif
