// CUDA (cuDNN, kernels/cudnn/conv.h) vs CPU parity of Conv2d and ConvTranspose2d: outputs, input gradients, weight
// and bias gradients, in fp32, fp16 and bf16, with contiguous and channel-slice (strided) views, overwrite and
// accumulate modes, unwanted input gradients, and with the Net's planned workspace (conv_workspace_bytes) as well
// as the context's. The reference is the CPU path in fp32 on the values the device sees (inputs rounded to the
// tested dtype first), compared by tests/util/cuda_parity.h. Tolerances: the convolution rows of
// tests/util/tolerances.h.
//
// Shapes are the networks' layers scaled down (N = 2, feature maps 24x36 or smaller, channel counts kept where the
// CPU reference stays cheap): DeepLabv3+ root 7x7/2, dilated 3x3 (rates 2, 4, 12), 1x1 2048 -> 256, decoder 3x3
// 304 -> 256, deconv k3 s2 p1 op1; Tiramisu 5x5 and 1x1 stride-2 transitions; DeepCAM depthwise 3x3 and TF 'SAME'
// stride-2 convolutions and deconvolutions on odd and even sizes (the asymmetric-padding corners), plus 1x1 inputs.
//
// Needs a CUDA device: tests/util/cuda_main.cpp exits 77 (skipped) without one.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/layer.h"
#include "engine/philox.h"
#include "engine/tensor.h"
#include "kernels/cudnn/conv.h"
#include "layers/conv2d.h"
#include "tests/util/compare.h"
#include "tests/util/cuda_parity.h"
#include "tests/util/device_operand.h"

using namespace climseg;
using test::random_host;
using test::Variant;

namespace {

// A variant with the Net's planned workspace (planned) or the context's, in cuDNN's deterministic mode or not.
Variant conv_variant(DType dt, bool strided, GradMode mode, bool drop_dx0, bool planned, bool deterministic = false) {
  Variant v{dt, strided, mode, drop_dx0};
  v.planned_ws = planned;
  v.deterministic = deterministic;
  return v;
}

std::vector<Variant> variants() {
  std::vector<Variant> vs;
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    vs.push_back(conv_variant(dt, false, GradMode::overwrite, false, true));
    vs.push_back(conv_variant(dt, false, GradMode::accumulate, false, false));
    vs.push_back(conv_variant(dt, true, GradMode::overwrite, false, false));
    vs.push_back(conv_variant(dt, true, GradMode::accumulate, false, true));
    vs.push_back(conv_variant(dt, true, GradMode::overwrite, true, true));
  }
  // Deterministic mode picks other backward algorithms (e.g. backward-filter ALGO_1): compare them too.
  vs.push_back(conv_variant(DType::f32, false, GradMode::accumulate, false, true, true));
  vs.push_back(conv_variant(DType::f16, true, GradMode::overwrite, false, true, true));
  return vs;
}

Tensor device_workspace(size_t bytes) {
  return Tensor::empty(Shape{1, 1, 1, static_cast<int64_t>(std::max<size_t>(bytes, 1))}, DType::u8, Device::cuda);
}

// Workspace bytes the Net plans for a layer: its memory_needs, which must cover the cuDNN passes (checked against
// cudnn::conv_workspace_bytes so a layer that forgets cuDNN's share fails here, not only inside a Net).
size_t cudnn_bytes(const Layer& layer, const Shape& x, DType dt, bool backward) {
  const MemoryNeeds mn = layer.memory_needs({x}, dt);
  auto* c = dynamic_cast<const ConvLayer*>(&layer);
  REQUIRE(c != nullptr);
  const ConvGeometry g = c->geometry(x);
  const size_t cudnn_ws = backward ? std::max(cudnn::conv_workspace_bytes(g, dt, ConvPass::backward_data),
                                              cudnn::conv_workspace_bytes(g, dt, ConvPass::backward_filter))
                                   : cudnn::conv_workspace_bytes(g, dt, ConvPass::forward);
  const size_t planned = backward ? mn.bwd_workspace : mn.fwd_workspace;
  REQUIRE(planned >= cudnn_ws);
  return planned;
}

