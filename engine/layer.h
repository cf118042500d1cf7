// The layer contract (STYLE.md B): Caffe's forward/backward split with tiny-cuda-nn's non-virtual interface.
//
// - Layers own no memory. Outputs, saved state and workspace are given to them (planned by the Net), parameters
//   and their gradients are views into the Net's flat buffers.
// - forward()/backward() are public and non-virtual: they check counts, shapes, dtypes and devices, open a
//   profiler scope (and NVTX range), then dispatch to forward_cpu/forward_cuda. A layer without a CUDA path
//   throws from forward_cuda; nothing ever falls back to the CPU silently.
// - Every layer accepts pixel-strided views for inputs, outputs and gradients (channels contiguous, pixels at a
//   fixed stride), so producers can write straight into channel slices of a concat buffer.
//
// Gradient rule:
// - Parameter gradients honour BackwardArgs::param_mode: overwrite (grad = g) or accumulate (grad += g, for
//   micro-batches).
// - Input gradients honour BackwardArgs::dx_mode[i]: the Net asks for overwrite from the first consumer of a tensor
//   in backward order and accumulate from the others (fan-out: residual connections, concatenations).
// - An undefined dx[i] means no gradient is wanted for input i.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/profiler.h"
#include "engine/tensor.h"

namespace climseg {

enum class GradMode : uint8_t { overwrite, accumulate };

// Parameter initialisations (all from Philox, deterministic for a seed).
enum class Init : uint8_t {
  zeros,
  ones,
  he_normal,      // N(0, sqrt(2 / fan_in)): convolutions followed by ReLU
  uniform_fan_in  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for biases
};

// How a parameter's 4-D shape maps to PyTorch's layout (weight export/import, docs/checkpoint-format.md).
enum class ParamLayout : uint8_t {
  vector,       // (1, 1, 1, C): PyTorch (C,)  (biases, batch-norm gamma/beta, affine scale/shift)
  vector_c11,   // (1, 1, 1, C): PyTorch (C, 1, 1) (DeepCAM's TrainableAffine parameters)
  conv_krsc,    // (K, R, S, C/g): PyTorch Conv2d (K, C/g, R, S) = OIHW
  deconv_crsk,  // (C_in, R, S, K/g): PyTorch ConvTranspose2d (C_in, K/g, R, S)
};

struct ParamSpec {
  std::string name;  // local name ("weight", "bias"); the Net prefixes the node name
  Shape shape;       // convolution weights are KRSC: (K, R, S, C) = (out, kh, kw, in)
  Init init = Init::zeros;
  int64_t fan_in = 1;
  ParamLayout layout = ParamLayout::vector;
};

// Dtype of non-trainable state (batch-norm running statistics) and of statistics kept in fp32 for 16-bit data:
// fp32 for fp32/fp16/bf16 layers, fp64 for the fp64 gradient-check path.
inline DType stat_dtype(DType compute) { return compute == DType::f64 ? DType::f64 : DType::f32; }

struct MemoryNeeds {
  size_t saved_bytes = 0;    // state kept from forward to backward (batch-norm statistics, masks, ...)
  size_t fwd_workspace = 0;  // scratch during forward only
  size_t bwd_workspace = 0;  // scratch during backward only
};

struct LayerCost {
  double flops = 0;  // floating-point operations (2 per multiply-add)
  double bytes = 0;  // bytes read and written at least once
};

// Inference epilogue (Net::fold_batchnorm, layers with supports_epilogue()): after the layer has written y,
//   y = act(y + bias + residual)
// in one pass. `bias` (1,1,1,K), when defined, replaces the layer's own bias parameter (which is then not applied);
// `residual` has y's shape. Never set in training.
struct Epilogue {
  Tensor bias;
  Tensor residual;
  bool relu = false;
  bool active() const { return bias.defined() || residual.defined() || relu; }
};

// A per-channel map y = act(scale[c] * x + shift[c] + residual) that an inference net can fold into the
// preceding convolution (Layer::inference_affine): scale into the weights, shift into the bias, the residual add
// and the ReLU into the convolution's Epilogue. Values in double.
struct ChannelAffine {
  std::vector<double> scale, shift;  // C each
  bool residual = false;             // input 1 is added (before the ReLU)
  bool relu = false;
};

struct ForwardArgs {
  std::vector<Tensor> x;       // inputs
  Tensor y;                    // output, allocated by the caller
  std::vector<Tensor> params;  // in param_specs() order
  Tensor saved;                // u8, memory_needs().saved_bytes (undefined when 0)
  Tensor workspace;            // u8, memory_needs().fwd_workspace (undefined when 0)
  bool training = true;
  // Non-trainable persistent state (batch-norm running mean/var), in state_specs() order, dtype
  // stat_dtype(compute dtype). Bound by the caller like parameters but never given gradients or updated by the
  // optimizer; the layer reads and updates it in forward. Empty when the layer has none (or the caller binds none:
  // see the layer's documentation for what it then does).
  std::vector<Tensor> state;
  // Step counter for layers with randomness (dropout): with the layer's seed it selects the Philox stream, so a
  // mask is reproducible from (seed, step) alone. The caller advances it once per forward pass that must draw
  // fresh randomness (each training step, each micro-batch).
  uint64_t step = 0;
  Epilogue epilogue;  // inference only, for layers with supports_epilogue()
};

struct BackwardArgs {
  std::vector<Tensor> x;  // inputs (defined where backward_needs_input(i))
  Tensor y;               // output (defined when backward_needs_output())
  Tensor dy;              // gradient of the loss with respect to y
  std::vector<Tensor> dx;  // gradients to produce; undefined entries are not wanted
  std::vector<GradMode> dx_mode;
  std::vector<Tensor> params;
  std::vector<Tensor> grads;  // parameter gradients, same shapes as params
  GradMode param_mode = GradMode::overwrite;
  Tensor saved;
  Tensor workspace;  // u8, memory_needs().bwd_workspace
};

class Layer {
 public:
  virtual ~Layer() = default;

