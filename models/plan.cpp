#include "models/plan.h"

#include <cstdio>
#include <sstream>

#include "engine/check.h"

namespace climseg {

namespace {

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return v < 0 ? "-" + s : s;
}

std::string gib(size_t b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f GiB", static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

int optimizer_slots(const std::string& opt) {
  if (opt == "none") return 0;
  if (opt == "sgd") return 1;
  if (opt == "adam" || opt == "adamw" || opt == "lamb") return 2;
  CS_THROW("unknown optimizer '", opt, "' for the plan (none, sgd, adam, adamw, lamb)");
}

}  // namespace

ModelPlan plan_model(const ModelConfig& m, const PlanOptions& o) {
  CS_CHECK(o.dtype == DType::f32 || o.dtype == DType::f16 || o.dtype == DType::bf16 || o.dtype == DType::f64,
           "plan: --dtype must be a floating-point type, got ", dtype_name(o.dtype));
  const int slots = optimizer_slots(o.optimizer);
  Net net;
  ModelGraph g = build_model(net, m, o.batch, o.height, o.width);
  if (o.training) add_loss(net, g, reference_loss(m));
  NetOptions no;
  no.device = o.device;
  no.dtype = o.dtype;
  no.training = o.training;
  no.plan_only = true;
  net.compile(no);

  ModelPlan p;
  std::vector<int64_t> node_params(static_cast<size_t>(net.num_nodes()), 0);
  for (int k = 0; k < net.num_nodes(); ++k) {
    Layer& l = net.layer(k);
    PlanLayer pl;
    pl.name = l.name();
    pl.op = l.type();
    std::vector<Shape> in = net.node_input_shapes(k);
    pl.output = l.output_shape(in);
    for (const ParamSpec& s : l.param_specs(in)) pl.params += s.shape.numel();
    pl.fwd_flops = l.forward_cost(in, o.dtype).flops;
    pl.convolution = l.is_convolution();
    if (pl.convolution) p.conv_fwd_flops += pl.fwd_flops;
    p.all_fwd_flops += pl.fwd_flops;
    p.layers.push_back(std::move(pl));
  }
  p.trainable_params = net.num_params();
  for (const Net::Param& s : net.state()) p.state_elements += s.spec.shape.numel();
  p.train_tflop_per_sample = 3.0 * p.conv_fwd_flops / static_cast<double>(o.batch) / 1e12;
  p.memory = net.memory_plan();
  const size_t es = dtype_size(o.dtype), n = static_cast<size_t>(p.trainable_params);
  p.param_bytes = n * es;
  p.grad_bytes = o.training ? n * es : 0;
  const bool low_precision = o.dtype == DType::f16 || o.dtype == DType::bf16;
  p.master_bytes = o.training && low_precision ? n * 4 : 0;  // fp32 master weights
  p.optimizer_bytes = o.training ? n * 4 * static_cast<size_t>(slots) : 0;
  p.state_bytes = static_cast<size_t>(p.state_elements) * dtype_size(stat_dtype(o.dtype));
  const NetStats& st = net.stats();
  p.concat_inputs_aliased = st.concat_inputs_aliased;
  p.concat_inputs_copied = st.concat_inputs_copied;
  p.concat_grads_aliased = st.concat_grads_aliased;
  p.views = st.views;
  p.inplace = st.in_place_granted;
  return p;
}

std::string format_plan(const ModelConfig& m, const PlanOptions& o, const ModelPlan& p, bool summary_only) {
  std::ostringstream os;
  char line[512];
  std::snprintf(line, sizeof line, "climseg plan: %s (norm %s%s%s, width x%g), input %lldx%lldx%lldx%lld, %s, %s, %s\n",
                m.name.c_str(), norm_name(m.norm), m.name == "deeplabv3plus" ? ", decoder " : "",
                m.name == "deeplabv3plus" ? decoder_name(m.decoder) : "", m.width, static_cast<long long>(o.batch),
                static_cast<long long>(o.height), static_cast<long long>(o.width),
                static_cast<long long>(m.in_channels), dtype_name(o.dtype), device_name(o.device),
                o.training ? "training step" : "inference");
  os << line;
  if (!summary_only) {
    std::snprintf(line, sizeof line, "%-44s %-16s %-22s %12s %12s\n", "layer", "op", "output (N,H,W,C)", "params",
                  "fwd GFLOP");
    os << line;
    for (const PlanLayer& l : p.layers) {
      std::snprintf(line, sizeof line, "%-44s %-16s %-22s %12s %12.3f\n", l.name.c_str(), l.op.c_str(),
                    l.output.str().c_str(), with_commas(l.params).c_str(), l.fwd_flops / 1e9);
      os << line;
    }
  }
  os << "layers: " << p.layers.size() << "\n";
  os << "trainable parameters: " << with_commas(p.trainable_params);
  if (m.name == "deeplabv3plus" && m.norm == NormMode::batchnorm) {
    // resnet_v2 builds a post-norm after block4 that the ASPP never reads (it uses end_points['block4']).
    const int64_t post = 2 * 4 * std::max<int64_t>(1, static_cast<int64_t>(512 * m.width + 0.5));
    os << " (without the 2018 code's unused final batch norm; with it: " << with_commas(p.trainable_params + post)
       << ")";
  }
  os << "\n";
  os << "non-trainable state (batch-norm running statistics): " << with_commas(p.state_elements) << " values\n";
  std::snprintf(line, sizeof line,
                "training TFLOP per sample: %.3f (3 x forward convolutions and deconvolutions, 2 FLOP per "
                "multiply-add, as the 2018 work counted)\n",
                p.train_tflop_per_sample);
  os << line;
  std::snprintf(line, sizeof line, "forward GFLOP per sample: %.2f convolutions, %.2f all layers\n",
                p.conv_fwd_flops / static_cast<double>(o.batch) / 1e9,
                p.all_fwd_flops / static_cast<double>(o.batch) / 1e9);
  os << line;

  const MemoryPlan& mp = p.memory;
  os << "memory (" << dtype_name(o.dtype) << ", batch " << o.batch << ", " << (o.training ? "training" : "inference")
     << "):\n";
  auto kind = [&](MemKind k) { return mp.live_at_peak_by_kind[static_cast<size_t>(k)]; };
  std::snprintf(line, sizeof line, "  planned arena (activations, gradients, saved state, workspace): %s\n",
                gib(mp.arena_bytes).c_str());
  os << line;
  std::snprintf(line, sizeof line, "    live at the peak step: activations %s, gradients %s, saved %s, workspace %s\n",
                gib(kind(MemKind::activation)).c_str(), gib(kind(MemKind::gradient)).c_str(),
                gib(kind(MemKind::saved)).c_str(), gib(kind(MemKind::workspace)).c_str());
  os << line;
  std::snprintf(line, sizeof line, "  lower bound (most bytes live at one step): %s; planned / lower bound = %.3f\n",
                gib(mp.lower_bound).c_str(),
                static_cast<double>(mp.arena_bytes) / static_cast<double>(std::max<size_t>(mp.lower_bound, 1)));
  os << line;
  std::snprintf(line, sizeof line, "  without reuse (every buffer separate): %s; planned / no reuse = %.3f\n",
                gib(mp.no_reuse_bytes).c_str(),
                static_cast<double>(mp.arena_bytes) / static_cast<double>(std::max<size_t>(mp.no_reuse_bytes, 1)));
  os << line;
  std::snprintf(line, sizeof line,
                "  parameters %s, gradients %s, fp32 master weights %s, optimizer state (%s, fp32) %s, batch-norm "
                "statistics %s\n",
                gib(p.param_bytes).c_str(), gib(p.grad_bytes).c_str(), gib(p.master_bytes).c_str(), o.optimizer.c_str(),
                gib(p.optimizer_bytes).c_str(), gib(p.state_bytes).c_str());
  os << line;
  const size_t total =
      mp.arena_bytes + p.param_bytes + p.grad_bytes + p.master_bytes + p.optimizer_bytes + p.state_bytes;
  os << "  total: " << gib(total) << "\n";
  std::snprintf(line, sizeof line,
                "  concatenations: %d inputs written in place, %d copied; %d gradients aliased; %d channel views; %d "
                "in-place merges\n",
                p.concat_inputs_aliased, p.concat_inputs_copied, p.concat_grads_aliased, p.views, p.inplace);
  os << line;
  return os.str();
}

}  // namespace climseg
