// cudasim stand-in cuDNN (include/cudnn.h): the legacy 2-D convolution API that climseg uses, computed on the CPU
// with plain direct loops and fp32 accumulation, written from cuDNN's documented semantics (independent of
// kernels/cpu). README.md lists what is checked and refused, and with which status.
//
// Semantics (cuDNN API reference, cudnnConvolutionForward / BackwardData / BackwardFilter, "Scaling Parameters"):
//   y  = alpha * conv(x, w)        + beta * y      y[n,k,p,q] = sum_{c,r,s} x[n, g*Cg + c, p*u - pad_h + r*dil_h,
//   dx = alpha * conv_data(w, dy)  + beta * dx                                    q*v - pad_w + s*dil_w] * w[k,c,r',s']
//   dw = alpha * conv_filter(x, dy) + beta * dw   (g = k / (K/G), Cg = C/G; r' = r for CUDNN_CROSS_CORRELATION,
//                                                  R-1-r for CUDNN_CONVOLUTION; out-of-range x taps are zero padding)
// beta == 0: the output is not read (it may hold NaN). alpha/beta are host floats (fp32 compute type).
// Every output element is one fp32 sum over its taps in a fixed order, scaled, then rounded once to the data type.
#include <cudnn.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cudasim/fp_bits.h"
#include "internal.h"

struct cudnnContext {
  cudaStream_t stream = nullptr;
};
struct cudnnTensorStruct {
  bool set = false;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int n = 0, c = 0, h = 0, w = 0;
};
struct cudnnFilterStruct {
  bool set = false;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int k = 0, c = 0, r = 0, s = 0;
};
struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  int groups = 1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {

std::mutex g_mu;
std::set<const void*> g_live;  // handles and descriptors

template <class T>
bool live(T* p) {
  std::lock_guard<std::mutex> lock(g_mu);
  return p != nullptr && g_live.count(p) != 0;
}

template <class T>
cudnnStatus_t create(T** out) {
  if (out == nullptr) return CUDNN_STATUS_BAD_PARAM;
  T* p = new T;
  std::lock_guard<std::mutex> lock(g_mu);
  g_live.insert(p);
  *out = p;
  return CUDNN_STATUS_SUCCESS;
}

template <class T>
cudnnStatus_t destroy(T* p) {
  if (p == nullptr) return CUDNN_STATUS_SUCCESS;  // cuDNN: destroying a null descriptor is a no-op
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_live.erase(p) == 0) return CUDNN_STATUS_BAD_PARAM;
  }
  delete p;
  return CUDNN_STATUS_SUCCESS;
}

// A refusal that points at a bug in the caller (BAD_PARAM) is reported on stderr; NOT_SUPPORTED is the normal answer
// to an algorithm probe and stays quiet.
cudnnStatus_t bad(const std::string& why) {
  std::fprintf(stderr, "cudasim cudnn: CUDNN_STATUS_BAD_PARAM: %s\n", why.c_str());
  return CUDNN_STATUS_BAD_PARAM;
}

bool valid_format(cudnnTensorFormat_t f) { return f == CUDNN_TENSOR_NCHW || f == CUDNN_TENSOR_NHWC || f == CUDNN_TENSOR_NCHW_VECT_C; }
bool valid_type(cudnnDataType_t t) { return t >= CUDNN_DATA_FLOAT && t <= CUDNN_DATA_COMPLEX_FP64; }
bool conv_type(cudnnDataType_t t) { return t == CUDNN_DATA_FLOAT || t == CUDNN_DATA_HALF || t == CUDNN_DATA_BFLOAT16; }
size_t type_size(cudnnDataType_t t) { return t == CUDNN_DATA_FLOAT ? 4 : 2; }

float load(const void* p, cudnnDataType_t t, size_t i) {
  switch (t) {
    case CUDNN_DATA_FLOAT: return static_cast<const float*>(p)[i];
    case CUDNN_DATA_HALF: return cudasim::fp::half_to_float(static_cast<const uint16_t*>(p)[i]);
    default: return cudasim::fp::bf16_to_float(static_cast<const uint16_t*>(p)[i]);
  }
}

void store(void* p, cudnnDataType_t t, size_t i, float v) {
  switch (t) {
    case CUDNN_DATA_FLOAT: static_cast<float*>(p)[i] = v; break;
    case CUDNN_DATA_HALF: static_cast<uint16_t*>(p)[i] = cudasim::fp::float_to_half_rn(v); break;
    default: static_cast<uint16_t*>(p)[i] = cudasim::fp::float_to_bf16_rn(v); break;
  }
}

