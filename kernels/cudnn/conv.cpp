// cuDNN convolutions on NHWC tensors (kernels/cudnn/conv.h): descriptors, algorithm plans, staging, and the
// Conv2d / ConvTranspose2d passes.
//
// Layout: activations NHWC (CUDNN_TENSOR_NHWC 4-D descriptors, packed), filters KRSC = cuDNN's NHWC filter format
// (k, r, s, c / groups); groups through cudnnSetConvolutionGroupCount. ConvTranspose2d's weights (C_in, R, S,
// C_out / groups) are exactly the filter of the conv whose gradient it is (k = C_in, c = C_out), so no reordering.
//
// Precision: data fp32, fp16 or bf16, compute type CUDNN_DATA_FLOAT (fp32 accumulation; alpha and beta are fp32).
// fp32 runs with CUDNN_FMA_MATH: FFMA kernels only, never TF32 (CUDNN_DEFAULT_MATH would let Ampere+ GPUs use TF32
// for fp32 data, 10 mantissa bits, breaking parity with the CPU reference, and we do not rely on
// NVIDIA_TF32_OVERRIDE). Heuristic results that ask for tensor-op math are skipped for fp32, and the FMA math type
// is forced on the descriptor for the chosen algorithm (cuDNN's heuristics may report DEFAULT_MATH for an FMA
// descriptor; PyTorch applies the same override). fp16/bf16 use CUDNN_TENSOR_OP_MATH (tensor cores, fp32
// accumulation) or whatever math type the chosen algorithm reports.
//
// Algorithms: chosen once per (geometry, dtype, direction, deterministic, device) with the v7 heuristics
// (cudnnGet*Algorithm_v7: no benchmarking, no allocation), the first result that is supported, has an acceptable
// math type, is deterministic when ctx.deterministic asks for it (the perf result's determinism field), and needs at
// most kMaxAlgoWorkspace bytes; cached in a process-wide map (mutex-guarded). If the heuristics offer nothing usable,
// every algorithm is tried in enum order with cuDNN's documented determinism.
//
// Workspace layout (all passes): [ X region: n (h + eh) (w + ew) c ][ Y region: n p q k ][ cuDNN algorithm ],
// each 256-byte aligned. The X region holds the conv's X side staged (padded and/or packed): X itself, dX, or for
// ConvTranspose2d its output y or its incoming gradient dy. The Y region holds the conv's Y side when strided: Y,
// dY, or for ConvTranspose2d its input x or its dx. Regions are reused in stream order within a pass. Staging
// happens only where needed (strided views, or eh/ew > 0); packed operands are used in place and accumulation into
// them uses cuDNN's beta = 1 directly. Accumulating into a staged gradient first copies the current values into the
// stage, so cuDNN still applies beta = 1 there and the result is rounded once, as in place.
//
// Why staging rather than strided descriptors: cuDNN's legacy convolutions document NHWC support for packed tensors;
// NVIDIA's support matrix for non-packed tensors covers some forward algorithms only, never backward-data or
// backward-filter, so a copy through the workspace is the one path that is correct for every algorithm. Trying
// strided descriptors first (falling back to staging on CUDNN_STATUS_NOT_SUPPORTED) is a performance follow-up that
// needs a GPU to validate.
//
// Bound: the convolutions are cuDNN's (the 3x3/5x5/7x7 layers at tensor-core or FFMA throughput, depthwise and
// low-channel 1x1 layers memory-bound). Staging adds one memory-bound copy (read + write) per staged operand, plus a
// memset of the padded X buffer: small next to the convolution except for 1x1 and depthwise layers on channel slices.
//
// The legacy convolution API used here is marked deprecated in cuDNN 9 but fully supported; the backend (graph) API
// is the migration path (it also takes asymmetric pre/post padding, which would remove the padded staging).
#if defined(CLIMSEG_HAVE_CUDNN)

#include "kernels/cudnn/conv.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/check_cuda.h"
#include "kernels/cudnn/stage.h"