// tests/util/cuda_parity.h with the convolution rows; a planned-workspace variant gets cudnn_bytes.
void check_parity(ExecContext& cpu, ExecContext& gpu, Layer& layer, const Shape& in, const Variant& v) {
  test::ParityOptions o;
  o.data = o.params = test::CudaKind::conv;
  o.device_workspace = [](const Layer& l, const std::vector<Shape>& x, DType dt, bool backward) {
    return device_workspace(cudnn_bytes(l, x.at(0), dt, backward));
  };
  test::check_parity(cpu, gpu, layer, {in}, o, v);
}

constexpr int64_t N = 2;

struct ConvCase {
  const char* what;
  Shape x;
  Conv2dConfig cfg;
};

Conv2dConfig conv(int64_t k, int64_t kernel, int64_t stride, int64_t dilation, int64_t pad, int64_t groups = 1,
                  bool bias = true) {
  Conv2dConfig c;
  c.out_channels = k;
  c.kernel_h = c.kernel_w = kernel;
  c.stride_h = c.stride_w = stride;
  c.dilation_h = c.dilation_w = dilation;
  c.pad_h = c.pad_w = pad;
  c.groups = groups;
  c.bias = bias;
  return c;
}

Conv2dConfig conv_same(int64_t k, int64_t kernel, int64_t stride, int64_t groups = 1, int64_t dilation = 1) {
  Conv2dConfig c = conv(k, kernel, stride, dilation, 0, groups);
  c.padding = PaddingMode::tf_same;
  return c;
}

struct DeconvCase {
  const char* what;
  Shape x;
  ConvTranspose2dConfig cfg;
};

ConvTranspose2dConfig deconv(int64_t k, int64_t kernel, int64_t stride, int64_t pad, int64_t output_padding,
                             int64_t groups = 1, bool bias = true) {
  ConvTranspose2dConfig c;
  c.out_channels = k;
  c.kernel_h = c.kernel_w = kernel;
  c.stride_h = c.stride_w = stride;
  c.pad_h = c.pad_w = pad;
  c.output_padding_h = c.output_padding_w = output_padding;
  c.groups = groups;
  c.bias = bias;
  return c;
}

ConvTranspose2dConfig deconv_same(int64_t k, int64_t kernel, int64_t stride) {
  ConvTranspose2dConfig c = deconv(k, kernel, stride, 0, 0);
  c.padding = PaddingMode::tf_same;
  return c;
}

}  // namespace