// A validated convolution problem, copied by value (the work may run after the descriptors are gone).
struct Problem {
  cudnnDataType_t type;
  bool nhwc;  // tensors and filter (the same format: checked)
  int N, C, H, W, K, R, S, P, Q, G;
  int pad_h, pad_w, u, v, dil_h, dil_w;
  bool flip;  // CUDNN_CONVOLUTION
  size_t x_off(int n, int c, int h, int w) const {
    return nhwc ? ((size_t(n) * H + h) * W + w) * C + c : ((size_t(n) * C + c) * H + h) * W + w;
  }
  size_t y_off(int n, int k, int p, int q) const {
    return nhwc ? ((size_t(n) * P + p) * Q + q) * K + k : ((size_t(n) * K + k) * P + p) * Q + q;
  }
  size_t w_off(int k, int c, int r, int s) const {  // c within the group
    const int cg = C / G;
    return nhwc ? ((size_t(k) * R + r) * S + s) * cg + c : ((size_t(k) * cg + c) * R + r) * S + s;
  }
  size_t x_bytes() const { return size_t(N) * C * H * W * type_size(type); }
  size_t y_bytes() const { return size_t(N) * K * P * Q * type_size(type); }
  size_t w_bytes() const { return size_t(K) * (C / G) * R * S * type_size(type); }
};

int out_dim(int in, int pad, int filt, int dil, int stride) {
  return 1 + (in + 2 * pad - ((filt - 1) * dil + 1)) / stride;
}

