// The CUDA engine around the kernels: contexts, the caching allocator, explicit copies and memsets of strided
// views, the Philox fill (bit-identical with the host), the deterministic bias gradient, SGD, and a whole Net on
// CUDA against the same Net on the CPU (outputs, parameter and input gradients, a few SGD steps).
//
// Needs a CUDA device: tests/util/cuda_main.cpp exits 77 (skipped) without one. Uses engine APIs only.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/check_cuda.h"
#include "engine/context.h"
#include "engine/device_allocator.h"
#include "engine/net.h"
#include "engine/philox.h"
#include "train/sgd.h"
#include "engine/tensor.h"
#include "kernels/cuda/eltwise.h"
#include "layers/add.h"
#include "layers/concat.h"
#include "layers/pointwise_conv.h"
#include "layers/relu.h"
#include "tests/util/compare.h"
#include "tests/util/tolerances.h"
#if defined(CUDASIM)  // the emulation build: its test hooks (kernels/cudasim/include/cudasim/testing.h)
#include "cudasim/testing.h"
#endif

using namespace climseg;
namespace tol = climseg::test::tol;
using climseg::test::Tolerance;
using Catch::Matchers::Contains;

namespace {

Tensor random_host(Shape s, uint64_t seed, double scale, DType dt = DType::f32) {
  Tensor t = Tensor::empty(s, dt, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set_flat(i, scale * (2.0 * philox_uniform(seed, 0, static_cast<uint64_t>(i)) - 1.0));
  return t;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace

// ---- contexts ------------------------------------------------------------------------------------------------

TEST_CASE("CUDA contexts own a stream and library handles", "[cuda][context]") {
  REQUIRE(cuda_device_count() > 0);
  REQUIRE(have_cuda());
  ExecContext gpu(Device::cuda, 0);
  CHECK(gpu.device() == Device::cuda);
  CHECK(gpu.stream() != nullptr);  // its own non-blocking stream, not the legacy default stream
  CHECK(gpu.cublas() != nullptr);
#if defined(CLIMSEG_HAVE_CUDNN)
  CHECK(gpu.cudnn() != nullptr);
  CHECK(gpu.cudnn() == gpu.cudnn());  // created once
#endif
  gpu.activate();
  gpu.synchronize();

  ExecContext other(Device::cuda, 0);
  CHECK(other.stream() != gpu.stream());

  ExecContext cpu;
  CHECK(cpu.stream() == nullptr);
  CHECK_THROWS_WITH(cpu.cublas(), Contains("CPU context"));
  CHECK_THROWS_WITH(ExecContext(Device::cuda, cuda_device_count()), Contains("device(s) are visible"));
  CHECK_THROWS_AS(ExecContext(Device::cuda, -1), Error);
}

TEST_CASE("CUDA context workspace comes from the device allocator and grows", "[cuda][context]") {
  ExecContext gpu(Device::cuda, 0);
  void* a = gpu.workspace(1000);
  REQUIRE(a != nullptr);
  CHECK(gpu.workspace_bytes() >= 1000);
  CHECK(gpu.workspace(10) == a);
  const AllocatorStats before = device_allocator().stats();
  void* b = gpu.workspace(5 << 20);
  REQUIRE(b != nullptr);
  CHECK(gpu.workspace_bytes() >= size_t{5} << 20);
  const AllocatorStats after = device_allocator().stats();
  CHECK(after.allocations == before.allocations + 1);
  // Usable device memory: zero it through a tensor view and read it back.
  Tensor t = Tensor::wrap(b, Shape{1, 1, 1, 1024}, DType::f32, Device::cuda);
  t.zero(&gpu);
  gpu.synchronize();
  CS_REQUIRE_CLOSE(t, Tensor::zeros(t.shape(), DType::f32, Device::cpu), 0.0, 0.0);
}

TEST_CASE("CUDA launchers reject operands that are not on the device", "[cuda][context]") {
  ExecContext gpu(Device::cuda, 0);
  ExecContext cpu;
  Tensor h = Tensor::zeros(Shape{1, 2, 2, 4}, DType::f32, Device::cpu);
  Tensor d = Tensor::zeros(Shape{1, 2, 2, 4}, DType::f32, Device::cuda);
  CHECK_THROWS_WITH(cuda::relu_fwd(gpu, h, d), Contains("is not on the CUDA device"));
  CHECK_THROWS_WITH(cuda::relu_fwd(cpu, d, d), Contains("needs a CUDA context"));
  Tensor d16 = Tensor::zeros(Shape{1, 2, 2, 4}, DType::f16, Device::cuda);
  CHECK_THROWS_WITH(cuda::add_fwd(gpu, d, d, d16), Contains("expected fp32"));
  Tensor d64 = Tensor::zeros(Shape{1, 2, 2, 4}, DType::f64, Device::cuda);
  CHECK_THROWS_WITH(cuda::relu_fwd(gpu, d64, d64), Contains("fp32, fp16 or bf16"));
}

TEST_CASE("CLIMSEG_CUDA_SYNC_CHECK: every launch check waits for the device", "[cuda][context]") {
  // scripts/gpu-check runs the CUDA tests once with it, so that a fault names the kernel that caused it.
  ExecContext gpu(Device::cuda, 0);
  Tensor x = Tensor::zeros(Shape{1, 4, 4, 8}, DType::f32, Device::cuda);
  Tensor y = Tensor::zeros(Shape{1, 4, 4, 8}, DType::f32, Device::cuda);
  gpu.synchronize();
  const bool was = detail::sync_launch_checks();
  detail::set_sync_launch_checks(true);
  cuda::relu_fwd(gpu, x, y);
  CHECK(cudaStreamQuery(gpu.stream()) == cudaSuccess);  // nothing left on the stream after the launch returned
#if defined(CUDASIM)
  // In the deferred-stream mode work waits for a synchronisation: the check is one.
  const bool deferred = cudasim::deferred();
  cudasim::set_deferred(true);
  cuda::relu_fwd(gpu, x, y);
  CHECK(cudasim::pending_work() == 0);
  detail::set_sync_launch_checks(false);
  cuda::relu_fwd(gpu, x, y);
  CHECK(cudasim::pending_work() > 0);  // without it the launch stays queued
  gpu.synchronize();
  cudasim::set_deferred(deferred);
#endif
  detail::set_sync_launch_checks(was);
}

// ---- allocator -----------------------------------------------------------------------------------------------

TEST_CASE("device allocator reuses freed blocks", "[cuda][allocator]") {
  CachingAllocator& alloc = device_allocator();
  alloc.release_cached();
  const AllocatorStats s0 = alloc.stats();
  CHECK(s0.bytes_cached == 0);
  void* first = nullptr;
  {
    Tensor a = Tensor::empty(Shape{1, 3, 10, 100}, DType::f32, Device::cuda);  // 12000 B -> a 12288 B block
    first = a.data();
    const AllocatorStats s1 = alloc.stats();
    CHECK(s1.raw_allocs == s0.raw_allocs + 1);
    CHECK(s1.bytes_in_use == s0.bytes_in_use + 12288);
  }
  const AllocatorStats s2 = alloc.stats();
  CHECK(s2.bytes_cached == 12288);
  CHECK(s2.bytes_in_use == s0.bytes_in_use);
  {
    Tensor b = Tensor::empty(Shape{1, 1, 1, 2950}, DType::f32, Device::cuda);  // 11800 B: same rounded size
    CHECK(b.data() == first);
    const AllocatorStats s3 = alloc.stats();
    CHECK(s3.cache_hits == s2.cache_hits + 1);
    CHECK(s3.raw_allocs == s2.raw_allocs);
    CHECK(s3.bytes_cached == 0);
  }
  CHECK(alloc.release_cached() == 12288);
  CHECK(alloc.stats().raw_frees == s2.raw_frees + 1);
  CHECK(alloc.stats().peak_in_use >= 12288);
}

TEST_CASE("device allocator reports out of memory clearly and survives it", "[cuda][allocator]") {
  // 1 PiB: no GPU has it. cudaMalloc fails, the cache is released, the retry fails, and the error names the size.
  const size_t huge = size_t{1} << 50;
  CHECK_THROWS_WITH(device_allocator().allocate(0, huge), Contains("out of memory on device 0") &&
                                                              Contains("1125899906842624 bytes"));
  // The failure left no sticky error behind: kernels and copies still work.
  ExecContext gpu(Device::cuda, 0);
  Tensor x = random_host(Shape{1, 4, 4, 8}, 9, 1.0);
  Tensor d = x.to(Device::cuda);
  cuda::relu_fwd(gpu, d, d);
  gpu.synchronize();
  Tensor ref = Tensor::empty(x.shape(), DType::f32);
  for (int64_t i = 0; i < x.numel(); ++i) ref.set_flat(i, std::max(0.0, x.get_flat(i)));
  CS_REQUIRE_CLOSE(d, ref, 0.0, 0.0);
}

// ---- copies and memsets ----------------------------------------------------------------------------------------

TEST_CASE("strided channel slices round-trip host -> device -> host", "[cuda][copy]") {
  const DType dt = GENERATE(DType::f32, DType::f16, DType::bf16);
  const bool with_ctx = GENERATE(true, false);
  INFO(dtype_name(dt) << (with_ctx ? " on the context's stream" : " synchronous"));
  ExecContext gpu(Device::cuda, 0);
  ExecContext* ctx = with_ctx ? &gpu : nullptr;
  const Shape hs{2, 7, 5, 40}, ds{2, 7, 5, 33};
  Tensor host = random_host(hs, 11, 1.0, dt);
  Tensor dev_init = random_host(ds, 12, 9.0, dt);
  Tensor dev = dev_init.to(Device::cuda);

  // host channels [8, 27) -> device channels [5, 24)
  Tensor src = host.channel_slice(8, 19);
  dev.channel_slice(5, 19).copy_from(src, ctx);
  // device -> device: channels [5, 24) -> a second buffer's channels [2, 21)
  Tensor dev2 = Tensor::zeros(Shape{2, 7, 5, 23}, dt, Device::cuda, ctx);
  dev2.channel_slice(2, 19).copy_from(dev.channel_slice(5, 19), ctx);
  // device -> host: into channels [1, 20) of a host buffer
  Tensor back = Tensor::zeros(Shape{2, 7, 5, 21}, dt, Device::cpu);
  back.channel_slice(1, 19).copy_from(dev2.channel_slice(2, 19), ctx);
  if (ctx) gpu.synchronize();

  CS_REQUIRE_CLOSE(back.channel_slice(1, 19), src, 0.0, 0.0);
  CS_REQUIRE_CLOSE(back.channel_slice(0, 1), Tensor::zeros(Shape{2, 7, 5, 1}, dt, Device::cpu), 0.0, 0.0);
  CS_REQUIRE_CLOSE(back.channel_slice(20, 1), Tensor::zeros(Shape{2, 7, 5, 1}, dt, Device::cpu), 0.0, 0.0);
  Tensor now = dev.to(Device::cpu);
  CS_REQUIRE_CLOSE(now.channel_slice(0, 5), dev_init.channel_slice(0, 5), 0.0, 0.0);
  CS_REQUIRE_CLOSE(now.channel_slice(5, 19), src, 0.0, 0.0);
  CS_REQUIRE_CLOSE(now.channel_slice(24, 9), dev_init.channel_slice(24, 9), 0.0, 0.0);
  Tensor now2 = dev2.to(Device::cpu);
  CS_REQUIRE_CLOSE(now2.channel_slice(0, 2), Tensor::zeros(Shape{2, 7, 5, 2}, dt, Device::cpu), 0.0, 0.0);
  CS_REQUIRE_CLOSE(now2.channel_slice(21, 2), Tensor::zeros(Shape{2, 7, 5, 2}, dt, Device::cpu), 0.0, 0.0);
}

TEST_CASE("zeroing a channel slice on the device leaves the other channels intact", "[cuda][copy]") {
  const DType dt = GENERATE(DType::f32, DType::f16);
  ExecContext gpu(Device::cuda, 0);
  const Shape s{2, 24, 36, 64};
  Tensor init = random_host(s, 13, 1.0, dt);
  Tensor dev = init.to(Device::cuda);
  dev.channel_slice(16, 32).zero(&gpu);
  dev.channel_slice(63, 1).zero();  // synchronous path, a single channel at the end
  gpu.synchronize();
  Tensor now = dev.to(Device::cpu);
  CS_REQUIRE_CLOSE(now.channel_slice(0, 16), init.channel_slice(0, 16), 0.0, 0.0);
  CS_REQUIRE_CLOSE(now.channel_slice(16, 32), Tensor::zeros(Shape{2, 24, 36, 32}, dt, Device::cpu), 0.0, 0.0);
  CS_REQUIRE_CLOSE(now.channel_slice(48, 15), init.channel_slice(48, 15), 0.0, 0.0);
  CS_REQUIRE_CLOSE(now.channel_slice(63, 1), Tensor::zeros(Shape{2, 24, 36, 1}, dt, Device::cpu), 0.0, 0.0);
  // Whole contiguous tensors take the 1-D path.
  Tensor z = Tensor::zeros(s, dt, Device::cuda, &gpu);
  gpu.synchronize();
  CS_REQUIRE_CLOSE(z, Tensor::zeros(s, dt, Device::cpu), 0.0, 0.0);
}

// ---- Philox ----------------------------------------------------------------------------------------------------

TEST_CASE("CUDA philox_uniform equals the host philox_uniform bit for bit", "[cuda][philox]") {
  struct Stream {
    uint64_t seed, subsequence;
  };
  const Stream st = GENERATE(Stream{0, 0}, Stream{1234, 7}, Stream{0xdeadbeefcafef00dull, 3},
                             Stream{42, uint64_t{1} << 40}, Stream{~uint64_t{0}, ~uint64_t{0}});
  INFO("seed " << st.seed << " subsequence " << st.subsequence);
  ExecContext gpu(Device::cuda, 0);
  const int64_t n = 1000000 + 3;  // not a multiple of 4: the last Philox block is partial
  Tensor out = Tensor::empty(Shape{1, 1, 1, n}, DType::f32, Device::cuda);
  cuda::philox_uniform(gpu, out, st.seed, st.subsequence);
  gpu.synchronize();
  Tensor h = out.to(Device::cpu);
  const float* p = h.data_as<float>();
  int64_t mismatches = 0, first = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (bits_of(p[i]) != bits_of(philox_uniform(st.seed, st.subsequence, static_cast<uint64_t>(i)))) {
      if (first < 0) first = i;
      ++mismatches;
    }
  }
  INFO("first mismatch at " << first);
  REQUIRE(mismatches == 0);

  // A channel slice: the i-th element of the view in NHWC order gets stream element i; other channels untouched.
  Tensor wide_init = random_host(Shape{2, 10, 10, 12}, 14, 5.0);
  Tensor wide = wide_init.to(Device::cuda);
  Tensor view = wide.channel_slice(3, 7);
  cuda::philox_uniform(gpu, view, st.seed, st.subsequence);
  gpu.synchronize();
  Tensor hv = view.to(Device::cpu);
  Tensor ref = Tensor::empty(view.shape(), DType::f32);
  for (int64_t i = 0; i < ref.numel(); ++i)
    ref.set_flat(i, philox_uniform(st.seed, st.subsequence, static_cast<uint64_t>(i)));
  CS_REQUIRE_CLOSE(hv, ref, 0.0, 0.0);
  Tensor hw = wide.to(Device::cpu);
  CS_REQUIRE_CLOSE(hw.channel_slice(0, 3), wide_init.channel_slice(0, 3), 0.0, 0.0);
  CS_REQUIRE_CLOSE(hw.channel_slice(10, 2), wide_init.channel_slice(10, 2), 0.0, 0.0);
}

// ---- bias gradient and SGD -------------------------------------------------------------------------------------

TEST_CASE("CUDA bias gradient is deterministic and accurate over many pixels", "[cuda][bias_grad]") {
  struct Case {
    Shape s;
  };
  // 256-pixel chunks (27648 pixels), 864 chunks, and the 1024-chunk cap at the full DeepCAM resolution.
  const Case cs = GENERATE(Case{Shape{2, 96, 144, 48}}, Case{Shape{1, 384, 576, 16}}, Case{Shape{2, 768, 1152, 3}});
  INFO("dy " << cs.s.str());
  ExecContext gpu(Device::cuda, 0);
  Tensor dy = random_host(cs.s, 15, 1.0 / std::sqrt(static_cast<double>(cs.s.pixels())));
  Tensor dyd = dy.to(Device::cuda);
  const int64_t K = cs.s.c;
  Tensor db1 = Tensor::empty(Shape{1, 1, 1, K}, DType::f32, Device::cuda);
  Tensor db2 = Tensor::empty(Shape{1, 1, 1, K}, DType::f32, Device::cuda);
  cuda::bias_grad(gpu, dyd, db1, false);
  cuda::bias_grad(gpu, dyd, db2, false);
  gpu.synchronize();
  Tensor h1 = db1.to(Device::cpu), h2 = db2.to(Device::cpu);
  for (int64_t c = 0; c < K; ++c) REQUIRE(bits_of(h1.data_as<float>()[c]) == bits_of(h2.data_as<float>()[c]));
  // Reference in double.
  Tensor ref = Tensor::zeros(Shape{1, 1, 1, K}, DType::f64, Device::cpu);
  for (int64_t i = 0; i < dy.numel(); ++i) ref.set_flat(i % K, ref.get_flat(i % K) + dy.get_flat(i));
  CS_REQUIRE_CLOSE(h1, ref, tol::cuda_f32_gemm.atol, tol::cuda_f32_gemm.rtol);
  // Accumulate adds to what is there.
  cuda::bias_grad(gpu, dyd, db1, true);
  gpu.synchronize();
  Tensor twice = db1.to(Device::cpu);
  for (int64_t c = 0; c < K; ++c) ref.set_flat(c, 2.0 * ref.get_flat(c));
  CS_REQUIRE_CLOSE(twice, ref, 2 * tol::cuda_f32_gemm.atol, tol::cuda_f32_gemm.rtol);
}

TEST_CASE("sgd_step on CUDA matches the CPU bit for bit in fp32", "[cuda][sgd]") {
  ExecContext gpu(Device::cuda, 0), cpu;
  const Shape s{1, 1, 1, 300007};
  Tensor p = random_host(s, 16, 1.0), g = random_host(s, 17, 3.0);
  Tensor pd = p.to(Device::cuda), gd = g.to(Device::cuda);
  sgd_step(cpu, p, g, 0.0123);
  sgd_step(gpu, pd, gd, 0.0123);
  gpu.synchronize();
  CS_REQUIRE_CLOSE(pd, p, tol::cuda_f32_exact.atol, tol::cuda_f32_exact.rtol);
  CS_REQUIRE_CLOSE(gd, g, 0.0, 0.0);
}

// ---- a Net on CUDA against the same Net on the CPU -------------------------------------------------------------

namespace {

constexpr int64_t kN = 2, kH = 24, kW = 36, kC = 16;

// input -> conv1x1(32, bias) -> relu -> conv1x1(32) -> add(conv1 residual) -> concat(add, relu) -> conv1x1(8, bias)
// Fan-out (conv1 to relu and add, relu to conv2 and concat), in place (relu), zero-copy concat slices.
Net::Id build_net(Net& net) {
  Net::Id x = net.input("x", Shape{kN, kH, kW, kC});
  Net::Id c1 = net.add("conv1", std::make_unique<PointwiseConv>(32, true), {x});
  Net::Id r1 = net.add("relu1", std::make_unique<Relu>(), {c1});
  Net::Id c2 = net.add("conv2", std::make_unique<PointwiseConv>(32, false), {r1});
  Net::Id a = net.add("add", std::make_unique<Add>(), {c2, c1});
  Net::Id cat = net.add("cat", std::make_unique<Concat>(), {a, r1});
  net.add("head", std::make_unique<PointwiseConv>(8, true), {cat});
  return x;
}

// Loss 0.5 * sum((y - t)^2) * scale and its gradient (y - t) * scale, in double on the host.
double loss_and_grad(const Tensor& y_host, const Tensor& target, double scale, Tensor& grad_host) {
  double loss = 0;
  for (int64_t i = 0; i < y_host.numel(); ++i) {
    double d = y_host.get_flat(i) - target.get_flat(i);
    loss += 0.5 * d * d * scale;
    grad_host.set_flat(i, d * scale);
  }
  return loss;
}

}  // namespace

TEST_CASE("a Net on CUDA gives the CPU Net's outputs and gradients", "[cuda][net]") {
  ExecContext cpu, gpu(Device::cuda, 0);
  Net ncpu, ngpu;
  Net::Id xc = build_net(ncpu), xg = build_net(ngpu);
  ncpu.compile({.device = Device::cpu, .dtype = DType::f32, .training = true, .input_grads = true});
  ngpu.compile({.device = Device::cuda, .dtype = DType::f32, .training = true, .input_grads = true});
  CHECK(ngpu.stats().concat_inputs_aliased == ncpu.stats().concat_inputs_aliased);
  ncpu.init_params(77);
  ngpu.init_params(77);
  REQUIRE(ncpu.params().size() == ngpu.params().size());
  CS_REQUIRE_CLOSE(ngpu.param_buffer(), ncpu.param_buffer(), 0.0, 0.0);  // init is device-independent

  Tensor x = random_host(Shape{kN, kH, kW, kC}, 21, 1.0);
  ncpu.input_tensor(xc).copy_from(x);
  ngpu.input_tensor(xg).copy_from(x);
  ncpu.forward(cpu);
  ngpu.forward(gpu);
  gpu.synchronize();
  const Tolerance& t = tol::cuda_f32_net;
  {
    INFO("net output");
    CS_REQUIRE_CLOSE(ngpu.output(), ncpu.output(), t.atol, t.rtol);
  }

  // Backward from the same output gradient (the CPU's), scaled by 1/sqrt(P) so weight gradients stay O(1).
  const Shape os = ncpu.output().shape();
  Tensor dy = random_host(os, 22, 1.0 / std::sqrt(static_cast<double>(os.pixels())));
  ncpu.output_grad().copy_from(dy);
  ngpu.output_grad().copy_from(dy);
  ncpu.backward(cpu);
  ngpu.backward(gpu);
  gpu.synchronize();
  for (size_t i = 0; i < ncpu.params().size(); ++i) {
    INFO("gradient of " << ncpu.params()[i].name);
    CS_REQUIRE_CLOSE(ngpu.params()[i].grad, ncpu.params()[i].grad, t.atol, t.rtol);
  }
  {
    INFO("input gradient");
    CS_REQUIRE_CLOSE(ngpu.input_grad(xg), ncpu.input_grad(xc), t.atol, t.rtol);
  }

  // Accumulate mode (micro-batches): a second backward adds the same gradients again.
  ncpu.output_grad().copy_from(dy);
  ngpu.output_grad().copy_from(dy);
  ncpu.backward(cpu, GradMode::accumulate);
  ngpu.backward(gpu, GradMode::accumulate);
  gpu.synchronize();
  CS_REQUIRE_CLOSE(ngpu.grad_buffer(), ncpu.grad_buffer(), 2 * t.atol, t.rtol);
}

TEST_CASE("SGD on a CUDA Net tracks the CPU Net's losses", "[cuda][net][sgd]") {
  ExecContext cpu, gpu(Device::cuda, 0);
  Net ncpu, ngpu;
  Net::Id xc = build_net(ncpu), xg = build_net(ngpu);
  ncpu.compile({.device = Device::cpu, .dtype = DType::f32});
  ngpu.compile({.device = Device::cuda, .dtype = DType::f32});
  ncpu.init_params(5);
  ngpu.init_params(5);
  Tensor x = random_host(Shape{kN, kH, kW, kC}, 31, 1.0);
  ncpu.input_tensor(xc).copy_from(x);
  ngpu.input_tensor(xg).copy_from(x);
  const Shape os = ncpu.output().shape();
  Tensor target = random_host(os, 32, 1.0);
  const double scale = 1.0 / static_cast<double>(os.numel());  // mean squared error
  const double lr = 0.5;
  Tensor gc = Tensor::empty(os, DType::f32), gg = Tensor::empty(os, DType::f32);
  std::vector<double> lc, lg;
  for (int step = 0; step < 5; ++step) {
    ncpu.forward(cpu);
    ngpu.forward(gpu);
    gpu.synchronize();
    lc.push_back(loss_and_grad(ncpu.output(), target, scale, gc));
    lg.push_back(loss_and_grad(ngpu.output().to(Device::cpu), target, scale, gg));
    INFO("step " << step << ": CPU loss " << lc.back() << ", CUDA loss " << lg.back());
    CHECK(std::fabs(lg.back() - lc.back()) <=
          tol::cuda_f32_loss_track.atol + tol::cuda_f32_loss_track.rtol * std::fabs(lc.back()));
    ncpu.output_grad().copy_from(gc);
    ngpu.output_grad().copy_from(gg);
    ncpu.backward(cpu);
    ngpu.backward(gpu);
    sgd_step(cpu, ncpu.param_buffer(), ncpu.grad_buffer(), lr);
    sgd_step(gpu, ngpu.param_buffer(), ngpu.grad_buffer(), lr);
  }
  gpu.synchronize();
  CHECK(lc.back() < lc.front());  // it trains
  CHECK(lg.back() < lg.front());
  CS_REQUIRE_CLOSE(ngpu.param_buffer(), ncpu.param_buffer(), tol::cuda_f32_net.atol, tol::cuda_f32_net.rtol);
}
