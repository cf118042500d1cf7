// Tests of the CUDA emulator itself (kernels/cudasim): barrier and shuffle semantics, divergent barriers, launch
// limits, fp16/bf16 rounding, the stand-in cudart. The kernels are in test_kernels.cu, compiled through the same
// <<<>>> rewrite as the engine's. Run in normal and in reversed thread order (ctest: cudasim_test and
// cudasim_test_reverse); tests that depend on the order set it themselves.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include "cudasim/memory.h"
#include "cudasim/testing.h"
#include "tests/cudasim/test_kernels.h"

namespace {

// A device buffer of n elements (cudaMalloc'd: 0xFF bytes until written), freed on scope exit.
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { REQUIRE(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)) == cudaSuccess); }
  explicit Dev(const std::vector<T>& v) : Dev(v.size()) { upload(v); }
  ~Dev() { CHECK(cudaFree(p) == cudaSuccess); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void upload(const std::vector<T>& v) {
    REQUIRE(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  std::vector<T> get() const {
    std::vector<T> v(n);
    REQUIRE(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return v;
  }
};

// Sets the thread order for one scope, then restores the previous one.
struct Order {
  bool prev;
  explicit Order(bool reverse) : prev(cudasim::reverse_order()) { cudasim::set_reverse_order(reverse); }
  ~Order() { cudasim::set_reverse_order(prev); }
};

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Inputs whose block sums are exact in fp32 (small integers).
std::vector<float> ramp(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(static_cast<int>(i % 7) - 2);
  return v;
}
std::vector<float> block_sums(const std::vector<float>& v, int threads) {
  std::vector<float> s(v.size() / threads, 0.0f);
  for (size_t i = 0; i < v.size(); ++i) s[i / threads] += v[i];
  return s;
}

// A failed launch leaves a sticky error: check its text and clear it for the next test.
void expect_launch_failure(cudaError_t e, const std::string& needle, const char* kernel = "divergent_kernel") {
  CHECK(e == cudaErrorLaunchFailure);
  const std::string msg = cudaGetErrorString(e);
  INFO(msg);
  CHECK(msg.find(needle) != std::string::npos);
  CHECK(msg.find(kernel) != std::string::npos);  // names the kernel
  // Sticky: every later call fails the same way until the context is gone.
  void* p = nullptr;
  CHECK(cudaMalloc(&p, 16) == cudaErrorLaunchFailure);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
  cudasim::clear_sticky_error();
  CHECK(cudaGetLastError() == cudaSuccess);
}

}  // namespace

TEST_CASE("block barrier: a shared-memory tree sum is right with its barriers in both thread orders", "[cudasim]") {
  for (int threads : {32, 256, 1024}) {
    const std::vector<float> in = ramp(3 * static_cast<size_t>(threads));
    const std::vector<float> want = block_sums(in, threads);
    Dev<float> din(in), dout(3);
    for (bool reverse : {false, true}) {
      Order order(reverse);
      INFO("threads " << threads << ", reverse " << reverse);
      REQUIRE(cudasim_test::block_sum(din.p, dout.p, 3, threads, true) == cudaSuccess);
      CHECK(dout.get() == want);
    }
  }
}

TEST_CASE("block barrier: the same tree without barriers is wrong in forward order", "[cudasim]") {
  // Forward order runs thread 0 to its end first: it reads s[t + o] before those threads have written it. (Reverse
  // order happens to compute the right sum here: one of the two orders always exposes a missing barrier.)
  Order order(false);
  const int threads = 256;
  const std::vector<float> in = ramp(2 * threads);
  Dev<float> din(in), dout(2);
  REQUIRE(cudasim_test::block_sum(din.p, dout.p, 2, threads, false) == cudaSuccess);
  CHECK(dout.get() != block_sums(in, threads));
}

TEST_CASE("__syncthreads_count, _and, _or reduce the predicate over the block", "[cudasim]") {
  const int blocks = 3, threads = 96;
  std::vector<int> flags(blocks * threads, 0);
  for (int t = 0; t < threads; t += 3) flags[t] = 1;          // block 0: 32 of 96
  for (int t = 0; t < threads; ++t) flags[threads + t] = 7;   // block 1: all (non-zero counts as 1)
  // block 2: none
  Dev<int> dflags(flags), dout(blocks * threads), dandor(2 * blocks);
  REQUIRE(cudasim_test::sync_count(dflags.p, dout.p, dandor.p, blocks, threads) == cudaSuccess);
  const std::vector<int> out = dout.get();
  for (int t = 0; t < threads; ++t) {  // every thread gets the block's count
    CHECK(out[t] == 32);
    CHECK(out[threads + t] == threads);
    CHECK(out[2 * threads + t] == 0);
  }
  CHECK(dandor.get() == std::vector<int>{0, 1, 1, 1, 0, 0});
}

TEST_CASE("__shfl_down_sync: a warp tree sum", "[cudasim]") {
  const int n = 256 + 40;  // the last block's tail threads add zeros
  std::vector<float> in(n);
  for (int i = 0; i < n; ++i) in[i] = static_cast<float>(i % 11);
  Dev<float> din(in), dout((n + 31) / 32);
  REQUIRE(cudasim_test::warp_sum(din.p, dout.p, n) == cudaSuccess);
  std::vector<float> want((n + 31) / 32, 0.0f);
  for (int i = 0; i < n; ++i) want[i / 32] += in[i];
  CHECK(dout.get() == want);
}

TEST_CASE("warp shuffles: source lanes, widths and masks as CUDA documents", "[cudasim]") {
  using cudasim_test::Shfl;
  Dev<int> d(32);
  auto run = [&](Shfl op, int arg, int width, unsigned mask) {
    REQUIRE(cudasim_test::shuffle_lanes(op, arg, width, mask, d.p) == cudaSuccess);
    return d.get();
  };
  std::vector<int> want(32);
  // down by 5: the top 5 lanes keep their own value; width 8: within each group of 8
  auto v = run(Shfl::down, 5, 32, 0xffffffffu);
  for (int l = 0; l < 32; ++l) want[l] = l + 5 < 32 ? l + 5 : l;
  CHECK(v == want);
  v = run(Shfl::down, 5, 8, 0xffffffffu);
  for (int l = 0; l < 32; ++l) want[l] = (l % 8) + 5 < 8 ? l + 5 : l;
  CHECK(v == want);
  // up by 3, width 16
  v = run(Shfl::up, 3, 16, 0xffffffffu);
  for (int l = 0; l < 32; ++l) want[l] = (l % 16) >= 3 ? l - 3 : l;
  CHECK(v == want);
  // idx: broadcast of lane 7; with width 8 srcLane 9 means lane 1 of each group
  v = run(Shfl::idx, 7, 32, 0xffffffffu);
  for (int l = 0; l < 32; ++l) want[l] = 7;
  CHECK(v == want);
  v = run(Shfl::idx, 9, 8, 0xffffffffu);
  for (int l = 0; l < 32; ++l) want[l] = (l / 8) * 8 + 1;
  CHECK(v == want);
  // xor butterfly
  v = run(Shfl::xor_, 6, 32, 0xffffffffu);
  for (int l = 0; l < 32; ++l) want[l] = l ^ 6;
  CHECK(v == want);
  // A partial mask: only lanes 0..15 take part; a read from lane 16+ is undefined in CUDA, all bits set here.
  v = run(Shfl::down, 4, 32, 0x0000ffffu);
  for (int l = 0; l < 32; ++l) want[l] = l >= 16 ? -2 : l + 4 < 16 ? l + 4 : -1;
  CHECK(v == want);
}

TEST_CASE("warp shuffles: a width that is not a power of 2 fails the launch", "[cudasim]") {
  Dev<int> d(32);
  expect_launch_failure(cudasim_test::shuffle_lanes(cudasim_test::Shfl::down, 1, 3, 0xffffffffu, d.p),
                        "width 3 is not a power of 2", "shuffle_lanes_kernel");
}

TEST_CASE("a barrier some threads never reach fails the launch, naming kernel and site", "[cudasim]") {
  Dev<int> scratch(128);
  for (bool reverse : {false, true}) {
    Order order(reverse);
    INFO("reverse " << reverse);
    {
      INFO("half the block skips the barrier");
      expect_launch_failure(cudasim_test::divergent(0, scratch.p), "divergent barrier: __syncthreads at");
    }
    {
      INFO("a thread exits before it");
      expect_launch_failure(cudasim_test::divergent(1, scratch.p), "has exited");
    }
    {
      INFO("two barriers");
      expect_launch_failure(cudasim_test::divergent(2, scratch.p), "waits at __syncthreads at");
    }
    {
      INFO("a shuffle against a barrier");
      expect_launch_failure(cudasim_test::divergent(3, scratch.p), "__shfl_down_sync");
    }
  }
  CHECK(std::string(cudaGetErrorString(cudaErrorLaunchFailure)).find("test_kernels.cu:") != std::string::npos);
}

TEST_CASE("launch configurations are checked as CUDA checks them", "[cudasim]") {
  Dev<int> marker(1);
  auto launch = [&](dim3 grid, dim3 block) {
    REQUIRE(cudaMemset(marker.p, 0, sizeof(int)) == cudaSuccess);
    const cudaError_t e = cudasim_test::trivial(grid, block, marker.p);
    const int ran = marker.get()[0];
    if (e != cudaSuccess) CHECK(ran == 0);  // a refused launch runs nothing
    return e;
  };
  CHECK(launch(dim3(1), dim3(1024)) == cudaSuccess);
  CHECK(launch(dim3(1), dim3(32, 32)) == cudaSuccess);
  CHECK(launch(dim3(1), dim3(1, 1, 64)) == cudaSuccess);
  CHECK(launch(dim3(1), dim3(1025)) == cudaErrorInvalidConfiguration);
  CHECK(cudaGetLastError() == cudaSuccess);  // not sticky: cleared by the previous read
  CHECK(launch(dim3(1), dim3(33, 32)) == cudaErrorInvalidConfiguration);
  CHECK(launch(dim3(1), dim3(1, 1, 65)) == cudaErrorInvalidConfiguration);
  CHECK(launch(dim3(0), dim3(32)) == cudaErrorInvalidConfiguration);
  CHECK(launch(dim3(1), dim3(0)) == cudaErrorInvalidConfiguration);
  CHECK(launch(dim3(1, 0), dim3(32)) == cudaErrorInvalidConfiguration);
  CHECK(launch(dim3(1, 65536), dim3(1)) == cudaErrorInvalidConfiguration);
  CHECK(launch(dim3(1, 1, 65536), dim3(1)) == cudaErrorInvalidConfiguration);
  CHECK(launch(dim3(0x80000000u), dim3(1)) == cudaErrorInvalidConfiguration);
  CHECK(launch(dim3(1, 65535), dim3(1)) == cudaSuccess);
  const std::string msg = cudaGetErrorString(cudaErrorInvalidConfiguration);
  CHECK(msg.find("trivial_kernel") != std::string::npos);
}

TEST_CASE("__launch_bounds__: more threads than the bound is a launch error", "[cudasim]") {
  Dev<int> marker(1);
  REQUIRE(cudaMemset(marker.p, 0, sizeof(int)) == cudaSuccess);
  CHECK(cudasim_test::bounded(128, marker.p) == cudaErrorLaunchOutOfResources);
  CHECK(marker.get()[0] == 0);
  const std::string msg = cudaGetErrorString(cudaErrorLaunchOutOfResources);
  INFO(msg);
  CHECK(msg.find("bounded_kernel") != std::string::npos);
  CHECK(msg.find("at most 64") != std::string::npos);
  CHECK(cudaGetLastError() == cudaSuccess);  // not sticky
  CHECK(cudasim_test::bounded(64, marker.p) == cudaSuccess);
  CHECK(marker.get()[0] == 1);
}

TEST_CASE("3-D grids of 3-D blocks: every thread once, with its indices", "[cudasim]") {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  const size_t threads = 3 * 2 * 2 * 4 * 3 * 2;
  Dev<unsigned> out(12 * threads);
  REQUIRE(cudasim_test::indices(grid, block, out.p) == cudaSuccess);
  const std::vector<unsigned> v = out.get();
  size_t k = 0;
  for (unsigned bz = 0; bz < 2; ++bz)
    for (unsigned by = 0; by < 2; ++by)
      for (unsigned bx = 0; bx < 3; ++bx)
        for (unsigned tz = 0; tz < 2; ++tz)
          for (unsigned ty = 0; ty < 3; ++ty)
            for (unsigned tx = 0; tx < 4; ++tx, ++k) {
              const std::vector<unsigned> want{bx, by, bz, tx, ty, tz, 4, 3, 2, 3, 2, 2};
              CHECK(std::vector<unsigned>(v.begin() + 12 * k, v.begin() + 12 * k + 12) == want);
            }
}

TEST_CASE("fp16: round to nearest even, overflow, NaN, subnormals, bit for bit", "[cudasim]") {
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    float in;
    uint16_t half;
  };
  const std::vector<Case> cases{
      {1.0f, 0x3c00},
      {-0.0f, 0x8000},
      {1.0f + 0x1p-11f, 0x3c00},        // tie between 0x3c00 and 0x3c01: even
      {1.0f + 3 * 0x1p-11f, 0x3c02},    // tie between 0x3c01 and 0x3c02: even
      {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},  // just above the tie
      {65504.0f, 0x7bff},               // largest finite
      {65519.0f, 0x7bff},
      {65520.0f, 0x7c00},               // tie between 65504 and 65536 (inf): even is inf
      {1e6f, 0x7c00},
      {-1e6f, 0xfc00},
      {inf, 0x7c00},
      {-inf, 0xfc00},
      {std::nanf(""), 0x7fff},          // canonical NaN
      {-std::nanf(""), 0x7fff},
      {0x1p-14f, 0x0400},               // smallest normal
      {0x1p-24f, 0x0001},               // smallest subnormal
      {1023 * 0x1p-24f, 0x03ff},        // largest subnormal
      {1023.5f * 0x1p-24f, 0x0400},     // tie: even (the smallest normal)
      {0x1p-25f, 0x0000},               // tie between 0 and 2^-24: even is 0
      {from_bits(bits(0x1p-25f) + 1), 0x0001},
      {3 * 0x1p-25f, 0x0002},           // tie between 1 and 2 ulps: even
      {-5 * 0x1p-25f, 0x8002},          // tie between -2 and -3 ulps: even
      {0x1p-26f, 0x0000},
      {777.0f, 0x6212},                 // exact in fp16
  };
  std::vector<float> in;
  for (const Case& c : cases) in.push_back(c.in);
  const int n = static_cast<int>(in.size());
  Dev<float> din(in), dback(n);
  Dev<__half> dh(n);
  REQUIRE(cudasim_test::round_f16(din.p, dh.p, dback.p, n) == cudaSuccess);
  const std::vector<__half> h = dh.get();
  const std::vector<float> back = dback.get();
  for (int i = 0; i < n; ++i) {
    INFO("input " << in[i] << " (0x" << std::hex << bits(in[i]) << ")");
    CHECK(__half_as_ushort(h[i]) == cases[i].half);
    CHECK(__half_as_ushort(__float2half_rn(in[i])) == cases[i].half);  // the host conversion agrees
    if (std::isnan(in[i]))
      CHECK(std::isnan(back[i]));
    else
      CHECK(bits(back[i]) == bits(static_cast<float>(__half2float(__ushort_as_half(cases[i].half)))));
  }
  // fp16 -> fp32 is exact
  CHECK(__half2float(__ushort_as_half(0x0001)) == 0x1p-24f);
  CHECK(__half2float(__ushort_as_half(0x03ff)) == 1023 * 0x1p-24f);
  CHECK(__half2float(__ushort_as_half(0x7bff)) == 65504.0f);
  CHECK(__half2float(__ushort_as_half(0x7c00)) == inf);
  CHECK(std::isnan(__half2float(__ushort_as_half(0x7e00))));
  CHECK(bits(__half2float(__ushort_as_half(0x8000))) == 0x80000000u);
  CHECK(__half2float(__ushort_as_half(0x3555)) == 0x1.554p-2f);
}

TEST_CASE("bf16: round to nearest even, overflow, NaN, subnormals, bit for bit", "[cudasim]") {
  struct Case {
    uint32_t in;
    uint16_t bf;
  };
  const std::vector<Case> cases{
      {0x3f800000u, 0x3f80},  // 1
      {0x3f808000u, 0x3f80},  // tie: even
      {0x3f818000u, 0x3f82},  // tie: even (up)
      {0x3f808001u, 0x3f81},  // above the tie
      {0x44424000u, 0x4442},  // 777 -> 776: not exact in bf16 (the kPad bug of issue 14)
      {0x7f7fffffu, 0x7f80},  // FLT_MAX rounds to inf
      {0x7f7f7fffu, 0x7f7f},
      {0xff7fffffu, 0xff80},
      {0x7f800000u, 0x7f80},  // inf
      {0x7fc00001u, 0x7fff},  // NaN: canonical
      {0xffc00000u, 0x7fff},
      {0x7f800001u, 0x7fff},  // signalling NaN too
      {0x00010000u, 0x0001},  // subnormals
      {0x00008000u, 0x0000},  // tie: even (0)
      {0x00018000u, 0x0002},  // tie: even (up)
      {0x80008001u, 0x8001},
      {0x007fffffu, 0x0080},  // largest fp32 subnormal rounds up to the smallest normal
      {0x80000000u, 0x8000},
  };
  std::vector<float> in;
  for (const Case& c : cases) in.push_back(from_bits(c.in));
  const int n = static_cast<int>(in.size());
  Dev<float> din(in), dback(n);
  Dev<__nv_bfloat16> db(n);
  REQUIRE(cudasim_test::round_bf16(din.p, db.p, dback.p, n) == cudaSuccess);
  const std::vector<__nv_bfloat16> b = db.get();
  const std::vector<float> back = dback.get();
  for (int i = 0; i < n; ++i) {
    INFO("input 0x" << std::hex << cases[i].in);
    CHECK(__bfloat16_as_ushort(b[i]) == cases[i].bf);
    CHECK(__bfloat16_as_ushort(__float2bfloat16_rn(in[i])) == cases[i].bf);
    CHECK(bits(back[i]) == static_cast<uint32_t>(cases[i].bf) << 16);  // bf16 -> fp32: a shift, payload kept
  }
  CHECK(__bfloat162float(__float2bfloat16_rn(777.0f)) == 776.0f);
}

TEST_CASE("__fmul_rn/__fadd_rn round each operation; fmaf rounds once", "[cudasim]") {
  // a * b = 1 - 2^-46 exactly; rounded to fp32 that is 1, so (a * b) - 1 is 0 with two roundings and -2^-46 fused.
  const std::vector<float> a{1.0f + 0x1p-23f}, b{1.0f - 0x1p-23f}, c{-1.0f};
  Dev<float> da(a), db(b), dc(c), dout(1), dfma(1);
  REQUIRE(cudasim_test::mul_add_rn(da.p, db.p, dc.p, dout.p, dfma.p, 1) == cudaSuccess);
  CHECK(dout.get()[0] == 0.0f);
  CHECK(dfma.get()[0] == -0x1p-46f);
}

TEST_CASE("cudaMalloc memory is 0xFF bytes: uninitialised fp32/fp16/bf16 reads are NaN", "[cudasim]") {
  Dev<float> in(100), out(100);
  REQUIRE(cudasim_test::copy_f32(in.p, out.p, 100) == cudaSuccess);
  for (float v : out.get()) {
    CHECK(std::isnan(v));
    CHECK(bits(v) == 0xffffffffu);
  }
  Dev<__half> h(4);
  Dev<__nv_bfloat16> b(4);
  for (__half v : h.get()) CHECK(std::isnan(__half2float(v)));
  for (__nv_bfloat16 v : b.get()) CHECK(std::isnan(__bfloat162float(v)));
}

TEST_CASE("block_handed_out: a reused block is NaN again, and under ASan its tail is out of bounds", "[cudasim]") {
  // What engine/device_cuda.cpp's caching allocator calls for every block it hands out (cudasim/memory.h).
  const bool was_deferred = cudasim::deferred();
  cudasim::set_deferred(false);
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, 1024) == cudaSuccess);
  unsigned char* b = static_cast<unsigned char*>(p);
  std::memset(b, 0, 1024);  // the previous user's data
  cudasim::block_handed_out(p, 12, 1024);
  for (int i = 0; i < 12; ++i) CHECK(b[i] == 0xFF);
