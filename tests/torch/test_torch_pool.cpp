// Pooling and resize layers against PyTorch, forward and backward, in double: max/avg pool (explicit padding as
// nn.MaxPool2d / nn.AvgPool2d with count_include_pad True and False; TF 'SAME' written out in the op files),
// global average pool (adaptive_avg_pool2d(x, 1)) and bilinear resize (F.interpolate align_corners True/False, and
// the TF1 legacy rule as a direct formula in tests/torch/ops/resize.py).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "engine/philox.h"
#include "layers/pool.h"
#include "layers/resize.h"
#include "tests/util/compare.h"
#include "tests/util/tolerances.h"
#include "tests/util/torch_oracle.h"

using namespace climseg;
using namespace climseg::test;

namespace {

Tensor random(Shape s, uint64_t stream) {
  Tensor t = Tensor::empty(s, DType::f64, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, 2.0 * philox_uniform(29, stream, i) - 1.0);
  return t;
}

// Runs `layer` on the CPU in double and in PyTorch (op, attrs) and compares y and dx.
void compare_with_torch(Layer& layer, const std::string& op, const nlohmann::json& attrs, Shape in) {
  INFO(op << " " << attrs.dump() << " on " << in.str());
  if (!torch_available()) {
    WARN("PyTorch not available (/usr/bin/python3 cannot import torch): skipped");
    return;
  }
  ExecContext ctx;
  TorchCall call;
  call.op = op;
  call.attrs = attrs;
  call.inputs.push_back(random(in, 1));
  const Shape out = layer.output_shape({in});
  call.dy = random(out, 2);

  ForwardArgs fa;
  fa.x = call.inputs;
  fa.y = Tensor::zeros(out, DType::f64, Device::cpu);
  const MemoryNeeds m = layer.memory_needs({in}, DType::f64);
  if (m.saved_bytes)
    fa.saved = Tensor::zeros(Shape{1, 1, 1, static_cast<int64_t>(m.saved_bytes)}, DType::u8, Device::cpu);
  layer.forward(ctx, fa);
  BackwardArgs ba;
  ba.x = call.inputs;
  ba.y = fa.y;
  ba.dy = call.dy;
  ba.dx = {Tensor::zeros(in, DType::f64, Device::cpu)};
  ba.dx_mode = {GradMode::overwrite};
  ba.saved = fa.saved;
  layer.backward(ctx, ba);

  TorchResult r = torch_run(call);
  const auto& t = tol::torch_f64;
  REQUIRE(r.y.shape() == out);
  {
    INFO("forward");
    CS_REQUIRE_CLOSE(fa.y, r.y, t.atol, t.rtol);
  }
  INFO("input gradient");
  CS_REQUIRE_CLOSE(ba.dx[0], r.dx[0], t.atol, t.rtol);
}

nlohmann::json pool_attrs(const PoolConfig& c) {
  return {{"kh", c.kh}, {"kw", c.kw}, {"sh", c.sh}, {"sw", c.sw}, {"ph", c.ph},
          {"pw", c.pw}, {"same", c.same}, {"count_include_pad", c.count_include_pad}};
}

PoolConfig rect(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  PoolConfig c;
  c.kh = kh;
  c.kw = kw;
  c.sh = sh;
  c.sw = sw;
  c.ph = ph;
  c.pw = pw;
  return c;
}

struct PoolCase {
  PoolConfig cfg;
  Shape in;
};

std::vector<PoolCase> pool_cases() {
  return {
      {PoolConfig::explicit_pad(3, 2, 1), {2, 9, 11, 3}},   // ResNet v1 root (PyTorch)
      {PoolConfig::explicit_pad(3, 2, 1), {1, 2, 2, 2}},    // corner windows
      {PoolConfig::explicit_pad(2, 2), {2, 8, 7, 4}},       // Tiramisu transition down, odd width
      {PoolConfig::explicit_pad(3, 1, 1), {1, 6, 5, 3}},    // stride 1 with padding
      {PoolConfig::explicit_pad(2, 3), {1, 10, 11, 2}},     // stride > kernel
      {PoolConfig::explicit_pad(1, 2), {2, 7, 7, 3}},       // ResNet v2 shortcut subsampling
      {PoolConfig::explicit_pad(4, 2, 2), {1, 7, 6, 2}},    // pad = k / 2
      {PoolConfig::explicit_pad(3, 3), {1, 3, 3, 5}},       // output 1x1
      {rect(3, 2, 1, 2, 1, 1), {1, 5, 8, 3}},               // rectangular
      {PoolConfig::tf_same(3, 2), {2, 9, 11, 3}},           // ResNet root (TF), odd sizes
      {PoolConfig::tf_same(3, 2), {1, 8, 6, 2}},            // even sizes: the extra pad at the bottom/right
      {PoolConfig::tf_same(1, 2), {1, 7, 8, 2}},            // SAME subsampling
      {PoolConfig::tf_same(2, 3), {1, 10, 11, 2}},          // SAME, stride > kernel
      {PoolConfig::tf_same(3, 2), {1, 1, 1, 4}},            // 1x1 input
  };
}

}  // namespace

