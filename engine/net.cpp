#include "engine/net.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string_view>

#include "engine/philox.h"

namespace climseg {

Net::Id Net::input(std::string name, Shape shape, std::optional<DType> dtype) {
  CS_CHECK(!compiled_, "Net::input(", name, ") after compile()");
  CS_CHECK(shape.numel() > 0, "Net input ", name, " has an empty shape ", shape.str());
  CS_CHECK(!dtype || *dtype == DType::i32 || *dtype == DType::i64 || *dtype == DType::u8, "Net input ", name,
           ": an explicit dtype is for class indices (i32, i64, u8); value inputs take the net's dtype");
  TensorInfo t;
  t.name = std::move(name);
  t.shape = shape;
  t.dtype = dtype;
  tensors_.push_back(std::move(t));
  output_ = static_cast<Id>(tensors_.size()) - 1;
  return output_;
}

Net::Id Net::add(std::string name, std::unique_ptr<Layer> layer, std::vector<Id> inputs) {
  CS_CHECK(!compiled_, "Net::add(", name, ") after compile()");
  CS_CHECK(layer != nullptr, "Net::add(", name, "): null layer");
  for (Id i : inputs)
    CS_CHECK(i >= 0 && i < static_cast<Id>(tensors_.size()), "Net::add(", name, "): unknown input tensor id ", i);
  for (const Node& n : nodes_) CS_CHECK(n.name != name, "Net::add: duplicate node name '", name, "'");
  Node n;
  n.name = name;
  layer->set_name(name);
  n.layer = std::move(layer);
  n.inputs = std::move(inputs);
  std::vector<Shape> in;
  for (Id i : n.inputs) in.push_back(tensors_[i].shape);
  int want = n.layer->num_inputs();
  CS_CHECK(want < 0 ? !in.empty() : static_cast<int>(in.size()) == want, name, " (", n.layer->type(), "): expected ",
           want, " inputs, got ", in.size());
  TensorInfo t;
  t.name = name;
  t.shape = n.layer->output_shape(in);  // throws a clear error for bad shapes now, not at compile
  t.producer = static_cast<int>(nodes_.size());
  tensors_.push_back(std::move(t));
  n.output = static_cast<Id>(tensors_.size()) - 1;
  nodes_.push_back(std::move(n));
  output_ = nodes_.back().output;
  return output_;
}

void Net::set_output(Id t) {
  CS_CHECK(t >= 0 && t < static_cast<Id>(tensors_.size()), "Net::set_output: unknown tensor id ", t);
  output_ = t;
}

void Net::check_compiled(const char* what, bool needs_memory) const {
  CS_CHECK(compiled_, "Net::", what, " before compile()");
  CS_CHECK(!needs_memory || !opt_.plan_only, "Net::", what, " on a net compiled with plan_only (nothing allocated)");
}

Tensor Net::request_view(int req, Shape s, DType dt) const {
  char* base = static_cast<char*>(arena_.data());
  return Tensor::wrap(base + plan_.offsets[static_cast<size_t>(req)], s, dt, opt_.device, arena_.buffer());
}

void Net::compile(const NetOptions& opt) {
  CS_CHECK(!compiled_, "Net::compile() called twice (a Net is built once per input shape)");
  CS_CHECK(!nodes_.empty(), "Net::compile(): the net has no layers");
  CS_CHECK(dtype_is_float(opt.dtype), "Net::compile(): dtype must be a floating-point type, got ",
           dtype_name(opt.dtype));
  CS_CHECK(opt.emulate_storage == DType::f32 ||
               ((opt.emulate_storage == DType::f16 || opt.emulate_storage == DType::bf16) &&
                opt.device == Device::cpu && opt.dtype == DType::f32),
           "Net::compile(): emulate_storage ", dtype_name(opt.emulate_storage),
           " needs f16 or bf16 on a CPU net of dtype fp32 (CUDA nets store 16-bit values for real)");
  opt_ = opt;
  const int L = static_cast<int>(nodes_.size());
  const int T = static_cast<int>(tensors_.size());
  const size_t es = dtype_size(opt.dtype);
  auto fwd_t = [](int node) { return node; };
  auto bwd_t = [L](int node) { return 2 * L - node; };
  const int t_loss = L, t_end = 2 * L + 1;

  for (int k = 0; k < L; ++k) {
    Node& n = nodes_[k];
    // A plan describes memory for a (device, dtype) pair and can be made where that pair cannot run (fp16 on a
    // CPU-only machine), so plan_only skips the capability check.
    CS_CHECK(opt.plan_only || n.layer->supports(opt.device, opt.dtype), n.name, " (", n.layer->type(), ") has no ",
             device_name(opt.device), " path for ", dtype_name(opt.dtype));
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      const TensorInfo& ti = tensors_[n.inputs[j]];
      bool want_index = n.layer->input_is_index(static_cast<int>(j));
      CS_CHECK(want_index == ti.dtype.has_value(), n.name, " (", n.layer->type(), "): input ", j, " ('", ti.name,
               want_index ? "') must be a class-index input (Net::input with an integer dtype)"
                          : "') holds class indices but the layer expects values");
      tensors_[n.inputs[j]].consumers.push_back(k);
    }
  }
  for (int t = 0; t < T; ++t) {
    const TensorInfo& ti = tensors_[t];
    CS_CHECK(t == output_ || !ti.consumers.empty(), "tensor '", ti.name,
             "' is never used (only the net output may have no consumer)");
  }