#if defined(__SANITIZE_ADDRESS__)
  CHECK(!__asan_address_is_poisoned(b + 11));
  CHECK(__asan_address_is_poisoned(b + 12));
  CHECK(__asan_address_is_poisoned(b + 1023));
  cudasim::block_handed_out(p, 1024, 1024);  // handed out again for all of it: accessible again
  CHECK(!__asan_address_is_poisoned(b + 1023));
  cudasim::block_handed_out(p, 12, 1024);
#else
  CHECK(b[12] == 0);  // without ASan only the requested bytes are refilled
#endif
  // The deferred mode leaves the block alone: queued work of its previous user may still run on it.
  cudasim::set_deferred(true);
  b[0] = 0;
  cudasim::block_handed_out(p, 12, 1024);
  CHECK(b[0] == 0);
  cudasim::set_deferred(false);
  // Not the start of a device allocation, or a block larger than the allocation: ignored.
  cudasim::block_handed_out(b + 4, 4, 8);
  CHECK(b[4] == 0xFF);
  unsigned char host[16] = {};
  cudasim::block_handed_out(host, 4, 16);
  CHECK(host[0] == 0);
  cudasim::block_handed_out(p, 12, 2048);
  CHECK(b[0] == 0);
  REQUIRE(cudaFree(p) == cudaSuccess);  // with a poisoned tail under ASan: cudaFree makes it accessible first
  cudasim::set_deferred(was_deferred);
}