TEST_CASE("conv2d: cuDNN matches the CPU path", "[cuda][parity][conv2d]") {
  const ConvCase cc = GENERATE(
      // DeepLabv3+ (ResNet root, ASPP, decoder)
      ConvCase{"DeepLabv3+ root 7x7/2", {N, 24, 36, 16}, conv(64, 7, 2, 1, 3)},
      ConvCase{"ASPP 3x3 rate 2", {N, 24, 36, 32}, conv(32, 3, 1, 2, 2)},
      ConvCase{"ASPP 3x3 rate 4", {N, 24, 36, 32}, conv(32, 3, 1, 4, 4, 1, false)},
      ConvCase{"ASPP 3x3 rate 12 (small map: taps mostly in the padding)", {N, 9, 11, 16}, conv(16, 3, 1, 12, 12)},
      ConvCase{"ASPP 1x1 2048 -> 256", {N, 6, 9, 2048}, conv(256, 1, 1, 1, 0, 1, false)},
      ConvCase{"decoder 3x3 304 -> 256", {N, 12, 18, 304}, conv(256, 3, 1, 1, 1, 1, false)},
      // Tiramisu
      ConvCase{"Tiramisu 5x5 16 -> 48", {N, 24, 36, 16}, conv(48, 5, 1, 1, 2)},
      ConvCase{"Tiramisu 5x5 48 -> 16 (growth)", {N, 13, 17, 48}, conv(16, 5, 1, 1, 2)},
      ConvCase{"Tiramisu 1x1 stride-2 transition", {N, 24, 36, 48}, conv(48, 1, 2, 1, 0)},
      ConvCase{"Tiramisu 1x1 stride-2 transition, odd map", {N, 13, 17, 48}, conv(48, 1, 2, 1, 0)},
      // DeepCAM: depthwise, TF 'SAME' stride-2 corners (even -> pads (0, 1), odd -> (1, 1))
      ConvCase{"depthwise 3x3", {N, 24, 36, 32}, conv(32, 3, 1, 1, 1, 32)},
      ConvCase{"depthwise 3x3 SAME stride 2, even", {N, 24, 36, 32}, conv_same(32, 3, 2, 32)},
      ConvCase{"grouped 3x3 (4 groups)", {N, 12, 18, 32}, conv(64, 3, 1, 1, 1, 4)},
      ConvCase{"SAME 3x3 stride 2, even sizes", {N, 24, 36, 16}, conv_same(32, 3, 2)},
      ConvCase{"SAME 3x3 stride 2, odd sizes", {N, 13, 17, 16}, conv_same(32, 3, 2)},
      ConvCase{"SAME 3x3 stride 2, odd x even", {N, 13, 18, 16}, conv_same(32, 3, 2)},
      ConvCase{"SAME 4x4 stride 2 (even kernel: pads (1, 2) or (1, 1))", {N, 12, 13, 16}, conv_same(16, 4, 2)},
      ConvCase{"SAME 3x3 stride 1", {N, 13, 18, 16}, conv_same(16, 3, 1)},
      ConvCase{"SAME 3x3 dilation 2", {N, 13, 18, 16}, conv_same(16, 3, 1, 1, 2)},
      ConvCase{"SAME 3x3 stride 2 on 1x1", {N, 1, 1, 16}, conv_same(16, 3, 2)},
      ConvCase{"3x3 pad 1 on 1x1", {N, 1, 1, 16}, conv(16, 3, 1, 1, 1)},
      ConvCase{"small channels", {N, 7, 5, 3}, conv(5, 3, 2, 1, 1)});
  INFO(cc.what);
  ExecContext cpu, gpu(Device::cuda, 0);
  Conv2d layer(cc.cfg);
  for (const Variant& v : variants()) check_parity(cpu, gpu, layer, cc.x, v);
}

TEST_CASE("conv_transpose2d: cuDNN matches the CPU path", "[cuda][parity][deconv2d]") {
  const DeconvCase dc = GENERATE(
      DeconvCase{"DeepLabv3+ decoder deconv k3 s2 p1 op1 256 -> 256", {N, 6, 9, 256}, deconv(256, 3, 2, 1, 1)},
      DeconvCase{"deconv k3 s2 p1 op1, odd map", {N, 7, 5, 32}, deconv(16, 3, 2, 1, 1)},
      DeconvCase{"deconv k3 s2 p1 op0", {N, 7, 5, 32}, deconv(16, 3, 2, 1, 0, 1, false)},
      DeconvCase{"deconv k4 s2 p1", {N, 6, 9, 16}, deconv(16, 4, 2, 1, 0)},
      DeconvCase{"deconv k2 s2 p0 (Tiramisu-style 2x)", {N, 6, 9, 48}, deconv(48, 2, 2, 0, 0)},
      DeconvCase{"grouped deconv", {N, 6, 9, 32}, deconv(16, 3, 2, 1, 1, 4)},
      DeconvCase{"DeepCAM SAME k3 s2 (pads (0, 1)), even", {N, 6, 8, 32}, deconv_same(32, 3, 2)},
      DeconvCase{"SAME k3 s2, odd", {N, 7, 5, 32}, deconv_same(16, 3, 2)},
      DeconvCase{"SAME k4 s2", {N, 7, 6, 16}, deconv_same(16, 4, 2)},
      DeconvCase{"SAME k3 s1", {N, 7, 6, 16}, deconv_same(16, 3, 1)},
      DeconvCase{"SAME k3 s2 on 1x1", {N, 1, 1, 16}, deconv_same(16, 3, 2)});
  INFO(dc.what);
  ExecContext cpu, gpu(Device::cuda, 0);
  ConvTranspose2d layer(dc.cfg);
  for (const Variant& v : variants()) check_parity(cpu, gpu, layer, dc.x, v);
}

