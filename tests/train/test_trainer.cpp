// train/: the Trainer driven directly (no CLI) on the CPU: a step's bookkeeping and learning, determinism, exact
// resumption through a checkpoint, the skip path of a non-finite gradient, the test hook; fit()'s schedule of
// validations, checkpoints and JSONL lines, and its resume; the Evaluator's totals and
// all-background baseline against counts made by hand; the IoU definitions of train/metrics.h.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <stdexcept>
#include <vector>

#include "engine/checkpoint.h"
#include "tests/util/temp_dir.h"
#include "tests/util/train_batch.h"
#include "train/evaluator.h"
#include "train/fit.h"
#include "train/metrics.h"
#include "train/trainer.h"

using namespace climseg;

namespace {

constexpr int64_t kB = 2, kH = 32, kW = 48;

// A width-1/16 DeepLabv3+ (every kind of its layers, 2018 sum loss) at 32x48, batch 2, Adam at a constant lr.
TrainerConfig small_config(DType storage = DType::f32) {
  TrainerConfig c;
  c.model = ModelConfig::defaults("deeplabv3plus");
  c.model.width = 1.0 / 16;
  c.model.bn_momentum = 0.1;
  c.batch = kB;
  c.height = kH;
  c.width = kW;
  c.precision = resolve_precision(dtype_name(storage), Device::cpu);
  c.loss = reference_loss(c.model);
  c.optimizer.kind = OptimizerKind::adam;
  c.schedule.base_lr = 1e-3;
  c.scaler.mode = LossScaleMode::none;  // fp32 (the CLI's --loss-scale auto)
  c.seed = 3;
  return c;
}

using Batch = test::TrainBatch;
Batch make_batch(uint64_t seed) { return test::make_train_batch(seed, kB, kH, kW); }

std::vector<unsigned char> bytes(const Tensor& t) {
  const auto* p = static_cast<const unsigned char*>(t.data());
  return {p, p + t.nbytes()};
}

}  // namespace

TEST_CASE("Trainer: a step's bookkeeping, and the loss falls on a repeated batch", "[train][trainer]") {
  ExecContext ctx(Device::cpu);
  Trainer t(small_config(), ctx);
  REQUIRE(t.data_parallel() == nullptr);  // one rank, no lag
  const Batch b = make_batch(1);
  const std::vector<unsigned char> w0 = bytes(t.net().param_buffer());
  std::vector<StepStats> s;
  for (int i = 0; i < 8; ++i) s.push_back(t.step(b.data, b.labels));
  for (int i = 0; i < 8; ++i) {
    CHECK(s[i].step == i + 1);
    CHECK(s[i].applied);
    CHECK(s[i].lr == 1e-3);
    CHECK(s[i].loss_scale == 1.0);
    CHECK(std::isfinite(s[i].grad_norm));
    CHECK(s[i].grad_norm > 0);
    CHECK(s[i].iou >= 0.0);
    CHECK(s[i].iou <= 1.0);
  }
  CHECK(t.state().iteration == 8);
  CHECK(t.state().samples == 8 * kB);
  CHECK(t.optimizer().steps() == 8);
  CHECK(bytes(t.net().param_buffer()) != w0);
  INFO("loss step 1 " << s[0].loss << ", step 8 " << s[7].loss);
  CHECK(s[7].loss < 0.8 * s[0].loss);
}

TEST_CASE("Trainer: two trainers from the same seed are bit-identical; another seed is not", "[train][trainer]") {
  ExecContext ctx(Device::cpu);
  Trainer a(small_config(), ctx), b(small_config(), ctx);
  TrainerConfig other = small_config();
  other.seed = 4;
  Trainer c(other, ctx);
  for (uint64_t i = 0; i < 3; ++i) {
    const Batch x = make_batch(10 + i);
    const StepStats sa = a.step(x.data, x.labels), sb = b.step(x.data, x.labels);
    c.step(x.data, x.labels);
    CHECK(sa.loss == sb.loss);
    CHECK(sa.grad_norm == sb.grad_norm);
    CHECK(sa.iou == sb.iou);
  }
  CHECK(bytes(a.net().param_buffer()) == bytes(b.net().param_buffer()));
  CHECK(bytes(a.net().state_buffer()) == bytes(b.net().state_buffer()));
  CHECK(bytes(a.net().param_buffer()) != bytes(c.net().param_buffer()));
}

