#include "train/evaluator.h"

#include <utility>

#include "engine/check.h"

namespace climseg {

Evaluator::Evaluator(ModelConfig m, SoftmaxXentConfig loss, int64_t H, int64_t W, Device dev, Precision prec)
    : m_(std::move(m)), loss_(std::move(loss)), H_(H), W_(W), dev_(dev), prec_(prec) {}

Evaluator::Entry& Evaluator::entry(int64_t b) {
  auto it = nets_.find(b);
  if (it != nets_.end()) return it->second;
  Entry e;
  e.net = std::make_unique<Net>();
  e.g = build_model(*e.net, m_, b, H_, W_);
  add_loss(*e.net, e.g, loss_, DType::i32);
  NetOptions no;
  no.device = dev_;
  no.dtype = prec_.net;
  no.training = false;
  no.emulate_storage = prec_.emulate;
  e.net->compile(no);
  return nets_.emplace(b, std::move(e)).first->second;
}

Net& Evaluator::net(int64_t batch) { return *entry(batch).net; }

void Evaluator::set_weights(const Net& src) {
  src_ = &src;
  ++version_;
}

void Evaluator::begin(bool with_baseline) {
  with_baseline_ = with_baseline;
  totals_ = {};
  baseline_totals_ = {};
}

void Evaluator::add(ExecContext& ctx, const Tensor& data, const Tensor& labels) {
  const int64_t nb = data.shape().n;
  Entry& e = entry(nb);
  if (e.version != version_) {
    CS_CHECK(src_ != nullptr, "Evaluator: no weights set");
    if (src_ != e.net.get()) {
      if (e.net->param_buffer().defined()) e.net->param_buffer().copy_from(src_->param_buffer(), &ctx);
      if (e.net->state_buffer().defined()) e.net->state_buffer().copy_from(src_->state_buffer(), &ctx);
    }
    e.version = version_;
  }
  e.net->input_tensor(e.g.input).copy_from(data, &ctx);
  e.net->input_tensor(e.g.labels).copy_from(labels, &ctx);
  e.net->forward(ctx);
  const SoftmaxXentMetrics met = SoftmaxXent::read_metrics(ctx, e.net->saved(e.g.loss), e.net->shape(e.g.logits));
  totals_.add(met, nb);
  if (with_baseline_) {
    Tensor lab = labels.to(Device::cpu, &ctx);
    ctx.synchronize();
    baseline_totals_.add(background_counts(lab, met.k), nb);
  }
}

void Evaluator::sum_across(const std::function<void(std::vector<double>&)>& sum) {
  const int64_t K = m_.num_classes;
  std::vector<double> v = totals_.pack(K), w = baseline_totals_.pack(K);
  const size_t half = v.size();
  v.insert(v.end(), w.begin(), w.end());
  sum(v);
  totals_.unpack(std::vector<double>(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(half)), K);
  baseline_totals_.unpack(std::vector<double>(v.begin() + static_cast<std::ptrdiff_t>(half), v.end()), K);
}

Baseline Evaluator::baseline() const {
  CS_CHECK(with_baseline_, "Evaluator::baseline: the pass was begun without the baseline");
  return {baseline_totals_.mean_iou_deepcam(), baseline_totals_.mean_iou_gb()};
}

}  // namespace climseg
