// Tests of the stand-in cuBLAS and cuDNN (kernels/cudasim/cublas.cpp, cudnn.cpp): cuBLAS's column-major GEMM with
// hand-computed results, its argument checks, beta == 0 not reading C; cuDNN's descriptor refusals with the real
// status codes, output dimensions, a hand-computed convolution in NCHW and NHWC with padding, stride, dilation and
// groups, the adjoint identities of backward data / filter against forward, CUDNN_CONVOLUTION's flipped filter.
// Part of cudasim_test (its main is in test_cudasim.cpp).
#include <catch2/catch.hpp>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cudasim/testing.h"

namespace {

struct Buf {
  void* p = nullptr;
  size_t bytes;
  explicit Buf(size_t b) : bytes(b) { REQUIRE(cudaMalloc(&p, b) == cudaSuccess); }
  ~Buf() { CHECK(cudaFree(p) == cudaSuccess); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  void put(const std::vector<float>& v) {
    REQUIRE(v.size() * 4 == bytes);
    REQUIRE(cudaMemcpy(p, v.data(), bytes, cudaMemcpyHostToDevice) == cudaSuccess);
  }
  std::vector<float> get() const {
    std::vector<float> v(bytes / 4);
    REQUIRE(cudaMemcpy(v.data(), p, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
    return v;
  }
};

std::vector<float> random_values(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-8, 8);  // small integers: every sum below is exact in fp32
  std::vector<float> v(n);
  for (auto& x : v) x = float(d(rng)) * 0.25f;
  return v;
}

}  // namespace

TEST_CASE("cublas stand-in: column-major GemmEx, transposes, alpha/beta, beta == 0 ignores NaN in C", "[cublas]") {
  cublasHandle_t h = nullptr;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreate(&s) == cudaSuccess);
  REQUIRE(cublasSetStream(h, s) == CUBLAS_STATUS_SUCCESS);
  // A = [1 2 3; 4 5 6] (2x3) column-major: {1,4,2,5,3,6}; B = [1 0; 0 1; 1 1] (3x2): {1,0,1,0,1,1}.
  // A*B = [4 5; 10 11] -> column-major {4,10,5,11}.
  Buf A(6 * 4), B(6 * 4), C(4 * 4);
  A.put({1, 4, 2, 5, 3, 6});
  B.put({1, 0, 1, 0, 1, 1});
  const float one = 1.0f, zero = 0.0f, two = 2.0f;
  // C is cudaMalloc'd: 0xFF bytes = NaN. beta == 0 must not read it.
  REQUIRE(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, A.p, CUDA_R_32F, 2, B.p, CUDA_R_32F, 3, &zero, C.p,
                       CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(C.get() == std::vector<float>{4, 10, 5, 11});
  // C = 2 * A^T^T ... : op(A) = A^T with A stored 3x2 (lda 3): A' = [1 2 3; 4 5 6]^T stored column-major is
  // {1,2,3,4,5,6}; A'^T = [1 2 3; 4 5 6]. C = 2 * (A'^T B) + 1 * C = 2 * [4 5; 10 11] + [4 5; 10 11].
  Buf At(6 * 4);
  At.put({1, 2, 3, 4, 5, 6});
  REQUIRE(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, 2, 2, 3, &two, At.p, CUDA_R_32F, 3, B.p, CUDA_R_32F, 3, &one, C.p,
                       CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(C.get() == std::vector<float>{12, 30, 15, 33});
  // Argument checks (cuBLAS documents INVALID_VALUE for these), and what the stand-in does not emulate.
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, -1, 2, 3, &one, A.p, CUDA_R_32F, 2, B.p, CUDA_R_32F, 3, &zero, C.p,
                     CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, A.p, CUDA_R_32F, 1, B.p, CUDA_R_32F, 3, &zero, C.p,
                     CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, A.p, CUDA_R_32F, 2, B.p, CUDA_R_32F, 3, &zero, C.p,
                     CUDA_R_32F, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, A.p, CUDA_R_32F, 2, B.p, CUDA_R_32F, 3, &zero, C.p,
                     CUDA_R_32F, 2, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED);
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, A.p, CUDA_R_16F, 2, B.p, CUDA_R_32F, 3, &zero, C.p,
                     CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED);
  CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasDestroy(h) == CUBLAS_STATUS_NOT_INITIALIZED);
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, A.p, CUDA_R_32F, 2, B.p, CUDA_R_32F, 3, &zero, C.p,
                     CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_INITIALIZED);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
}

