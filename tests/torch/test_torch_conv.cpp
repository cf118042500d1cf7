// Conv2d and ConvTranspose2d against PyTorch in double, forward and backward (tests/torch/ops/conv2d.py,
// deconv2d.py): explicit padding, dilation, stride, groups and depthwise, bias on/off, transposed k3 s2 p1 op1,
// and TF 'SAME' (PyTorch side: F.pad with TF's pads then a VALID conv; transposed: padding 0 then TF's crop).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "engine/philox.h"
#include "layers/conv2d.h"
#include "tests/util/compare.h"
#include "tests/util/tolerances.h"
#include "tests/util/torch_oracle.h"

using namespace climseg;
using namespace climseg::test;

namespace {

Tensor random(Shape s, uint64_t stream, double scale = 1.0) {
  Tensor t = Tensor::empty(s, DType::f64, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, scale * (2.0 * philox_uniform(23, stream, i) - 1.0));
  return t;
}

Tensor workspace(size_t bytes) {
  return bytes ? Tensor::zeros(Shape{1, 1, 1, static_cast<int64_t>(bytes)}, DType::u8, Device::cpu) : Tensor();
}

// Runs `layer` on the CPU in double and in PyTorch, and compares y, dx and every parameter gradient.
void compare_with_torch(Layer& layer, const std::string& op, const nlohmann::json& attrs, const Shape& in) {
  ExecContext ctx;
  TorchCall call;
  call.op = op;
  call.attrs = attrs;
  call.inputs.push_back(random(in, 10));
  for (size_t i = 0; const ParamSpec& s : layer.param_specs({in}))
    call.params.push_back(random(s.shape, 20 + i++, 0.5));
  const Shape out = layer.output_shape({in});
  call.dy = random(out, 30);
  const MemoryNeeds mem = layer.memory_needs({in}, DType::f64);

  ForwardArgs fa;
  fa.x = call.inputs;
  fa.y = Tensor::zeros(out, DType::f64, Device::cpu);
  fa.params = call.params;
  fa.workspace = workspace(mem.fwd_workspace);
  layer.forward(ctx, fa);
  BackwardArgs ba;
  ba.x = call.inputs;
  ba.y = fa.y;
  ba.dy = call.dy;
  ba.dx.push_back(Tensor::zeros(in, DType::f64, Device::cpu));
  ba.dx_mode.assign(1, GradMode::overwrite);
  ba.params = call.params;
  for (const Tensor& p : call.params) ba.grads.push_back(Tensor::zeros(p.shape(), DType::f64, Device::cpu));
  ba.workspace = workspace(mem.bwd_workspace);
  layer.backward(ctx, ba);

  TorchResult r = torch_run(call);
  const auto& t = tol::torch_f64;
  INFO(op << " " << attrs.dump() << " input " << in.str() << " -> " << out.str());
  REQUIRE(r.y.shape() == out);  // PyTorch's output size rules
  CS_REQUIRE_CLOSE(fa.y, r.y, t.atol, t.rtol);
  CS_REQUIRE_CLOSE(ba.dx[0], r.dx[0], t.atol, t.rtol);
  for (size_t i = 0; i < ba.grads.size(); ++i)
    CS_REQUIRE_CLOSE(ba.grads[i], r.dparams[i].reshape(ba.grads[i].shape()), t.atol, t.rtol);
}

struct ConvCase {
  int64_t k_out, kh, kw, sh, sw, dh, dw, ph, pw, groups;
  bool bias, same;
  Shape in;
};

void run_conv(const ConvCase& c) {
  Conv2dConfig cfg;
  cfg.out_channels = c.k_out;
  cfg.kernel_h = c.kh, cfg.kernel_w = c.kw;
  cfg.stride_h = c.sh, cfg.stride_w = c.sw;
  cfg.dilation_h = c.dh, cfg.dilation_w = c.dw;
  cfg.pad_h = c.ph, cfg.pad_w = c.pw;
  cfg.groups = c.groups;
  cfg.bias = c.bias;
  cfg.padding = c.same ? PaddingMode::tf_same : PaddingMode::explicit_symmetric;
  Conv2d layer(cfg);
  nlohmann::json a = {{"kernel_h", c.kh},   {"kernel_w", c.kw},   {"stride_h", c.sh}, {"stride_w", c.sw},
                      {"dilation_h", c.dh}, {"dilation_w", c.dw}, {"pad_h", c.ph},    {"pad_w", c.pw},
                      {"groups", c.groups}, {"padding", c.same ? "same" : "explicit"}};
  compare_with_torch(layer, "conv2d", a, c.in);
}

struct DeconvCase {
  int64_t k_out, kh, kw, sh, sw, dh, dw, ph, pw, oph, opw, groups;
  bool bias, same;
  Shape in;
};

void run_deconv(const DeconvCase& c) {
  ConvTranspose2dConfig cfg;
  cfg.out_channels = c.k_out;
  cfg.kernel_h = c.kh, cfg.kernel_w = c.kw;
  cfg.stride_h = c.sh, cfg.stride_w = c.sw;
  cfg.dilation_h = c.dh, cfg.dilation_w = c.dw;
  cfg.pad_h = c.ph, cfg.pad_w = c.pw;
  cfg.output_padding_h = c.oph, cfg.output_padding_w = c.opw;
  cfg.groups = c.groups;
  cfg.bias = c.bias;
  cfg.padding = c.same ? PaddingMode::tf_same : PaddingMode::explicit_symmetric;
  ConvTranspose2d layer(cfg);
  nlohmann::json a = {{"kernel_h", c.kh},         {"kernel_w", c.kw},         {"stride_h", c.sh},
                      {"stride_w", c.sw},         {"dilation_h", c.dh},       {"dilation_w", c.dw},
                      {"pad_h", c.ph},            {"pad_w", c.pw},            {"output_padding_h", c.oph},
                      {"output_padding_w", c.opw}, {"groups", c.groups},
                      {"padding", c.same ? "same" : "explicit"}};
  compare_with_torch(layer, "deconv2d", a, c.in);
}

}  // namespace