TEST_CASE("conv2d on cuDNN is bit-reproducible in deterministic mode", "[cuda][conv2d][determinism]") {
  ExecContext gpu(Device::cuda, 0);
  gpu.deterministic = true;
  Conv2d layer(conv(64, 3, 1, 1, 1));
  const Shape in{N, 24, 36, 64};
  const Shape out = layer.output_shape({in});
  Tensor x = random_host(in, 1, 1.0).to(Device::cuda);
  Tensor w = random_host(Shape{64, 3, 3, 64}, 2, 0.1).to(Device::cuda);
  Tensor b = random_host(Shape{1, 1, 1, 64}, 3, 0.5).to(Device::cuda);
  Tensor dy = random_host(out, 4, 0.05).to(Device::cuda);
  Tensor first_dx, first_dw;
  for (int run = 0; run < 2; ++run) {
    BackwardArgs a;
    a.x = {x};
    a.dy = dy;
    a.dx = {Tensor::empty(in, DType::f32, Device::cuda)};
    a.dx_mode = {GradMode::overwrite};
    a.params = {w, b};
    a.grads = {Tensor::empty(w.shape(), DType::f32, Device::cuda), Tensor::empty(b.shape(), DType::f32, Device::cuda)};
    layer.backward(gpu, a);
    gpu.synchronize();
    if (run == 0) {
      first_dx = a.dx[0].to(Device::cpu);
      first_dw = a.grads[0].to(Device::cpu);
    } else {
      CS_REQUIRE_CLOSE(a.dx[0], first_dx, 0.0, 0.0);
      CS_REQUIRE_CLOSE(a.grads[0], first_dw, 0.0, 0.0);
    }
  }
}

TEST_CASE("cuDNN conv geometry: TF 'SAME' asymmetric padding needs extra rows exactly where it is read",
          "[cuda][conv2d][geometry]") {
  // stride 2, k3, even input 24: total padding 1 -> (0, 1); cuDNN's symmetric pad 0 gives 11 rows, 12 wanted.
  Conv2d even(conv_same(8, 3, 2));
  ConvGeometry g = even.geometry(Shape{1, 24, 24, 4});
  REQUIRE(g.pad_top == 0);
  REQUIRE(g.out_h == 12);
  REQUIRE(cudnn::extra_rows(g) == 1);
  // odd input 13: total 2 -> (1, 1), symmetric: no staging.
  g = even.geometry(Shape{1, 13, 13, 4});
  REQUIRE(g.pad_top == 1);
  REQUIRE(cudnn::extra_rows(g) == 0);
  // PyTorch deconv k3 s2 p1 op1: the conv's end padding is 0, cuDNN's symmetric pad 1 fits.
  ConvTranspose2d dt(deconv(8, 3, 2, 1, 1));
  g = dt.geometry(Shape{1, 6, 9, 4});
  REQUIRE(g.in_h == 12);
  REQUIRE(g.in_w == 18);
  REQUIRE(cudnn::extra_rows(g) == 0);
  REQUIRE(cudnn::extra_cols(g) == 0);
  // TF deconv k3 s2 'SAME': the conv on 12 pads (0, 1): one extra row.
  ConvTranspose2d ds(deconv_same(8, 3, 2));
  g = ds.geometry(Shape{1, 6, 9, 4});
  REQUIRE(g.pad_top == 0);
  REQUIRE(cudnn::extra_rows(g) == 1);
}