TEST_CASE("cublas stand-in: bf16 storage rounds the fp32 result once", "[cublas]") {
  cublasHandle_t h = nullptr;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  // 1x1x3: 1*1 + 1*(2^-8) + 1*(2^-8) = 1 + 2^-7: exact in bf16 only as a single rounding of the fp32 sum
  // (rounding after each step would give 1 + 2^-8 -> 1 (ties to even), twice).
  const __nv_bfloat16 a[3] = {__float2bfloat16_rn(1.0f), __float2bfloat16_rn(1.0f), __float2bfloat16_rn(1.0f)};
  const __nv_bfloat16 b[3] = {__float2bfloat16_rn(1.0f), __float2bfloat16_rn(0.00390625f),
                              __float2bfloat16_rn(0.00390625f)};
  Buf A(6), B(6), C(2);
  REQUIRE(cudaMemcpy(A.p, a, 6, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(B.p, b, 6, cudaMemcpyHostToDevice) == cudaSuccess);
  const float one = 1.0f, zero = 0.0f;
  REQUIRE(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 3, &one, A.p, CUDA_R_16BF, 1, B.p, CUDA_R_16BF, 3, &zero,
                       C.p, CUDA_R_16BF, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
  __nv_bfloat16 c;
  REQUIRE(cudaMemcpy(&c, C.p, 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(__bfloat162float(c) == 1.0078125f);
  CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
}

TEST_CASE("cudnn stand-in: descriptor refusals with cuDNN's status codes", "[cudnn]") {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t f = nullptr;
  cudnnConvolutionDescriptor_t cv = nullptr;
  REQUIRE(cudnnCreateTensorDescriptor(&x) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnCreateTensorDescriptor(&y) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnCreateFilterDescriptor(&f) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnCreateConvolutionDescriptor(&cv) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 0, 4, 5, 5) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, -4, 5, 5) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetTensor4dDescriptor(x, cudnnTensorFormat_t(7), CUDNN_DATA_FLOAT, 1, 4, 5, 5) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, 2, 0, 3, 3) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(cv, -1, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
        CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(cv, 0, 0, 0, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
        CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolution2dDescriptor(cv, 0, 0, 1, 1, 1, 0, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
        CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolutionGroupCount(cv, 0) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnSetConvolutionMathType(cv, cudnnMathType_t(9)) == CUDNN_STATUS_BAD_PARAM);

  REQUIRE(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 2, 4, 5, 7) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, 6, 2, 3, 3) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnSetConvolution2dDescriptor(cv, 1, 2, 2, 1, 1, 2, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
          CUDNN_STATUS_SUCCESS);
  int n, c, h, w;
  // 4 input channels, 2 per filter: needs groups = 2.
  CHECK(cudnnGetConvolution2dForwardOutputDim(cv, x, f, &n, &c, &h, &w) == CUDNN_STATUS_BAD_PARAM);
  REQUIRE(cudnnSetConvolutionGroupCount(cv, 2) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnGetConvolution2dForwardOutputDim(cv, x, f, &n, &c, &h, &w) == CUDNN_STATUS_SUCCESS);
  // 1 + (5 + 2 - 3) / 2 = 3; 1 + (7 + 4 - 5) / 1 = 7.
  CHECK((n == 2 && c == 6 && h == 3 && w == 7));

  cudnnHandle_t hd = nullptr;
  REQUIRE(cudnnCreate(&hd) == CUDNN_STATUS_SUCCESS);
  size_t ws = 0;
  REQUIRE(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 2, 6, 3, 7) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolutionForwardWorkspaceSize(hd, x, f, cv, y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, &ws) ==
        CUDNN_STATUS_SUCCESS);
  // Data types differ: BAD_PARAM. Formats differ: not supported here. Wrong output size: NOT_SUPPORTED.
  REQUIRE(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, CUDNN_DATA_HALF, 2, 6, 3, 7) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolutionForwardWorkspaceSize(hd, x, f, cv, y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, &ws) ==
        CUDNN_STATUS_BAD_PARAM);
  REQUIRE(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 2, 6, 3, 7) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolutionForwardWorkspaceSize(hd, x, f, cv, y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, &ws) ==
        CUDNN_STATUS_NOT_SUPPORTED);
  REQUIRE(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 2, 6, 3, 6) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolutionForwardWorkspaceSize(hd, x, f, cv, y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, &ws) ==
        CUDNN_STATUS_NOT_SUPPORTED);
  REQUIRE(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 2, 5, 3, 7) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolutionForwardWorkspaceSize(hd, x, f, cv, y, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, &ws) ==
        CUDNN_STATUS_BAD_PARAM);
  // A filter larger than the padded input.
  REQUIRE(cudnnSetConvolution2dDescriptor(cv, 0, 0, 1, 1, 3, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ==
          CUDNN_STATUS_SUCCESS);
  CHECK(cudnnGetConvolution2dForwardOutputDim(cv, x, f, &n, &c, &h, &w) == CUDNN_STATUS_BAD_PARAM);
  CHECK(std::string(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM)) == "CUDNN_STATUS_BAD_PARAM");

  CHECK(cudnnDestroyConvolutionDescriptor(cv) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnDestroyFilterDescriptor(f) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnDestroyTensorDescriptor(y) == CUDNN_STATUS_SUCCESS);
  // Use after destroy.
  CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, 1, 1, 1) == CUDNN_STATUS_BAD_PARAM);
  CHECK(cudnnDestroyTensorDescriptor(x) == CUDNN_STATUS_SUCCESS);
  CHECK(cudnnDestroy(hd) == CUDNN_STATUS_SUCCESS);
}

