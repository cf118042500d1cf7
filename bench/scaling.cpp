// climseg-bench scaling: CLI, CSV and summary around bench/scaling_model (see bench/scaling.h).
#include "bench/scaling.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "bench/scaling_model.h"
#include "engine/check.h"

namespace climseg::bench {

namespace {

struct Mode {
  Overlap overlap;
  int lag;
};
constexpr Mode kModes[] = {{Overlap::none, 0}, {Overlap::buckets, 0}, {Overlap::none, 1}};

std::string mode_name(const Mode& m) {
  return m.lag ? "lag 1" : (m.overlap == Overlap::none ? "no overlap" : "bucketed overlap");
}

// A file that closes itself; stdout and stderr are borrowed.
struct Out {
  FILE* f = nullptr;
  bool owned = false;
  ~Out() {
    if (owned && f) std::fclose(f);
  }
};

// The paper's measured weak-scaling efficiencies (reference-systems.md 5.1, [abs]).
struct PaperPoint {
  const char* machine;
  const char* model;
  const char* dtype;
  int64_t gpus;
  double efficiency;
  const char* what;
};
constexpr PaperPoint kPaper[] = {
    {"summit", "deeplabv3plus", "fp32", 27360, 0.907, "DeepLabv3+ FP32 on Summit, 27,360 V100"},
    {"summit", "deeplabv3plus", "fp16", 27360, -1, "DeepLabv3+ FP16 on Summit (efficiency not in the abstract)"},
    {"daint", "tiramisu", "fp32", 5300, 0.790, "Tiramisu on Piz Daint, 5,300 P100 (precision not stated)"},
    {"daint", "tiramisu", "fp16", 5300, 0.790, "Tiramisu on Piz Daint, 5,300 P100 (precision not stated)"},
};

}  // namespace

CLI::App* add_scaling_subcommand(CLI::App& app, ScalingOptions& o) {
  auto* s = app.add_subcommand("scaling",
                               "Predicted allreduce time, step time and weak-scaling efficiency (alpha-beta model; "
                               "docs/scaling.md), CSV");
  s->add_option("--machine", o.machines, "Machines: summit, h100, daint (host: with --calibrate)")
      ->capture_default_str();
  s->add_option("--model", o.models, "Networks: deeplabv3plus, tiramisu, deepcam")->capture_default_str();
  s->add_option("--dtype", o.dtypes, "Gradient (and compute) precision: fp16, fp32")->capture_default_str();
  s->add_option("--algo", o.algos, "Allreduce algorithms: ring, rhd, dbt, hier, hybrid2018")->capture_default_str();
  s->add_option("--gpus", o.gpus, "GPU counts (default: each machine's sweep)");
  s->add_option("--set", o.sets, "Override a machine constant, key=value (see --list-constants)");
  s->add_option("--batch", o.batch, "Samples per GPU (weak scaling)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  s->add_option("--bucket-mib", o.bucket_mib, "Bucket size for the overlapped allreduce (MiB)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  s->add_option("--calibrate", o.calibrate,
                "CSV of measured allreduce times (algo,ranks,bytes,time_us or climseg-bench allreduce's output): "
                "fit alpha and beta per algorithm and add the machine 'host'")
      ->check(CLI::ExistingFile);
  s->add_option("--calibrate-ranks", o.calibrate_ranks, "Rank count when the CSV has no ranks column");
  s->add_option("--host-tflops", o.host_tflops, "Sustained compute rate of the host machine (TFLOP/s)")
      ->capture_default_str();
  s->add_option("--out", o.out, "Write the CSV here (the summary then goes to stdout)");
  s->add_flag("--list-constants", o.list_constants, "Print every machine constant of the chosen machines and exit");
  return s;
}

int run_scaling(const ScalingOptions& o) {
  Out csv, sum;
  if (o.out.empty()) {
    csv.f = stdout;
    sum.f = stderr;
  } else {
    csv.f = std::fopen(o.out.c_str(), "w");
    CS_CHECK(csv.f, "cannot write '", o.out, "'");
    csv.owned = true;
    sum.f = stdout;
  }
  std::vector<ModelledAlgo> algos;
  for (const std::string& a : o.algos) algos.push_back(parse_algo(a));
  for (const std::string& m : o.models) network(m);
  for (const std::string& d : o.dtypes) dtype_bytes(d);

  std::vector<Machine> machines;
  std::vector<Measurement> meas;
  std::vector<Fit> fits;
  if (!o.calibrate.empty()) {
    meas = read_measurements(o.calibrate, o.calibrate_ranks);
    fits = fit_measurements(meas);
  }
  for (const std::string& name : o.machines) {
    if (name == "host") {
      CS_CHECK(!fits.empty(), "machine 'host' needs --calibrate");
      continue;  // added below
    }
    machines.push_back(machine_preset(name));
  }
  if (!fits.empty()) {
    int64_t max_ranks = 1;
    for (const Measurement& m : meas) max_ranks = std::max(max_ranks, m.ranks);
    machines.push_back(host_machine(fits, max_ranks, o.host_tflops));
  }
  for (Machine& m : machines)
    for (const std::string& kv : o.sets) {
      const size_t eq = kv.find('=');
      CS_CHECK(eq != std::string::npos, "--set expects key=value, got '", kv, "'");
      double v = 0;
      try {
        v = std::stod(kv.substr(eq + 1));
      } catch (const std::exception&) {
        CS_THROW("--set ", kv, ": not a number");
      }
      m.set(kv.substr(0, eq), v);
    }

  if (o.list_constants) {
    for (const Machine& m : machines) {
      std::fprintf(stdout, "# %s\n", m.name.c_str());
      for (const std::string& k : Machine::constant_names())
        if (k.rfind("rate.", 0) != 0) std::fprintf(stdout, "%s=%g\n", k.c_str(), m.get(k));
      for (const Rate& r : m.rates)
        std::fprintf(stdout, "rate.%s.%s_tflops=%.3f  # %s\n", r.model.c_str(), r.dtype.c_str(), r.flops / 1e12,
                     r.source.c_str());
    }
    return 0;
  }

  if (!fits.empty()) {
    std::fprintf(sum.f, "calibration (%s): relative least squares, t = alpha*A(n) + beta*B(n, S)\n",
                 o.calibrate.c_str());
    std::fprintf(sum.f, "  %-12s %6s %12s %12s %10s\n", "algo", "points", "alpha_us", "bw_GB/s", "rms_rel");
    for (const Fit& f : fits)
      std::fprintf(sum.f, "  %-12s %6d %12.3f %12.3f %9.1f%%\n", f.algo.c_str(), f.points, f.alpha * 1e6, f.bw / 1e9,
                   100 * f.rms_rel_error);
  }

  if (o.header)
    std::fprintf(csv.f, "machine,model,dtype,gpus,algo,overlap,lag,allreduce_ms,compute_ms,step_ms,efficiency\n");
  std::vector<Prediction> rows;
  for (const Machine& m : machines) {
    const std::vector<int64_t>& counts = o.gpus.empty() ? m.gpu_counts : o.gpus;
    for (const std::string& model : o.models)
      for (const std::string& dtype : o.dtypes)
        for (int64_t n : counts) {
          if (n > m.gpus_per_node && n % m.gpus_per_node != 0) continue;  // not whole nodes on this machine
          for (ModelledAlgo a : algos)
            for (const Mode& mode : kModes) {
              StepOptions so;
              so.overlap = mode.overlap;
              so.lag = mode.lag;
              so.bucket_bytes = o.bucket_mib * 1024 * 1024;
              Prediction p = predict(m, model, dtype, n, a, so, o.batch);
              std::fprintf(csv.f, "%s,%s,%s,%lld,%s,%s,%d,%.4f,%.4f,%.4f,%.5f\n", p.machine.c_str(), p.model.c_str(),
                           p.dtype.c_str(), static_cast<long long>(p.gpus), algo_name(p.algo), overlap_name(p.overlap),
                           p.lag, p.allreduce_ms, p.compute_ms, p.step_ms, p.efficiency);
              rows.push_back(p);
            }
        }
  }
  std::fflush(csv.f);

  // Summary: at each machine's largest count, the best algorithm per mode.
  std::fprintf(sum.f, "\nsummary: batch %lld per GPU, buckets %.0f MiB; best algorithm per mode at the largest count\n",
               static_cast<long long>(o.batch), o.bucket_mib);
  std::fprintf(sum.f, "  %-7s %-14s %-5s %6s | %-16s %-11s %9s %9s %9s %7s\n", "machine", "model", "dtype", "gpus",
               "mode", "algo", "ar_ms", "comp_ms", "step_ms", "eff");
  for (const Machine& m : machines) {
    int64_t top = 0;
    for (const Prediction& p : rows)
      if (p.machine == m.name) top = std::max(top, p.gpus);
    for (const std::string& model : o.models)
      for (const std::string& dtype : o.dtypes)
        for (const Mode& mode : kModes) {
          const Prediction* best = nullptr;
          for (const Prediction& p : rows)
            if (p.machine == m.name && p.model == model && p.dtype == dtype && p.gpus == top &&
                p.overlap == mode.overlap && p.lag == mode.lag && (!best || p.step_ms < best->step_ms))
              best = &p;
          if (!best) continue;
          std::fprintf(sum.f, "  %-7s %-14s %-5s %6lld | %-16s %-11s %9.2f %9.2f %9.2f %6.1f%%\n", m.name.c_str(),
                       model.c_str(), dtype.c_str(), static_cast<long long>(top), mode_name(mode).c_str(),
                       algo_name(best->algo), best->allreduce_ms, best->compute_ms, best->step_ms,
                       100 * best->efficiency);
        }
  }
  bool header_done = false;
  for (const PaperPoint& pp : kPaper)
    for (const Prediction& p : rows)
      if (p.machine == pp.machine && p.model == pp.model && p.dtype == pp.dtype && p.gpus == pp.gpus &&
          p.algo == ModelledAlgo::hybrid2018) {
        if (!header_done) {
          std::fprintf(sum.f, "\nthe 2018 paper (reference-systems.md 5.1) vs the model's hybrid2018 allreduce:\n");
          header_done = true;
        }
        const Mode mode{p.overlap, p.lag};
        if (pp.efficiency > 0) {
          std::fprintf(sum.f, "  %s: paper %.1f%%, model (%s, %s) %.1f%%", pp.what, 100 * pp.efficiency,
                       p.dtype.c_str(), mode_name(mode).c_str(), 100 * p.efficiency);
          // The straggler spread (jitter_cv) that would close the gap, where the step is simple to invert:
          // no overlap: step = c f + ar; lag 1: step = max(c f, ar).
          const double c = p.compute_ms, target = c / pp.efficiency, root = std::sqrt(2 * std::log(double(p.gpus)));
          const bool jitter_off = std::find_if(machines.begin(), machines.end(), [&](const Machine& m) {
                                    return m.name == p.machine && m.jitter_cv == 0;
                                  }) != machines.end();
          double f = 0;
          if (mode.lag == 1 && p.allreduce_ms < target) f = target / c;
          if (mode.lag == 0 && mode.overlap == Overlap::none) f = (target - p.allreduce_ms) / c;
          if (jitter_off && f > 1) std::fprintf(sum.f, "; jitter_cv %.2f%% would close the gap", 100 * (f - 1) / root);
          std::fprintf(sum.f, "\n");
        } else
          std::fprintf(sum.f, "  %s: model (%s) %.1f%%\n", pp.what, mode_name(mode).c_str(), 100 * p.efficiency);
      }
  return 0;
}

}  // namespace climseg::bench
