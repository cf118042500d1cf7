#include "engine/layer.h"

namespace climseg {

std::vector<Shape> shapes_of(const std::vector<Tensor>& ts) {
  std::vector<Shape> s;
  s.reserve(ts.size());
  for (const Tensor& t : ts) s.push_back(t.shape());
  return s;
}

LayerCost Layer::forward_cost(const std::vector<Shape>& in, DType t) const {
  // Default for pointwise layers: read every input, write the output.
  LayerCost c;
  double es = static_cast<double>(dtype_size(t));
  for (const Shape& s : in) c.bytes += static_cast<double>(s.numel()) * es;
  c.bytes += static_cast<double>(output_shape(in).numel()) * es;
  return c;
}

LayerCost Layer::backward_cost(const std::vector<Shape>& in, DType t) const {
  // Default: read dy (and inputs), write dx: about twice the forward traffic.
  LayerCost c = forward_cost(in, t);
  c.flops *= 2;
  c.bytes *= 2;
  return c;
}

void Layer::scale_output_channels(const std::vector<Shape>&, double*, const double*) const {
  CS_THROW(name(), " (", type(), "): cannot fold a per-channel scale into its weights");
}

bool Layer::supports(Device d, DType t) const {
  if (d == Device::cpu) return t == DType::f32 || t == DType::f64;
  return t == DType::f32 || t == DType::f16 || t == DType::bf16;
}

void Layer::check_common(ExecContext& ctx, const std::vector<Tensor>& x, const char* phase) const {
  const std::string nm = name();
  int want = num_inputs();
  CS_CHECK(want < 0 ? !x.empty() : static_cast<int>(x.size()) == want, nm, " (", type(), ") ", phase, ": expected ",
           want < 0 ? std::string("at least 1") : std::to_string(want), " inputs, got ", x.size());
}

namespace {
void check_tensor(const std::string& who, const char* what, const Tensor& t, ExecContext& ctx, DType dt) {
  CS_CHECK(t.defined(), who, ": ", what, " is undefined");
  CS_CHECK(t.device() == ctx.device(), who, ": ", what, " is on ", device_name(t.device()), " but the context is ",
           device_name(ctx.device()));
  CS_CHECK(t.dtype() == dt, who, ": ", what, " is ", dtype_name(t.dtype()), ", expected ", dtype_name(dt));
  CS_CHECK(t.is_pixel_strided(), who, ": ", what, " ", t.str(), " is not pixel-strided (channels contiguous)");
}
}  // namespace

void Layer::check_input(const std::string& who, int i, const Tensor& t, ExecContext& ctx, DType dt) const {
  const std::string what = "input " + std::to_string(i);
  if (!input_is_index(i)) {
    check_tensor(who, what.c_str(), t, ctx, dt);
    return;
  }
  CS_CHECK(t.defined(), who, ": ", what, " is undefined");
  CS_CHECK(t.device() == ctx.device(), who, ": ", what, " is on ", device_name(t.device()), " but the context is ",
           device_name(ctx.device()));
  CS_CHECK(t.dtype() == DType::i32 || t.dtype() == DType::i64 || t.dtype() == DType::u8, who, ": ", what,
           " holds class indices and must be i32, i64 or u8, not ", dtype_name(t.dtype()));
  CS_CHECK(t.is_pixel_strided(), who, ": ", what, " ", t.str(), " is not pixel-strided");
}

void Layer::forward(ExecContext& ctx, const ForwardArgs& a) {
  check_common(ctx, a.x, "forward");
  const std::string nm = name();
  DType dt = a.y.defined() ? a.y.dtype() : DType::f32;
  CS_CHECK(supports(ctx.device(), dt), nm, " (", type(), ") has no ", device_name(ctx.device()), " path for ",
           dtype_name(dt));
  for (size_t i = 0; i < a.x.size(); ++i) check_input(nm, static_cast<int>(i), a.x[i], ctx, dt);
  check_tensor(nm, "output", a.y, ctx, dt);
  std::vector<Shape> in = shapes_of(a.x);
  Shape want = output_shape(in);
  CS_CHECK(a.y.shape() == want, nm, ": output is ", a.y.shape().str(), ", expected ", want.str());
  std::vector<ParamSpec> specs = param_specs(in);
  CS_CHECK(a.params.size() == specs.size(), nm, ": expected ", specs.size(), " parameters, got ", a.params.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    check_tensor(nm, specs[i].name.c_str(), a.params[i], ctx, dt);
    CS_CHECK(a.params[i].shape() == specs[i].shape, nm, ": parameter ", specs[i].name, " is ",
             a.params[i].shape().str(), ", expected ", specs[i].shape.str());
  }
  if (!a.state.empty()) {
    std::vector<ParamSpec> st = state_specs(in);
    CS_CHECK(a.state.size() == st.size(), nm, ": expected ", st.size(), " state tensors (or none), got ",
             a.state.size());
    for (size_t i = 0; i < st.size(); ++i) {
      check_tensor(nm, ("state " + st[i].name).c_str(), a.state[i], ctx, stat_dtype(dt));
      CS_CHECK(a.state[i].shape() == st[i].shape, nm, ": state ", st[i].name, " is ", a.state[i].shape().str(),
               ", expected ", st[i].shape.str());
    }
  }
  if (a.epilogue.active()) {
    CS_CHECK(supports_epilogue(), nm, " (", type(), ") has no inference epilogue (fused bias / residual / ReLU)");
    CS_CHECK(!a.training, nm, ": the inference epilogue is not for training");
    if (a.epilogue.bias.defined()) {
      check_tensor(nm, "epilogue bias", a.epilogue.bias, ctx, dt);
      CS_CHECK(a.epilogue.bias.shape() == (Shape{1, 1, 1, want.c}), nm, ": epilogue bias is ",
               a.epilogue.bias.shape().str(), ", expected (1,1,1,", want.c, ")");
    }
    if (a.epilogue.residual.defined()) {
      check_tensor(nm, "epilogue residual", a.epilogue.residual, ctx, dt);
      CS_CHECK(a.epilogue.residual.shape() == want, nm, ": epilogue residual is ", a.epilogue.residual.shape().str(),
               ", expected ", want.str());
    }
  }
  LayerCost cost = ctx.profiler ? forward_cost(in, dt) : LayerCost{};
  ProfileScope scope(ctx, is_convolution() ? ProfCategory::fwd_conv : ProfCategory::fwd_pointwise, nm.c_str(),
                     cost.flops, cost.bytes);
  if (ctx.device() == Device::cpu)
    forward_cpu(ctx, a);
  else
    forward_cuda(ctx, a);
}

void Layer::backward(ExecContext& ctx, const BackwardArgs& a) {
  const std::string nm = name();
  CS_CHECK(!a.x.empty() || num_inputs() == 0, nm, ": backward needs the input list (undefined entries allowed)");
  int want = num_inputs();
  CS_CHECK(want < 0 || static_cast<int>(a.x.size()) == want, nm, ": backward expected ", want, " inputs, got ",
           a.x.size());
  CS_CHECK(a.dx.size() == a.x.size() && a.dx_mode.size() == a.x.size(), nm,
           ": backward needs one dx and one dx_mode per input");
  DType dt = a.dy.defined() ? a.dy.dtype() : DType::f32;
  check_tensor(nm, "dy", a.dy, ctx, dt);
  std::vector<Shape> in(a.x.size());
  for (size_t i = 0; i < a.x.size(); ++i) {
    if (a.x[i].defined()) {
      check_input(nm, static_cast<int>(i), a.x[i], ctx, dt);
      in[i] = a.x[i].shape();
    } else {
      CS_CHECK(!backward_needs_input(static_cast<int>(i)), nm, ": backward needs input ", i);
      CS_CHECK(a.dx[i].defined(), nm, ": input ", i, " and its gradient are both undefined (shape unknown)");
      in[i] = a.dx[i].shape();
    }
    if (a.dx[i].defined()) {
      CS_CHECK(!input_is_index(static_cast<int>(i)), nm, ": input ", i, " holds class indices and has no gradient");
      check_tensor(nm, ("dx " + std::to_string(i)).c_str(), a.dx[i], ctx, dt);
      CS_CHECK(a.dx[i].shape() == in[i], nm, ": dx ", i, " is ", a.dx[i].shape().str(), ", expected ", in[i].str());
    }
  }
  Shape out = output_shape(in);
  CS_CHECK(a.dy.shape() == out, nm, ": dy is ", a.dy.shape().str(), ", expected ", out.str());
  if (backward_needs_output()) {
    check_tensor(nm, "output", a.y, ctx, dt);
    CS_CHECK(a.y.shape() == out, nm, ": output is ", a.y.shape().str(), ", expected ", out.str());
  }
  std::vector<ParamSpec> specs = param_specs(in);
  CS_CHECK(a.params.size() == specs.size() && a.grads.size() == specs.size(), nm, ": expected ", specs.size(),
           " parameters and gradients, got ", a.params.size(), " and ", a.grads.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    check_tensor(nm, specs[i].name.c_str(), a.params[i], ctx, dt);
    check_tensor(nm, ("gradient of " + specs[i].name).c_str(), a.grads[i], ctx, dt);
    CS_CHECK(a.grads[i].shape() == specs[i].shape && a.params[i].shape() == specs[i].shape, nm, ": parameter ",
             specs[i].name, " or its gradient has the wrong shape (expected ", specs[i].shape.str(), ")");
  }
  LayerCost cost = ctx.profiler ? backward_cost(in, dt) : LayerCost{};
  ProfileScope scope(ctx, is_convolution() ? ProfCategory::bwd_conv : ProfCategory::bwd_pointwise, nm.c_str(),
                     cost.flops, cost.bytes);
  if (ctx.device() == Device::cpu)
    backward_cpu(ctx, a);
  else
    backward_cuda(ctx, a);
}

void Layer::forward_cuda(ExecContext&, const ForwardArgs&) {
  CS_THROW(name(), " (", type(), ") has no CUDA forward path");
}
void Layer::backward_cuda(ExecContext&, const BackwardArgs&) {
  CS_THROW(name(), " (", type(), ") has no CUDA backward path");
}

}  // namespace climseg
