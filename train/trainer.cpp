#include "train/trainer.h"

#include "engine/check.h"
#include "engine/profiler.h"
#include "kernels/cpu/loss.h"
#include "train/metrics.h"

namespace climseg {

Trainer::Trainer(const TrainerConfig& cfg, ExecContext& ctx) : cfg_(cfg), ctx_(ctx), scaler_(cfg.scaler) {
  const Device dev = ctx.device();
  g_ = build_model(net_, cfg_.model, cfg_.batch, cfg_.height, cfg_.width);
  add_loss(net_, g_, cfg_.loss, DType::i32);
  NetOptions no;
  no.device = dev;
  no.dtype = cfg_.precision.net;
  no.emulate_storage = cfg_.precision.emulate;
  net_.compile(no);
  net_.init_params(cfg_.seed);
  loss_layer_ = dynamic_cast<SoftmaxXent*>(&net_.layer(net_.num_nodes() - 1));
  CS_CHECK(loss_layer_ != nullptr, "the net's last node is not the loss");
  std::vector<ParamRange> ranges;
  for (const Net::Param& p : net_.params()) ranges.push_back({p.offset, p.spec.shape.numel()});
  if (cfg_.ranks > 1 || cfg_.dist.lag > 0) dp_ = std::make_unique<comm::DataParallel>(cfg_.dist, net_, dev, ctx);
  opt_ = std::make_unique<Optimizer>(cfg_.optimizer, net_.param_buffer(),
                                     dp_ ? dp_->optimizer_grads() : net_.grad_buffer(), ranges,
                                     cfg_.precision.storage, ctx);
  if (cfg_.precision.emulate != DType::f32) {
    // The model copy starts as the rounded master weights (as after every step).
    const Tensor& pb = net_.param_buffer();
    round_to_storage(1, pb.numel(), pb.data_as<float>(), pb.numel(), cfg_.precision.emulate == DType::bf16);
  }
  dy_host_ = Tensor::empty(Shape{1, 1, 1, 1}, cfg_.precision.net, Device::cpu);
  dy_host_.set_flat(0, 1.0);
  const Shape ls = net_.shape(g_.logits);
  const XentSavedLayout lay = xent_saved_layout(ls.n, ls.h * ls.w, ls.c);
  metrics_bytes_ = static_cast<int64_t>(lay.mask);
  metrics_copy_ = Tensor::zeros(Shape{1, 1, 1, static_cast<int64_t>(lay.total)}, DType::u8, dev, &ctx);
  metrics_head_ = metrics_copy_.channel_slice(0, metrics_bytes_);
}

Trainer::~Trainer() = default;

StepStats Trainer::step(const Tensor& data, const Tensor& labels) {
  if (hooks.before_step) hooks.before_step(rs_.iteration + 1);
  {
    ProfileScope s(ctx_, ProfCategory::copy_transpose, "batch into the net");
    net_.input_tensor(g_.input).copy_from(data, &ctx_);
    net_.input_tensor(g_.labels).copy_from(labels, &ctx_);
  }
  // Forward.
  loss_layer_->set_grad_multiplier(scaler_.scale());
  net_.forward(ctx_);
  metrics_head_.copy_from(net_.saved(g_.loss).channel_slice(0, metrics_bytes_), &ctx_);
  // Set after forward: the planner gives the output gradient memory that earlier tensors use.
  net_.output_grad().copy_from(dy_host_, &ctx_);
  const double lr = schedule_lr(cfg_.schedule, opt_->steps());
  // Backward, reduce, update.
  StepResult r;
  if (dp_) {
    // Buckets reduce while backward goes on; the optimizer divides the sum by the rank count. With lag it applies
    // the previous step's gradients, computed with the previous step's loss scale.
    net_.backward(ctx_, GradMode::overwrite, [&](int node) { dp_->node_done(node); });
    dp_->finish();
    const double used_scale = dp_->has_lag() ? rs_.lag_scale : scaler_.scale();
    r = opt_->step(ctx_, lr, 1.0 / (used_scale * static_cast<double>(cfg_.ranks)));
    rs_.lag_scale = scaler_.scale();
  } else {
    net_.backward(ctx_);
    r = opt_->step(ctx_, lr, scaler_.inverse());
  }
  scaler_.update(r.applied);
  // Metrics: the global batch's loss (the mean of the ranks' losses: each is its local batch's reduction) and IoU.
  SoftmaxXentMetrics met = SoftmaxXent::read_metrics(ctx_, metrics_copy_, net_.shape(g_.logits));
  StepStats st;
  if (cfg_.ranks > 1) {
    std::vector<double> v = {met.loss, batch_iou_deepcam_sum(met)};
    dp_->sum(v);
    st.loss = v[0] / static_cast<double>(cfg_.ranks);
    st.iou = v[1] / static_cast<double>(met.n * cfg_.ranks);
  } else {
    st.loss = met.loss;
    st.iou = met.n ? batch_iou_deepcam_sum(met) / static_cast<double>(met.n) : 0.0;
  }
  if (dp_ && cfg_.dist.check_replicas > 0 && (rs_.iteration + 1) % cfg_.dist.check_replicas == 0)
    for (const auto& s : opt_->state())
      if (s.name == "master") dp_->check_replicas(s.tensor, rs_.iteration + 1, ctx_);
  // Last: with lag, this step's gradients start their allreduce on the communication thread, which must be the only
  // thread in MPI until the next finish() (MPI_THREAD_SERIALIZED).
  if (dp_) dp_->after_step();
  ++rs_.iteration;
  rs_.samples += cfg_.batch * cfg_.ranks;
  st.step = rs_.iteration;
  st.lr = lr;
  st.loss_scale = scaler_.scale();
  st.applied = r.applied;
  st.grad_norm = r.applied ? r.grad_norm : -1.0;
  return st;
}

void Trainer::prepare_validation() {
  if (dp_ && dp_->has_lag()) dp_->lag_buffer();  // no allreduce in flight during the collectives that follow
  if (cfg_.ranks > 1) dp_->average_state(net_, ctx_);
}

void Trainer::sum_across_ranks(std::vector<double>& v) {
  if (cfg_.ranks > 1) dp_->sum(v);
}

std::string Trainer::save(CheckpointStore& store, const std::map<std::string, std::string>& fields) {
  return save_training_checkpoint(store, net_, *opt_, scaler_, rs_, fields, ctx_,
                                  dp_ && dp_->has_lag() ? dp_->lag_buffer() : Tensor());
}

void Trainer::restore(const Checkpoint& ck) {
  restore_training_checkpoint(ck, net_, *opt_, scaler_, rs_, ctx_);
  if (dp_ && dp_->has_lag()) {
    const CheckpointTensor* lt = ck.find(kCheckpointLagTensor);
    CS_CHECK(lt != nullptr, "resume from ", ck.path, ": --gradient-lag 1 but the checkpoint has no '",
             kCheckpointLagTensor, "'");
    dp_->set_lag_buffer(lt->data);
  }
}

}  // namespace climseg
