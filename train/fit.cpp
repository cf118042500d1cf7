#include "train/fit.h"

#include <chrono>

#include "engine/check.h"
#include "engine/profiler.h"

namespace climseg {

using json = nlohmann::json;

FitResult fit(Trainer& trainer, Evaluator& evaluator, MetricsLog& log, const FitOptions& o, const FitCallbacks& cb) {
  ExecContext& ctx = trainer.context();
  RunState& rs = trainer.state();
  FitResult res;
  auto epoch_of = [&] { return rs.cursor.position == 0 ? rs.cursor.epoch : rs.cursor.epoch + 1; };
  auto validate = [&](const char* why) {
    if (!cb.validation_batches) return;
    Profiler* p = ctx.profiler;
    ctx.profiler = nullptr;  // the profile covers training steps only
    log.mllog("eval_start", nullptr, {{"epoch_num", epoch_of()}});
    // Ranks validate disjoint shards (nothing dropped) with the same weights and the average of their batch-norm
    // running statistics, then sum the counts.
    trainer.prepare_validation();
    evaluator.set_weights(trainer.net());
    evaluator.begin(!res.baseline);  // the baseline's counts once (the labels do not change)
    cb.validation_batches(evaluator);
    if (trainer.config().ranks > 1)
      evaluator.sum_across([&](std::vector<double>& v) { trainer.sum_across_ranks(v); });
    res.last = evaluator.totals();
    if (!res.baseline) res.baseline = evaluator.baseline();
    const int64_t epoch = epoch_of();
    if (cb.on_validation) cb.on_validation(why, rs.iteration, *res.last);
    log.mllog("eval_stop", nullptr, {{"epoch_num", epoch}});
    json j = res.last->to_json();
    j["event"] = "validation";
    j["step"] = rs.iteration;
    j["epoch"] = epoch;
    j["baseline_mean_iou"] = res.baseline->iou_deepcam;
    log.write(j);
    log.mllog("eval_accuracy", res.last->mean_iou_deepcam(), {{"epoch_num", epoch}});
    ctx.profiler = p;
  };
  // Not profiled: checkpoints are written between steps, and the profile's total is the sum of step times.
  auto checkpoint = [&](bool final) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string path = trainer.save(*o.store, o.fields);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (cb.on_checkpoint) cb.on_checkpoint(path, ms, final);
  };

  bool in_epoch = false;  // between MLLOG epoch_start and epoch_stop
  int64_t epoch_num = 0;  // MLLOG's epoch number (1-based) of the epoch in progress
  while (rs.iteration < o.total_steps) {
    if (ctx.profiler) ctx.profiler->begin_step(ctx.stream());
    std::optional<FitBatch> b;
    {
      ProfileScope s(ctx, ProfCategory::data_wait, "loader.next");
      b = cb.next_batch();
    }
    CS_CHECK(b.has_value(), "the training data ended before step ", rs.iteration);
    if (!in_epoch) {
      epoch_num = b->epoch + 1;
      log.mllog("epoch_start", nullptr, {{"epoch_num", epoch_num}, {"step_num", rs.iteration}});
      in_epoch = true;
    }
    const StepStats st = trainer.step(b->data, b->labels);
    if (ctx.profiler) ctx.profiler->end_step(ctx.stream());
    rs.cursor = b->next;
    json j;
    j["event"] = "step";
    j["step"] = st.step;
    j["epoch"] = b->epoch;
    j["loss"] = st.loss;
    j["lr"] = st.lr;
    j["loss_scale"] = st.loss_scale;
    j["applied"] = st.applied;
    j["grad_norm"] = st.grad_norm;
    j["iou"] = st.iou;
    log.write(j);
    if (cb.on_step) cb.on_step(st, *b);
    const bool last = st.step == o.total_steps;
    const bool want_val = !last && (o.validate_every > 0 ? st.step % o.validate_every == 0 : b->epoch_end);
    if (want_val) validate(b->epoch_end ? "end of epoch" : "periodic");
    if (b->epoch_end && !last) {
      log.mllog("epoch_stop", nullptr, {{"epoch_num", epoch_num}, {"step_num", st.step}});
      in_epoch = false;
    }
    if (o.store && !last && ((o.checkpoint_every > 0 && st.step % o.checkpoint_every == 0) ||
                             (o.checkpoint_every == 0 && want_val)))
      checkpoint(false);
  }
  validate("end of run");
  if (in_epoch) log.mllog("epoch_stop", nullptr, {{"epoch_num", epoch_num}, {"step_num", rs.iteration}});
  if (o.store) checkpoint(true);
  return res;
}

}  // namespace climseg