namespace {

// A handle and the descriptors of one convolution (y's from cudnnGetConvolution2dForwardOutputDim), fp32.
struct Conv {
  cudnnHandle_t h = nullptr;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t f = nullptr;
  cudnnConvolutionDescriptor_t cv = nullptr;
  Conv(cudnnTensorFormat_t fmt, int N, int C, int H, int W, int K, int R, int S, int pad, int stride, int dil, int G,
       cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION) {
    REQUIRE(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateTensorDescriptor(&x) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateTensorDescriptor(&y) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateFilterDescriptor(&f) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnCreateConvolutionDescriptor(&cv) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetTensor4dDescriptor(x, fmt, CUDNN_DATA_FLOAT, N, C, H, W) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, fmt, K, C / G, R, S) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetConvolution2dDescriptor(cv, pad, pad, stride, stride, dil, dil, mode, CUDNN_DATA_FLOAT) ==
            CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetConvolutionGroupCount(cv, G) == CUDNN_STATUS_SUCCESS);
    int n, c, p, q;
    REQUIRE(cudnnGetConvolution2dForwardOutputDim(cv, x, f, &n, &c, &p, &q) == CUDNN_STATUS_SUCCESS);
    REQUIRE(cudnnSetTensor4dDescriptor(y, fmt, CUDNN_DATA_FLOAT, n, c, p, q) == CUDNN_STATUS_SUCCESS);
  }
  ~Conv() {
    cudnnDestroyConvolutionDescriptor(cv);
    cudnnDestroyFilterDescriptor(f);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroy(h);
  }
};

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

}  // namespace