TEST_CASE("Trainer: 2 steps, checkpoint, restore into a new Trainer, 2 steps equal 4 straight, bit for bit",
          "[train][trainer][checkpoint]") {
  test::TempDir dir;
  ExecContext ctx(Device::cpu);
  std::vector<Batch> batches;
  for (uint64_t i = 0; i < 4; ++i) batches.push_back(make_batch(20 + i));
  const std::map<std::string, std::string> fields = {{"train.test", "trainer"}};

  Trainer straight(small_config(), ctx);
  std::vector<StepStats> ref;
  for (const Batch& b : batches) ref.push_back(straight.step(b.data, b.labels));

  {
    Trainer first(small_config(), ctx);
    first.step(batches[0].data, batches[0].labels);
    first.step(batches[1].data, batches[1].labels);
    first.state().cursor = {0, 4};
    CheckpointStore store(dir.file("ck"));
    first.save(store, fields);
  }
  TrainerConfig cfg = small_config();
  cfg.seed = 99;  // other initial weights: the checkpoint must replace all of them
  Trainer resumed(cfg, ctx);
  CheckpointStore store(dir.file("ck"));
  std::optional<Checkpoint> ck = store.load_latest();
  REQUIRE(ck.has_value());
  check_checkpoint_fields(*ck, fields);
  resumed.restore(*ck);
  CHECK(resumed.state().iteration == 2);
  CHECK(resumed.state().samples == 2 * kB);
  CHECK(resumed.state().cursor.position == 4);
  CHECK(resumed.optimizer().steps() == 2);
  for (size_t i = 2; i < 4; ++i) {
    const StepStats s = resumed.step(batches[i].data, batches[i].labels);
    CHECK(s.step == ref[i].step);
    CHECK(s.loss == ref[i].loss);
    CHECK(s.grad_norm == ref[i].grad_norm);
  }
  CHECK(bytes(resumed.net().param_buffer()) == bytes(straight.net().param_buffer()));
  CHECK(bytes(resumed.net().state_buffer()) == bytes(straight.net().state_buffer()));
}

TEST_CASE("Trainer: a non-finite gradient skips the step and changes nothing but the loss scale",
          "[train][trainer][mixed]") {
  ExecContext ctx(Device::cpu);
  TrainerConfig cfg = small_config(DType::f16);  // fp16 storage emulated on the CPU
  cfg.scaler.mode = LossScaleMode::dynamic;
  cfg.scaler.init_scale = std::ldexp(1.0, 40);  // the scaled gradients overflow fp16
  Trainer t(cfg, ctx);
  const Batch b = make_batch(5);
  const std::vector<unsigned char> w0 = bytes(t.net().param_buffer());
  const StepStats s = t.step(b.data, b.labels);
  CHECK_FALSE(s.applied);
  CHECK(s.grad_norm == -1.0);
  CHECK(s.loss_scale == std::ldexp(1.0, 39));  // backed off by half
  CHECK(std::isfinite(s.loss));
  CHECK(t.optimizer().steps() == 0);  // the schedule position stays
  CHECK(t.state().iteration == 1);    // the batch was consumed
  CHECK(t.scaler().state().skipped_steps == 1);
  CHECK(bytes(t.net().param_buffer()) == w0);
}

TEST_CASE("Trainer hooks: before_step sees each step's number; a throwing hook stops before the step",
          "[train][trainer]") {
  ExecContext ctx(Device::cpu);
  Trainer t(small_config(), ctx);
  std::vector<int64_t> seen;
  t.hooks.before_step = [&](int64_t step) {
    seen.push_back(step);
    if (step == 3) throw std::runtime_error("fault injected");
  };
  const Batch b = make_batch(6);
  t.step(b.data, b.labels);
  t.step(b.data, b.labels);
  const std::vector<unsigned char> w = bytes(t.net().param_buffer());
  CHECK_THROWS_WITH(t.step(b.data, b.labels), "fault injected");
  CHECK(seen == std::vector<int64_t>{1, 2, 3});
  CHECK(t.state().iteration == 2);
  CHECK(bytes(t.net().param_buffer()) == w);
}