  // ---- parameters: one flat buffer, each tensor aligned to opt.align bytes --------------------------------------
  int64_t total = 0;
  const int64_t align_elems = std::max<int64_t>(1, static_cast<int64_t>(opt.align / es));
  for (int k = 0; k < L; ++k) {
    Node& n = nodes_[k];
    std::vector<Shape> in;
    for (Id i : n.inputs) in.push_back(tensors_[i].shape);
    for (const ParamSpec& s : n.layer->param_specs(in)) {
      Param p;
      p.name = n.name + "." + s.name;
      p.spec = s;
      p.offset = total;
      p.node = k;
      total += (s.shape.numel() + align_elems - 1) / align_elems * align_elems;
      n.param_index.push_back(static_cast<int>(params_.size()));
      params_.push_back(std::move(p));
    }
  }
  if (total > 0 && !opt.plan_only) {
    param_buf_ = Tensor::zeros(Shape{1, 1, 1, total}, opt.dtype, opt.device);
    if (opt.training) grad_buf_ = Tensor::zeros(Shape{1, 1, 1, total}, opt.dtype, opt.device);
    for (Param& p : params_) {
      char* pb = static_cast<char*>(param_buf_.data()) + static_cast<size_t>(p.offset) * es;
      p.value = Tensor::wrap(pb, p.spec.shape, opt.dtype, opt.device, param_buf_.buffer());
      if (opt.training) {
        char* gb = static_cast<char*>(grad_buf_.data()) + static_cast<size_t>(p.offset) * es;
        p.grad = Tensor::wrap(gb, p.spec.shape, opt.dtype, opt.device, grad_buf_.buffer());
      }
    }
  }

  // ---- layer state (running statistics): one more flat buffer, in the statistics dtype -----------------------
  {
    const DType sdt = stat_dtype(opt.dtype);
    const size_t ses = dtype_size(sdt);
    const int64_t salign = std::max<int64_t>(1, static_cast<int64_t>(opt.align / ses));
    int64_t stotal = 0;
    for (int k = 0; k < L; ++k) {
      Node& n = nodes_[k];
      std::vector<Shape> in;
      for (Id i : n.inputs) in.push_back(tensors_[i].shape);
      for (const ParamSpec& s : n.layer->state_specs(in)) {
        Param p;
        p.name = n.name + "." + s.name;
        p.spec = s;
        p.offset = stotal;
        p.node = k;
        stotal += (s.shape.numel() + salign - 1) / salign * salign;
        n.state_index.push_back(static_cast<int>(state_.size()));
        state_.push_back(std::move(p));
      }
    }
    if (stotal > 0 && !opt.plan_only) {
      state_buf_ = Tensor::zeros(Shape{1, 1, 1, stotal}, sdt, opt.device);
      for (Param& p : state_)
        p.value = Tensor::wrap(static_cast<char*>(state_buf_.data()) + static_cast<size_t>(p.offset) * ses,
                               p.spec.shape, sdt, opt.device, state_buf_.buffer());
    }
  }

  // ---- which tensors need gradients --------------------------------------------------------------------------
  if (opt.training) {
    for (int t = 0; t < T; ++t) {
      TensorInfo& ti = tensors_[t];
      if (ti.producer < 0) {
        ti.requires_grad = opt.input_grads && !ti.dtype;
      } else {
        const Node& n = nodes_[ti.producer];
        bool g = !n.param_index.empty();
        for (Id i : n.inputs) g = g || tensors_[i].requires_grad;
        ti.requires_grad = g;
      }
    }
  }

  // ---- zero-copy channel views (ChannelSlice): the output is bound as a slice of the input ---------------------
  if (opt.zero_copy_concat) {
    for (int k = 0; k < L; ++k) {
      const Node& n = nodes_[k];
      const int64_t off = n.layer->view_channel_offset();
      if (off < 0 || n.output == output_) continue;
      tensors_[n.output].view_of = n.inputs[0];
      tensors_[n.output].view_channel = off;
      stats_.views++;
    }
  }