TEST_CASE("cudnn stand-in: a hand-computed forward, NCHW and NHWC", "[cudnn]") {
  // x channel 0 = [1 2 3; 4 5 6; 7 8 9], channel 1 = all 1; w channel 0 = [1 0; 0 2], channel 1 = all 1:
  // y[p,q] = x0[p,q] + 2 x0[p+1,q+1] + 4 -> [1+10+4, 2+12+4; 4+16+4, 5+18+4] = [15 18; 24 27].
  for (cudnnTensorFormat_t fmt : {CUDNN_TENSOR_NCHW, CUDNN_TENSOR_NHWC}) {
    Conv cv(fmt, 1, 2, 3, 3, 1, 2, 2, 0, 1, 1, 1);
    std::vector<float> x0{1, 2, 3, 4, 5, 6, 7, 8, 9}, xv(18), wv(8);
    for (int i = 0; i < 9; ++i) {
      xv[fmt == CUDNN_TENSOR_NCHW ? i : 2 * i] = x0[i];
      xv[fmt == CUDNN_TENSOR_NCHW ? 9 + i : 2 * i + 1] = 1.0f;
    }
    const float w0[4] = {1, 0, 0, 2};
    for (int i = 0; i < 4; ++i) {
      wv[fmt == CUDNN_TENSOR_NCHW ? i : 2 * i] = w0[i];
      wv[fmt == CUDNN_TENSOR_NCHW ? 4 + i : 2 * i + 1] = 1.0f;
    }
    Buf X(18 * 4), Wt(8 * 4), Y(4 * 4);
    X.put(xv);
    Wt.put(wv);
    const float one = 1.0f, zero = 0.0f;
    REQUIRE(cudnnConvolutionForward(cv.h, &one, cv.x, X.p, cv.f, Wt.p, cv.cv, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                    nullptr, 0, &zero, cv.y, Y.p) == CUDNN_STATUS_SUCCESS);
    CHECK(Y.get() == std::vector<float>{15, 18, 24, 27});
    // Algorithm 1 needs a workspace: refused without it.
    CHECK(cudnnConvolutionForward(cv.h, &one, cv.x, X.p, cv.f, Wt.p, cv.cv,
                                  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, nullptr, 0, &zero, cv.y,
                                  Y.p) == CUDNN_STATUS_BAD_PARAM);
  }
}