namespace climseg::cudnn {

namespace {

constexpr size_t kAlign = 256;
// Algorithms asking for more scratch than this are skipped (FFT variants on large images); 1 GiB keeps planned
// arenas sane on 40-80 GB GPUs while leaving every GEMM-like and Winograd algorithm available.
constexpr size_t kMaxAlgoWorkspace = size_t(1) << 30;

size_t align_up(size_t b) { return (b + kAlign - 1) / kAlign * kAlign; }

int to_int(int64_t v, const char* what, const ConvGeometry& g) {
  CS_CHECK(v >= 0 && v <= INT_MAX, "cudnn conv: ", g.str(), ": ", what, " = ", v, " does not fit cuDNN's int");
  return static_cast<int>(v);
}

cudnnDataType_t data_type(DType dt) {
  switch (dt) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f16: return CUDNN_DATA_HALF;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    default: CS_THROW("cudnn conv: takes fp32, fp16 or bf16, not ", dtype_name(dt));
  }
}

const char* dir_name(ConvPass d) {
  switch (d) {
    case ConvPass::forward: return "forward";
    case ConvPass::backward_data: return "backward-data";
    case ConvPass::backward_filter: return "backward-filter";
  }
  return "?";
}

bool tensor_op_math(cudnnMathType_t m) {
  return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

// ---- descriptors (RAII) ---------------------------------------------------------------------------------------
struct Descriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t f = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;

  Descriptors(const ConvGeometry& g, DType dt) {
    try {
      CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
      CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
      CUDNN_CHECK(cudnnCreateFilterDescriptor(&f));
      CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
      const cudnnDataType_t t = data_type(dt);
      CS_CHECK(g.groups > 0 && g.in_c % g.groups == 0 && g.out_c % g.groups == 0, "cudnn conv: ", g.str(),
               ": channels not divisible by groups");
      const int n = to_int(g.n, "n", g), c = to_int(g.in_c, "in_c", g), h = to_int(g.in_h, "in_h", g),
                w = to_int(g.in_w, "in_w", g);
      const int k = to_int(g.out_c, "out_c", g), p = to_int(g.out_h, "out_h", g), q = to_int(g.out_w, "out_w", g);
      CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NHWC, t, n, c, h, w));
      CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, t, n, k, p, q));
      CUDNN_CHECK(cudnnSetFilter4dDescriptor(f, t, CUDNN_TENSOR_NHWC, k, to_int(g.in_c / g.groups, "c/groups", g),
                                             to_int(g.kernel_h, "kernel_h", g), to_int(g.kernel_w, "kernel_w", g)));
      CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
          conv, to_int(g.pad_top, "pad_top", g), to_int(g.pad_left, "pad_left", g), to_int(g.stride_h, "stride_h", g),
          to_int(g.stride_w, "stride_w", g), to_int(g.dilation_h, "dilation_h", g),
          to_int(g.dilation_w, "dilation_w", g), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, to_int(g.groups, "groups", g)));
      set_math(dt == DType::f32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH);
      // The geometry must be what cuDNN computes from it (the caller staged any asymmetric padding).
      int on = 0, oc = 0, oh = 0, ow = 0;
      CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, x, f, &on, &oc, &oh, &ow));
      CS_CHECK(on == n && oc == k && oh == p && ow == q, "cudnn conv: ", g.str(), ": cuDNN computes an output of (",
               on, ",", oh, ",", ow, ",", oc, ")");
    } catch (...) {
      release();
      throw;
    }
  }
  ~Descriptors() { release(); }
  Descriptors(const Descriptors&) = delete;
  Descriptors& operator=(const Descriptors&) = delete;

  void set_math(cudnnMathType_t m) { CUDNN_CHECK(cudnnSetConvolutionMathType(conv, m)); }

 private:
  void release() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (f) cudnnDestroyFilterDescriptor(f);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
    conv = nullptr;
    f = nullptr;
    x = y = nullptr;
  }
};

// ---- algorithm plans ------------------------------------------------------------------------------------------
struct Plan {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t ws = 0;
};

// One entry of cuDNN's answer to the heuristics (_v7) or to a measurement (Find): the perf structs' fields.
struct Candidate {
  int algo;
  cudnnStatus_t status;
  cudnnDeterminism_t determinism;
  cudnnMathType_t math;
  float ms = -1;       // measured time (Find only)
  size_t memory = 0;   // workspace cuDNN reports
};

std::mutex& plan_mutex() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, Plan>& plan_cache() {
  static std::map<std::string, Plan> cache;
  return cache;
}