  // ---- zero-copy concatenation: producers write into slices of the concat buffer ------------------------------
  if (opt.zero_copy_concat) {
    for (int k = 0; k < L; ++k) {
      const Node& n = nodes_[k];
      if (!n.layer->is_concat()) continue;
      int64_t c0 = 0;
      for (size_t j = 0; j < n.inputs.size(); ++j) {
        Id x = n.inputs[j];
        TensorInfo& xi = tensors_[x];
        bool once = std::count(n.inputs.begin(), n.inputs.end(), x) == 1;
        // A view cannot be written into a concat buffer: its memory is its input's.
        if (xi.producer >= 0 && once && xi.alias_concat < 0 && xi.view_of < 0 && x != output_) {
          xi.alias_concat = n.output;
          xi.alias_channel = c0;
          stats_.concat_inputs_aliased++;
          // The gradient can be the slice of the concat's gradient when the concat is the last consumer in
          // forward order: its backward runs first, so nobody has written this gradient yet.
          int last_consumer = *std::max_element(xi.consumers.begin(), xi.consumers.end());
          xi.grad_aliased = xi.requires_grad && tensors_[n.output].requires_grad && last_consumer == k;
          if (xi.grad_aliased) stats_.concat_grads_aliased++;
        } else {
          stats_.concat_inputs_copied++;
        }
        c0 += xi.shape.c;
      }
    }
  }

  // ---- inference folding: chains conv -> per-channel maps share the chain output's memory -----------------------
  // A map joins the chain when it is the only consumer of the previous tensor (as its input 0 only), is a
  // per-channel map at inference (Layer::inference_affine), and any residual it adds is computed before the
  // convolution (the epilogue adds it there). A map with a ReLU or a residual ends the chain (after those the
  // composition is no longer affine). The net output may end a chain but not sit inside one.
  chains_.clear();
  if (!opt.training && opt.fold) {
    for (int k = 0; k < L; ++k) {
      Node& cn = nodes_[k];
      if (!cn.layer->supports_epilogue() || cn.output == output_) continue;
      FoldChain ch;
      ch.conv = k;
      Id t = cn.output;
      while (t != output_ && tensors_[t].consumers.size() == 1) {
        const int f = tensors_[t].consumers[0];
        const Node& fn = nodes_[f];
        if (fn.inputs.empty() || fn.inputs[0] != t || tensors_[fn.output].view_of >= 0) break;
        if (std::count(fn.inputs.begin(), fn.inputs.end(), t) != 1 || fn.inputs.size() > 2) break;
        std::vector<Shape> in;
        for (Id i : fn.inputs) in.push_back(tensors_[i].shape);
        std::vector<std::vector<double>> pz, sz;
        for (const ParamSpec& s : fn.layer->param_specs(in)) pz.emplace_back(static_cast<size_t>(s.shape.numel()), 0.0);
        for (const ParamSpec& s : fn.layer->state_specs(in)) sz.emplace_back(static_cast<size_t>(s.shape.numel()), 1.0);
        ChannelAffine probe;
        if (!fn.layer->inference_affine(in, pz, sz, &probe)) break;
        if (probe.residual != (fn.inputs.size() == 2)) break;
        if (probe.residual && tensors_[fn.inputs[1]].producer >= k) break;
        ch.maps.push_back(f);
        t = fn.output;
        if (probe.residual) ch.residual = fn.inputs[1];
        ch.relu = probe.relu;
        if (probe.relu || probe.residual) break;
      }
      if (ch.maps.empty()) continue;
      // Every tensor of the chain but the last becomes a view of the last.
      for (Id u = cn.output; u != t; u = nodes_[tensors_[u].consumers[0]].output) tensors_[u].fold_into = t;
      cn.fold_chain = static_cast<int>(chains_.size());
      for (int f : ch.maps) nodes_[f].fold_member = true;
      stats_.fold_chains++;
      stats_.fold_maps += static_cast<int>(ch.maps.size());
      chains_.push_back(std::move(ch));
    }
  }

