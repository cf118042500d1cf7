// Net: a static graph built once per input shape (engine.md section 3, STYLE.md B).
//
//   Net net;
//   auto x = net.input("x", {N, H, W, 16});
//   auto h = net.add("conv1", std::make_unique<PointwiseConv>(32), {x});
//   auto r = net.add("relu1", std::make_unique<Relu>(), {h});
//   net.compile({.device = Device::cpu, .dtype = DType::f32});
//   net.init_params(seed);
//   net.input_tensor(x).copy_from(batch);  net.forward(ctx);  /* loss, fill net.output_grad() */  net.backward(ctx);
//
// compile() infers shapes, gathers parameters into one flat buffer (and gradients into another), computes live
// ranges on the step timeline (forward of node i at t = i, the loss at t = L, backward of node i at t = 2L - i),
// asks the planner (engine/memory_plan.h) for offsets in one arena per net, and binds every activation, gradient,
// saved state and workspace as a view into it. Concatenations are zero-copy: producers write into channel slices of
// the concat buffer, and their gradients are the matching slices of the concat's gradient. Layers that allow it
// run in place when liveness permits. Forward runs nodes in order; backward in reverse, asking the first consumer
// of a fanned-out tensor (in backward order) to overwrite its gradient and the others to accumulate.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/layer.h"
#include "engine/memory_plan.h"

namespace climseg {

struct NetOptions {
  Device device = Device::cpu;
  DType dtype = DType::f32;
  bool training = true;           // false: no gradients, no saved state kept for backward
  bool input_grads = false;       // also compute gradients for graph inputs
  bool zero_copy_concat = true;   // producers write into concat slices
  bool in_place = true;           // let in_place_ok() layers share memory with their input
  size_t align = 256;             // byte alignment of every planned buffer
  // Plan only (`climseg plan`): infer shapes, list parameters and plan memory, but allocate nothing (no arena, no
  // parameter buffers), so a full-size network can be planned on any machine. Such a net cannot run.
  bool plan_only = false;
  // CPU only, with dtype f32: emulate 16-bit storage (f16 or bf16) with fp32 maths, as tensor cores compute.
  // Every activation a layer writes (graph inputs included, the loss node's scalar excepted: the loss stays fp32),
  // every input gradient and every parameter gradient is rounded to the nearest `emulate_storage` value (ties to
  // even; overflow to inf, as the real conversion) right after it is written, so values, overflow and underflow
  // follow real 16-bit storage. Parameters are the caller's to keep rounded (the optimizer writes its model copy
  // rounded). f32 (default): off. Used by `climseg train --precision fp16|bf16` on the CPU.
  DType emulate_storage = DType::f32;
  // Inference only (training false): plan every foldable chain "convolution -> per-channel maps" (batch norm with
  // running statistics, affine, scale, ReLU; Layer::inference_affine) so that the convolution writes straight into
  // the chain's output and the maps run in place on it. Results are the same as without; fold_batchnorm() can then
  // fold the maps into the convolution and skip them. Off: every tensor gets its own request, as in training.
  bool fold = true;
};

struct NetStats {
  int concat_inputs_aliased = 0;  // concat inputs written in place by their producers (no copy)
  int concat_inputs_copied = 0;   // concat inputs that had to be copied
  int concat_grads_aliased = 0;   // concat input gradients that are slices of the concat's gradient
  int views = 0;                  // channel-slice outputs bound as views of their input (no copy)
  int in_place_granted = 0;       // forward and backward in-place merges granted by the planner
  int fold_chains = 0;            // convolution -> per-channel map chains planned for folding (NetOptions::fold)
  int fold_maps = 0;              // per-channel map nodes in those chains
};

class Net {
 public:
  using Id = int;

  Net() = default;
  Net(const Net&) = delete;
  Net& operator=(const Net&) = delete;

  // ---- building ----
  // A graph input. `dtype`: unset for values (the net's compute dtype, chosen at compile), or an integer type for
  // class indices (labels: i32, i64, u8), which get no gradient.
  Id input(std::string name, Shape shape, std::optional<DType> dtype = std::nullopt);
  Id add(std::string name, std::unique_ptr<Layer> layer, std::vector<Id> inputs);
  void set_output(Id t);  // default: the last tensor added
  void compile(const NetOptions& opt);

  // ---- after compile ----
  const NetOptions& options() const { return opt_; }
  Shape shape(Id t) const;
  Tensor input_tensor(Id t) const;  // fill before forward()
  Tensor output() const;            // valid after forward()
  Tensor output_grad() const;       // fill with dLoss/dOutput before backward()
  Tensor input_grad(Id t) const;    // after backward(), with input_grads
  Tensor activation(Id t) const;    // any tensor's view (only meaningful while it is live)
  // The saved state (Layer::memory_needs().saved_bytes, u8) of the node that produces `t`, as the last forward left
  // it: the loss node's metrics (SoftmaxXent::read_metrics). Meaningful until the planner reuses its memory, which
  // for the net's last node is never before the next forward.
  Tensor saved(Id t) const;

  // Parameters and layer state (batch-norm running statistics) from their specs' Init; deterministic (Philox),
  // independent of the device.
  void init_params(uint64_t seed);
  // Step counter for layers with randomness (dropout masks come from (layer seed, step)). forward() in training
  // uses it, then advances it by one; set it when resuming.
  void set_step(uint64_t step) { step_ = step; }
  uint64_t step() const { return step_; }
  void forward(ExecContext& ctx);