std::string plan_key(const ConvGeometry& g, DType dt, ConvPass dir, bool det, int device) {
  return g.str() + " " + dtype_name(dt) + " " + dir_name(dir) + (det ? " det" : " any") + " dev" +
         std::to_string(device);
}

// Workspace of `algo` for `dir`, or false when cuDNN does not support it for these descriptors.
bool query_workspace(cudnnHandle_t h, Descriptors& d, ConvPass dir, int algo, size_t* bytes) {
  cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
  switch (dir) {
    case ConvPass::forward:
      s = cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.f, d.conv, d.y, cudnnConvolutionFwdAlgo_t(algo), bytes);
      break;
    case ConvPass::backward_data:
      s = cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.f, d.y, d.conv, d.x, cudnnConvolutionBwdDataAlgo_t(algo),
                                                       bytes);
      break;
    case ConvPass::backward_filter:
      s = cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.x, d.y, d.conv, d.f,
                                                         cudnnConvolutionBwdFilterAlgo_t(algo), bytes);
      break;
  }
  return s == CUDNN_STATUS_SUCCESS;
}

template <class Perf>
std::vector<Candidate> to_candidates(const std::vector<Perf>& perf, int returned) {
  std::vector<Candidate> c;
  for (int i = 0; i < returned; ++i)
    c.push_back({static_cast<int>(perf[i].algo), perf[i].status, perf[i].determinism, perf[i].mathType,
                 perf[i].time, perf[i].memory});
  return c;
}

// cuDNN's candidates for `dir`: the heuristics' ranking (_v7), or with `measure` cudnnFind*: cuDNN runs every
// algorithm it supports for these descriptors (allocating its own operands and workspace, synchronously) and
// returns them fastest first, with a status per algorithm: support is what ran.
std::vector<Candidate> candidates(cudnnHandle_t h, Descriptors& d, ConvPass dir, bool measure) {
  int max_count = 0, returned = 0;
  switch (dir) {
    case ConvPass::forward: {
      CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(std::max(max_count, 1));
      CUDNN_CHECK(measure ? cudnnFindConvolutionForwardAlgorithm(h, d.x, d.f, d.conv, d.y, max_count, &returned,
                                                                 perf.data())
                          : cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.f, d.conv, d.y, max_count, &returned,
                                                                   perf.data()));
      return to_candidates(perf, returned);
    }
    case ConvPass::backward_data: {
      CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(std::max(max_count, 1));
      CUDNN_CHECK(measure ? cudnnFindConvolutionBackwardDataAlgorithm(h, d.f, d.y, d.conv, d.x, max_count, &returned,
                                                                      perf.data())
                          : cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.f, d.y, d.conv, d.x, max_count,
                                                                        &returned, perf.data()));
      return to_candidates(perf, returned);
    }
    case ConvPass::backward_filter: {
      CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(std::max(max_count, 1));
      CUDNN_CHECK(measure ? cudnnFindConvolutionBackwardFilterAlgorithm(h, d.x, d.y, d.conv, d.f, max_count,
                                                                        &returned, perf.data())
                          : cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.f, max_count,
                                                                          &returned, perf.data()));
      return to_candidates(perf, returned);
    }
  }
  return {};
}

// cuDNN's documented determinism, for the fallback when the heuristics return nothing usable: every forward
// algorithm is deterministic; backward-data ALGO_0 and backward-filter ALGO_0 / ALGO_3 use atomics (backward-filter
// WINOGRAD is not implemented by cuDNN; listed as unusable for the deterministic case too).
std::vector<Candidate> all_algorithms(ConvPass dir, cudnnMathType_t math) {
  std::vector<Candidate> c;
  auto add = [&](int a, bool det) {
    c.push_back({a, CUDNN_STATUS_SUCCESS, det ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC, math});
  };
  switch (dir) {
    case ConvPass::forward:
      for (int a = 0; a < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; ++a) add(a, true);
      break;
    case ConvPass::backward_data:
      for (int a = 0; a < CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT; ++a) add(a, a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_0);
      break;
    case ConvPass::backward_filter:
      for (int a = 0; a < CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT; ++a)
        add(a, a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 && a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3 &&
                   a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD);
      break;
  }
  return c;
}