  // ---- live ranges ----------------------------------------------------------------------------------------------
  requests_.clear();
  auto add_req = [&](std::string name, size_t bytes, int first, int last, MemKind kind) {
    MemRequest r;
    r.name = std::move(name);
    r.bytes = bytes;
    r.align = opt.align;
    r.first = first;
    r.last = last;
    r.kind = kind;
    requests_.push_back(std::move(r));
    return static_cast<int>(requests_.size()) - 1;
  };
  // Activations. Created in tensor-id order, so a concat's output (added after its inputs) gets its request after
  // them; slices are linked to their parent below, once every request exists.
  for (int t = 0; t < T; ++t) {
    TensorInfo& ti = tensors_[t];
    int first = ti.producer < 0 ? 0 : fwd_t(ti.producer);
    int last = first;
    for (int c : ti.consumers) last = std::max(last, fwd_t(c));
    if (opt.training) {
      for (int c : ti.consumers) {
        const Node& cn = nodes_[c];
        if (!tensors_[cn.output].requires_grad) continue;
        for (size_t j = 0; j < cn.inputs.size(); ++j)
          if (cn.inputs[j] == t && cn.layer->backward_needs_input(static_cast<int>(j))) last = std::max(last, bwd_t(c));
      }
      if (ti.producer >= 0 && ti.requires_grad && nodes_[ti.producer].layer->backward_needs_output())
        last = std::max(last, bwd_t(ti.producer));
    }
    if (t == output_) last = std::max(last, opt.training ? t_loss : L - 1);
    // Graph inputs stay intact for the whole step (the caller may run forward again on the same batch, as
    // finite-difference checks and evaluation loops do): their memory is never reused within a step.
    if (ti.producer < 0) last = std::max(last, opt.training ? t_end : L - 1);
    ti.act_req = add_req(ti.name, static_cast<size_t>(ti.shape.numel()) * dtype_size(dtype_of(ti)), first, last,
                         MemKind::activation);
  }
  // Gradients, in reverse tensor order (the order backward produces them), so that an in-place candidate dy is
  // an earlier request than the dx that may take it over.
  if (opt.training) {
    for (int t = T - 1; t >= 0; --t) {
      TensorInfo& ti = tensors_[t];
      if (!ti.requires_grad) continue;
      int first, last;
      if (t == output_) {
        first = t_loss;
      } else {
        int last_consumer = *std::max_element(ti.consumers.begin(), ti.consumers.end());
        first = bwd_t(last_consumer);
      }
      last = ti.producer >= 0 ? bwd_t(ti.producer) : t_end;
      if (t == output_ && ti.producer < 0) last = t_end;
      ti.grad_req = add_req("d" + ti.name, static_cast<size_t>(ti.shape.numel()) * es, first, std::max(first, last),
                            MemKind::gradient);
    }
  }
  // Slices (concat members): the request covers the slice's byte span inside the parent.
  for (int t = 0; t < T; ++t) {
    TensorInfo& ti = tensors_[t];
    if (ti.alias_concat < 0) continue;
    const TensorInfo& pi = tensors_[ti.alias_concat];
    size_t span = (static_cast<size_t>(ti.shape.pixels() - 1) * static_cast<size_t>(pi.shape.c) +
                   static_cast<size_t>(ti.shape.c)) * es;
    MemRequest& a = requests_[ti.act_req];
    a.parent = pi.act_req;
    a.parent_offset = static_cast<size_t>(ti.alias_channel) * es;
    a.bytes = span;
    if (ti.grad_aliased) {
      MemRequest& g = requests_[ti.grad_req];
      g.parent = pi.grad_req;
      g.parent_offset = static_cast<size_t>(ti.alias_channel) * es;
      g.bytes = span;
    }
  }
  // Views: like concat members, a slice of their input's request (which the planner keeps alive as long as the
  // view is used); their gradients have requests of their own.
  for (int t = 0; t < T; ++t) {
    TensorInfo& ti = tensors_[t];
    if (ti.view_of < 0) continue;
    const TensorInfo& pi = tensors_[ti.view_of];
    const size_t ves = dtype_size(dtype_of(ti));
    MemRequest& a = requests_[ti.act_req];
    a.parent = pi.act_req;
    a.parent_offset = static_cast<size_t>(ti.view_channel) * ves;
    a.bytes = (static_cast<size_t>(ti.shape.pixels() - 1) * static_cast<size_t>(pi.shape.c) +
               static_cast<size_t>(ti.shape.c)) * ves;
  }
  // Fold chains: the convolution's output and the maps' intermediate outputs are slices at offset 0 of the chain
  // output's request (itself possibly a concat slice), so the planner keeps it alive from the convolution on.
  for (int t = 0; t < T; ++t) {
    TensorInfo& ti = tensors_[t];
    if (ti.fold_into < 0) continue;
    const MemRequest& root = requests_[tensors_[ti.fold_into].act_req];
    MemRequest& a = requests_[ti.act_req];
    a.parent = tensors_[ti.fold_into].act_req;
    a.parent_offset = 0;
    a.bytes = root.bytes;
  }
  // In place: output takes over input 0's memory (and dx[0] dy's) when the planner finds the lives adjacent.
  if (opt.in_place) {
    for (int k = 0; k < L; ++k) {
      const Node& n = nodes_[k];
      if (!n.layer->in_place_ok()) continue;
      const TensorInfo& xi = tensors_[n.inputs[0]];
      const TensorInfo& yi = tensors_[n.output];
      if (xi.producer < 0 || n.output == output_) continue;  // graph inputs and the net output stay untouched
      if (xi.fold_into >= 0 || yi.fold_into >= 0) continue;  // a fold chain shares one request already
      if (xi.alias_concat < 0 && yi.alias_concat < 0 && xi.view_of < 0 && yi.view_of < 0)
        requests_[yi.act_req].inplace_of = xi.act_req;
      if (xi.grad_req >= 0 && yi.grad_req >= 0 && !xi.grad_aliased && !yi.grad_aliased)
        requests_[xi.grad_req].inplace_of = yi.grad_req;
    }
  }
  // Saved state and workspaces.
  for (int k = 0; k < L; ++k) {
    Node& n = nodes_[k];
    std::vector<Shape> in;
    for (Id i : n.inputs) in.push_back(tensors_[i].shape);
    MemoryNeeds m = n.layer->memory_needs(in, opt.dtype);
    if (m.saved_bytes)
      n.saved_req = add_req(n.name + ".saved", m.saved_bytes, fwd_t(k), opt.training ? bwd_t(k) : fwd_t(k),
                            MemKind::saved);
    if (m.fwd_workspace) n.fws_req = add_req(n.name + ".ws_fwd", m.fwd_workspace, fwd_t(k), fwd_t(k), MemKind::workspace);
    if (m.bwd_workspace && opt.training)
      n.bws_req = add_req(n.name + ".ws_bwd", m.bwd_workspace, bwd_t(k), bwd_t(k), MemKind::workspace);
  }

