// engine/weights: native save/load (bit-exact round trip, mismatches reported by name and shape, dtype
// conversion) and the PyTorch convention's names, layouts and round trip, without PyTorch (that side is
// tests/torch/test_torch_weights.cpp).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>

#include "engine/safetensors.h"
#include "engine/weights.h"
#include "tests/util/weights_net.h"

using namespace climseg;
using namespace climseg::test;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path dir;
  TempDir() {
    char t[] = "/tmp/climseg-weights-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    dir = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

void compile(Net& net, DType dt, bool training = true) {
  net.compile({.device = Device::cpu, .dtype = dt, .training = training});
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.to(Device::cpu), hb = b.to(Device::cpu);
  return ha.dtype() == hb.dtype() && ha.nbytes() == hb.nbytes() && std::memcmp(ha.data(), hb.data(), ha.nbytes()) == 0;
}

// Every parameter and statistic of a and b, bytewise.
void require_same_weights(const Net& a, const Net& b) {
  for (const auto& [la, lb] : {std::pair{&a.params(), &b.params()}, std::pair{&a.state(), &b.state()}}) {
    REQUIRE(la->size() == lb->size());
    for (size_t i = 0; i < la->size(); ++i) {
      INFO((*la)[i].name);
      REQUIRE((*la)[i].name == (*lb)[i].name);
      REQUIRE(same_bytes((*la)[i].value, (*lb)[i].value));
    }
  }
}

std::vector<int64_t> dims(const Shape& s) { return {s.n, s.h, s.w, s.c}; }

}  // namespace

TEST_CASE("native weights: names, shapes, metadata and a bit-exact round trip", "[weights]") {
  TempDir tmp;
  Net a;
  build_tiny_net(a);
  compile(a, DType::f32);
  randomize_weights(a, 1);
  const std::string path = tmp / "tiny.safetensors";
  save_weights(a, path, {{"model", "tiny"}, {"width", "1.0"}});

  SafetensorsReader r(path);
  REQUIRE(r.metadata_or("format", "") == "climseg-weights");
  REQUIRE(r.metadata_or("version", "") == "1");
  REQUIRE(r.metadata_or("model", "") == "tiny");
  REQUIRE(r.entries().size() == a.params().size() + a.state().size());
  for (const auto* list : {&a.params(), &a.state()})
    for (const Net::Param& p : *list) {
      INFO(p.name);
      const auto* e = r.find(p.name);
      REQUIRE(e != nullptr);
      REQUIRE(e->shape == dims(p.spec.shape));
      REQUIRE(e->dtype == DType::f32);
      REQUIRE(same_bytes(r.read(*e), p.value));
    }
  REQUIRE(r.find("enc.conv.weight")->shape == std::vector<int64_t>{8, 3, 3, 3});   // KRSC
  REQUIRE(r.find("enc.dw.weight")->shape == std::vector<int64_t>{8, 3, 1, 2});     // (K, R, S, C/g)
  REQUIRE(r.find("up.deconv.weight")->shape == std::vector<int64_t>{8, 3, 3, 3});  // (C_in, R, S, K/g)
  REQUIRE(r.find("enc.bn.gamma") != nullptr);
  REQUIRE(r.find("enc.bn.running_var")->shape == std::vector<int64_t>{1, 1, 1, 8});

  Net b;
  build_tiny_net(b);
  compile(b, DType::f32);
  b.init_params(7);
  load_weights(b, path);
  require_same_weights(a, b);

  // And the same forward pass (inference: the running statistics are used).
  Net ia, ib;
  build_tiny_net(ia);
  build_tiny_net(ib);
  compile(ia, DType::f32, false);
  compile(ib, DType::f32, false);
  load_weights(ia, path);
  load_weights(ib, path);
  Tensor x = Tensor::empty(ia.input_tensor(0).shape(), DType::f32, Device::cpu);
  for (int64_t i = 0; i < x.numel(); ++i) x.set_flat(i, philox_uniform(3, 0, i) - 0.5);
  ExecContext ctx;
  ia.input_tensor(0).copy_from(x);
  ib.input_tensor(0).copy_from(x);
  ia.forward(ctx);
  ib.forward(ctx);
  REQUIRE(same_bytes(ia.output(), ib.output()));
}