TEST_CASE("cudnn stand-in: backward data and filter are the adjoints of forward", "[cudnn]") {
  // <conv(x, w), dy> = <x, conv_data(w, dy)> = <w, conv_filter(x, dy)> for padding, stride, dilation and groups,
  // both formats and both modes. Small integer data: exact in fp32.
  struct Case {
    int N, C, H, W, K, R, S, pad, stride, dil, G;
  };
  for (const Case& k : {Case{2, 4, 7, 6, 6, 3, 3, 1, 2, 1, 2}, Case{1, 3, 9, 8, 2, 3, 2, 2, 1, 2, 1},
                        Case{2, 4, 5, 5, 4, 3, 3, 1, 1, 1, 4}})
    for (cudnnTensorFormat_t fmt : {CUDNN_TENSOR_NCHW, CUDNN_TENSOR_NHWC})
      for (cudnnConvolutionMode_t mode : {CUDNN_CROSS_CORRELATION, CUDNN_CONVOLUTION}) {
        Conv cv(fmt, k.N, k.C, k.H, k.W, k.K, k.R, k.S, k.pad, k.stride, k.dil, k.G, mode);
        int n, c, p, q;
        REQUIRE(cudnnGetConvolution2dForwardOutputDim(cv.cv, cv.x, cv.f, &n, &c, &p, &q) == CUDNN_STATUS_SUCCESS);
        const size_t nx = size_t(k.N) * k.C * k.H * k.W, nw = size_t(k.K) * (k.C / k.G) * k.R * k.S,
                     ny = size_t(n) * c * p * q;
        const auto xv = random_values(nx, 1), wv = random_values(nw, 2), dyv = random_values(ny, 3);
        Buf X(nx * 4), Wt(nw * 4), Y(ny * 4), DY(ny * 4), DX(nx * 4), DW(nw * 4);
        X.put(xv);
        Wt.put(wv);
        DY.put(dyv);
        const float one = 1.0f, zero = 0.0f;
        size_t wsb = 0;
        REQUIRE(cudnnGetConvolutionForwardWorkspaceSize(cv.h, cv.x, cv.f, cv.cv, cv.y,
                                                        CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                                        &wsb) == CUDNN_STATUS_SUCCESS);
        Buf WS(wsb + 1);
        REQUIRE(cudnnConvolutionForward(cv.h, &one, cv.x, X.p, cv.f, Wt.p, cv.cv,
                                        CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, WS.p, wsb, &zero, cv.y,
                                        Y.p) == CUDNN_STATUS_SUCCESS);
        REQUIRE(cudnnConvolutionBackwardData(cv.h, &one, cv.f, Wt.p, cv.y, DY.p, cv.cv,
                                             CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, nullptr, 0, &zero, cv.x,
                                             DX.p) == CUDNN_STATUS_SUCCESS);
        REQUIRE(cudnnConvolutionBackwardFilter(cv.h, &one, cv.x, X.p, cv.y, DY.p, cv.cv,
                                               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, nullptr, 0, &zero, cv.f,
                                               DW.p) == CUDNN_STATUS_SUCCESS);
        const double lhs = dot(Y.get(), dyv);
        INFO("case C=" << k.C << " G=" << k.G << " fmt " << fmt << " mode " << mode);
        CHECK(lhs != 0.0);
        CHECK(dot(xv, DX.get()) == lhs);
        CHECK(dot(wv, DW.get()) == lhs);
        // beta = 1 accumulates: dw + dw = 2 dw.
        const auto dw1 = DW.get();
        REQUIRE(cudnnConvolutionBackwardFilter(cv.h, &one, cv.x, X.p, cv.y, DY.p, cv.cv,
                                               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, nullptr, 0, &one, cv.f,
                                               DW.p) == CUDNN_STATUS_SUCCESS);
        const auto dw2 = DW.get();
        for (size_t i = 0; i < nw; ++i) REQUIRE(dw2[i] == 2 * dw1[i]);
      }
}

TEST_CASE("cudnn stand-in: CUDNN_CONVOLUTION flips the filter", "[cudnn]") {
  // 1x1x2x2 input, 2x2 filter, no padding: cross-correlation sums x*w elementwise; convolution x*flip(w).
  for (cudnnConvolutionMode_t mode : {CUDNN_CROSS_CORRELATION, CUDNN_CONVOLUTION}) {
    Conv cv(CUDNN_TENSOR_NCHW, 1, 1, 2, 2, 1, 2, 2, 0, 1, 1, 1, mode);
    Buf X(16), Wt(16), Y(4);
    X.put({1, 2, 3, 4});
    Wt.put({1, 0, 0, 0});
    const float one = 1.0f, zero = 0.0f;
    REQUIRE(cudnnConvolutionForward(cv.h, &one, cv.x, X.p, cv.f, Wt.p, cv.cv, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                    nullptr, 0, &zero, cv.y, Y.p) == CUDNN_STATUS_SUCCESS);
    CHECK(Y.get()[0] == (mode == CUDNN_CROSS_CORRELATION ? 1.0f : 4.0f));
  }
}

TEST_CASE("cudnn stand-in: an operand outside device memory is an illegal address (sticky)", "[cudnn]") {
  Conv cv(CUDNN_TENSOR_NHWC, 1, 2, 3, 3, 1, 2, 2, 0, 1, 1, 1);
  Buf X(18 * 4 - 4), Wt(8 * 4), Y(4 * 4);  // x one element short
  const float one = 1.0f, zero = 0.0f;
  CHECK(cudnnConvolutionForward(cv.h, &one, cv.x, X.p, cv.f, Wt.p, cv.cv, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                nullptr, 0, &zero, cv.y, Y.p) == CUDNN_STATUS_EXECUTION_FAILED);
  CHECK(cudaDeviceSynchronize() == cudaErrorIllegalAddress);
  cudasim::clear_sticky_error();
}
