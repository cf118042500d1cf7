// Checkpoints of device tensors (engine/checkpoint.h): CheckpointStore::save copies them to the host, and the file
// is byte for byte the one the same tensors give from host memory (so the checksum and every loaded bit agree),
// for contiguous tensors and for a channel slice of a device buffer, mixed with host tensors.
//
// Needs a CUDA device: tests/util/cuda_main.cpp exits 77 (skipped) without one.
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/checkpoint.h"
#include "engine/philox.h"
#include "tests/util/temp_dir.h"

using namespace climseg;

namespace {

Tensor random_bytes(Shape s, DType t, uint64_t stream) {
  Tensor x = Tensor::empty(s, t, Device::cpu);
  auto* p = static_cast<unsigned char*>(x.data());
  for (size_t i = 0; i < x.nbytes(); ++i) p[i] = static_cast<unsigned char>(philox_block(9, stream, i).v[0]);
  return x;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("device tensors are saved as their host copies", "[checkpoint][cuda]") {
  test::TempDir tmp;
  const Tensor w = random_bytes(Shape{4, 3, 3, 8}, DType::f32, 1);
  const Tensor m = random_bytes(Shape{1, 1, 1, 77}, DType::f64, 2);
  const Tensor buf = random_bytes(Shape{2, 5, 5, 16}, DType::f32, 3);
  const Tensor cursor = random_bytes(Shape{1, 1, 1, 4}, DType::i64, 4);
  const Tensor buf_dev = buf.to(Device::cuda);
  const std::vector<CheckpointTensor> on_device = {
      {"w", w.to(Device::cuda)}, {"m", m.to(Device::cuda)}, {"slice", buf_dev.channel_slice(5, 6)}, {"cursor", cursor}};
  const std::vector<CheckpointTensor> on_host = {
      {"w", w}, {"m", m}, {"slice", buf.channel_slice(5, 6).clone()}, {"cursor", cursor}};
  CheckpointStore dev(tmp.file("dev")), host(tmp.file("host"));
  const std::string a = dev.save(3, {{"model", "x"}}, on_device);
  const std::string b = host.save(3, {{"model", "x"}}, on_host);
  REQUIRE(slurp(a) == slurp(b));
  const auto c = dev.load_latest();
  REQUIRE(c);
  for (const auto& t : on_host) {
    INFO(t.name);
    const Tensor& back = c->tensor(t.name);
    REQUIRE(back.device() == Device::cpu);
    REQUIRE(back.shape() == t.data.shape());
    REQUIRE(std::memcmp(back.data(), t.data.data(), back.nbytes()) == 0);
  }
}
