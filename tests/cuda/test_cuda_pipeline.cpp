// The input pipeline on a GPU: the normalisation kernel against the CPU kernel (bit for bit, fp32/fp16/bf16), and a
// CUDA loader's batches against a CPU loader's with the same options, including the ordering events: each batch is
// snapshotted by an asynchronous copy queued on the compute stream before the next call to next(), and the
// snapshots are compared only at the end, so a loader that overwrote a slot before the stream read it would fail.
// Skipped (exit 77, tests/util/cuda_main.cpp) without a CUDA device.
#include <hdf5.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/event.h"
#include "engine/pinned_memory.h"
#include "io/dataset_stats.h"
#include "io/hdf5_sample.h"
#include "io/pipeline.h"
#include "kernels/cpu/normalize.h"
#include "kernels/cuda/normalize.h"
#include "tests/util/temp_dir.h"

using namespace climseg;
using namespace climseg::io;
using climseg::test::TempDir;

namespace {

constexpr int64_t kC = kNumChannels;

void put(hid_t f, const std::string& name, hid_t ftype, hid_t mtype, const std::vector<hsize_t>& dims,
         const void* src) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t ds = H5Dcreate2(f, name.c_str(), ftype, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  REQUIRE(ds >= 0);
  REQUIRE(H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) >= 0);
  H5Dclose(ds);
  H5Sclose(space);
  H5Pclose(lcpl);
}

void write_sample(const std::string& path, int64_t H, int64_t W, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> data(static_cast<size_t>(H * W * kC));
  for (size_t i = 0; i < data.size(); ++i) data[i] = 100.0f * static_cast<float>(i % kC) + 10.0f * normal(rng);
  std::vector<uint8_t> labels(static_cast<size_t>(H * W));
  for (auto& l : labels) l = static_cast<uint8_t>(rng() % 3);
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  REQUIRE(f >= 0);
  put(f, "climate/data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {hsize_t(H), hsize_t(W), hsize_t(kC)}, data.data());
  put(f, "climate/labels_0", H5T_STD_U8LE, H5T_NATIVE_UINT8, {hsize_t(H), hsize_t(W)}, labels.data());
  H5Fclose(f);
}

std::vector<uint8_t> bytes_of(const Tensor& host) {
  const auto* p = static_cast<const uint8_t*>(host.data());
  return std::vector<uint8_t>(p, p + host.nbytes());
}

}  // namespace

TEST_CASE("cuda::minmax_normalize equals cpu::minmax_normalize bit for bit", "[cuda][pipeline]") {
  ExecContext ctx(Device::cuda, 0);
  const Shape s{2, 33, 47, kC};
  Tensor x = Tensor::empty(s, DType::f32);
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-3e4f, 3e4f);
  for (int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = u(rng);
  std::vector<double> lo(kC), hi(kC);
  for (int64_t c = 0; c < kC; ++c) {
    lo[static_cast<size_t>(c)] = -3e4 + 11.1 * c;
    hi[static_cast<size_t>(c)] = 3e4 / (c + 1.5);
  }
  std::vector<float> shift(kC), scale(kC);
  cpu::minmax_coefficients(kC, lo.data(), hi.data(), shift.data(), scale.data());
  Tensor shift_d = Tensor::wrap(shift.data(), Shape{1, 1, 1, kC}, DType::f32, Device::cpu).to(Device::cuda);
  Tensor scale_d = Tensor::wrap(scale.data(), Shape{1, 1, 1, kC}, DType::f32, Device::cpu).to(Device::cuda);
  Tensor xd = x.to(Device::cuda);
  const int64_t P = s.pixels();
  for (DType t : {DType::f32, DType::f16, DType::bf16}) {
    INFO(dtype_name(t));
    Tensor yd = Tensor::empty(s, t, Device::cuda);
    cuda::minmax_normalize(ctx, xd, shift_d, scale_d, yd);
    Tensor y = yd.to(Device::cpu, &ctx);
    ctx.synchronize();
    Tensor ref = Tensor::empty(s, t, Device::cpu);
    const float* xp = x.data_as<float>();
    if (t == DType::f32)
      cpu::minmax_normalize<float>(P, kC, xp, kC, ref.data_as<float>(), kC, shift.data(), scale.data());
    else if (t == DType::f16)
      cpu::minmax_normalize<Half>(P, kC, xp, kC, ref.data_as<Half>(), kC, shift.data(), scale.data());
    else
      cpu::minmax_normalize<BFloat16>(P, kC, xp, kC, ref.data_as<BFloat16>(), kC, shift.data(), scale.data());
    REQUIRE(bytes_of(y) == bytes_of(ref));
  }
  // In place on fp32, and equal to io::normalize.
  Tensor ref = x.clone();
  Stats st;
  st.minval = lo;
  st.maxval = hi;
  normalize(ref, st);
  cuda::minmax_normalize(ctx, xd, shift_d, scale_d, xd);
  Tensor y = xd.to(Device::cpu, &ctx);
  ctx.synchronize();
  REQUIRE(bytes_of(y) == bytes_of(ref));
}