TEST_CASE("conv2d matches PyTorch: explicit padding, stride, dilation, bias", "[torch][conv]") {
  const ConvCase cases[] = {
      // k_out kh kw sh sw dh dw ph pw groups bias same input
      {5, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false, {2, 6, 7, 4}},     // 3x3 'same' by explicit padding
      {5, 3, 3, 1, 1, 1, 1, 0, 0, 1, false, false, {1, 6, 7, 4}},    // valid
      {6, 7, 7, 2, 2, 1, 1, 3, 3, 1, true, false, {2, 15, 12, 3}},   // root conv 7x7/2
      {4, 5, 5, 1, 1, 1, 1, 2, 2, 1, true, false, {1, 9, 8, 5}},     // Tiramisu 5x5
      {4, 3, 3, 1, 1, 2, 2, 2, 2, 1, true, false, {1, 7, 9, 6}},     // dilated (ASPP rates)
      {4, 3, 3, 1, 1, 3, 3, 3, 3, 1, false, false, {1, 5, 4, 3}},    // dilation close to the image size
      {4, 3, 3, 1, 1, 6, 6, 6, 6, 1, true, false, {2, 4, 9, 3}},     // rate 6 on 4 rows: middle kernel row only
      {4, 3, 3, 1, 1, 12, 12, 12, 12, 1, true, false, {1, 3, 5, 4}}, // rate 12: centre tap only (ASPP at 1/8)
      {4, 2, 2, 1, 1, 4, 4, 2, 2, 1, true, false, {1, 1, 1, 3}},     // no tap reaches the image: y = bias
      {3, 3, 3, 2, 2, 1, 1, 1, 1, 1, true, false, {1, 8, 9, 4}},     // 3x3/2 bottleneck
      {8, 1, 1, 1, 1, 1, 1, 0, 0, 1, true, false, {2, 5, 6, 7}},     // 1x1 (pointwise path)
      {8, 1, 1, 2, 2, 1, 1, 0, 0, 1, true, false, {2, 5, 6, 7}},     // 1x1/2 transition
      {3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, false, {1, 3, 4, 2}},     // 1x1 with padding (general path)
      {4, 3, 5, 2, 1, 1, 2, 1, 2, 1, true, false, {1, 7, 8, 3}},     // non-square everything
      {4, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false, {3, 1, 1, 5}},     // single pixels
  };
  for (const ConvCase& c : cases) run_conv(c);
}

