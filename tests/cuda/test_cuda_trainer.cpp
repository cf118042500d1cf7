// train/'s Trainer and Evaluator on the CUDA backend, driven directly (no CLI), against the same on the CPU: a small
// Tiramisu (no batch norm, so the CPU and CUDA curves stay together; tests/cuda/test_cuda_train_cli.cpp covers the
// three networks through the CLI), 32x48, batch 2, SGD. Step 1's loss within the "cuda train step-1 loss fp32" row,
// the 4-step mean within "cuda train 10-step mean loss"; a checkpoint written and restored on the device continues
// bit for bit; the Evaluator's loss on the device follows the CPU's. Runs on a GPU and in the emulation build.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/checkpoint.h"
#include "tests/util/temp_dir.h"
#include "tests/util/train_batch.h"
#include "tests/util/tolerances.h"
#include "train/evaluator.h"
#include "train/trainer.h"

using namespace climseg;

namespace {

constexpr int64_t kB = 2, kH = 32, kW = 48;

TrainerConfig tiny_tiramisu(Device dev) {
  TrainerConfig c;
  c.model = ModelConfig::defaults("tiramisu");
  c.model.blocks = {1, 1, 1, 1, 1};
  c.model.growth = 4;
  c.model.kernel = 3;
  c.model.dropout = 0;  // dropout masks are drawn differently on the two devices
  c.batch = kB;
  c.height = kH;
  c.width = kW;
  c.precision = resolve_precision("fp32", dev);
  c.loss = reference_loss(c.model);
  c.optimizer.kind = OptimizerKind::sgd;
  c.optimizer.momentum = 0.9;
  c.schedule.base_lr = 1.0;  // Tiramisu's loss (sum by nonzero weights x 0.1) is ~4e-3
  c.scaler.mode = LossScaleMode::none;
  c.seed = 11;
  return c;
}

using Batch = test::TrainBatch;
Batch make_batch(uint64_t seed) { return test::make_train_batch(seed, kB, kH, kW); }

std::vector<unsigned char> host_bytes(const Tensor& t, ExecContext& ctx) {
  Tensor h = t.to(Device::cpu, &ctx);
  ctx.synchronize();
  const auto* p = static_cast<const unsigned char*>(h.data());
  return {p, p + h.nbytes()};
}

}  // namespace

TEST_CASE("Trainer on CUDA follows the CPU; its checkpoint resumes bit for bit; the Evaluator agrees",
          "[cuda][train][trainer]") {
  std::vector<Batch> batches;
  for (uint64_t i = 0; i < 4; ++i) batches.push_back(make_batch(30 + i));
  ExecContext cpu_ctx(Device::cpu), gpu_ctx(Device::cuda);
  Trainer cpu(tiny_tiramisu(Device::cpu), cpu_ctx), gpu(tiny_tiramisu(Device::cuda), gpu_ctx);
  std::vector<StepStats> c, g;
  for (const Batch& b : batches) {
    c.push_back(cpu.step(b.data, b.labels));
    g.push_back(gpu.step(b.data, b.labels));  // host batches: the Trainer copies them to the device
  }
  double mc = 0, mg = 0;
  for (size_t i = 0; i < 4; ++i) {
    CHECK(g[i].applied);
    CHECK(g[i].step == static_cast<int64_t>(i) + 1);
    mc += c[i].loss / 4;
    mg += g[i].loss / 4;
  }
  INFO("step 1 loss cpu " << c[0].loss << " cuda " << g[0].loss << "; mean cpu " << mc << " cuda " << mg);
  const test::Tolerance& r1 = test::tol::cuda_train_step1_f32;
  CHECK(std::abs(g[0].loss - c[0].loss) <= r1.atol + r1.rtol * std::abs(c[0].loss));
  const test::Tolerance& rm = test::tol::cuda_train_mean;
  CHECK(std::abs(mg - mc) <= rm.atol + rm.rtol * mc);

  SECTION("2 steps, checkpoint, restore into a new Trainer, 2 steps equal 4 straight on the device") {
    test::TempDir dir;
    {
      Trainer first(tiny_tiramisu(Device::cuda), gpu_ctx);
      first.step(batches[0].data, batches[0].labels);
      first.step(batches[1].data, batches[1].labels);
      CheckpointStore store(dir.file("ck"));
      first.save(store, {});
    }
    TrainerConfig cfg = tiny_tiramisu(Device::cuda);
    cfg.seed = 12;
    Trainer resumed(cfg, gpu_ctx);
    std::optional<Checkpoint> ck = CheckpointStore(dir.file("ck")).load_latest();
    REQUIRE(ck.has_value());
    resumed.restore(*ck);
    for (size_t i = 2; i < 4; ++i) CHECK(resumed.step(batches[i].data, batches[i].labels).loss == g[i].loss);
    CHECK(host_bytes(resumed.net().param_buffer(), gpu_ctx) == host_bytes(gpu.net().param_buffer(), gpu_ctx));
  }

  SECTION("the Evaluator on the device gives the CPU's loss and pixel counts") {
    const TrainerConfig cc = tiny_tiramisu(Device::cpu), gc = tiny_tiramisu(Device::cuda);
    Evaluator ec(cc.model, cc.loss, kH, kW, Device::cpu, cc.precision);
    Evaluator eg(gc.model, gc.loss, kH, kW, Device::cuda, gc.precision);
    ec.set_weights(cpu.net());
    eg.set_weights(gpu.net());
    ec.begin(true);
    eg.begin(true);
    for (const Batch& b : batches) {
      ec.add(cpu_ctx, b.data, b.labels);
      eg.add(gpu_ctx, b.data, b.labels);
    }
    CHECK(eg.totals().samples == 4 * kB);
    CHECK(eg.totals().pixels == ec.totals().pixels);
    CHECK(eg.baseline().iou_gb == ec.baseline().iou_gb);  // from the labels alone
    // The weights differ by the 4 steps' drift (the mean-loss row); the loss follows within it.
    CHECK(std::abs(eg.totals().loss() - ec.totals().loss()) <= rm.atol + rm.rtol * ec.totals().loss());
  }
}