// Checks the descriptors of one convolution as cuDNN documents for cudnnConvolutionForward / BackwardData /
// BackwardFilter and their workspace and algorithm queries.
cudnnStatus_t check(cudnnHandle_t h, const cudnnTensorStruct* x, const cudnnFilterStruct* f,
                    const cudnnConvolutionStruct* cv, const cudnnTensorStruct* y, const char* who, Problem* out) {
  const std::string w = who;
  if (!live(h)) return bad(w + ": handle is null or destroyed");
  if (!live(x) || !live(f) || !live(cv) || !live(y)) return bad(w + ": a descriptor is null or destroyed");
  if (!x->set || !y->set || !f->set || !cv->set) return bad(w + ": a descriptor was created but never set");
  if (x->type != y->type || x->type != f->type)
    return bad(w + ": the tensor and filter descriptors have different data types");
  if (x->c != f->c * cv->groups)
    return bad(w + ": input channels " + std::to_string(x->c) + " != filter channels " + std::to_string(f->c) +
               " x group count " + std::to_string(cv->groups));
  if (f->k % cv->groups != 0 || y->c % cv->groups != 0)
    return bad(w + ": output channels not a multiple of the group count");
  if (y->n != x->n) return bad(w + ": x and y batch sizes differ");
  if (y->c != f->k) return bad(w + ": y channels " + std::to_string(y->c) + " != filter count " + std::to_string(f->k));
  const int rd = (f->r - 1) * cv->dil_h + 1, sd = (f->s - 1) * cv->dil_w + 1;
  if (rd > x->h + 2 * cv->pad_h || sd > x->w + 2 * cv->pad_w)
    return bad(w + ": the (dilated) filter is larger than the padded input");
  // What the emulation does not cover: not a refusal by cuDNN, an honest NOT_SUPPORTED here.
  if (!conv_type(x->type) || cv->compute != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  if (x->format == CUDNN_TENSOR_NCHW_VECT_C || x->format != y->format || f->format != x->format)
    return CUDNN_STATUS_NOT_SUPPORTED;
  const int P = out_dim(x->h, cv->pad_h, f->r, cv->dil_h, cv->u), Q = out_dim(x->w, cv->pad_w, f->s, cv->dil_w, cv->v);
  if (y->h != P || y->w != Q) return CUDNN_STATUS_NOT_SUPPORTED;  // documented: spatial sizes must match
  *out = Problem{x->type, x->format == CUDNN_TENSOR_NHWC, x->n, x->c, x->h, x->w, f->k, f->r, f->s, P, Q,
                 cv->groups, cv->pad_h, cv->pad_w, cv->u, cv->v, cv->dil_h, cv->dil_w, cv->mode == CUDNN_CONVOLUTION};
  return CUDNN_STATUS_SUCCESS;
}

enum class Dir { fwd, bwd_data, bwd_filter };

// The emulator's view of algorithm support: the documented restrictions of the FFT and Winograd families (NCHW,
// unit stride and dilation; Winograd 3x3, non-fused also 5x5), forward DIRECT and backward-filter WINOGRAD not
// implemented; everything else supported. An approximation of NVIDIA's support matrix, not a copy of it.
bool algo_supported(const Problem& p, Dir d, int algo) {
  const bool plain = !p.nhwc && p.u == 1 && p.v == 1 && p.dil_h == 1 && p.dil_w == 1;
  const bool w3 = p.R == 3 && p.S == 3, w5 = p.R == 5 && p.S == 5;
  switch (d) {
    case Dir::fwd:
      switch (algo) {
        case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM:
        case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM:
        case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return true;
        case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return false;
        case CUDNN_CONVOLUTION_FWD_ALGO_FFT:
        case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return plain && p.G == 1;
        case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return plain && w3;
        case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return plain && (w3 || w5);
      }
      return false;
    case Dir::bwd_data:
      switch (algo) {
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0:
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1: return true;
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT:
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING: return plain && p.G == 1;
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD: return plain && w3;
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED: return plain && (w3 || w5);
      }
      return false;
    case Dir::bwd_filter:
      switch (algo) {
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0:
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1:
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3: return true;
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD: return false;
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT:
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING: return plain && p.G == 1;
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED: return plain && (w3 || w5);
      }
      return false;
  }
  return false;
}

bool deterministic(Dir d, int algo) {
  if (d == Dir::bwd_data) return algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
  if (d == Dir::bwd_filter) return algo != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 && algo != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
  return true;
}

int algo_count(Dir d) {
  if (d == Dir::fwd) return CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  if (d == Dir::bwd_data) return CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
}

// Workspace sizes (made up, but non-zero for the algorithms our heuristics list first, so the caller's workspace
// plumbing is exercised; the emulator fills the workspace with 0xFF bytes at every call, as a real algorithm
// overwrites it): ALGO 1 of each direction and GEMM: one image's lowered column matrix; FFT/Winograd: larger.
size_t workspace(const Problem& p, Dir d, int algo) {
  const size_t cols = size_t(p.C / p.G) * p.R * p.S * p.P * p.Q * 4;
  const bool algo1 = algo == 1;
  const bool gemm = d == Dir::fwd && algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
  const bool fft_wino = (d == Dir::fwd && algo >= 4) || (d == Dir::bwd_data && algo >= 2) ||
                        (d == Dir::bwd_filter && (algo == 2 || algo >= 5));
  if (algo1 || gemm) return cols;
  if (fft_wino) return 2 * (p.x_bytes() + p.y_bytes() + p.w_bytes()) * 2;
  return 0;
}

// The order our heuristics answer in: the algorithm with workspace first (cuDNN's heuristics often rank
// IMPLICIT_PRECOMP_GEMM / ALGO_1 first), then the rest; unsupported ones last with CUDNN_STATUS_NOT_SUPPORTED.
const std::vector<int>& heuristic_order(Dir d) {
  static const std::vector<int> fwd{1, 0, 2, 6, 7, 4, 5, 3}, data{1, 0, 5, 4, 2, 3}, filt{1, 0, 3, 5, 6, 2, 4};
  return d == Dir::fwd ? fwd : d == Dir::bwd_data ? data : filt;
}

template <class Perf, class Algo>
cudnnStatus_t list_algos(const Problem& p, Dir d, const cudnnConvolutionStruct* cv, int requested, int* returned,
                         Perf* perf, bool timed) {
  if (requested <= 0 || returned == nullptr || perf == nullptr)
    return bad("algorithm query: requestedAlgoCount <= 0 or a null output pointer");
  std::vector<Perf> ok, no;
  for (int a : heuristic_order(d)) {
    Perf r{};
    r.algo = static_cast<Algo>(a);
    const bool sup = algo_supported(p, d, a);
    r.status = sup ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    r.time = sup ? (timed ? 0.001f * float(ok.size() + 1) : -1.0f) : -1.0f;
    r.memory = sup ? workspace(p, d, a) : 0;
    r.determinism = deterministic(d, a) ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
    r.mathType = cv->math;
    (sup ? ok : no).push_back(r);
  }
  ok.insert(ok.end(), no.begin(), no.end());
  const int n = std::min<int>(requested, static_cast<int>(ok.size()));
  for (int i = 0; i < n; ++i) perf[i] = ok[i];
  *returned = n;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t illegal(const char* who, const char* what, const std::string& why) {
  const std::string msg = std::string(who) + ": " + what + ": " + why;
  std::fprintf(stderr, "cudasim cudnn: %s\n", msg.c_str());
  cudasim::detail::set_sticky(cudaErrorIllegalAddress, msg);
  return CUDNN_STATUS_EXECUTION_FAILED;
}

// The common part of the three compute calls: checks, then the work on the handle's stream.
template <class Body>
cudnnStatus_t run(cudnnHandle_t h, const Problem& p, Dir d, int algo, const char* who, const void* alpha,
                  const void* beta, const void* in1, size_t in1_bytes, const void* in2, size_t in2_bytes, void* out,
                  size_t out_bytes, void* ws, size_t ws_bytes, Body body) {
  if (alpha == nullptr || beta == nullptr || in1 == nullptr || in2 == nullptr || out == nullptr)
    return bad(std::string(who) + ": a null data or scaling pointer");
  if (algo < 0 || algo >= algo_count(d)) return bad(std::string(who) + ": algorithm out of range");
  if (!algo_supported(p, d, algo)) return CUDNN_STATUS_NOT_SUPPORTED;
  const size_t need = workspace(p, d, algo);
  if (ws_bytes < need || (need > 0 && ws == nullptr))
    return bad(std::string(who) + ": workspace of " + std::to_string(ws_bytes) + " bytes, the algorithm needs " +
               std::to_string(need));
  if (cudasim::detail::sticky_error() != cudaSuccess) return CUDNN_STATUS_EXECUTION_FAILED;
  std::string why;
  if (!(why = cudasim::detail::device_span_problem(in1, in1_bytes)).empty()) return illegal(who, "input 1", why);
  if (!(why = cudasim::detail::device_span_problem(in2, in2_bytes)).empty()) return illegal(who, "input 2", why);
  if (!(why = cudasim::detail::device_span_problem(out, out_bytes)).empty()) return illegal(who, "output", why);
  if (need > 0 && !(why = cudasim::detail::device_span_problem(ws, need)).empty())
    return illegal(who, "workspace", why);
  if (!cudasim::detail::valid_stream(h->stream)) {
    cudasim::detail::set_error(cudaErrorInvalidResourceHandle, std::string(who) + ": the handle's stream is not live");
    return CUDNN_STATUS_EXECUTION_FAILED;
  }
  const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
  cudasim::detail::submit(h->stream, [=] {
    if (need > 0) std::memset(ws, 0xFF, need);
    body(a, b);
  });
  return CUDNN_STATUS_SUCCESS;
}

float combine(float a, float acc, float b, const void* out, cudnnDataType_t t, size_t i) {
  float r = a * acc;
  if (b != 0.0f) r += b * load(out, t, i);
  return r;
}

}  // namespace

// ---- library, handle ------------------------------------------------------------------------------------------

size_t cudnnGetVersion(void) { return CUDNN_VERSION; }

const char* cudnnGetErrorString(cudnnStatus_t s) {
  switch (s) {
#define CS_CASE(x) \
  case x: return #x;
    CS_CASE(CUDNN_STATUS_SUCCESS)
    CS_CASE(CUDNN_STATUS_NOT_INITIALIZED)
    CS_CASE(CUDNN_STATUS_BAD_PARAM)
    CS_CASE(CUDNN_STATUS_INVALID_VALUE)
    CS_CASE(CUDNN_STATUS_BAD_PARAM_NULL_POINTER)
    CS_CASE(CUDNN_STATUS_NOT_SUPPORTED)
    CS_CASE(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT)
    CS_CASE(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE)
    CS_CASE(CUDNN_STATUS_INTERNAL_ERROR)
    CS_CASE(CUDNN_STATUS_ALLOC_FAILED)
    CS_CASE(CUDNN_STATUS_EXECUTION_FAILED)
    CS_CASE(CUDNN_STATUS_ARCH_MISMATCH)
    CS_CASE(CUDNN_STATUS_MAPPING_ERROR)
    CS_CASE(CUDNN_STATUS_LICENSE_ERROR)
    CS_CASE(CUDNN_STATUS_VERSION_MISMATCH)
#undef CS_CASE
    default: return "CUDNN_STATUS_UNKNOWN (cudasim: no text for this code)";
  }
}

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (handle == nullptr) return CUDNN_STATUS_BAD_PARAM;
  if (cudasim::detail::sticky_error() != cudaSuccess) return CUDNN_STATUS_NOT_INITIALIZED;
  return create(handle);
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) { return destroy(handle); }

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (!live(handle)) return bad("cudnnSetStream: handle is null or destroyed");
  if (!cudasim::detail::valid_stream(stream)) return bad("cudnnSetStream: not a live stream");
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t* stream) {
  if (!live(handle) || stream == nullptr) return bad("cudnnGetStream: null handle or pointer");
  *stream = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

// ---- descriptors ------------------------------------------------------------------------------------------------

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* d) { return create(d); }
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) { return destroy(d); }
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* d) { return create(d); }
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) { return destroy(d); }
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* d) { return create(d); }
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) { return destroy(d); }

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
                                         cudnnDataType_t type, int n, int c, int h, int w) {
  if (!live(d)) return bad("cudnnSetTensor4dDescriptor: descriptor is null or destroyed");
  if (!valid_format(format) || !valid_type(type)) return bad("cudnnSetTensor4dDescriptor: invalid format or data type");
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0)
    return bad("cudnnSetTensor4dDescriptor: a dimension is not positive (" + std::to_string(n) + "," +
               std::to_string(c) + "," + std::to_string(h) + "," + std::to_string(w) + ")");
  if (format == CUDNN_TENSOR_NCHW_VECT_C) return bad("cudnnSetTensor4dDescriptor: NCHW_VECT_C needs a vector data type");
  if (int64_t(n) * c * h * w > INT_MAX) return CUDNN_STATUS_NOT_SUPPORTED;  // over 2 Giga-elements
  *d = cudnnTensorStruct{true, format, type, n, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t type, cudnnTensorFormat_t format,
                                         int k, int c, int h, int w) {
  if (!live(d)) return bad("cudnnSetFilter4dDescriptor: descriptor is null or destroyed");
  if (!valid_format(format) || !valid_type(type)) return bad("cudnnSetFilter4dDescriptor: invalid format or data type");
  if (k <= 0 || c <= 0 || h <= 0 || w <= 0) return bad("cudnnSetFilter4dDescriptor: a dimension is not positive");
  if (format == CUDNN_TENSOR_NCHW_VECT_C) return bad("cudnnSetFilter4dDescriptor: NCHW_VECT_C needs a vector data type");
  if (int64_t(k) * c * h * w > INT_MAX) return CUDNN_STATUS_NOT_SUPPORTED;
  *d = cudnnFilterStruct{true, format, type, k, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w, int u, int v,
                                              int dil_h, int dil_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute) {
  if (!live(d)) return bad("cudnnSetConvolution2dDescriptor: descriptor is null or destroyed");
  if (pad_h < 0 || pad_w < 0) return bad("cudnnSetConvolution2dDescriptor: negative padding");
  if (u <= 0 || v <= 0) return bad("cudnnSetConvolution2dDescriptor: stride not positive");
  if (dil_h <= 0 || dil_w <= 0) return bad("cudnnSetConvolution2dDescriptor: dilation not positive");
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION)
    return bad("cudnnSetConvolution2dDescriptor: invalid mode");
  if (!valid_type(compute)) return bad("cudnnSetConvolution2dDescriptor: invalid compute type");
  d->set = true;
  d->pad_h = pad_h;
  d->pad_w = pad_w;
  d->u = u;
  d->v = v;
  d->dil_h = dil_h;
  d->dil_w = dil_w;
  d->mode = mode;
  d->compute = compute;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups) {
  if (!live(d)) return bad("cudnnSetConvolutionGroupCount: descriptor is null or destroyed");
  if (groups < 1) return bad("cudnnSetConvolutionGroupCount: group count < 1");
  d->groups = groups;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t math) {
  if (!live(d)) return bad("cudnnSetConvolutionMathType: descriptor is null or destroyed");
  if (math < CUDNN_DEFAULT_MATH || math > CUDNN_FMA_MATH) return bad("cudnnSetConvolutionMathType: invalid math type");
  d->math = math;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t cv,
                                                    const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t f,
                                                    int* n, int* c, int* h, int* w) {
  if (!live(cv) || !live(x) || !live(f) || !cv->set || !x->set || !f->set)
    return bad("cudnnGetConvolution2dForwardOutputDim: a descriptor is null, destroyed or not set");
  if (n == nullptr || c == nullptr || h == nullptr || w == nullptr)
    return bad("cudnnGetConvolution2dForwardOutputDim: null output pointer");
  if (x->c != f->c * cv->groups)
    return bad("cudnnGetConvolution2dForwardOutputDim: input channels != filter channels x group count");
  const int oh = out_dim(x->h, cv->pad_h, f->r, cv->dil_h, cv->u), ow = out_dim(x->w, cv->pad_w, f->s, cv->dil_w, cv->v);
  if ((f->r - 1) * cv->dil_h + 1 > x->h + 2 * cv->pad_h || (f->s - 1) * cv->dil_w + 1 > x->w + 2 * cv->pad_w ||
      oh <= 0 || ow <= 0)
    return bad("cudnnGetConvolution2dForwardOutputDim: the (dilated) filter is larger than the padded input");
  *n = x->n;
  *c = f->k;
  *h = oh;
  *w = ow;
  return CUDNN_STATUS_SUCCESS;
}