TEST_CASE("conv2d matches PyTorch: groups and depthwise", "[torch][conv]") {
  const ConvCase cases[] = {
      {6, 3, 3, 1, 1, 1, 1, 1, 1, 2, true, false, {2, 5, 6, 4}},     // groups 2
      {6, 3, 3, 1, 1, 1, 1, 1, 1, 6, true, false, {2, 5, 6, 6}},     // depthwise (Xception)
      {6, 3, 3, 2, 2, 1, 1, 1, 1, 6, false, false, {1, 7, 6, 6}},    // depthwise stride 2
      {5, 3, 3, 1, 1, 2, 2, 2, 2, 5, true, false, {1, 6, 5, 5}},     // depthwise dilated
      {10, 3, 3, 1, 1, 1, 1, 1, 1, 5, true, false, {1, 4, 5, 5}},    // depth multiplier 2
      {6, 1, 1, 1, 1, 1, 1, 0, 0, 3, true, false, {1, 4, 5, 6}},     // grouped 1x1
  };
  for (const ConvCase& c : cases) run_conv(c);
}

TEST_CASE("conv2d matches PyTorch with TF 'SAME' padding (explicit F.pad + VALID conv)", "[torch][conv]") {
  for (const Shape& in : {Shape{2, 8, 6, 3}, Shape{1, 7, 9, 3}, Shape{1, 1, 1, 3}}) {
    const ConvCase cases[] = {
        {4, 3, 3, 1, 1, 1, 1, 0, 0, 1, true, true, in},   {4, 3, 3, 2, 2, 1, 1, 0, 0, 1, true, true, in},
        {4, 7, 7, 2, 2, 1, 1, 0, 0, 1, true, true, in},   {4, 5, 5, 1, 1, 1, 1, 0, 0, 1, false, true, in},
        {4, 1, 1, 2, 2, 1, 1, 0, 0, 1, true, true, in},   {4, 3, 3, 1, 1, 2, 2, 0, 0, 1, true, true, in},
        {4, 2, 4, 2, 2, 1, 1, 0, 0, 1, true, true, in},   {3, 3, 3, 2, 2, 1, 1, 0, 0, 3, true, true, in},
    };
    for (const ConvCase& c : cases) run_conv(c);
  }
}

TEST_CASE("conv_transpose2d matches PyTorch: k3 s2 p1 op1, TF 'same', other configurations", "[torch][conv]") {
  for (const Shape& in : {Shape{2, 4, 5, 3}, Shape{1, 3, 3, 4}, Shape{1, 1, 1, 2}}) {
    const DeconvCase cases[] = {
        // k_out kh kw sh sw dh dw ph pw oph opw groups bias same input
        {5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, true, false, in},   // PyTorch 2x upsampling
        {5, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0, 1, true, true, in},    // TF 'same' 2x upsampling (other corner)
        {5, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0, 1, false, true, in},
        {4, 5, 5, 2, 2, 1, 1, 0, 0, 0, 0, 1, true, true, in},    // TF 'same', k5
        {4, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 1, true, true, in},    // TF 'same', k < stride: zero rows + bias
        {4, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 1, true, false, in},   // k2 s2
        {4, 4, 4, 2, 2, 1, 1, 1, 1, 0, 0, 1, true, false, in},   // k4 s2 p1
        {4, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, 1, true, false, in},   // stride 1
        {4, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, true, false, in},   // dilated
        {4, 3, 5, 2, 3, 1, 1, 1, 2, 0, 2, 1, true, false, in},   // non-square
    };
    for (const DeconvCase& c : cases) run_deconv(c);
  }
  const DeconvCase grouped[] = {
      {6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2, true, false, {1, 3, 4, 4}},  // groups 2
      {4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4, true, false, {2, 3, 4, 4}},  // depthwise
      {4, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0, 4, false, true, {1, 3, 5, 4}},  // depthwise TF 'same'
  };
  for (const DeconvCase& c : grouped) run_deconv(c);
}