TEST_CASE("stand-in cudart: frees, bounds, pointer kinds, streams, events", "[cudasim]") {
  const size_t live = cudasim::live_device_allocations();
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, 100) == cudaSuccess);
  CHECK(reinterpret_cast<uintptr_t>(p) % 256 == 0);
  CHECK(cudasim::live_device_allocations() == live + 1);
  // copies and memsets are checked against the allocation
  std::vector<char> host(200, 1);
  CHECK(cudaMemcpy(p, host.data(), 100, cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaMemcpy(p, host.data(), 101, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK(std::string(cudaGetErrorString(cudaErrorInvalidValue)).find("overrun the 100-byte") != std::string::npos);
  CHECK(cudaMemsetAsync(static_cast<char*>(p) + 50, 0, 51, nullptr) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(host.data(), host.data() + 100, 10, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  CHECK(cudaMemset(host.data(), 0, 10) == cudaErrorInvalidValue);  // not device memory
  CHECK(cudaMemcpy2DAsync(p, 10, host.data(), 20, 10, 10, cudaMemcpyDefault, nullptr) == cudaSuccess);
  CHECK(cudaMemcpy2DAsync(p, 11, host.data(), 20, 10, 10, cudaMemcpyDefault, nullptr) == cudaErrorInvalidValue);
  // pointer attributes
  cudaPointerAttributes a{};
  REQUIRE(cudaPointerGetAttributes(&a, static_cast<char*>(p) + 10) == cudaSuccess);
  CHECK(a.type == cudaMemoryTypeDevice);
  void* pinned = nullptr;
  REQUIRE(cudaHostAlloc(&pinned, 64, cudaHostAllocPortable) == cudaSuccess);
  REQUIRE(cudaPointerGetAttributes(&a, pinned) == cudaSuccess);
  CHECK(a.type == cudaMemoryTypeHost);
  REQUIRE(cudaPointerGetAttributes(&a, host.data()) == cudaSuccess);
  CHECK(a.type == cudaMemoryTypeUnregistered);
  CHECK(cudaFree(pinned) == cudaErrorInvalidValue);      // pinned memory is not freed by cudaFree
  CHECK(cudaFreeHost(p) == cudaErrorInvalidValue);       // nor device memory by cudaFreeHost
  CHECK(cudaFreeHost(pinned) == cudaSuccess);
  // frees
  CHECK(cudaFree(static_cast<char*>(p) + 4) == cudaErrorInvalidValue);
  CHECK(cudaFree(p) == cudaSuccess);
  CHECK(cudaFree(p) == cudaErrorInvalidValue);  // twice
  CHECK(std::string(cudaGetErrorString(cudaErrorInvalidValue)).find("not a live allocation") != std::string::npos);
  CHECK(cudaFree(nullptr) == cudaSuccess);
  CHECK(cudasim::live_device_allocations() == live);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);  // the last failure; then cleared
  CHECK(cudaGetLastError() == cudaSuccess);
  // device
  int n = 0, d = -1;
  CHECK(cudaGetDeviceCount(&n) == cudaSuccess);
  CHECK(n == 1);
  CHECK(cudaGetDevice(&d) == cudaSuccess);
  CHECK(d == 0);
  CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice);
  CHECK(cudaSetDevice(0) == cudaSuccess);
  // streams and events
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  cudaEvent_t e0 = nullptr, e1 = nullptr, nt = nullptr;
  REQUIRE(cudaEventCreateWithFlags(&e0, cudaEventDefault) == cudaSuccess);
  REQUIRE(cudaEventCreateWithFlags(&e1, cudaEventDefault) == cudaSuccess);
  REQUIRE(cudaEventCreateWithFlags(&nt, cudaEventDisableTiming) == cudaSuccess);
  float ms = -1;
  CHECK(cudaEventElapsedTime(&ms, e0, e1) == cudaErrorInvalidResourceHandle);  // never recorded
  CHECK(cudaEventRecord(e0, s) == cudaSuccess);
  CHECK(cudaEventRecord(nt, s) == cudaSuccess);
  CHECK(cudaEventRecord(e1, s) == cudaSuccess);  // last: once it completed, s is idle (also in deferred mode)
  CHECK(cudaStreamWaitEvent(nullptr, e1, 0) == cudaSuccess);
  CHECK(cudaEventSynchronize(e1) == cudaSuccess);
  CHECK(cudaEventQuery(e1) == cudaSuccess);
  CHECK(cudaStreamQuery(s) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess);
  CHECK(ms >= 0.0f);
  CHECK(cudaEventElapsedTime(&ms, e0, nt) == cudaErrorInvalidResourceHandle);  // timing disabled
  CHECK(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(cudaEventDestroy(e0) == cudaSuccess);
  CHECK(cudaEventDestroy(e1) == cudaSuccess);
  CHECK(cudaEventDestroy(nt) == cudaSuccess);
  CHECK(cudaEventDestroy(nt) == cudaErrorInvalidResourceHandle);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
  CHECK(cudaStreamSynchronize(s) == cudaErrorInvalidResourceHandle);  // destroyed
  CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle);
  Dev<int> marker(1);
  CHECK(cudasim_test::trivial(dim3(1), dim3(1), marker.p) == cudaSuccess);
  CHECK(cudaGetLastError() == cudaSuccess);
}