// ---- forward ----------------------------------------------------------------------------------------------------

cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t h, int* count) {
  if (!live(h) || count == nullptr) return bad("cudnnGetConvolutionForwardAlgorithmMaxCount: null handle or pointer");
  *count = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                     const cudnnFilterDescriptor_t f,
                                                     const cudnnConvolutionDescriptor_t cv,
                                                     const cudnnTensorDescriptor_t y, const int requested,
                                                     int* returned, cudnnConvolutionFwdAlgoPerf_t* perf) {
  Problem p;
  if (cudnnStatus_t s = check(h, x, f, cv, y, "cudnnGetConvolutionForwardAlgorithm_v7", &p)) return s;
  return list_algos<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(p, Dir::fwd, cv, requested, returned,
                                                                              perf, false);
}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithm(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                   const cudnnFilterDescriptor_t f,
                                                   const cudnnConvolutionDescriptor_t cv,
                                                   const cudnnTensorDescriptor_t y, const int requested, int* returned,
                                                   cudnnConvolutionFwdAlgoPerf_t* perf) {
  Problem p;
  if (cudnnStatus_t s = check(h, x, f, cv, y, "cudnnFindConvolutionForwardAlgorithm", &p)) return s;
  return list_algos<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(p, Dir::fwd, cv, requested, returned,
                                                                              perf, true);
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                      const cudnnFilterDescriptor_t f,
                                                      const cudnnConvolutionDescriptor_t cv,
                                                      const cudnnTensorDescriptor_t y, cudnnConvolutionFwdAlgo_t algo,
                                                      size_t* bytes) {
  Problem p;
  if (cudnnStatus_t s = check(h, x, f, cv, y, "cudnnGetConvolutionForwardWorkspaceSize", &p)) return s;
  if (bytes == nullptr) return bad("cudnnGetConvolutionForwardWorkspaceSize: null pointer");
  if (algo < 0 || algo >= CUDNN_CONVOLUTION_FWD_ALGO_COUNT) return bad("forward workspace: algorithm out of range");
  if (!algo_supported(p, Dir::fwd, algo)) return CUDNN_STATUS_NOT_SUPPORTED;
  *bytes = workspace(p, Dir::fwd, algo);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void* alpha, const cudnnTensorDescriptor_t xd,
                                      const void* x, const cudnnFilterDescriptor_t wd, const void* w,
                                      const cudnnConvolutionDescriptor_t cv, cudnnConvolutionFwdAlgo_t algo, void* ws,
                                      size_t ws_bytes, const void* beta, const cudnnTensorDescriptor_t yd, void* y) {
  Problem p;
  if (cudnnStatus_t s = check(h, xd, wd, cv, yd, "cudnnConvolutionForward", &p)) return s;
  return run(h, p, Dir::fwd, algo, "cudnnConvolutionForward", alpha, beta, x, p.x_bytes(), w, p.w_bytes(), y,
             p.y_bytes(), ws, ws_bytes, [=](float a, float b) {
               const int kg = p.K / p.G, cg = p.C / p.G;
               for (int n = 0; n < p.N; ++n)
                 for (int k = 0; k < p.K; ++k)
                   for (int oh = 0; oh < p.P; ++oh)
                     for (int ow = 0; ow < p.Q; ++ow) {
                       float acc = 0.0f;
                       const int g = k / kg;
                       for (int c = 0; c < cg; ++c)
                         for (int r = 0; r < p.R; ++r) {
                           const int ih = oh * p.u - p.pad_h + r * p.dil_h;
                           if (ih < 0 || ih >= p.H) continue;
                           for (int s = 0; s < p.S; ++s) {
                             const int iw = ow * p.v - p.pad_w + s * p.dil_w;
                             if (iw < 0 || iw >= p.W) continue;
                             const int fr = p.flip ? p.R - 1 - r : r, fs = p.flip ? p.S - 1 - s : s;
                             acc += load(x, p.type, p.x_off(n, g * cg + c, ih, iw)) *
                                    load(w, p.type, p.w_off(k, c, fr, fs));
                           }
                         }
                       const size_t yi = p.y_off(n, k, oh, ow);
                       store(y, p.type, yi, combine(a, acc, b, y, p.type, yi));
                     }
             });
}