TEST_CASE("conv2d on cuDNN: a planned workspace smaller than the pass needs is refused, none falls back",
          "[cuda][conv2d][workspace]") {
  // docs/layers.md: memory_needs() declares cuDNN's share, so a smaller planned buffer is a planning bug and throws
  // (before: a hidden ctx.workspace() allocation and sync); an undefined one (a layer outside a Net) uses the
  // context's workspace.
  ExecContext gpu(Device::cuda, 0);
  Conv2d layer(conv_same(32, 3, 2));  // asymmetric 'SAME' padding: X is staged through the workspace
  const Shape in{N, 24, 36, 16};
  ForwardArgs f;
  f.x = {random_host(in, 1, 1.0).to(Device::cuda)};
  f.y = Tensor::empty(layer.output_shape({in}), DType::f32, Device::cuda);
  f.params = {random_host(Shape{32, 3, 3, 16}, 2, 0.1).to(Device::cuda),
              random_host(Shape{1, 1, 1, 32}, 3, 0.5).to(Device::cuda)};
  const size_t planned = cudnn_bytes(layer, in, DType::f32, false);
  REQUIRE(planned > 64);
  f.workspace = device_workspace(64);
  REQUIRE_THROWS_WITH(layer.forward(gpu, f), Catch::Contains("the planned workspace has 64 bytes"));
  f.workspace = device_workspace(planned);
  layer.forward(gpu, f);
  const Tensor planned_y = f.y.to(Device::cpu);
  f.workspace = Tensor();
  layer.forward(gpu, f);
  gpu.synchronize();
  CS_REQUIRE_CLOSE(f.y, planned_y, 0.0, 0.0);
}

TEST_CASE("cuDNN algorithm choice: measured once, deterministic when asked, within the workspace it is given",
          "[cuda][conv2d][algorithm]") {
  // kernels/cudnn/conv.h, chosen_algorithm: cudnnFind* (PyTorch's cudnn.benchmark), filtered by determinism, no
  // TF32 for fp32, and the workspace bytes the pass has; the heuristic plan (memory_needs' size) otherwise.
  ExecContext gpu(Device::cuda, 0);
  Conv2d layer(conv(32, 3, 1, 1, 1));
  const ConvGeometry g = layer.geometry(Shape{N, 12, 18, 32});
  for (DType dt : {DType::f32, DType::f16}) {
    for (ConvPass dir : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter}) {
      INFO(dtype_name(dt) << " direction " << static_cast<int>(dir));
      gpu.deterministic = false;
      const size_t planned = cudnn::algo_workspace_bytes(gpu, g, dt, dir);
      const cudnn::AlgoChoice a = cudnn::chosen_algorithm(gpu, g, dt, dir, planned);
      CHECK(a.measured);
      CHECK(a.ms >= 0);
      CHECK(a.ws <= planned);
      const cudnn::AlgoChoice again = cudnn::chosen_algorithm(gpu, g, dt, dir, planned);
      CHECK(again.algo == a.algo);  // cached: the same answer without measuring again
      // No workspace at all: an algorithm that needs none (cuDNN always has one for these shapes).
      const cudnn::AlgoChoice none = cudnn::chosen_algorithm(gpu, g, dt, dir, 0);
      CHECK(none.ws == 0);
      // Deterministic mode: never backward-data ALGO_0 or backward-filter ALGO_0/ALGO_3 (atomics).
      gpu.deterministic = true;
      const cudnn::AlgoChoice det = cudnn::chosen_algorithm(gpu, g, dt, dir, planned);
      // With no workspace too, where the fastest workspace-free algorithm may be a non-deterministic one.
      const cudnn::AlgoChoice det0 = cudnn::chosen_algorithm(gpu, g, dt, dir, 0);
      for (const cudnn::AlgoChoice& c : {det, det0}) {
        if (dir == ConvPass::backward_data) CHECK(c.algo != 0);
        if (dir == ConvPass::backward_filter) CHECK((c.algo != 0 && c.algo != 3));
      }
    }
  }
  gpu.deterministic = false;
}