TEST_CASE("native weights: a mismatched net is refused by name and shape, and left unchanged", "[weights]") {
  TempDir tmp;
  Net a;
  build_tiny_net(a);
  compile(a, DType::f32);
  randomize_weights(a, 1);
  const std::string path = tmp / "tiny.safetensors";
  save_weights(a, path);

  SECTION("a renamed node") {
    Net b;
    build_tiny_net(b, {.conv_name = "enc.conv0"});
    compile(b, DType::f32);
    b.init_params(2);
    Net before;
    build_tiny_net(before, {.conv_name = "enc.conv0"});
    compile(before, DType::f32);
    before.init_params(2);
    REQUIRE_THROWS_WITH(load_weights(b, path), Catch::Contains(path) && Catch::Contains("2 missing, 2 unexpected") &&
                                                   Catch::Contains("missing: enc.conv0.weight") &&
                                                   Catch::Contains("missing: enc.conv0.bias") &&
                                                   Catch::Contains("unexpected: enc.conv.weight") &&
                                                   Catch::Contains("unexpected: enc.conv.bias"));
    require_same_weights(b, before);  // nothing was loaded
  }
  SECTION("another shape") {
    Net b;
    build_tiny_net(b, {.head_out = 7});
    compile(b, DType::f32);
    b.init_params(2);
    REQUIRE_THROWS_WITH(load_weights(b, path),
                        Catch::Contains("shape mismatch: 'head.weight': expected [7, 1, 1, 6], found [5, 1, 1, 6]") &&
                            Catch::Contains("shape mismatch: 'head.bias': expected [1, 1, 1, 7], found [1, 1, 1, 5]"));
  }
  SECTION("a PyTorch export, and reserved metadata keys") {
    Net b;
    build_tiny_net(b);
    compile(b, DType::f32);
    const std::string pt = tmp / "tiny.pt.safetensors";
    export_pytorch(a, pt);
    REQUIRE_THROWS_WITH(load_weights(b, pt), Catch::Contains("use import_pytorch"));
    REQUIRE_THROWS_WITH(import_pytorch(b, path), Catch::Contains("use load_weights"));
    REQUIRE_THROWS_WITH(save_weights(a, tmp / "x.safetensors", {{"format", "mine"}}), Catch::Contains("reserved"));
    REQUIRE_THROWS_WITH(export_pytorch(a, tmp / "x.safetensors", {{"version", "9"}}), Catch::Contains("reserved"));
  }
  SECTION("an integer tensor where a parameter belongs") {
    SafetensorsReader r(path);
    std::vector<SafetensorsTensor> ts;
    for (const auto& e : r.entries()) {
      Tensor t = r.read(e);
      if (e.name == "head.bias") t = t.cast(DType::i32);
      ts.push_back({e.name, t, e.shape});
    }
    write_safetensors(tmp / "int.safetensors", ts, r.metadata());
    Net b;
    build_tiny_net(b);
    compile(b, DType::f32);
    REQUIRE_THROWS_WITH(load_weights(b, tmp / "int.safetensors"), Catch::Contains("'head.bias' has dtype I32"));
  }
}

TEST_CASE("native weights: other dtypes are converted", "[weights]") {
  TempDir tmp;
  SECTION("an fp32 file into an fp64 net: exact") {
    Net a;
    build_tiny_net(a);
    compile(a, DType::f32);
    randomize_weights(a, 4);
    save_weights(a, tmp / "f32.safetensors");
    Net b;
    build_tiny_net(b);
    compile(b, DType::f64);
    load_weights(b, tmp / "f32.safetensors");
    for (const auto& [la, lb] : {std::pair{&a.params(), &b.params()}, std::pair{&a.state(), &b.state()}})
      for (size_t i = 0; i < la->size(); ++i) {
        INFO((*la)[i].name);
        REQUIRE((*lb)[i].value.dtype() == DType::f64);
        REQUIRE(same_bytes((*la)[i].value.cast(DType::f64), (*lb)[i].value));
      }
  }
  SECTION("an fp64 file into an fp32 net: rounded to nearest") {
    Net a;
    build_tiny_net(a);
    compile(a, DType::f64);
    randomize_weights(a, 5);
    // Values that fp32 cannot hold, so the rounding is exercised.
    for (const Net::Param& p : a.params())
      for (int64_t i = 0; i < p.value.numel(); ++i) p.value.set_flat(i, p.value.get_flat(i) + 1e-12);
    save_weights(a, tmp / "f64.safetensors");
    REQUIRE(SafetensorsReader(tmp / "f64.safetensors").find("head.weight")->dtype == DType::f64);
    Net b;
    build_tiny_net(b);
    compile(b, DType::f32);
    load_weights(b, tmp / "f64.safetensors");
    for (size_t i = 0; i < a.params().size(); ++i) {
      const Tensor& va = a.params()[i].value;
      const Tensor& vb = b.params()[i].value;
      for (int64_t j = 0; j < va.numel(); ++j)
        REQUIRE(vb.get_flat(j) == static_cast<double>(static_cast<float>(va.get_flat(j))));
    }
  }
}