// ---- backward data ----------------------------------------------------------------------------------------------

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t h, int* count) {
  if (!live(h) || count == nullptr) return bad("cudnnGetConvolutionBackwardDataAlgorithmMaxCount: null handle or pointer");
  *count = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t h, const cudnnFilterDescriptor_t f,
                                                          const cudnnTensorDescriptor_t dy,
                                                          const cudnnConvolutionDescriptor_t cv,
                                                          const cudnnTensorDescriptor_t dx, const int requested,
                                                          int* returned, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
  Problem p;
  if (cudnnStatus_t s = check(h, dx, f, cv, dy, "cudnnGetConvolutionBackwardDataAlgorithm_v7", &p)) return s;
  return list_algos<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(p, Dir::bwd_data, cv, requested,
                                                                                      returned, perf, false);
}

cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithm(cudnnHandle_t h, const cudnnFilterDescriptor_t f,
                                                        const cudnnTensorDescriptor_t dy,
                                                        const cudnnConvolutionDescriptor_t cv,
                                                        const cudnnTensorDescriptor_t dx, const int requested,
                                                        int* returned, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
  Problem p;
  if (cudnnStatus_t s = check(h, dx, f, cv, dy, "cudnnFindConvolutionBackwardDataAlgorithm", &p)) return s;
  return list_algos<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(p, Dir::bwd_data, cv, requested,
                                                                                      returned, perf, true);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t h, const cudnnFilterDescriptor_t f,
                                                           const cudnnTensorDescriptor_t dy,
                                                           const cudnnConvolutionDescriptor_t cv,
                                                           const cudnnTensorDescriptor_t dx,
                                                           cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
  Problem p;
  if (cudnnStatus_t s = check(h, dx, f, cv, dy, "cudnnGetConvolutionBackwardDataWorkspaceSize", &p)) return s;
  if (bytes == nullptr) return bad("cudnnGetConvolutionBackwardDataWorkspaceSize: null pointer");
  if (algo < 0 || algo >= CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT) return bad("backward-data workspace: algorithm out of range");
  if (!algo_supported(p, Dir::bwd_data, algo)) return CUDNN_STATUS_NOT_SUPPORTED;
  *bytes = workspace(p, Dir::bwd_data, algo);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void* alpha, const cudnnFilterDescriptor_t wd,
                                           const void* w, const cudnnTensorDescriptor_t dyd, const void* dy,
                                           const cudnnConvolutionDescriptor_t cv, cudnnConvolutionBwdDataAlgo_t algo,
                                           void* ws, size_t ws_bytes, const void* beta,
                                           const cudnnTensorDescriptor_t dxd, void* dx) {
  Problem p;
  if (cudnnStatus_t s = check(h, dxd, wd, cv, dyd, "cudnnConvolutionBackwardData", &p)) return s;
  return run(h, p, Dir::bwd_data, algo, "cudnnConvolutionBackwardData", alpha, beta, w, p.w_bytes(), dy, p.y_bytes(),
             dx, p.x_bytes(), ws, ws_bytes, [=](float a, float b) {
               const int kg = p.K / p.G, cg = p.C / p.G;
               // dx[n, ci, ih, iw] = sum over the taps (k, r, s) of the forward pass that read it.
               for (int n = 0; n < p.N; ++n)
                 for (int ci = 0; ci < p.C; ++ci)
                   for (int ih = 0; ih < p.H; ++ih)
                     for (int iw = 0; iw < p.W; ++iw) {
                       const int g = ci / cg, c = ci % cg;
                       float acc = 0.0f;
                       for (int kk = 0; kk < kg; ++kk) {
                         const int k = g * kg + kk;
                         for (int r = 0; r < p.R; ++r) {
                           const int th = ih + p.pad_h - r * p.dil_h;  // = oh * u
                           if (th < 0 || th % p.u != 0 || th / p.u >= p.P) continue;
                           for (int s = 0; s < p.S; ++s) {
                             const int tw = iw + p.pad_w - s * p.dil_w;
                             if (tw < 0 || tw % p.v != 0 || tw / p.v >= p.Q) continue;
                             const int fr = p.flip ? p.R - 1 - r : r, fs = p.flip ? p.S - 1 - s : s;
                             acc += load(dy, p.type, p.y_off(n, k, th / p.u, tw / p.v)) *
                                    load(w, p.type, p.w_off(k, c, fr, fs));
                           }
                         }
                       }
                       const size_t xi = p.x_off(n, ci, ih, iw);
                       store(dx, p.type, xi, combine(a, acc, b, dx, p.type, xi));
                     }
             });
}

