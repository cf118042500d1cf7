// train/optimizer and train/schedule against PyTorch in float64 (tests/torch/optim_check.py):
// - torch.optim.SGD (momentum, nesterov, weight decay), Adam (weight decay) and AdamW over 10 steps with a changing
//   lr, random weights and gradients, three tensors laid out with padding as in a Net's flat buffer: weights and
//   optimizer state within the "pytorch fp64" row;
// - MultiStepLR, CosineAnnealingLR (past T_max too) and PolynomialLR (past total_iters) against schedule_lr without
//   warmup, 60 steps each.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/optimizer.h"
#include "engine/philox.h"
#include "train/schedule.h"
#include "tests/util/compare.h"
#include "tests/util/npy.h"
#include "tests/util/temp_dir.h"
#include "tests/util/tolerances.h"
#include "tests/util/torch_oracle.h"

using namespace climseg;
using namespace climseg::test;

namespace {

const std::vector<ParamRange> kRanges = {{0, 37}, {48, 5}, {64, 130}};
constexpr int64_t kN = 200;
constexpr int kSteps = 10;

double uniform(uint64_t seed, uint64_t sub, int64_t i) { return 2.0 * philox_uniform(seed, sub, i) - 1.0; }
double lr_at(int s) { return 0.02 / (1.0 + 0.3 * s); }

int64_t total_numel() {
  int64_t n = 0;
  for (const auto& r : kRanges) n += r.numel;
  return n;
}

// The tensors of a flat buffer concatenated (padding dropped), as PyTorch's side sees them.
Tensor packed(const Tensor& flat) {
  Tensor out = Tensor::empty({1, 1, 1, total_numel()}, DType::f64);
  int64_t k = 0;
  for (const auto& r : kRanges)
    for (int64_t i = r.offset; i < r.offset + r.numel; ++i) out.set_flat(k++, flat.get_flat(i));
  return out;
}

struct Case {
  const char* name;
  OptimizerConfig cfg;
};

const char* torch_state_name(const std::string& ours) {
  return ours == "momentum" ? "momentum_buffer" : ours == "exp_avg" ? "exp_avg" : "exp_avg_sq";
}

}  // namespace

TEST_CASE("SGD, Adam and AdamW match torch.optim in float64 over 10 steps", "[torch][optimizer]") {
  std::vector<Case> cases;
  auto add = [&](const char* name, OptimizerKind k, auto edit) {
    OptimizerConfig c;
    c.kind = k;
    edit(c);
    cases.push_back({name, c});
  };
  add("sgd momentum", OptimizerKind::sgd, [](auto& c) { c.momentum = 0.9; });
  add("sgd plain", OptimizerKind::sgd, [](auto& c) { c.momentum = 0; });
  add("sgd nesterov", OptimizerKind::sgd, [](auto& c) {
    c.momentum = 0.8;
    c.nesterov = true;
  });
  add("sgd momentum weight decay", OptimizerKind::sgd, [](auto& c) {
    c.momentum = 0.9;
    c.weight_decay = 5e-3;
  });
  add("sgd nesterov weight decay", OptimizerKind::sgd, [](auto& c) {
    c.momentum = 0.9;
    c.nesterov = true;
    c.weight_decay = 1e-2;
  });
  add("adam", OptimizerKind::adam, [](auto&) {});
  add("adam weight decay, DeepCAM eps", OptimizerKind::adam, [](auto& c) {
    c.weight_decay = 1e-2;
    c.eps = 1e-6;
    c.beta1 = 0.85;
    c.beta2 = 0.99;
  });
  add("adamw", OptimizerKind::adamw, [](auto& c) { c.weight_decay = 0.05; });
  add("adamw DeepCAM", OptimizerKind::adamw, [](auto& c) {
    c.weight_decay = 1e-6;
    c.eps = 1e-6;
  });

  TempDir tmp;
  nlohmann::json jobs = {{"optim", nlohmann::json::array()}};
  std::vector<std::unique_ptr<Optimizer>> keep;
  ExecContext ctx;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& cs = cases[ci];
    // Our side: f64 buffers with padding (zeros in the model, NaN in the gradients: never read).
    Tensor model = Tensor::zeros({1, 1, 1, kN}, DType::f64, Device::cpu);
    Tensor grads = Tensor::empty({1, 1, 1, kN}, DType::f64);
    for (const auto& r : kRanges)
      for (int64_t i = r.offset; i < r.offset + r.numel; ++i) model.set_flat(i, uniform(100 + ci, 0, i));
    const Tensor w0 = packed(model);
    Tensor g_all = Tensor::empty({1, 1, kSteps, total_numel()}, DType::f64);
    auto opt = std::make_unique<Optimizer>(cs.cfg, model, grads, kRanges, DType::f64, ctx);
    std::vector<double> lrs;
    for (int s = 0; s < kSteps; ++s) {
      for (int64_t i = 0; i < kN; ++i) grads.set_flat(i, std::nan(""));
      for (const auto& r : kRanges)
        for (int64_t i = r.offset; i < r.offset + r.numel; ++i) grads.set_flat(i, uniform(200 + ci, 1 + s, i));
      const Tensor gp = packed(grads);
      for (int64_t k = 0; k < total_numel(); ++k) g_all.set_flat(s * total_numel() + k, gp.get_flat(k));
      REQUIRE(opt->step(ctx, lr_at(s)).applied);
      lrs.push_back(lr_at(s));
    }
    const std::string prefix = tmp.file("case" + std::to_string(ci));
    npy_write(prefix + "_w0.npy", w0);
    npy_write(prefix + "_g.npy", g_all);
    std::vector<int64_t> sizes;
    for (const auto& r : kRanges) sizes.push_back(r.numel);
    jobs["optim"].push_back({{"kind", optimizer_kind_name(cs.cfg.kind)},
                             {"sizes", sizes},
                             {"lr", lrs},
                             {"momentum", cs.cfg.momentum},
                             {"nesterov", cs.cfg.nesterov},
                             {"weight_decay", cs.cfg.weight_decay},
                             {"beta1", cs.cfg.beta1},
                             {"beta2", cs.cfg.beta2},
                             {"eps", cs.cfg.eps},
                             {"w0", prefix + "_w0.npy"},
                             {"grads", prefix + "_g.npy"},
                             {"out", prefix}});
    // Padding of the model stays zero.
    for (int64_t i = 0; i < kN; ++i) {
      bool in = false;
      for (const auto& r : kRanges) in = in || (i >= r.offset && i < r.offset + r.numel);
      if (!in) REQUIRE(model.get_flat(i) == 0.0);
    }
    keep.push_back(std::move(opt));
  }
  const std::string job_file = tmp.file("jobs.json");
  std::ofstream(job_file) << jobs.dump();
  run_python_script("tests/torch/optim_check.py", {job_file});

  const auto& t = tol::torch_f64;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    INFO(cases[ci].name);
    const std::string prefix = tmp.file("case" + std::to_string(ci));
    for (const auto& st : keep[ci]->state()) {
      const std::string file =
          st.name == "master" ? prefix + "_w.npy" : prefix + "_" + torch_state_name(st.name) + ".npy";
      INFO(st.name << " vs " << file);
      const Tensor ref = npy_read(file);
      const Tensor got = packed(st.tensor);
      REQUIRE(ref.numel() == got.numel());
      CS_REQUIRE_CLOSE(got, ref.reshape(got.shape()), t.atol, t.rtol);
    }
    REQUIRE(keep[ci]->state().size() == (cases[ci].cfg.kind != OptimizerKind::sgd ? 3u
                                         : cases[ci].cfg.momentum != 0            ? 2u
                                                                                  : 1u));
  }
}