  // ---- plan, verify, allocate, bind ---------------------------------------------------------------------------
  plan_ = plan_memory(requests_);
  verify_memory_plan(requests_, plan_);
  stats_.in_place_granted = plan_.inplace_merges;
  if (opt.plan_only) {
    compiled_ = true;
    return;
  }
  arena_ = Tensor::empty(Shape{1, 1, 1, static_cast<int64_t>(std::max<size_t>(plan_.arena_bytes, 1))}, DType::u8,
                         opt.device);
  // Parents before slices: a concat output has a larger id than its inputs, so bind in reverse id order... but a
  // concat output can itself be a slice of a later concat, so resolve recursively.
  std::vector<char> bound(static_cast<size_t>(T), 0);
  auto bind = [&](auto&& self, int t) -> void {
    if (bound[t]) return;
    TensorInfo& ti = tensors_[t];
    if (ti.fold_into >= 0) {
      self(self, ti.fold_into);
      ti.act = tensors_[ti.fold_into].act;
    } else if (ti.view_of >= 0) {
      self(self, ti.view_of);
      ti.act = tensors_[ti.view_of].act.channel_slice(ti.view_channel, ti.shape.c);
      if (ti.grad_req >= 0) ti.grad = request_view(ti.grad_req, ti.shape, opt_.dtype);
    } else if (ti.alias_concat >= 0) {
      self(self, ti.alias_concat);
      const TensorInfo& pi = tensors_[ti.alias_concat];
      ti.act = pi.act.channel_slice(ti.alias_channel, ti.shape.c);
      if (ti.grad_req >= 0)
        ti.grad = ti.grad_aliased ? pi.grad.channel_slice(ti.alias_channel, ti.shape.c)
                                  : request_view(ti.grad_req, ti.shape, opt_.dtype);
    } else {
      ti.act = request_view(ti.act_req, ti.shape, dtype_of(ti));
      if (ti.grad_req >= 0) ti.grad = request_view(ti.grad_req, ti.shape, opt_.dtype);
    }
    bound[t] = 1;
  };
  for (int t = 0; t < T; ++t) bind(bind, t);

  // Gradient modes: the first consumer in backward order overwrites, later ones accumulate.
  std::vector<char> started(static_cast<size_t>(T), 0);
  for (int k = L - 1; k >= 0; --k) {
    Node& n = nodes_[k];
    n.dx_mode.assign(n.inputs.size(), GradMode::overwrite);
    if (!tensors_[n.output].requires_grad) continue;
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      Id x = n.inputs[j];
      if (!tensors_[x].requires_grad) continue;
      n.dx_mode[j] = started[x] ? GradMode::accumulate : GradMode::overwrite;
      started[x] = 1;
    }
  }
  compiled_ = true;
}

Shape Net::shape(Id t) const {
  CS_CHECK(t >= 0 && t < static_cast<Id>(tensors_.size()), "unknown tensor id ", t);
  return tensors_[t].shape;
}

Tensor Net::input_tensor(Id t) const {
  check_compiled("input_tensor");
  CS_CHECK(t >= 0 && t < static_cast<Id>(tensors_.size()) && tensors_[t].producer < 0, "tensor ", t,
           " is not a graph input");
  return tensors_[t].act;
}
Tensor Net::output() const {
  check_compiled("output");
  return tensors_[output_].act;
}
Tensor Net::output_grad() const {
  check_compiled("output_grad");
  CS_CHECK(opt_.training, "output_grad() of a net compiled for inference");
  CS_CHECK(tensors_[output_].requires_grad, "the net output needs no gradient (no parameters and no input_grads)");
  return tensors_[output_].grad;
}
Tensor Net::input_grad(Id t) const {
  check_compiled("input_grad");
  CS_CHECK(t >= 0 && t < static_cast<Id>(tensors_.size()) && tensors_[t].producer < 0, "tensor ", t,
           " is not a graph input");
  CS_CHECK(tensors_[t].grad.defined(), "input gradients were not requested (NetOptions::input_grads)");
  return tensors_[t].grad;
}
Tensor Net::saved(Id t) const {
  check_compiled("saved");
  CS_CHECK(t >= 0 && t < static_cast<Id>(tensors_.size()), "unknown tensor id ", t);
  const int k = tensors_[t].producer;
  CS_CHECK(k >= 0, "Net::saved(): ", tensors_[t].name, " is a graph input");
  const Node& n = nodes_[k];
  CS_CHECK(n.saved_req >= 0, "Net::saved(): ", n.name, " (", n.layer->type(), ") keeps no saved state");
  return Tensor::wrap(static_cast<char*>(arena_.data()) + plan_.offsets[n.saved_req],
                      Shape{1, 1, 1, static_cast<int64_t>(requests_[n.saved_req].bytes)}, DType::u8, opt_.device,
                      arena_.buffer());
}