bool pick(cudnnHandle_t h, Descriptors& d, DType dt, ConvPass dir, bool det, const std::vector<Candidate>& cands,
          Plan* out) {
  for (const Candidate& c : cands) {
    if (c.status != CUDNN_STATUS_SUCCESS) continue;
    if (det && c.determinism != CUDNN_DETERMINISTIC) continue;
    cudnnMathType_t math = c.math;
    if (dt == DType::f32) {
      if (tensor_op_math(math)) continue;  // TF32
      math = CUDNN_FMA_MATH;
    }
    d.set_math(math);
    size_t ws = 0;
    if (!query_workspace(h, d, dir, c.algo, &ws) || ws > kMaxAlgoWorkspace) continue;
    *out = Plan{c.algo, math, ws};
    return true;
  }
  return false;
}

Plan plan_for(cudnnHandle_t h, int device, const ConvGeometry& g, DType dt, ConvPass dir, bool det) {
  const std::string key = plan_key(g, dt, dir, det, device);
  std::lock_guard<std::mutex> lock(plan_mutex());
  auto it = plan_cache().find(key);
  if (it != plan_cache().end()) return it->second;
  Descriptors d(g, dt);
  Plan p;
  std::vector<Candidate> cands;
  try {
    cands = candidates(h, d, dir, false);
  } catch (const Error&) {
    // no heuristic answer: try every algorithm below
  }
  bool ok = pick(h, d, dt, dir, det, cands, &p);
  if (!ok)
    ok = pick(h, d, dt, dir, det, all_algorithms(dir, dt == DType::f32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH), &p);
  CS_CHECK(ok, "cudnn conv: no ", det ? "deterministic " : "", dir_name(dir), " algorithm for ", g.str(), " in ",
           dtype_name(dt), dt == DType::f32 ? " with FMA math (no TF32)" : "", " within ", kMaxAlgoWorkspace >> 20,
           " MiB of workspace");
  plan_cache().emplace(key, p);
  return p;
}

// ---- measured choice (cudnnFind*, PyTorch's cudnn.benchmark) -----------------------------------------------------
bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, value) == 0;
}
bool benchmark_on() {
  static const bool on = !env_is("CLIMSEG_CUDNN_BENCHMARK", "0");
  return on;
}
bool log_on() {
  static const bool on = env_is("CLIMSEG_CUDNN_LOG", "1");
  return on;
}

struct Choice {
  Plan plan;
  bool measured = false;
  float ms = -1;
};
std::map<std::string, Choice>& choice_cache() {
  static std::map<std::string, Choice> cache;
  return cache;
}

Choice choose(cudnnHandle_t h, int device, const ConvGeometry& g, DType dt, ConvPass dir, bool det, size_t max_ws) {
  const Plan heuristic = plan_for(h, device, g, dt, dir, det);
  if (!benchmark_on()) return {heuristic, false, -1};
  const std::string key = plan_key(g, dt, dir, det, device) + " ws<=" + std::to_string(max_ws);
  std::lock_guard<std::mutex> lock(plan_mutex());
  auto it = choice_cache().find(key);
  if (it != choice_cache().end()) return it->second;
  Choice c{heuristic, false, -1};
  std::string why;
  try {
    Descriptors d(g, dt);  // FMA math for fp32 (no TF32), tensor ops for fp16/bf16
    for (const Candidate& m : candidates(h, d, dir, true)) {
      if (m.status != CUDNN_STATUS_SUCCESS || m.ms < 0) continue;
      if (det && m.determinism != CUDNN_DETERMINISTIC) continue;
      const cudnnMathType_t math = dt == DType::f32 ? CUDNN_FMA_MATH : m.math;
      if (dt == DType::f32 && tensor_op_math(m.math)) continue;
      d.set_math(math);
      size_t ws = 0;
      if (!query_workspace(h, d, dir, m.algo, &ws) || ws > max_ws) continue;
      c = Choice{Plan{m.algo, math, ws}, true, m.ms};
      break;
    }
    if (!c.measured) why = "no measured algorithm fits (deterministic, no TF32, workspace)";
  } catch (const Error& e) {
    why = e.what();  // the measurement failed: the heuristic choice stays
  }
  choice_cache().emplace(key, c);
  if (log_on())
    std::fprintf(stderr, "cudnn: %s %s %s%s: algorithm %d, %zu bytes of workspace (%s; heuristic %d)\n",
                 dir_name(dir), g.str().c_str(), dtype_name(dt), det ? " deterministic" : "", c.plan.algo, c.plan.ws,
                 c.measured ? ("measured " + std::to_string(c.ms) + " ms").c_str() : ("heuristic: " + why).c_str(),
                 heuristic.algo);
  return c;
}