TEST_CASE("schedules match torch.optim.lr_scheduler without warmup", "[torch][schedule]") {
  std::vector<ScheduleConfig> cfgs;
  ScheduleConfig c;
  c.kind = ScheduleKind::multistep;
  c.base_lr = 0.004;
  c.milestones = {11, 20, 41};
  c.decay_rate = 0.1;
  cfgs.push_back(c);
  c = {};
  c.kind = ScheduleKind::cosine;
  c.base_lr = 0.00155;
  c.t_max = 23;  // 60 steps: past T_max and back up, as PyTorch's periodic form
  c.eta_min = 1e-5;
  cfgs.push_back(c);
  c = {};
  c.kind = ScheduleKind::poly;
  c.base_lr = 0.0064;
  c.t_max = 45;
  c.power = 0.9;
  cfgs.push_back(c);
  c.power = 2.0;
  cfgs.push_back(c);
  constexpr int kSchedSteps = 60;

  TempDir tmp;
  nlohmann::json jobs = {{"schedule", nlohmann::json::array()}};
  for (size_t i = 0; i < cfgs.size(); ++i) {
    const ScheduleConfig& s = cfgs[i];
    s.validate();
    jobs["schedule"].push_back({{"kind", schedule_kind_name(s.kind)},
                                {"base_lr", s.base_lr},
                                {"milestones", s.milestones},
                                {"gamma", s.decay_rate},
                                {"t_max", s.t_max},
                                {"eta_min", s.eta_min},
                                {"power", s.power},
                                {"steps", kSchedSteps},
                                {"out", tmp.file("sched" + std::to_string(i) + ".npy")}});
  }
  const std::string job_file = tmp.file("jobs.json");
  std::ofstream(job_file) << jobs.dump();
  run_python_script("tests/torch/optim_check.py", {job_file});
  for (size_t i = 0; i < cfgs.size(); ++i) {
    INFO(schedule_kind_name(cfgs[i].kind) << " #" << i);
    const Tensor ref = npy_read(tmp.file("sched" + std::to_string(i) + ".npy"));
    REQUIRE(ref.numel() == kSchedSteps);
    Tensor got = Tensor::empty({1, 1, 1, kSchedSteps}, DType::f64);
    for (int s = 0; s < kSchedSteps; ++s) got.set_flat(s, schedule_lr(cfgs[i], s));
    CS_REQUIRE_CLOSE(got, ref.reshape(got.shape()), tol::torch_f64.atol, tol::torch_f64.rtol);
    // The values change over the run (not a constant that matches trivially).
    REQUIRE(got.get_flat(kSchedSteps - 1) != got.get_flat(0));
  }
}