  // ---- inference folding (docs/inference.md) ----
  // For a net compiled with training false and fold true, after its parameters and state are final (loaded or
  // initialised): folds each planned chain conv -> [batch norm | affine | scale]* -> [ReLU] into the convolution,
  //   w' = w * s[k],  b' = b * s[k] + t[k]     (s, t: the chain's composed per-channel scale and shift, in double)
  // and its residual add and ReLU into the convolution's epilogue (engine/layer.h Epilogue); forward() then skips
  // the folded maps. The folded weights and biases live in a buffer of their own: params(), param_buffer() and
  // state() keep the loaded values, so saving weights or exporting still writes the originals. Call it again after
  // changing parameters or state (it refolds from them); init_params() drops the fold. Returns the number of map
  // nodes that forward() now skips. Throws for a training net.
  int fold_batchnorm();
  void unfold();                                 // back to running every node with the original parameters
  bool folded() const { return folded_; }
  // after_node (optional) is called after each node's backward, in backward order, with the node index: from then
  // on that node's parameter gradients (params() with .node == node) are final for this step, which lets gradient
  // buckets start their allreduce while backward goes on.
  void backward(ExecContext& ctx, GradMode param_mode = GradMode::overwrite,
                const std::function<void(int node)>& after_node = {});

  struct Param {
    std::string name;  // "<node>.<param>"
    ParamSpec spec;
    Tensor value, grad;
    int64_t offset = 0;  // elements into the flat buffers
    int node = -1;       // the node (layer) it belongs to: layer(node).type() and .name()
  };
  const std::vector<Param>& params() const { return params_; }
  Tensor param_buffer() const { return param_buf_; }  // flat (1,1,1,n), padded between tensors
  // Non-trainable layer state (Layer::state_specs: batch-norm running mean/var): no gradients, not optimised;
  // dtype stat_dtype(net dtype). Checkpoints save it; distributed training averages it before validation.
  const std::vector<Param>& state() const { return state_; }
  Tensor state_buffer() const { return state_buf_; }
  Tensor grad_buffer() const { return grad_buf_; }
  int64_t num_params() const;  // trainable elements (without padding)

  const MemoryPlan& memory_plan() const { return plan_; }
  const NetStats& stats() const { return stats_; }
  std::string summary() const;  // per node: name, type, output shape, parameters, GFLOP; then the memory report
  // The FLOPs of every layer's forward_cost, and of forward_cost + backward_cost (a training step without the
  // optimizer), in the compiled dtype: the model FLOPs that benchmarks divide by time.
  double forward_flops() const;
  double training_flops() const;
  int num_nodes() const { return static_cast<int>(nodes_.size()); }
  Layer& layer(int node) { return *nodes_.at(node).layer; }
  const Layer& layer(int node) const { return *nodes_.at(node).layer; }
  std::vector<Shape> node_input_shapes(int node) const;

 private:
  struct Node {
    std::string name;
    std::unique_ptr<Layer> layer;
    std::vector<Id> inputs;
    Id output = -1;
    std::vector<int> param_index;  // into params_
    std::vector<int> state_index;  // into state_
    int saved_req = -1, fws_req = -1, bws_req = -1;
    std::vector<GradMode> dx_mode;
    int fold_chain = -1;      // index into chains_: the chain's convolution
    bool fold_member = false;  // a per-channel map of a chain (skipped by forward() once folded)
  };
  // A convolution and the per-channel maps that follow it (NetOptions::fold).
  struct FoldChain {
    int conv = -1;
    std::vector<int> maps;  // node indices, in order
    Id residual = -1;       // the last map's residual input, if any
    bool relu = false;      // the last map ends in a ReLU
    Tensor weight, bias;    // folded values (views of fold_buf_), set by fold_batchnorm()
  };
  struct TensorInfo {
    std::string name;
    Shape shape;
    std::optional<DType> dtype;  // set for index inputs; otherwise the net's dtype
    int producer = -1;  // node index, -1 for graph inputs
    std::vector<int> consumers;
    bool requires_grad = false;
    int act_req = -1, grad_req = -1;
    int view_of = -1;  // tensor id this tensor is a channel view of (Layer::view_channel_offset)
    int fold_into = -1;  // tensor id of its fold chain's output, which this tensor shares memory with (NetOptions::fold)
  int64_t view_channel = 0;
  int alias_concat = -1;  // tensor id of the concat output this tensor is a slice of
    int64_t alias_channel = 0;
    bool grad_aliased = false;
    Tensor act, grad;
  };

  bool compiled_ = false;
  NetOptions opt_;
  std::vector<Node> nodes_;
  std::vector<TensorInfo> tensors_;
  Id output_ = -1;
  std::vector<Param> params_, state_;
  Tensor param_buf_, grad_buf_, state_buf_;
  uint64_t step_ = 0;
  std::vector<MemRequest> requests_;
  MemoryPlan plan_;
  Tensor arena_;
  NetStats stats_;
  std::vector<FoldChain> chains_;
  bool folded_ = false;
  Tensor fold_buf_;

  void check_compiled(const char* what, bool needs_memory = true) const;
  std::string where(const Node& n, const char* pass) const;  // error prefix naming a node, its shapes and dtype
  Tensor request_view(int req, Shape s, DType dt) const;
  DType dtype_of(const TensorInfo& t) const { return t.dtype.value_or(opt_.dtype); }
};

}  // namespace climseg