// A cuDNN handle per device for planning outside any ExecContext (memory_needs): created on first use and kept for
// the life of the process (destroying it at exit could run after the CUDA runtime has shut down).
cudnnHandle_t planning_handle(int device) {
  static std::mutex mu;
  // Never destroyed (not even the map: the handles stay reachable, so LeakSanitizer does not count them as leaks).
  static auto* handles = new std::map<int, cudnnHandle_t>;
  std::lock_guard<std::mutex> lock(mu);
  auto it = handles->find(device);
  if (it != handles->end()) return it->second;
  cudnnHandle_t h = nullptr;
  CUDNN_CHECK(cudnnCreate(&h));
  handles->emplace(device, h);
  return h;
}

// ---- geometry helpers ---------------------------------------------------------------------------------------
struct Staged {
  ConvGeometry g;  // with the extra rows/columns folded into h, w: what cuDNN sees
  int64_t eh = 0, ew = 0;
  size_t x_bytes = 0, y_bytes = 0;  // region sizes (aligned)
};

Staged staged(const ConvGeometry& g, DType dt) {
  Staged s;
  s.eh = extra_rows(g);
  s.ew = extra_cols(g);
  s.g = g;
  s.g.in_h += s.eh;
  s.g.in_w += s.ew;
  const size_t es = dtype_size(dt);
  s.x_bytes = align_up(static_cast<size_t>(s.g.n * s.g.in_h * s.g.in_w * s.g.in_c) * es);
  s.y_bytes = align_up(static_cast<size_t>(s.g.n * s.g.out_h * s.g.out_w * s.g.out_c) * es);
  return s;
}

// ---- staging --------------------------------------------------------------------------------------------------
bool packed(const Tensor& t) { return t.is_contiguous(); }

// Copies view t (n, h, w, c) into the top-left window of the packed buffer dst (n, hh, ww, c); the rest of dst is
// zeroed first when (hh, ww) is larger. Returns dst.
void* stage_in(ExecContext& ctx, const Tensor& t, void* dst, int64_t hh, int64_t ww) {
  const Shape& s = t.shape();
  const size_t es = t.element_size();
  if (hh > s.h || ww > s.w)
    CUDA_CHECK(cudaMemsetAsync(dst, 0, static_cast<size_t>(s.n * hh * ww * s.c) * es, ctx.stream()));
  const auto& st = t.strides();
  detail::copy_window(ctx, s.n, s.h, s.w, s.c, es, t.data(), st[0], st[1], st[2], dst, hh * ww * s.c, ww * s.c,
                      s.c);
  return dst;
}

// Copies the top-left (n, h, w, c) window of the packed buffer src (n, hh, ww, c) into view t.
void stage_out(ExecContext& ctx, const void* src, int64_t hh, int64_t ww, const Tensor& t) {
  const Shape& s = t.shape();
  const auto& st = t.strides();
  detail::copy_window(ctx, s.n, s.h, s.w, s.c, t.element_size(), src, hh * ww * s.c, ww * s.c, s.c, t.data(), st[0],
                      st[1], st[2]);
}

struct Scratch {
  char* x = nullptr;     // X region
  char* y = nullptr;     // Y region
  char* algo = nullptr;  // cuDNN workspace
  size_t algo_bytes = 0;
};

