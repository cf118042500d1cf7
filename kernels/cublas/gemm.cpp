// Row-major GEMM through cublasGemmEx (kernels/cublas/gemm.h).
//
// cuBLAS is column-major. A row-major (r x c) matrix with leading dimension ld is, read column-major, its transpose
// (c x r) with the same ld, so the row-major product C = op(A) op(B) is computed as the column-major product
// C^T = op(B)^T op(A)^T: swap the operands (B first), swap m and n, keep each operand's transpose flag; no data
// moves.
//
// Precision: data in fp32/fp16/bf16, CUBLAS_COMPUTE_32F (fp32 accumulation, fp32 alpha/beta). For fp16/bf16 this
// runs on tensor cores. For fp32 it stays full fp32 (FFMA), deliberately not CUBLAS_COMPUTE_32F_FAST_TF32: TF32
// keeps 10 mantissa bits and would break fp32 parity with the CPU path (tests/cuda/test_cuda_parity.cpp); an opt-in
// TF32 mode belongs with the mixed-precision work, chosen explicitly, never by default.
#include "kernels/cublas/gemm.h"

#include <algorithm>
#include <climits>

#include "engine/check_cuda.h"

namespace climseg::cuda {

namespace {
int to_int(int64_t v, const char* what) {
  CS_CHECK(v >= 0 && v <= INT_MAX, "cuda::gemm: ", what, " = ", v,
           " does not fit cuBLAS's 32-bit int (split the GEMM or use the 64-bit API)");
  return static_cast<int>(v);
}
}  // namespace

void gemm(ExecContext& ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const void* A,
          int64_t lda, const void* B, int64_t ldb, double beta, void* C, int64_t ldc, DType dtype) {
  CS_CHECK(ctx.device() == Device::cuda, "cuda::gemm: needs a CUDA context, got a ", device_name(ctx.device()),
           " one");
  cudaDataType_t type;
  switch (dtype) {
    case DType::f32: type = CUDA_R_32F; break;
    case DType::f16: type = CUDA_R_16F; break;
    case DType::bf16: type = CUDA_R_16BF; break;
    default: CS_THROW("cuda::gemm: takes fp32, fp16 or bf16, not ", dtype_name(dtype));
  }
  const int im = to_int(m, "m"), in = to_int(n, "n"), ik = to_int(k, "k");
  const int ilda = to_int(lda, "lda"), ildb = to_int(ldb, "ldb"), ildc = to_int(ldc, "ldc");
  if (m == 0 || n == 0) return;
  // Row-major leading dimensions must cover a row (as BLAS checks for cpu::gemm).
  CS_CHECK(lda >= (trans_a ? m : k) && ldb >= (trans_b ? k : n) && ldc >= n, "cuda::gemm: leading dimensions lda=",
           lda, " ldb=", ldb, " ldc=", ldc, " too small for m=", m, " n=", n, " k=", k, " (trans_a=", trans_a,
           ", trans_b=", trans_b, ")");
  CS_CHECK(C != nullptr && (k == 0 || (A != nullptr && B != nullptr)), "cuda::gemm: null matrix pointer");
  const float a = static_cast<float>(alpha), b = static_cast<float>(beta);  // scale type of CUBLAS_COMPUTE_32F
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  // Column-major C^T (n x m) = op(B)^T (n x k) * op(A)^T (k x m).
  CUBLAS_CHECK(cublasGemmEx(ctx.cublas(), op_b, op_a, in, im, ik, &a, B, type, std::max(ildb, 1), A, type,
                            std::max(ilda, 1), &b, C, type, std::max(ildc, 1), CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

int cublas_runtime_version() {
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) != CUBLAS_STATUS_SUCCESS ||
      cublasGetProperty(MINOR_VERSION, &minor) != CUBLAS_STATUS_SUCCESS ||
      cublasGetProperty(PATCH_LEVEL, &patch) != CUBLAS_STATUS_SUCCESS)
    return 0;
  return major * 10000 + minor * 100 + patch;
}

}  // namespace climseg::cuda