TEST_CASE("Evaluator: totals over batches, the all-background baseline, sums across ranks", "[train][evaluator]") {
  ExecContext ctx(Device::cpu);
  const TrainerConfig cfg = small_config();
  Trainer t(cfg, ctx);
  const Batch b1 = make_batch(7), b2 = make_batch(8);
  t.step(b1.data, b1.labels);
  Evaluator ev(cfg.model, cfg.loss, kH, kW, Device::cpu, cfg.precision);
  ev.set_weights(t.net());
  ev.begin(true);
  ev.add(ctx, b1.data, b1.labels);
  ev.add(ctx, b2.data, b2.labels);
  const EvalTotals tot = ev.totals();
  CHECK(tot.samples == 2 * kB);
  CHECK(tot.pixels == 2 * kB * kH * kW);
  int64_t predicted = 0;
  for (int64_t c = 0; c < 3; ++c) predicted += tot.tp[c] + tot.fp[c];
  CHECK(predicted == tot.pixels);  // every pixel predicted once
  CHECK(tot.mean_iou_deepcam() >= 0.0);
  CHECK(tot.mean_iou_deepcam() <= 1.0);

  // The baseline by hand: all background, so IoU_0 = (pixels labelled 0) / pixels, and 0 for classes 1 and 2,
  // which every sample has (DeepCAM: 0/(0+0+FN) = 0, not the 0/0 = 1 of an absent class).
  int64_t zeros = 0, total = 0;
  double per_sample = 0;
  for (const Batch* b : {&b1, &b2})
    for (int64_t n = 0; n < kB; ++n) {
      int64_t z = 0;
      for (int64_t p = 0; p < kH * kW; ++p) z += b->labels.data_as<int32_t>()[n * kH * kW + p] == 0;
      zeros += z;
      total += kH * kW;
      per_sample += static_cast<double>(z) / static_cast<double>(kH * kW) / 3.0;
    }
  const Baseline base = ev.baseline();
  CHECK(base.iou_gb == Approx(static_cast<double>(zeros) / static_cast<double>(total) / 3.0).epsilon(1e-12));
  CHECK(base.iou_deepcam == Approx(per_sample / (2 * kB)).epsilon(1e-12));

  // Two identical "ranks": every count doubles, every mean stays.
  ev.sum_across([](std::vector<double>& v) {
    for (double& x : v) x *= 2;
  });
  CHECK(ev.totals().samples == 2 * tot.samples);
  CHECK(ev.totals().tp == std::vector<int64_t>{2 * tot.tp[0], 2 * tot.tp[1], 2 * tot.tp[2]});
  CHECK(ev.totals().mean_iou_deepcam() == Approx(tot.mean_iou_deepcam()).epsilon(1e-12));
  CHECK(ev.totals().mean_iou_gb() == Approx(tot.mean_iou_gb()).epsilon(1e-12));
  CHECK(ev.baseline().iou_gb == Approx(base.iou_gb).epsilon(1e-12));

  // A new pass starts from zero; without the baseline, asking for it is an error.
  ev.begin(false);
  ev.add(ctx, b1.data, b1.labels);
  CHECK(ev.totals().samples == kB);
  CHECK_THROWS(ev.baseline());
}

TEST_CASE("metrics: the DeepCAM and GB 2018 IoU of hand-made counts", "[train][metrics]") {
  SoftmaxXentMetrics m;
  m.n = 2;
  m.k = 3;
  // Sample 0: class 0 TP 3 FP 1; class 1 TP 1 FN 1; class 2 absent everywhere (0/0: 1 for DeepCAM, left out by GB).
  // Sample 1: class 0 TP 2 FN 2; class 1 FP 2; class 2 absent.
  m.tp = {3, 1, 0, 2, 0, 0};
  m.fp = {1, 0, 0, 0, 2, 0};
  m.fn = {0, 1, 0, 2, 0, 0};
  m.valid_pixels = 10;
  CHECK(sample_iou_deepcam(m, 0) == Approx((3.0 / 4 + 1.0 / 2 + 1.0) / 3));
  CHECK(sample_iou_deepcam(m, 1) == Approx((2.0 / 4 + 0.0 + 1.0) / 3));
  CHECK(batch_iou_deepcam_sum(m) == Approx(sample_iou_deepcam(m, 0) + sample_iou_deepcam(m, 1)));
  EvalTotals t;
  t.add(m, 2);
  // GB: class 0 TP 5 FP 1 FN 2 -> 5/8; class 1 TP 1 FP 2 FN 1 -> 1/4; class 2 has no denominator.
  CHECK(t.mean_iou_gb() == Approx((5.0 / 8 + 1.0 / 4) / 2));
  CHECK(std::isnan(t.iou_class(2)));
  CHECK(t.accuracy() == Approx(6.0 / 10));
  const std::vector<double> packed = t.pack(3);
  EvalTotals u;
  u.unpack(packed, 3);
  CHECK(u.pack(3) == packed);
  CHECK_THROWS(u.unpack(packed, 4));
}