TEST_CASE("pinned_empty is page-locked and events order two streams", "[cuda][pipeline]") {
  Tensor h = pinned_empty(Shape{1, 64, 64, 4}, DType::f32);
  REQUIRE(pinned_memory_available());
  REQUIRE(is_pinned(h.data()));
  ExecContext a(Device::cuda, 0), b(Device::cuda, 0);
  for (int64_t i = 0; i < h.numel(); ++i) h.data_as<float>()[i] = static_cast<float>(i);
  Tensor d = Tensor::empty(h.shape(), DType::f32, Device::cuda);
  Tensor back = pinned_empty(h.shape(), DType::f32);
  Event ev(Device::cuda, 0);
  d.copy_from(h, &a);  // on stream a
  ev.record(a);
  ev.wait(b);  // stream b after a's copy, without the host waiting
  back.copy_from(d, &b);
  b.synchronize();
  REQUIRE(ev.done());
  REQUIRE(std::memcmp(back.data(), h.data(), h.nbytes()) == 0);
}

TEST_CASE(
    "a CUDA loader's batches equal a CPU loader's, and a batch stays intact for work queued before the next "
    "call",
    "[cuda][pipeline]") {
  TempDir dir;
  for (int i = 0; i < 9; ++i) write_sample(dir.file("data-" + std::to_string(i) + ".h5"), 12, 20, 100 + i);
  Stats st;
  for (int64_t c = 0; c < kC; ++c) {
    st.minval.push_back(100.0 * c - 50.0);
    st.maxval.push_back(100.0 * c + 60.0);
  }
  write_stats(dir.file("stats.h5"), st);
  const Dataset ds = Dataset::from_directory(dir.path().string());

  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (ShardMode mode : {ShardMode::train, ShardMode::eval}) {
      INFO(dtype_name(dt) << (mode == ShardMode::train ? " train" : " eval"));
      LoaderOptions o;
      o.shard.mode = mode;
      o.shard.seed = 5;
      o.batch = 2;
      o.epochs = 2;
      o.stats = dir.file("stats.h5");
      o.dtype = dt;
      o.threads = 2;
      o.buffers = 2;

      std::vector<std::vector<uint8_t>> ref_data, ref_labels;
      std::vector<std::vector<int64_t>> ref_idx;
      {
        ExecContext cpu(Device::cpu);
        Loader loader(ds, o);
        while (std::optional<Batch> b = loader.next(cpu)) {
          ref_data.push_back(bytes_of(b->data));
          ref_labels.push_back(bytes_of(b->labels));
          ref_idx.push_back(b->indices);
        }
      }
      REQUIRE(ref_data.size() == (mode == ShardMode::train ? 8u : 10u));

      o.device = Device::cuda;
      ExecContext ctx(Device::cuda, 0);
      std::vector<Tensor> snap_data, snap_labels;  // device copies queued on ctx before the next call
      std::vector<std::vector<int64_t>> idx;
      {
        Loader loader(ds, o);
        while (std::optional<Batch> b = loader.next(ctx)) {
          REQUIRE(b->data.device() == Device::cuda);
          REQUIRE(b->data.dtype() == dt);
          Tensor sd = Tensor::empty(b->data.shape(), dt, Device::cuda);
          Tensor sl = Tensor::empty(b->labels.shape(), DType::i32, Device::cuda);
          sd.copy_from(b->data, &ctx);  // asynchronous: runs whenever the stream gets there
          sl.copy_from(b->labels, &ctx);
          snap_data.push_back(sd);
          snap_labels.push_back(sl);
          idx.push_back(b->indices);
        }
        ctx.synchronize();
      }
      REQUIRE(idx == ref_idx);
      for (size_t k = 0; k < snap_data.size(); ++k) {
        INFO("batch " << k);
        Tensor hd = snap_data[k].to(Device::cpu, &ctx), hl = snap_labels[k].to(Device::cpu, &ctx);
        ctx.synchronize();
        REQUIRE(bytes_of(hd) == ref_data[k]);
        REQUIRE(bytes_of(hl) == ref_labels[k]);
      }
    }
  }
}