namespace {
// NetOptions::emulate_storage: round a float tensor (any pixel-strided view) to 16-bit values in place.
void round_storage(const Tensor& t, DType storage) {
  if (!t.defined() || t.numel() == 0) return;
  round_to_storage(t.shape().pixels(), t.shape().c, t.data_as<float>(), t.pixel_stride(), storage == DType::bf16);
}
}  // namespace

Tensor Net::activation(Id t) const {
  check_compiled("activation");
  CS_CHECK(t >= 0 && t < static_cast<Id>(tensors_.size()), "unknown tensor id ", t);
  return tensors_[t].act;
}

int64_t Net::num_params() const {
  int64_t n = 0;
  for (const Param& p : params_) n += p.spec.shape.numel();
  return n;
}

namespace {
// Fills a flat buffer's tensors from their specs' Init. `stream0` separates parameters from state in Philox.
void init_flat(const std::vector<Net::Param>& ps, const Tensor& buf, uint64_t seed, uint64_t stream0) {
  if (ps.empty()) return;
  Tensor host = Tensor::zeros(buf.shape(), buf.dtype(), Device::cpu);
  for (size_t i = 0; i < ps.size(); ++i) {
    const Net::Param& p = ps[i];
    const int64_t n = p.spec.shape.numel();
    const double fan_in = static_cast<double>(std::max<int64_t>(1, p.spec.fan_in));
    const uint64_t stream = stream0 + i;
    for (int64_t j = 0; j < n; ++j) {
      double v = 0;
      switch (p.spec.init) {
        case Init::zeros: v = 0; break;
        case Init::ones: v = 1; break;
        case Init::he_normal: {  // Box-Muller on two Philox uniforms (computed on the host: device-independent)
          Philox4 r = philox_block(seed, stream, static_cast<uint64_t>(j));
          double u1 = (static_cast<double>(r.v[0]) + 1.0) / 4294967296.0;
          double u2 = static_cast<double>(r.v[1]) / 4294967296.0;
          v = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2) * std::sqrt(2.0 / fan_in);
          break;
        }
        case Init::uniform_fan_in:
          v = (2.0 * philox_uniform(seed, stream, static_cast<uint64_t>(j)) - 1.0) / std::sqrt(fan_in);
          break;
      }
      host.set_flat(p.offset + j, v);
    }
  }
  buf.copy_from(host);
}
}  // namespace

void Net::init_params(uint64_t seed) {
  check_compiled("init_params");
  init_flat(params_, param_buf_, seed, 0);
  init_flat(state_, state_buf_, seed, uint64_t(1) << 32);
  unfold();  // folded values of the old parameters would be stale
}

void Net::unfold() {
  folded_ = false;
  fold_buf_ = Tensor();
  for (FoldChain& ch : chains_) ch.weight = ch.bias = Tensor();
}