TEST_CASE("fit: validations at epoch ends and at the end, checkpoints with them, JSONL lines, exact resume",
          "[train][fit]") {
  test::TempDir dir;
  ExecContext ctx(Device::cpu);
  const TrainerConfig cfg = small_config();
  // 3 batches an epoch; the source follows the trainer's data cursor, as a loader started there would.
  auto source = [&](Trainer& t) {
    return [&t]() -> std::optional<FitBatch> {
      const DataCursor c = t.state().cursor;
      const Batch b = make_batch(100 + static_cast<uint64_t>(c.epoch * 3 + c.position));
      const bool end = c.position == 2;
      return FitBatch{b.data, b.labels, c.epoch, end ? DataCursor{c.epoch + 1, 0} : DataCursor{c.epoch, c.position + 1},
                      end};
    };
  };
  const Batch val = make_batch(200);
  struct Seen {
    std::vector<std::string> validations;  // "why@step"
    std::vector<std::string> checkpoints;  // "step(final)"
    std::vector<int64_t> steps;
  };
  auto run = [&](Trainer& t, CheckpointStore* store, int64_t total, const std::string& metrics, Seen& seen) {
    Evaluator ev(cfg.model, cfg.loss, kH, kW, Device::cpu, cfg.precision);
    MetricsLog log(metrics, false);
    FitOptions fo;
    fo.total_steps = total;
    fo.store = store;
    FitCallbacks cb;
    cb.next_batch = source(t);
    cb.validation_batches = [&](Evaluator& e) { e.add(ctx, val.data, val.labels); };
    cb.on_step = [&](const StepStats& s, const FitBatch&) { seen.steps.push_back(s.step); };
    cb.on_validation = [&](const char* why, int64_t step, const EvalTotals& tot) {
      CHECK(tot.samples == kB);
      seen.validations.push_back(std::string(why) + "@" + std::to_string(step));
    };
    cb.on_checkpoint = [&](const std::string& path, double, bool final) {
      seen.checkpoints.push_back(path.substr(path.size() - 22, 10) + (final ? "(final)" : ""));
    };
    return fit(t, ev, log, fo, cb);
  };

  Trainer straight(cfg, ctx);
  Seen s1;
  CheckpointStore store(dir.file("ck"), CheckpointStoreOptions{10});
  const FitResult r = run(straight, &store, 7, dir.file("m.jsonl"), s1);
  CHECK(s1.steps == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7});
  CHECK(s1.validations == std::vector<std::string>{"end of epoch@3", "end of epoch@6", "end of run@7"});
  CHECK(s1.checkpoints == std::vector<std::string>{"0000000003", "0000000006", "0000000007(final)"});
  REQUIRE(r.last.has_value());
  REQUIRE(r.baseline.has_value());
  CHECK(r.last->samples == kB);
  std::ifstream f(dir.file("m.jsonl"));
  int steps = 0, validations = 0;
  for (std::string line; std::getline(f, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    steps += j.at("event") == "step";
    validations += j.at("event") == "validation";
  }
  CHECK(steps == 7);
  CHECK(validations == 3);

  // From the step-6 checkpoint: one step (the last), its validation and final checkpoint, the straight run's weights.
  CheckpointStore store2(dir.file("ck2"));
  Trainer resumed(cfg, ctx);
  resumed.restore(CheckpointStore::load_file(dir.file("ck") + "/ckpt-0000000006.safetensors"));
  CHECK(resumed.state().cursor.epoch == 2);
  CHECK(resumed.state().cursor.position == 0);
  Seen s2;
  run(resumed, &store2, 7, "", s2);
  CHECK(s2.steps == std::vector<int64_t>{7});
  CHECK(s2.validations == std::vector<std::string>{"end of run@7"});
  CHECK(s2.checkpoints == std::vector<std::string>{"0000000007(final)"});
  CHECK(bytes(resumed.net().param_buffer()) == bytes(straight.net().param_buffer()));

  // Already at the end: no step, the final validation and checkpoint only.
  Seen s3;
  run(resumed, nullptr, 7, "", s3);
  CHECK(s3.steps.empty());
  CHECK(s3.validations == std::vector<std::string>{"end of run@7"});
}