Scratch acquire(ExecContext& ctx, const Tensor& workspace, const Staged& s, size_t algo_bytes, const char* who) {
  const size_t need = s.x_bytes + s.y_bytes + align_up(algo_bytes);
  char* base = nullptr;
  if (workspace.defined()) {
    // A planned workspace must be large enough (docs/layers.md): memory_needs() declares the larger of the CPU and
    // the cuDNN sizes, so a smaller one is a planning bug, not a case for a hidden allocation and sync.
    CS_CHECK(workspace.device() == Device::cuda, who, ": workspace is on ", device_name(workspace.device()));
    CS_CHECK(workspace.nbytes() >= need, who, ": the planned workspace has ", workspace.nbytes(),
             " bytes, this pass needs ", need, " (staging ", s.x_bytes + s.y_bytes, ", cuDNN algorithm ", algo_bytes,
             "); memory_needs() must declare cudnn::conv_workspace_bytes");
    base = static_cast<char*>(workspace.data());
  } else {
    // No workspace (a layer run outside a Net): the context's shared workspace, grown once.
    base = static_cast<char*>(ctx.workspace(need));
  }
  Scratch sc;
  sc.x = base;
  sc.y = base + s.x_bytes;
  sc.algo = base + s.x_bytes + s.y_bytes;
  sc.algo_bytes = algo_bytes;
  return sc;
}

void check_operand(const Tensor& t, Shape want, DType dt, const char* who, const char* what, const ConvGeometry& g) {
  CS_CHECK(t.defined() && t.device() == Device::cuda, who, ": ", what, " must be a CUDA tensor");
  CS_CHECK(t.dtype() == dt, who, ": ", what, " is ", dtype_name(t.dtype()), ", expected ", dtype_name(dt));
  CS_CHECK(t.shape() == want, who, ": ", what, " is ", t.shape().str(), ", expected ", want.str(), " for ", g.str());
  CS_CHECK(t.is_pixel_strided(), who, ": ", what, " ", t.str(), " is not pixel-strided");
}

void check_filter(const Tensor& w, DType dt, const char* who, const char* what, const ConvGeometry& g) {
  check_operand(w, g.filter_shape(), dt, who, what, g);
  CS_CHECK(packed(w), who, ": ", what, " must be contiguous (KRSC)");
}

void check_ctx(ExecContext& ctx, const char* who) {
  CS_CHECK(ctx.device() == Device::cuda, who, ": needs a CUDA context, got a ", device_name(ctx.device()), " one");
}

}  // namespace

// ---- primitives -----------------------------------------------------------------------------------------------

size_t algo_workspace_bytes(ExecContext& ctx, const ConvGeometry& g, DType dt, ConvPass dir) {
  check_ctx(ctx, "cudnn::algo_workspace_bytes");
  return plan_for(ctx.cudnn(), ctx.device_index(), g, dt, dir, ctx.deterministic).ws;
}

AlgoChoice chosen_algorithm(ExecContext& ctx, const ConvGeometry& g, DType dt, ConvPass dir, size_t max_ws) {
  check_ctx(ctx, "cudnn::chosen_algorithm");
  const Choice c = choose(ctx.cudnn(), ctx.device_index(), g, dt, dir, ctx.deterministic, max_ws);
  return AlgoChoice{c.plan.algo, c.plan.ws, c.measured, c.ms};
}

namespace {
// Descriptors with the chosen algorithm's math type, and the choice; checks the workspace.
struct Ready {
  Descriptors d;
  Plan p;
  Ready(ExecContext& ctx, const ConvGeometry& g, DType dt, ConvPass dir, size_t ws_bytes, const void* ws)
      : d(g, dt), p(choose(ctx.cudnn(), ctx.device_index(), g, dt, dir, ctx.deterministic, ws_bytes).plan) {
    d.set_math(p.math);
    CS_CHECK(ws_bytes >= p.ws && (p.ws == 0 || ws != nullptr), "cudnn conv ", dir_name(dir), ": ", g.str(),
             ": algorithm ", p.algo, " needs ", p.ws, " bytes of workspace, got ", ws_bytes);
  }
};
}  // namespace

void forward(ExecContext& ctx, const ConvGeometry& g, DType dt, const void* x, const void* w, void* y, bool accumulate,
             void* ws, size_t ws_bytes) {
  check_ctx(ctx, "cudnn::forward");
  Ready r(ctx, g, dt, ConvPass::forward, ws_bytes, ws);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  CUDNN_CHECK(cudnnConvolutionForward(ctx.cudnn(), &alpha, r.d.x, x, r.d.f, w, r.d.conv,
                                      cudnnConvolutionFwdAlgo_t(r.p.algo), ws, r.p.ws, &beta, r.d.y, y));
}