int Net::fold_batchnorm() {
  check_compiled("fold_batchnorm");
  CS_CHECK(!opt_.training, "Net::fold_batchnorm(): folding is for inference nets (NetOptions::training false); a "
                           "training net must keep its batch norms");
  unfold();
  if (chains_.empty()) return 0;
  const DType dt = opt_.dtype;
  const size_t es = dtype_size(dt);
  const int64_t align_elems = std::max<int64_t>(1, static_cast<int64_t>(opt_.align / es));
  auto padded = [&](int64_t n) { return (n + align_elems - 1) / align_elems * align_elems; };
  // Host copies of the parameters and state, read in double.
  const Tensor ph = param_buf_.to(Device::cpu);
  const Tensor sh = state_buf_.defined() ? state_buf_.to(Device::cpu) : Tensor();
  auto read = [](const Tensor& host, const Param& p) {
    std::vector<double> v(static_cast<size_t>(p.spec.shape.numel()));
    for (size_t j = 0; j < v.size(); ++j) v[j] = host.get_flat(p.offset + static_cast<int64_t>(j));
    return v;
  };
  int64_t total = 0;
  for (const FoldChain& ch : chains_) {
    const Node& cn = nodes_[ch.conv];
    total += padded(params_[cn.param_index.at(0)].spec.shape.numel()) + padded(tensors_[cn.output].shape.c);
  }
  Tensor fh = Tensor::zeros(Shape{1, 1, 1, total}, dt, Device::cpu);
  std::vector<int64_t> offsets;
  int64_t off = 0, skipped = 0;
  for (const FoldChain& ch : chains_) {
    const Node& cn = nodes_[ch.conv];
    const int64_t K = tensors_[cn.output].shape.c;
    // Composed map: y = s * conv_nobias(x) + t, starting from the convolution's own bias.
    std::vector<double> s(static_cast<size_t>(K), 1.0), t(static_cast<size_t>(K), 0.0);
    if (cn.param_index.size() > 1) t = read(ph, params_[cn.param_index[1]]);
    for (int f : ch.maps) {
      const Node& fn = nodes_[f];
      std::vector<std::vector<double>> pv, sv;
      for (int pi : fn.param_index) pv.push_back(read(ph, params_[pi]));
      for (int si : fn.state_index) sv.push_back(read(sh, state_[si]));
      ChannelAffine a;
      CS_CHECK(fn.layer->inference_affine(node_input_shapes(f), pv, sv, &a) &&
                   a.scale.size() == static_cast<size_t>(K) && a.shift.size() == static_cast<size_t>(K),
               "Net::fold_batchnorm(): node '", fn.name, "' (", fn.layer->type(), ") is no longer foldable");
      for (size_t c = 0; c < s.size(); ++c) {
        s[c] *= a.scale[c];
        t[c] = t[c] * a.scale[c] + a.shift[c];
      }
      ++skipped;
    }
    const Param& wp = params_[cn.param_index.at(0)];
    std::vector<double> w = read(ph, wp);
    cn.layer->scale_output_channels(node_input_shapes(ch.conv), w.data(), s.data());
    for (size_t j = 0; j < w.size(); ++j) fh.set_flat(off + static_cast<int64_t>(j), w[j]);
    const int64_t boff = off + padded(wp.spec.shape.numel());
    for (int64_t c = 0; c < K; ++c) fh.set_flat(boff + c, t[static_cast<size_t>(c)]);
    offsets.push_back(off);
    off = boff + padded(K);
  }
  fold_buf_ = fh.to(opt_.device);
  for (size_t i = 0; i < chains_.size(); ++i) {
    FoldChain& ch = chains_[i];
    const Node& cn = nodes_[ch.conv];
    const Shape ws = params_[cn.param_index.at(0)].spec.shape;
    const int64_t K = tensors_[cn.output].shape.c;
    char* base = static_cast<char*>(fold_buf_.data());
    ch.weight = Tensor::wrap(base + static_cast<size_t>(offsets[i]) * es, ws, dt, opt_.device, fold_buf_.buffer());
    ch.bias = Tensor::wrap(base + static_cast<size_t>(offsets[i] + padded(ws.numel())) * es, Shape{1, 1, 1, K}, dt,
                           opt_.device, fold_buf_.buffer());
  }
  folded_ = true;
  return static_cast<int>(skipped);
}

void Net::forward(ExecContext& ctx) {
  check_compiled("forward");
  CS_CHECK(ctx.device() == opt_.device, "Net compiled for ", device_name(opt_.device), " run on a ",
           device_name(ctx.device()), " context");
  const bool emulate = opt_.emulate_storage != DType::f32;
  if (emulate)
    for (const TensorInfo& ti : tensors_)
      if (ti.producer < 0 && !ti.dtype) round_storage(ti.act, opt_.emulate_storage);
  for (size_t k = 0; k < nodes_.size(); ++k) {
    Node& n = nodes_[k];
    if (folded_ && n.fold_member) continue;  // folded into its chain's convolution
    ForwardArgs a;
    for (Id i : n.inputs) a.x.push_back(tensors_[i].act);
    a.y = tensors_[n.output].act;
    for (int pi : n.param_index) a.params.push_back(params_[pi].value);
    if (folded_ && n.fold_chain >= 0) {
      const FoldChain& ch = chains_[static_cast<size_t>(n.fold_chain)];
      a.params[0] = ch.weight;
      a.epilogue.bias = ch.bias;
      if (ch.residual >= 0) a.epilogue.residual = tensors_[ch.residual].act;
      a.epilogue.relu = ch.relu;
    }
    for (int si : n.state_index) a.state.push_back(state_[si].value);
    a.step = step_;
    if (n.saved_req >= 0) a.saved = Tensor::wrap(static_cast<char*>(arena_.data()) + plan_.offsets[n.saved_req],
                                                 Shape{1, 1, 1, static_cast<int64_t>(requests_[n.saved_req].bytes)},
                                                 DType::u8, opt_.device, arena_.buffer());
    if (n.fws_req >= 0) a.workspace = Tensor::wrap(static_cast<char*>(arena_.data()) + plan_.offsets[n.fws_req],
                                                   Shape{1, 1, 1, static_cast<int64_t>(requests_[n.fws_req].bytes)},
                                                   DType::u8, opt_.device, arena_.buffer());
    a.training = opt_.training;
    try {
      n.layer->forward(ctx, a);
    } catch (const Error& e) {
      throw Error(where(n, "forward") + e.what());
    }
    if (emulate && std::string_view(n.layer->type()) != "softmax_xent") round_storage(a.y, opt_.emulate_storage);
  }
  if (opt_.training) ++step_;
}

