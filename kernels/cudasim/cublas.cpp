// cudasim stand-in cuBLAS (include/cublas_v2.h): the handle calls and cublasGemmEx, computed on the CPU with fp32
// accumulation, column-major exactly as cuBLAS documents GEMM:
//   C = alpha * op(A) * op(B) + beta * C,  op(A) m x k, op(B) k x n, C m x n,
//   A is lda x (transa == N ? k : m), B ldb x (transb == N ? n : k), C ldc x n, element (i, j) of X at X[i + j * ldX];
//   m, n, k < 0, lda < max(1, transa == N ? m : k), ldb < max(1, transb == N ? k : n), ldc < max(1, m) or an unknown
//   operation: CUBLAS_STATUS_INVALID_VALUE; m == 0 or n == 0: nothing is done; beta == 0: C is not read (it need not
//   be a valid input, so NaN there does not propagate); k == 0 or alpha == 0: C = beta * C.
// The work goes to the handle's stream (cublasSetStream; default stream otherwise) through the stand-in cudart's
// submit(), like a kernel launch. Operands must be device memory (a span outside a live device allocation is an
// illegal address: a sticky cudaErrorIllegalAddress and CUBLAS_STATUS_EXECUTION_FAILED, with a message on stderr).
#include <cublas_v2.h>

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>

#include "cudasim/fp_bits.h"
#include "internal.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {

std::mutex g_mu;
std::set<cublasHandle_t> g_handles;

bool live(cublasHandle_t h) {
  std::lock_guard<std::mutex> lock(g_mu);
  return h != nullptr && g_handles.count(h) != 0;
}

size_t elem_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

float load(const void* p, cudaDataType t, size_t i) {
  switch (t) {
    case CUDA_R_32F: return static_cast<const float*>(p)[i];
    case CUDA_R_16F: return cudasim::fp::half_to_float(static_cast<const uint16_t*>(p)[i]);
    default: return cudasim::fp::bf16_to_float(static_cast<const uint16_t*>(p)[i]);
  }
}

void store(void* p, cudaDataType t, size_t i, float v) {
  switch (t) {
    case CUDA_R_32F: static_cast<float*>(p)[i] = v; break;
    case CUDA_R_16F: static_cast<uint16_t*>(p)[i] = cudasim::fp::float_to_half_rn(v); break;
    default: static_cast<uint16_t*>(p)[i] = cudasim::fp::float_to_bf16_rn(v); break;
  }
}

bool supported(cudaDataType a, cudaDataType b, cudaDataType c) {
  if (a != b) return false;
  if (a == CUDA_R_32F) return c == CUDA_R_32F;
  if (a == CUDA_R_16F || a == CUDA_R_16BF) return c == a || c == CUDA_R_32F;
  return false;
}

// Bytes spanned by a column-major rows x cols matrix with leading dimension ld.
size_t span(int rows, int cols, int ld, cudaDataType t) {
  if (rows == 0 || cols == 0) return 0;
  return (static_cast<size_t>(cols - 1) * static_cast<size_t>(ld) + static_cast<size_t>(rows)) * elem_size(t);
}

cublasStatus_t illegal_address(const char* what, const std::string& why) {
  const std::string msg = std::string("cublasGemmEx: matrix ") + what + ": " + why;
  std::fprintf(stderr, "cudasim: %s\n", msg.c_str());
  cudasim::detail::set_sticky(cudaErrorIllegalAddress, msg);
  return CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // namespace

// The stand-in reports the cuBLAS version whose header it was written against (13.1.0).
cublasStatus_t cublasGetProperty(libraryPropertyType type, int* value) {
  if (!value) return CUBLAS_STATUS_INVALID_VALUE;
  switch (type) {
    case MAJOR_VERSION: *value = 13; return CUBLAS_STATUS_SUCCESS;
    case MINOR_VERSION: *value = 1; return CUBLAS_STATUS_SUCCESS;
    case PATCH_LEVEL: *value = 0; return CUBLAS_STATUS_SUCCESS;
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (cudasim::detail::sticky_error() != cudaSuccess) return CUBLAS_STATUS_NOT_INITIALIZED;
  auto* h = new cublasContext;
  std::lock_guard<std::mutex> lock(g_mu);
  g_handles.insert(h);
  *handle = h;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (handle == nullptr || g_handles.erase(handle) == 0) return CUBLAS_STATUS_NOT_INITIALIZED;
  }
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (stream == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  const int base = mode & 0xf, flags = mode & ~0xf;
  if (base > CUBLAS_TF32_TENSOR_OP_MATH || (flags & ~CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION))
    return CUBLAS_STATUS_INVALID_VALUE;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  auto op_ok = [](cublasOperation_t o) { return o == CUBLAS_OP_N || o == CUBLAS_OP_T || o == CUBLAS_OP_C; };
  if (!op_ok(transa) || !op_ok(transb)) return CUBLAS_STATUS_INVALID_VALUE;
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;  // real types: C is T
  if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  auto at_least_1 = [](int v) { return v > 1 ? v : 1; };
  if (lda < at_least_1(ta ? k : m) || ldb < at_least_1(tb ? n : k) || ldc < at_least_1(m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (computeType != CUBLAS_COMPUTE_32F && computeType != CUBLAS_COMPUTE_32F_PEDANTIC)
    return CUBLAS_STATUS_NOT_SUPPORTED;  // the only compute types climseg uses; the emulation would hide TF32 etc.
  if (!supported(Atype, Btype, Ctype)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (!(algo == CUBLAS_GEMM_DEFAULT || algo == CUBLAS_GEMM_DEFAULT_TENSOR_OP || (algo >= 0 && algo <= 23) ||
        (algo >= 99 && algo <= 115)))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (cudasim::detail::sticky_error() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  if (alpha == nullptr || beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  const bool use_ab = k > 0 && a != 0.0f;
  if (use_ab) {
    std::string why = cudasim::detail::device_span_problem(A, span(ta ? k : m, ta ? m : k, lda, Atype));
    if (!why.empty()) return illegal_address("A", why);
    why = cudasim::detail::device_span_problem(B, span(tb ? n : k, tb ? k : n, ldb, Btype));
    if (!why.empty()) return illegal_address("B", why);
  }
  if (std::string why = cudasim::detail::device_span_problem(C, span(m, n, ldc, Ctype)); !why.empty())
    return illegal_address("C", why);
  cudaStream_t stream = handle->stream;
  if (!cudasim::detail::valid_stream(stream)) {
    cudasim::detail::set_error(cudaErrorInvalidResourceHandle, "cublasGemmEx: the handle's stream is not live");
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  cudasim::detail::submit(stream, [=] {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float acc = 0.0f;
        if (use_ab)
          for (int p = 0; p < k; ++p) {
            const size_t ai = ta ? static_cast<size_t>(p) + static_cast<size_t>(i) * lda
                                 : static_cast<size_t>(i) + static_cast<size_t>(p) * lda;
            const size_t bi = tb ? static_cast<size_t>(j) + static_cast<size_t>(p) * ldb
                                 : static_cast<size_t>(p) + static_cast<size_t>(j) * ldb;
            acc += load(A, Atype, ai) * load(B, Btype, bi);
          }
        const size_t ci = static_cast<size_t>(i) + static_cast<size_t>(j) * ldc;
        float r = use_ab ? a * acc : 0.0f;
        if (b != 0.0f) r += b * load(C, Ctype, ci);
        store(C, Ctype, ci, r);
      }
  });
  return CUBLAS_STATUS_SUCCESS;
}