void backward_data(ExecContext& ctx, const ConvGeometry& g, DType dt, const void* dy, const void* w, void* dx,
                   bool accumulate, void* ws, size_t ws_bytes) {
  check_ctx(ctx, "cudnn::backward_data");
  Ready r(ctx, g, dt, ConvPass::backward_data, ws_bytes, ws);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardData(ctx.cudnn(), &alpha, r.d.f, w, r.d.y, dy, r.d.conv,
                                           cudnnConvolutionBwdDataAlgo_t(r.p.algo), ws, r.p.ws, &beta, r.d.x, dx));
}

void backward_filter(ExecContext& ctx, const ConvGeometry& g, DType dt, const void* x, const void* dy, void* dw,
                     bool accumulate, void* ws, size_t ws_bytes) {
  check_ctx(ctx, "cudnn::backward_filter");
  Ready r(ctx, g, dt, ConvPass::backward_filter, ws_bytes, ws);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx.cudnn(), &alpha, r.d.x, x, r.d.y, dy, r.d.conv,
                                             cudnnConvolutionBwdFilterAlgo_t(r.p.algo), ws, r.p.ws, &beta, r.d.f,
                                             dw));
}

// ---- workspace for memory_needs -------------------------------------------------------------------------------

size_t runtime_version() { return cudnnGetVersion(); }

size_t conv_workspace_bytes(const ConvGeometry& g, DType dt, ConvPass pass) {
  if (cuda_device_count() == 0) return 0;  // no CUDA path can run; CPU nets still plan
  if (dt != DType::f32 && dt != DType::f16 && dt != DType::bf16) return 0;  // fp64 is CPU only
  // memory_needs serves CPU nets too: a geometry the CUDA path cannot run (output_padding >= stride) or one with no
  // cuDNN algorithm needs no CUDA workspace here; the CUDA pass itself reports the problem if it is ever run.
  try {
    const Staged s = staged(g, dt);
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    cudnnHandle_t h = planning_handle(device);
    size_t algo = 0;
    for (bool det : {false, true}) {
      try {
        algo = std::max(algo, plan_for(h, device, s.g, dt, g.conv_pass(pass), det).ws);
      } catch (const Error&) {
        // That mode has no algorithm for this geometry; the pass reports it if it is ever run in that mode.
        // The other mode's plan (and the staging regions) must still be counted.
      }
    }
    return s.x_bytes + s.y_bytes + align_up(algo);
  } catch (const Error&) {
    return 0;
  }
}

// ---- layer-level passes ----------------------------------------------------------------------------------------
// The layer's x and dx have g.layer_in()'s shape, y and dy g.layer_out()'s: for Conv2d the conv's X and Y, for
// ConvTranspose2d (g.transposed) the conv's Y and X.

namespace {
const char* layer_who(const ConvGeometry& g, bool backward) {
  if (g.transposed) return backward ? "cudnn::conv_transpose2d_backward" : "cudnn::conv_transpose2d_forward";
  return backward ? "cudnn::conv2d_backward" : "cudnn::conv2d_forward";
}
}  // namespace

void conv_layer_forward(ExecContext& ctx, const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor& y,
                        const Tensor& workspace) {
  const char* who = layer_who(g, false);
  check_ctx(ctx, who);
  const DType dt = x.dtype();
  check_operand(x, g.layer_in(), dt, who, "x", g);
  check_operand(y, g.layer_out(), dt, who, "y", g);
  check_filter(w, dt, who, "weight", g);
  const Staged s = staged(g, dt);
  const Scratch sc =
      acquire(ctx, workspace, s, algo_workspace_bytes(ctx, s.g, dt, g.conv_pass(ConvPass::forward)), who);
  const bool pad = s.eh > 0 || s.ew > 0;
  if (!g.transposed) {
    // y = conv(x): X staged (padded and/or packed) when needed, Y computed into the Y region when strided.
    const void* xp = (pad || !packed(x)) ? stage_in(ctx, x, sc.x, s.g.in_h, s.g.in_w) : x.data();
    void* yp = packed(y) ? y.data() : sc.y;
    forward(ctx, s.g, dt, xp, w.data(), yp, false, sc.algo, sc.algo_bytes);
    if (!packed(y)) stage_out(ctx, yp, g.out_h, g.out_w, y);
    return;
  }
  // y (the conv's X) = backward-data of the conv on x (its dY).
  const void* xp = packed(x) ? x.data() : stage_in(ctx, x, sc.y, g.out_h, g.out_w);
  if (!pad && packed(y)) {
    backward_data(ctx, s.g, dt, xp, w.data(), y.data(), false, sc.algo, sc.algo_bytes);
  } else {
    // The padded rows/columns of the stage receive contributions that lie outside the deconv's output (the
    // conv's zero padding); they are dropped by the crop.
    backward_data(ctx, s.g, dt, xp, w.data(), sc.x, false, sc.algo, sc.algo_bytes);
    stage_out(ctx, sc.x, s.g.in_h, s.g.in_w, y);
  }
}