void Net::backward(ExecContext& ctx, GradMode param_mode, const std::function<void(int node)>& after_node) {
  check_compiled("backward");
  CS_CHECK(opt_.training, "backward() on a net compiled for inference");
  CS_CHECK(ctx.device() == opt_.device, "Net compiled for ", device_name(opt_.device), " run on a ",
           device_name(ctx.device()), " context");
  for (int k = static_cast<int>(nodes_.size()) - 1; k >= 0; --k) {
    Node& n = nodes_[k];
    const TensorInfo& yi = tensors_[n.output];
    if (!yi.requires_grad) {
      if (after_node) after_node(k);
      continue;
    }
    BackwardArgs a;
    for (Id i : n.inputs) a.x.push_back(tensors_[i].act);  // always given for shapes; data valid where needed
    a.y = yi.act;
    a.dy = yi.grad;
    for (Id i : n.inputs) a.dx.push_back(tensors_[i].requires_grad ? tensors_[i].grad : Tensor());
    a.dx_mode = n.dx_mode;
    for (int pi : n.param_index) {
      a.params.push_back(params_[pi].value);
      a.grads.push_back(params_[pi].grad);
    }
    a.param_mode = param_mode;
    if (n.saved_req >= 0) a.saved = Tensor::wrap(static_cast<char*>(arena_.data()) + plan_.offsets[n.saved_req],
                                                 Shape{1, 1, 1, static_cast<int64_t>(requests_[n.saved_req].bytes)},
                                                 DType::u8, opt_.device, arena_.buffer());
    if (n.bws_req >= 0) a.workspace = Tensor::wrap(static_cast<char*>(arena_.data()) + plan_.offsets[n.bws_req],
                                                   Shape{1, 1, 1, static_cast<int64_t>(requests_[n.bws_req].bytes)},
                                                   DType::u8, opt_.device, arena_.buffer());
    try {
      n.layer->backward(ctx, a);
    } catch (const Error& e) {
      throw Error(where(n, "backward") + e.what());
    }
    if (opt_.emulate_storage != DType::f32) {
      for (const Tensor& d : a.dx) round_storage(d, opt_.emulate_storage);
      for (const Tensor& d : a.grads) round_storage(d, opt_.emulate_storage);
    }
    if (after_node) after_node(k);
  }
}

std::vector<Shape> Net::node_input_shapes(int node) const {
  std::vector<Shape> in;
  for (Id i : nodes_.at(static_cast<size_t>(node)).inputs) in.push_back(tensors_[i].shape);
  return in;
}

// "node 'aspp.conv1' (conv2d, input (2,96,144,2048), fp16, cuda) forward: " for errors raised inside a layer, so a
// refusal deep in a kernel wrapper (no cuDNN algorithm, a bad label) names the layer, its shape and dtype.
std::string Net::where(const Node& n, const char* pass) const {
  std::string in;
  for (Id i : n.inputs) in += (in.empty() ? "" : " ") + tensors_[i].shape.str();
  return detail::concat("node '", n.name, "' (", n.layer->type(), ", input ", in, ", ", dtype_name(opt_.dtype), ", ",
                        device_name(opt_.device), ") ", pass, ": ");
}

double Net::forward_flops() const {
  check_compiled("forward_flops", false);
  double f = 0;
  for (const Node& n : nodes_) {
    std::vector<Shape> in;
    for (Id i : n.inputs) in.push_back(tensors_[i].shape);
    f += n.layer->forward_cost(in, opt_.dtype).flops;
  }
  return f;
}

double Net::training_flops() const {
  check_compiled("training_flops", false);
  double f = 0;
  for (const Node& n : nodes_) {
    std::vector<Shape> in;
    for (Id i : n.inputs) in.push_back(tensors_[i].shape);
    f += n.layer->forward_cost(in, opt_.dtype).flops + n.layer->backward_cost(in, opt_.dtype).flops;
  }
  return f;
}

std::string Net::summary() const {
  check_compiled("summary", false);
  std::ostringstream os;
  char line[256];
  std::snprintf(line, sizeof line, "%-24s %-10s %-22s %12s %12s\n", "layer", "op", "output (N,H,W,C)", "params",
                "fwd GFLOP");
  os << line;
  double total_flops = 0;
  for (const Node& n : nodes_) {
    std::vector<Shape> in;
    for (Id i : n.inputs) in.push_back(tensors_[i].shape);
    int64_t np = 0;
    for (int pi : n.param_index) np += params_[pi].spec.shape.numel();
    double fl = n.layer->forward_cost(in, opt_.dtype).flops;
    total_flops += fl;
    std::snprintf(line, sizeof line, "%-24s %-10s %-22s %12lld %12.4f\n", n.name.c_str(), n.layer->type(),
                  tensors_[n.output].shape.str().c_str(), static_cast<long long>(np), fl / 1e9);
    os << line;
  }
  std::snprintf(line, sizeof line, "total: %lld trainable parameters, %.4f forward GFLOP\n",
                static_cast<long long>(num_params()), total_flops / 1e9);
  os << line;
  std::snprintf(line, sizeof line,
                "concat inputs aliased %d, copied %d; concat gradients aliased %d; channel views %d; in-place "
                "merges %d; fold chains %d (%d maps)\n",
                stats_.concat_inputs_aliased, stats_.concat_inputs_copied, stats_.concat_grads_aliased, stats_.views,
                stats_.in_place_granted, stats_.fold_chains, stats_.fold_maps);
  os << line << plan_.report();
  return os.str();
}

}  // namespace climseg