// ---- backward filter --------------------------------------------------------------------------------------------

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t h, int* count) {
  if (!live(h) || count == nullptr)
    return bad("cudnnGetConvolutionBackwardFilterAlgorithmMaxCount: null handle or pointer");
  *count = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                            const cudnnTensorDescriptor_t dy,
                                                            const cudnnConvolutionDescriptor_t cv,
                                                            const cudnnFilterDescriptor_t dw, const int requested,
                                                            int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
  Problem p;
  if (cudnnStatus_t s = check(h, x, dw, cv, dy, "cudnnGetConvolutionBackwardFilterAlgorithm_v7", &p)) return s;
  return list_algos<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      p, Dir::bwd_filter, cv, requested, returned, perf, false);
}

cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithm(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                          const cudnnTensorDescriptor_t dy,
                                                          const cudnnConvolutionDescriptor_t cv,
                                                          const cudnnFilterDescriptor_t dw, const int requested,
                                                          int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
  Problem p;
  if (cudnnStatus_t s = check(h, x, dw, cv, dy, "cudnnFindConvolutionBackwardFilterAlgorithm", &p)) return s;
  return list_algos<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      p, Dir::bwd_filter, cv, requested, returned, perf, true);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                             const cudnnTensorDescriptor_t dy,
                                                             const cudnnConvolutionDescriptor_t cv,
                                                             const cudnnFilterDescriptor_t dw,
                                                             cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
  Problem p;
  if (cudnnStatus_t s = check(h, x, dw, cv, dy, "cudnnGetConvolutionBackwardFilterWorkspaceSize", &p)) return s;
  if (bytes == nullptr) return bad("cudnnGetConvolutionBackwardFilterWorkspaceSize: null pointer");
  if (algo < 0 || algo >= CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT)
    return bad("backward-filter workspace: algorithm out of range");
  if (!algo_supported(p, Dir::bwd_filter, algo)) return CUDNN_STATUS_NOT_SUPPORTED;
  *bytes = workspace(p, Dir::bwd_filter, algo);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void* alpha, const cudnnTensorDescriptor_t xd,
                                             const void* x, const cudnnTensorDescriptor_t dyd, const void* dy,
                                             const cudnnConvolutionDescriptor_t cv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void* ws, size_t ws_bytes,
                                             const void* beta, const cudnnFilterDescriptor_t dwd, void* dw) {
  Problem p;
  if (cudnnStatus_t s = check(h, xd, dwd, cv, dyd, "cudnnConvolutionBackwardFilter", &p)) return s;
  return run(h, p, Dir::bwd_filter, algo, "cudnnConvolutionBackwardFilter", alpha, beta, x, p.x_bytes(), dy,
             p.y_bytes(), dw, p.w_bytes(), ws, ws_bytes, [=](float a, float b) {
               const int kg = p.K / p.G, cg = p.C / p.G;
               for (int k = 0; k < p.K; ++k)
                 for (int c = 0; c < cg; ++c)
                   for (int fr = 0; fr < p.R; ++fr)
                     for (int fs = 0; fs < p.S; ++fs) {
                       const int g = k / kg;
                       const int r = p.flip ? p.R - 1 - fr : fr, s = p.flip ? p.S - 1 - fs : fs;  // the tap
                       float acc = 0.0f;
                       for (int n = 0; n < p.N; ++n)
                         for (int oh = 0; oh < p.P; ++oh) {
                           const int ih = oh * p.u - p.pad_h + r * p.dil_h;
                           if (ih < 0 || ih >= p.H) continue;
                           for (int ow = 0; ow < p.Q; ++ow) {
                             const int iw = ow * p.v - p.pad_w + s * p.dil_w;
                             if (iw < 0 || iw >= p.W) continue;
                             acc += load(x, p.type, p.x_off(n, g * cg + c, ih, iw)) *
                                    load(dy, p.type, p.y_off(n, k, oh, ow));
                           }
                         }
                       const size_t wi = p.w_off(k, c, fr, fs);
                       store(dw, p.type, wi, combine(a, acc, b, dw, p.type, wi));
                     }
             });
}