void conv_layer_backward(ExecContext& ctx, const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor& dy,
                         const Tensor& dx, bool dx_accumulate, const Tensor& dw, bool dw_accumulate,
                         const Tensor& workspace) {
  const char* who = layer_who(g, true);
  check_ctx(ctx, who);
  const DType dt = dy.dtype();
  check_operand(dy, g.layer_out(), dt, who, "dy", g);
  check_filter(w, dt, who, "weight", g);
  if (dx.defined()) check_operand(dx, g.layer_in(), dt, who, "dx", g);
  if (dw.defined()) {
    check_filter(dw, dt, who, "weight gradient", g);
    check_operand(x, g.layer_in(), dt, who, "x", g);
  }
  if (!dx.defined() && !dw.defined()) return;
  const Staged s = staged(g, dt);
  size_t algo_bytes = 0;
  if (dx.defined()) algo_bytes = algo_workspace_bytes(ctx, s.g, dt, g.conv_pass(ConvPass::backward_data));
  if (dw.defined()) algo_bytes = std::max(algo_bytes, algo_workspace_bytes(ctx, s.g, dt, ConvPass::backward_filter));
  const Scratch sc = acquire(ctx, workspace, s, algo_bytes, who);
  const bool pad = s.eh > 0 || s.ew > 0;
  if (!g.transposed) {
    const void* dyp = packed(dy) ? dy.data() : stage_in(ctx, dy, sc.y, g.out_h, g.out_w);
    if (dw.defined()) {
      const void* xp = (pad || !packed(x)) ? stage_in(ctx, x, sc.x, s.g.in_h, s.g.in_w) : x.data();
      backward_filter(ctx, s.g, dt, xp, dyp, dw.data(), dw_accumulate, sc.algo, sc.algo_bytes);
    }
    if (dx.defined()) {
      if (!pad && packed(dx)) {
        backward_data(ctx, s.g, dt, dyp, w.data(), dx.data(), dx_accumulate, sc.algo, sc.algo_bytes);
      } else {
        // The X region is free again (stream order): stage dx there, with its current values when accumulating.
        if (dx_accumulate) stage_in(ctx, dx, sc.x, s.g.in_h, s.g.in_w);
        backward_data(ctx, s.g, dt, dyp, w.data(), sc.x, dx_accumulate, sc.algo, sc.algo_bytes);
        stage_out(ctx, sc.x, s.g.in_h, s.g.in_w, dx);
      }
    }
    return;
  }
  // Transposed: the conv's X is the layer's dy, zero-extended by (eh, ew): the conv's padding.
  const void* cx = (pad || !packed(dy)) ? stage_in(ctx, dy, sc.x, s.g.in_h, s.g.in_w) : dy.data();
  if (dw.defined()) {
    const void* cdy = packed(x) ? x.data() : stage_in(ctx, x, sc.y, g.out_h, g.out_w);
    backward_filter(ctx, s.g, dt, cx, cdy, dw.data(), dw_accumulate, sc.algo, sc.algo_bytes);
  }
  if (dx.defined()) {
    if (packed(dx)) {
      forward(ctx, s.g, dt, cx, w.data(), dx.data(), dx_accumulate, sc.algo, sc.algo_bytes);
    } else {
      // The Y region is free again (stream order).
      if (dx_accumulate) stage_in(ctx, dx, sc.y, g.out_h, g.out_w);
      forward(ctx, s.g, dt, cx, w.data(), sc.y, dx_accumulate, sc.algo, sc.algo_bytes);
      stage_out(ctx, sc.y, g.out_h, g.out_w, dx);
    }
  }
}

}  // namespace climseg::cudnn

#endif  // CLIMSEG_HAVE_CUDNN
