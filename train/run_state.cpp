#include "train/run_state.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <vector>

#include "engine/check.h"

namespace climseg {

namespace {

constexpr const char* kOptPrefix = "optimizer.";

int64_t parse_int_field(const std::map<std::string, std::string>& m, const std::string& k, const std::string& who) {
  auto it = m.find(k);
  CS_CHECK(it != m.end(), who, ": checkpoint metadata lacks '", k, "'");
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    CS_CHECK(used == it->second.size(), "trailing characters");
    return v;
  } catch (const std::exception&) {
    CS_THROW(who, ": checkpoint metadata '", k, "' = '", it->second, "' is not an integer");
  }
}

}  // namespace

std::string save_training_checkpoint(CheckpointStore& store, const Net& net, Optimizer& opt, const LossScaler& scaler,
                                     const RunState& rs, const std::map<std::string, std::string>& fields,
                                     ExecContext& ctx, const Tensor& lag) {
  ctx.synchronize();
  std::vector<CheckpointTensor> tensors;
  // Parameters under their net names, from the master weights (fp32): the file is a weights file too.
  Tensor master;
  std::vector<Optimizer::StateTensor> st = opt.state();
  for (const auto& s : st)
    if (s.name == "master") master = s.tensor.to(Device::cpu, &ctx);
  CS_CHECK(master.defined(), "optimizer state has no master weights");
  ctx.synchronize();
  const size_t mes = master.element_size();
  for (const Net::Param& p : net.params())
    tensors.push_back({p.name, Tensor::wrap(static_cast<char*>(master.data()) + static_cast<size_t>(p.offset) * mes,
                                            p.spec.shape, master.dtype(), Device::cpu, master.buffer())});
  if (net.state_buffer().defined()) {
    Tensor state = net.state_buffer().to(Device::cpu, &ctx);
    ctx.synchronize();
    const size_t ses = state.element_size();
    for (const Net::Param& p : net.state())
      tensors.push_back({p.name, Tensor::wrap(static_cast<char*>(state.data()) + static_cast<size_t>(p.offset) * ses,
                                              p.spec.shape, state.dtype(), Device::cpu, state.buffer())});
  }
  for (const auto& s : st)
    if (s.name != "master") tensors.push_back({kOptPrefix + s.name, s.tensor.to(Device::cpu, &ctx)});
  if (lag.defined()) tensors.push_back({kCheckpointLagTensor, lag.to(Device::cpu, &ctx)});
  ctx.synchronize();
  std::map<std::string, std::string> meta = fields;
  meta["state.iteration"] = std::to_string(rs.iteration);
  meta["state.samples"] = std::to_string(rs.samples);
  meta["state.cursor_epoch"] = std::to_string(rs.cursor.epoch);
  meta["state.cursor_position"] = std::to_string(rs.cursor.position);
  meta["state.net_step"] = std::to_string(net.step());
  meta["state.optimizer_steps"] = std::to_string(opt.steps());
  if (lag.defined()) {
    char b[40];
    std::snprintf(b, sizeof b, "%a", rs.lag_scale);  // hex float: exact
    meta["state.lag_scale"] = b;
  }
  write_loss_scaler_state(scaler.state(), meta, "state.loss_scaler.");
  return store.save(rs.iteration, meta, tensors);
}

// Resume: the parameters of a checkpoint into the optimizer's flat master layout (`master_flat`, host, padding
// zero) and the layer state into the net, by name, all required.
namespace {

void net_from_checkpoint(const Checkpoint& ck, Net& net, Tensor& master_flat) {
  std::map<std::string, const Tensor*> by;
  for (const auto& t : ck.tensors) by[t.name] = &t.data;
  auto find = [&](const std::string& name, const Shape& s) -> const Tensor& {
    auto it = by.find(name);
    CS_CHECK(it != by.end(), "checkpoint ", ck.path, " has no tensor '", name, "'");
    CS_CHECK(it->second->shape() == s, "checkpoint ", ck.path, ": '", name, "' is ", it->second->shape().str(),
             ", the net expects ", s.str());
    return *it->second;
  };
  const size_t es = master_flat.element_size();
  for (const Net::Param& p : net.params()) {
    const Tensor& t = find(p.name, p.spec.shape);
    Tensor dst = Tensor::wrap(static_cast<char*>(master_flat.data()) + static_cast<size_t>(p.offset) * es,
                              p.spec.shape, master_flat.dtype(), Device::cpu, master_flat.buffer());
    CS_CHECK(t.dtype() == dst.dtype(), "checkpoint ", ck.path, ": '", p.name, "' is ", dtype_name(t.dtype()),
             ", the master weights are ", dtype_name(dst.dtype()));
    dst.copy_from(t);
  }
  for (const Net::Param& p : net.state()) {
    const Tensor& t = find(p.name, p.spec.shape);
    p.value.copy_from(t.dtype() == p.value.dtype() ? t : t.cast(p.value.dtype()));
  }
}

}  // namespace

void restore_training_checkpoint(const Checkpoint& ck, Net& net, Optimizer& opt, LossScaler& scaler, RunState& rs,
                                 ExecContext& ctx) {
  const std::string who = "resume from " + ck.path;
  // Master weights: a flat host buffer in the optimizer's layout (padding zero), filled by name.
  Tensor master_ref;
  for (const auto& s : opt.state())
    if (s.name == "master") master_ref = s.tensor;
  Tensor flat = Tensor::zeros(master_ref.shape(), master_ref.dtype(), Device::cpu);
  net_from_checkpoint(ck, net, flat);
  opt.load_state("master", flat, ctx);
  for (const auto& t : ck.tensors)
    if (t.name.rfind(kOptPrefix, 0) == 0) opt.load_state(t.name.substr(std::string(kOptPrefix).size()), t.data, ctx);
  if (const auto it = ck.meta.find("state.lag_scale"); it != ck.meta.end()) rs.lag_scale = std::strtod(it->second.c_str(), nullptr);
  for (const auto& s : opt.state())
    if (s.name != "master") {
      bool found = false;
      for (const auto& t : ck.tensors) found = found || t.name == kOptPrefix + s.name;
      CS_CHECK(found, who, ": the checkpoint has no optimizer state '", kOptPrefix, s.name, "'");
    }
  opt.set_steps(parse_int_field(ck.meta, "state.optimizer_steps", who));
  scaler.set_state(read_loss_scaler_state(ck.meta, "state.loss_scaler."));
  net.set_step(static_cast<uint64_t>(parse_int_field(ck.meta, "state.net_step", who)));
  rs.iteration = parse_int_field(ck.meta, "state.iteration", who);
  rs.samples = parse_int_field(ck.meta, "state.samples", who);
  rs.cursor.epoch = parse_int_field(ck.meta, "state.cursor_epoch", who);
  rs.cursor.position = parse_int_field(ck.meta, "state.cursor_position", who);
  ctx.synchronize();
}

}  // namespace climseg