TEST_CASE("PyTorch convention: state_dict names, layouts and a bit-exact round trip", "[weights]") {
  TempDir tmp;
  Net a;
  build_tiny_net(a);
  compile(a, DType::f32);
  randomize_weights(a, 11);
  const std::string path = tmp / "tiny.pt.safetensors";
  export_pytorch(a, path, {{"model", "tiny"}});

  // The state_dict of the PyTorch twin (tests/torch/weights_check.py TinyNet), in order.
  const std::vector<std::pair<std::string, std::vector<int64_t>>> want = {{"enc.conv.weight", {8, 3, 3, 3}},
                                                                          {"enc.conv.bias", {8}},
                                                                          {"enc.bn.weight", {8}},
                                                                          {"enc.bn.bias", {8}},
                                                                          {"enc.bn.running_mean", {8}},
                                                                          {"enc.bn.running_var", {8}},
                                                                          {"enc.bn.num_batches_tracked", {}},
                                                                          {"enc.dw.weight", {8, 2, 3, 1}},
                                                                          {"up.deconv.weight", {8, 3, 3, 3}},
                                                                          {"up.deconv.bias", {6}},
                                                                          {"up.affine.weight", {6}},
                                                                          {"up.affine.bias", {6}},
                                                                          {"head.weight", {5, 6, 1, 1}},
                                                                          {"head.bias", {5}}};
  const auto layout = pytorch_layout(a);
  REQUIRE(layout.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO(want[i].first);
    REQUIRE(layout[i].name == want[i].first);
    REQUIRE(layout[i].shape == want[i].second);
  }

  SafetensorsReader r(path);
  REQUIRE(r.metadata_or("format", "") == "pt");
  REQUIRE(r.metadata_or("model", "") == "tiny");
  REQUIRE(r.entries().size() == want.size());
  for (const auto& [name, shape] : want) {
    INFO(name);
    REQUIRE(r.find(name)->shape == shape);
    REQUIRE(r.find(name)->dtype == (name.ends_with("num_batches_tracked") ? DType::i64 : DType::f32));
  }
  REQUIRE(r.read("enc.bn.num_batches_tracked").get_flat(0) == 0.0);

  // Element by element: KRSC (k, r, s, c) is OIHW (k, c, r, s); the transposed conv's (ci, r, s, k) is (ci, k, r, s).
  auto param = [&](const std::string& n) {
    for (const Net::Param& p : a.params())
      if (p.name == n) return p.value;
    FAIL("no parameter " << n);
    return Tensor();
  };
  for (const char* n : {"enc.conv.weight", "enc.dw.weight", "up.deconv.weight", "head.weight"}) {
    INFO(n);
    const Tensor ours = param(n);
    const Tensor file = r.read(n);
    const Shape s = ours.shape();
    for (int64_t k = 0; k < s.n; ++k)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t x = 0; x < s.w; ++x)
          for (int64_t c = 0; c < s.c; ++c) REQUIRE(file.get(k, c, y, x) == ours.get(k, y, x, c));
  }
  REQUIRE(same_bytes(r.read("enc.bn.weight"), param("enc.bn.gamma")));
  REQUIRE(same_bytes(r.read("up.affine.bias"), param("up.affine.shift")));

  Net b;
  build_tiny_net(b);
  compile(b, DType::f32);
  b.init_params(3);
  import_pytorch(b, path);
  require_same_weights(a, b);

  // Exported in float32 whatever the net's dtype; imported into fp64 exactly.
  Net c;
  build_tiny_net(c);
  compile(c, DType::f64);
  import_pytorch(c, path);
  for (size_t i = 0; i < a.params().size(); ++i)
    REQUIRE(same_bytes(a.params()[i].value.cast(DType::f64), c.params()[i].value));
  const std::string path64 = tmp / "tiny64.pt.safetensors";
  export_pytorch(c, path64);
  REQUIRE(SafetensorsReader(path64).find("head.weight")->dtype == DType::f32);

  // import ignores num_batches_tracked, present or not, but still refuses other strangers.
  {
    std::vector<SafetensorsTensor> ts;
    for (const auto& e : r.entries())
      if (e.name != "enc.bn.num_batches_tracked") ts.push_back({e.name, r.read(e), e.shape});
    write_safetensors(tmp / "no_nbt.safetensors", ts);
    import_pytorch(b, tmp / "no_nbt.safetensors");
    ts.push_back({"enc.conv.num_batches_tracked", Tensor::zeros(Shape{1, 1, 1, 1}, DType::i64, Device::cpu), {}});
    write_safetensors(tmp / "stranger.safetensors", ts);
    REQUIRE_THROWS_WITH(import_pytorch(b, tmp / "stranger.safetensors"),
                        Catch::Contains("unexpected: enc.conv.num_batches_tracked"));
  }
  // A PyTorch shape mismatch names PyTorch's shapes.
  {
    Net d;
    build_tiny_net(d, {.head_out = 7});
    compile(d, DType::f32);
    REQUIRE_THROWS_WITH(import_pytorch(d, path),
                        Catch::Contains("shape mismatch: 'head.weight': expected [7, 6, 1, 1], found [5, 6, 1, 1]"));
  }
  REQUIRE(pytorch_local_name("batchnorm2d", "gamma") == "weight");
  REQUIRE(pytorch_local_name("affine", "shift") == "bias");
  REQUIRE(pytorch_local_name("conv2d", "weight") == "weight");
  REQUIRE(pytorch_local_name("batchnorm2d", "running_var") == "running_var");
}