  virtual const char* type() const = 0;
  // Number of inputs; -1 for any number >= 1 (concat).
  virtual int num_inputs() const { return 1; }
  // Output shape for these input shapes; throws a clear error for shapes the layer cannot take.
  virtual Shape output_shape(const std::vector<Shape>& in) const = 0;
  virtual std::vector<ParamSpec> param_specs(const std::vector<Shape>& in) const { return {}; }
  // Non-trainable persistent state (ForwardArgs::state), initialised by the Init of each spec; default none.
  virtual std::vector<ParamSpec> state_specs(const std::vector<Shape>& in) const { return {}; }
  virtual MemoryNeeds memory_needs(const std::vector<Shape>& in, DType t) const { return {}; }
  virtual bool backward_needs_input(int i) const { return true; }
  virtual bool backward_needs_output() const { return false; }
  // The output may share input 0's memory (and dx[0] dy's), when the Net's liveness allows it.
  virtual bool in_place_ok() const { return false; }
  // The output is the channel concatenation of the inputs: the Net makes producers write into its slices.
  virtual bool is_concat() const { return false; }
  // >= 0: the output is the channel range [offset, offset + C_out) of input 0 (ChannelSlice), which the Net binds
  // as a view of the input instead of a buffer of its own (zero copy).
  virtual int64_t view_channel_offset() const { return -1; }
  // Input i holds integer class indices (labels: i32, i64 or u8) rather than values of the compute dtype; it gets
  // no gradient (its dx is always undefined).
  virtual bool input_is_index(int i) const { return false; }
  // Profiler category: convolutions (and deconvolutions) vs everything else.
  virtual bool is_convolution() const { return false; }
  virtual LayerCost forward_cost(const std::vector<Shape>& in, DType t) const;
  virtual LayerCost backward_cost(const std::vector<Shape>& in, DType t) const;
  // Capability gating (ggml supports_op): whether this layer has a path for the device and dtype.
  virtual bool supports(Device d, DType t) const;

  // ---- inference folding (Net::fold_batchnorm, docs/inference.md) ----
  // Layers whose output channels are linear in parameter 0 (convolutions) and that apply ForwardArgs::epilogue
  // on both device paths. They also scale that weight per output channel: w (param_specs()[0] shape, contiguous,
  // on the host, in double) becomes w * scale[output channel of the element] (scale: K values).
  virtual bool supports_epilogue() const { return false; }
  virtual void scale_output_channels(const std::vector<Shape>& in, double* w, const double* scale) const;
  // Layers that in inference are the per-channel map of ChannelAffine (batch norm with running statistics, affine,
  // scale, relu): fill *out from the parameters and state (host copies in double, in param_specs / state_specs
  // order) and return true; they must also run correctly in place (y aliasing x), since an inference Net plans
  // them so. Default: false (not foldable).
  virtual bool inference_affine(const std::vector<Shape>& in, const std::vector<std::vector<double>>& params,
                                const std::vector<std::vector<double>>& state, ChannelAffine* out) const {
    return false;
  }

  void forward(ExecContext& ctx, const ForwardArgs& a);
  void backward(ExecContext& ctx, const BackwardArgs& a);

  void set_name(std::string n) { name_ = std::move(n); }
  std::string name() const { return name_.empty() ? std::string(type()) : name_; }

 protected:
  virtual void forward_cpu(ExecContext& ctx, const ForwardArgs& a) = 0;
  virtual void backward_cpu(ExecContext& ctx, const BackwardArgs& a) = 0;
  virtual void forward_cuda(ExecContext& ctx, const ForwardArgs& a);   // default: throws
  virtual void backward_cuda(ExecContext& ctx, const BackwardArgs& a);  // default: throws

 private:
  std::string name_;
  void check_common(ExecContext& ctx, const std::vector<Tensor>& x, const char* phase) const;
  void check_input(const std::string& who, int i, const Tensor& t, ExecContext& ctx, DType dt) const;
};

// CPU-only builds: a layer's .cpp ends with CS_STUB_CUDA(Relu) under #ifndef CLIMSEG_HAVE_CUDA so its CUDA entry
// points exist and throw a clear error (Caffe's STUB_GPU). In CUDA builds the .cu file defines them.
#define CS_STUB_CUDA(Cls)                                                                                 \
  void Cls::forward_cuda(ExecContext&, const ForwardArgs&) {                                             \
    CS_THROW(#Cls ": this climseg was built without CUDA");                                               \
  }                                                                                                       \
  void Cls::backward_cuda(ExecContext&, const BackwardArgs&) {                                           \
    CS_THROW(#Cls ": this climseg was built without CUDA");                                               \
  }

std::vector<Shape> shapes_of(const std::vector<Tensor>& ts);

}  // namespace climseg