TEST_CASE("maxpool2d matches PyTorch (explicit padding and TF SAME)", "[torch][pool]") {
  for (const PoolCase& pc : pool_cases()) {
    MaxPool2d l(pc.cfg);
    compare_with_torch(l, "maxpool", pool_attrs(pc.cfg), pc.in);
  }
}

TEST_CASE("avgpool2d matches PyTorch (count_include_pad true and false)", "[torch][pool]") {
  for (const PoolCase& pc : pool_cases()) {
    for (bool cip : {true, false}) {
      PoolConfig c = pc.cfg;
      c.count_include_pad = cip;
      AvgPool2d l(c);
      compare_with_torch(l, "avgpool", pool_attrs(c), pc.in);
    }
  }
}

TEST_CASE("global average pool matches adaptive_avg_pool2d(x, 1)", "[torch][pool]") {
  for (Shape s : {Shape{2, 9, 11, 5}, Shape{1, 1, 1, 3}, Shape{3, 4, 17, 2}}) {
    GlobalAvgPool l;
    compare_with_torch(l, "globalavgpool", nlohmann::json::object(), s);
  }
}

TEST_CASE("bilinear resize matches F.interpolate and the TF1 legacy formula", "[torch][resize]") {
  struct RCase {
    Shape in;
    int64_t oh, ow;
  };
  const RCase cases[] = {
      {{2, 5, 7, 3}, 10, 14},  // x2
      {{1, 3, 4, 2}, 12, 16},  // x4
      {{1, 3, 5, 2}, 24, 40},  // x8 (decoder / DeepCAM upsampling)
      {{1, 17, 13, 3}, 5, 4},  // downsampling
      {{1, 6, 5, 2}, 7, 11},   // non-integer factors
      {{2, 1, 1, 3}, 9, 7},    // 1x1 input (ASPP image-level branch)
      {{1, 6, 5, 2}, 1, 1},    // 1x1 output
      {{1, 1, 6, 2}, 4, 3},    // one row
  };
  const std::pair<ResizeMode, const char*> modes[] = {{ResizeMode::align_corners, "align_corners"},
                                                      {ResizeMode::half_pixel, "half_pixel"},
                                                      {ResizeMode::tf_legacy, "tf_legacy"}};
  for (const auto& [mode, mname] : modes) {
    for (const RCase& rc : cases) {
      BilinearResize l(ResizeConfig::to_size(rc.oh, rc.ow, mode));
      compare_with_torch(l, "resize", {{"out_h", rc.oh}, {"out_w", rc.ow}, {"mode", mname}}, rc.in);
    }
    for (double s : {2.0, 4.0}) {
      BilinearResize l(ResizeConfig::by_scale(s, mode));
      compare_with_torch(l, "resize", {{"scale", s}, {"mode", mname}}, {1, 5, 3, 2});
    }
  }
}
