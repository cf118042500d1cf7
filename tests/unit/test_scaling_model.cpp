// bench/scaling_model: the allreduce formulas on hand-computed cases (ring at 2 ranks, rhd with and without a power
// of two, the tree, hier and hybrid2018 on one node = the intra-node ring), step time (no overlap, buckets, lag 1
// hiding communication up to one step), weak-scaling efficiency (1 at one GPU, never rising with N, modes ordered),
// machine constants, and the calibration (CSV formats, least squares recovering known alpha and beta).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "bench/scaling_model.h"
#include "engine/check.h"
#include "tests/util/tolerances.h"

using namespace climseg;
using namespace climseg::bench;
using Catch::Contains;

namespace {

// |got - want| <= rtol |want| for a tolerance row (atol 0).
bool close(double got, double want, const test::Tolerance& t = test::tol::scaling_formula_f64) {
  return std::abs(got - want) <= t.atol + t.rtol * std::abs(want);
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::temp_directory_path() / ("climseg_scaling_" + name + ".csv")).string();
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST_CASE("ring at 2 ranks: 2 alpha + S/B + S/2 gamma", "[scaling]") {
  const Level l{10e-6, 1e9};
  const double S = 1e6;
  CHECK(close(ring_time(2, S, l, 0), 2 * 10e-6 + 1e-3));
  CHECK(close(ring_time(2, S, l, 1e10), 2 * 10e-6 + 1e-3 + 0.5e-4));
  CHECK(ring_time(1, S, l, 1e10) == 0);
  // 8 ranks: 14 alpha + 2 (7/8) S/B
  CHECK(close(ring_time(8, S, l, 0), 14 * 10e-6 + 1.75e-3));
}

TEST_CASE("recursive halving-doubling: log steps, and the fold for non-powers of two", "[scaling]") {
  const Level l{1e-6, 2e9};
  const double S = 4e6, g = 1e10;
  // 4 ranks: 2 log2(4) alpha + 2 (3/4) S/B + (3/4) S gamma
  const double t4 = 4e-6 + 1.5 * S / 2e9 + 0.75 * S / g;
  CHECK(close(rhd_time(4, S, l, g), t4));
  // 6 ranks: the 4-rank algorithm plus fold (alpha + S/B + S gamma) and unfold (alpha + S/B)
  CHECK(close(rhd_time(6, S, l, g), t4 + 2e-6 + 2 * S / 2e9 + S / g));
  // Bandwidth term equals the ring's at a power of two; latency is 2 log2 n instead of 2(n-1).
  CHECK(close(rhd_time(1024, S, {0, 2e9}, 0), ring_time(1024, S, {0, 2e9}, 0)));
  CHECK(close(rhd_time(1024, 0, l, 0), 20 * 1e-6));
}

TEST_CASE("double binary tree: 2 log2 n alpha + 2 S/B + S gamma", "[scaling]") {
  const Level l{3e-6, 1e9};
  CHECK(close(tree_time(8, 1e6, l, 1e10), 6 * 3e-6 + 2e-3 + 1e-4));
  CHECK(close(tree_time(5, 1e6, l, 0), 6 * 3e-6 + 2e-3));  // ceil(log2 5) = 3
}

TEST_CASE("one node: hier and hybrid2018 are the intra-node ring", "[scaling]") {
  for (const Machine& m : {summit(), h100_cluster()}) {
    const double S = 87429574.0;
    for (int64_t n = 2; n <= m.gpus_per_node; ++n) {
      const double ring = ring_time(n, S, m.intra(), m.reduce_bw);
      CHECK(close(allreduce_time(m, ModelledAlgo::ring, n, S), ring));
      CHECK(close(allreduce_time(m, ModelledAlgo::hier, n, S), ring));
      CHECK(close(allreduce_time(m, ModelledAlgo::hybrid2018, n, S), ring));
    }
  }
  // Summit's intra-node level: 2 NVLink 2 bricks of 25 GB/s.
  CHECK(summit().intra().bw == 50e9);
  CHECK(h100_cluster().intra().bw == 450e9);
}

TEST_CASE("multi-node formulas worked by hand on Summit (2 nodes, 12 GPUs)", "[scaling]") {
  const Machine m = summit();
  const double S = 24e6, ai = m.intra_alpha, ae = m.inter_alpha, bi = 50e9, node = 25e9, g = m.reduce_bw;
  // ring: every step pays the slowest hop: max alpha, min(50, 2 x 12.5) GB/s
  CHECK(close(allreduce_time(m, ModelledAlgo::ring, 12, S), 22 * ae + 2 * 11.0 / 12 * S / node + 11.0 / 12 * S / g));
  // dbt: 2 [5 alpha_intra + 1 alpha_inter] + 2 S / 25 GB/s + S gamma
  CHECK(close(allreduce_time(m, ModelledAlgo::dbt, 12, S), 2 * (5 * ai + ae) + 2 * S / node + S / g));
  // hier: reduce-scatter + allgather in the node (5/6 S each), 6 shards of S/6 across 2 nodes concurrently, each
  // stream min(12.5, 25/6) GB/s; across 2 nodes ring and rhd cost the same: 2 alpha + S/6 / B + S/12 gamma
  const double shard = S / 6, sb = 25e9 / 6;
  const double hier = 2 * (5 * ai + 5.0 / 6 * S / bi) + 5.0 / 6 * S / g + 2 * ae + shard / sb + 0.5 * shard / g;
  CHECK(close(allreduce_time(m, ModelledAlgo::hier, 12, S), hier));
  // hybrid2018: ring in the node, 4 blocks of S/4 copied D2H and H2D at 50 GB/s, reduced across 2 nodes on the host
  // (10 GB/s) with 4 streams sharing 25 GB/s, then 4 broadcasts of 5 alpha + S/4 / 50 GB/s
  const double blk = S / 4;
  const double hyb = ring_time(6, S, m.intra(), g) + 2 * blk / 50e9 + 2 * ae + blk / (25e9 / 4) + 0.5 * blk / 10e9 +
                     4 * 5 * ai + S / bi;
  CHECK(close(allreduce_time(m, ModelledAlgo::hybrid2018, 12, S), hyb));
  // rhd on H100 (8 per node, 2 nodes = 16 GPUs): 3 steps inside the node at 450 GB/s, 1 across at 50 GB/s per GPU
  const Machine h = h100_cluster();
  const double Sh = 16e6, hi = h.intra_alpha, he = h.inter_alpha, gh = h.reduce_bw;
  double rhd = 0, vol = Sh;
  for (int k = 0; k < 3; ++k) {
    vol /= 2;
    rhd += 2 * (hi + vol / 450e9) + vol / gh;
  }
  vol /= 2;
  rhd += 2 * (he + vol / 50e9) + vol / gh;
  CHECK(close(allreduce_time(h, ModelledAlgo::rhd, 16, Sh), rhd));
  CHECK_THROWS_WITH(allreduce_time(m, ModelledAlgo::ring, 8, S), Contains("not a whole number of 6-GPU nodes"));
}

TEST_CASE("step time: no overlap, buckets, lag 1", "[scaling]") {
  auto half_second = [](double) { return 0.5; };
  StepOptions o;
  o.bucket_bytes = 100;
  // compute 3 s (forward 1, backward 2), gradient 200 bytes = 2 buckets of 0.5 s each
  StepTime none = step_time(3.0, 200, o, half_second);
  CHECK(close(none.step, 3.5));
  o.overlap = Overlap::buckets;
  // bucket 1 ready at 1 + 2 x 1/2 = 2 s, done 2.5; bucket 2 ready at 3, done 3.5
  StepTime b = step_time(3.0, 200, o, half_second);
  CHECK(close(b.step, 3.5));
  CHECK(close(b.allreduce, 1.0));
  // 2 s per bucket: bucket 1 done at 4, bucket 2 waits for it, done at 6
  CHECK(close(step_time(3.0, 200, o, [](double) { return 2.0; }).step, 6.0));
  // a partial last bucket: 250 bytes = 100 + 100 + 50, cost proportional to bytes (1 s per 100)
  StepTime p = step_time(3.0, 250, o, [](double x) { return x / 100; });
  // ready at 1 + 2*0.4 = 1.8 -> 2.8; ready 2.6, starts 2.8 -> 3.8; ready 3.0, starts 3.8 -> 4.3
  CHECK(close(p.step, 4.3));
}

TEST_CASE("lag 1 hides communication up to one step", "[scaling]") {
  StepOptions o;
  o.lag = 1;
  for (double ar : {0.0, 0.3, 0.999, 1.0}) CHECK(step_time(1.0, 1e6, o, [&](double) { return ar; }).step == 1.0);
  for (double ar : {1.001, 1.5, 7.0}) CHECK(step_time(1.0, 1e6, o, [&](double) { return ar; }).step == ar);
  o.overlap = Overlap::buckets;  // lag already overlaps the whole step; buckets change nothing
  CHECK(step_time(1.0, 1e9, o, [](double) { return 0.7; }).step == 1.0);
}

TEST_CASE("efficiency: 1 at one GPU, never rising with N, lag 1 best", "[scaling]") {
  for (const Machine& m : {summit(), h100_cluster(), piz_daint()})
    for (const Network& net : networks())
      for (const char* dt : {"fp16", "fp32"})
        for (ModelledAlgo a : all_algos()) {
          double prev[3] = {2, 2, 2};
          for (int64_t n : m.gpu_counts) {
            double eff[3];
            int i = 0;
            for (auto [ov, lag] : {std::pair{Overlap::none, 0}, {Overlap::buckets, 0}, {Overlap::none, 1}}) {
              StepOptions o;
              o.overlap = ov;
              o.lag = lag;
              const Prediction p = predict(m, net.name, dt, n, a, o, 2);
              INFO(m.name << " " << net.name << " " << dt << " " << algo_name(a) << " n=" << n << " mode " << i);
              if (n == 1) {
                CHECK(p.efficiency == 1.0);
                CHECK(p.allreduce_ms == 0.0);
              }
              CHECK(p.efficiency > 0);
              CHECK(p.efficiency <= prev[i] + 1e-12);
              CHECK(close(p.step_ms, p.compute_ms / p.efficiency));
              prev[i] = eff[i] = p.efficiency;
              ++i;
            }
            // lag 1 pays max(compute, allreduce), never more than either other mode; buckets beat no overlap only
            // when their extra latencies are smaller than what they hide (not at 27,360 GPUs with a flat ring), and
            // equal it when the gradient is one bucket
            CHECK(eff[2] >= eff[1] - 1e-12);
            CHECK(eff[2] >= eff[0] - 1e-12);
            if (static_cast<double>(net.params * dtype_bytes(dt)) <= StepOptions{}.bucket_bytes)
              CHECK(close(eff[1], eff[0]));
          }
        }
}

TEST_CASE("compute time and gradient size come from docs/models.md and the rates", "[scaling]") {
  const Machine m = summit();
  const Prediction p = predict(m, "deeplabv3plus", "fp16", 1, ModelledAlgo::ring, StepOptions{}, 2);
  // The paper's sustained 999.0 PF/s over 27,360 GPUs at 14.41 TFLOP/sample: 2.534 samples/s per GPU
  const double samples_per_s = 999.0e15 / 27360 / 14.41e12;
  CHECK(close(p.compute_ms, 2 / samples_per_s * 1e3, {"", 0, 1e-9, ""}));
  CHECK(network("deeplabv3plus").params == 43714787);
  CHECK(dtype_bytes("fp16") == 2);
  CHECK(dtype_bytes("fp32") == 4);
  CHECK_THROWS_WITH(network("resnet"), Contains("unknown network"));
}

TEST_CASE("stragglers: the slowest of N GPUs, mean x (1 + cv sqrt(2 ln N))", "[scaling]") {
  Machine m = summit();
  CHECK(straggler_factor(0.02, 1) == 1.0);
  CHECK(close(straggler_factor(0.02, 27360), 1 + 0.02 * std::sqrt(2 * std::log(27360.0))));
  const Prediction base = predict(m, "tiramisu", "fp16", 27360, ModelledAlgo::hier, {}, 2);
  m.set("jitter_cv", 0.02);
  const Prediction p = predict(m, "tiramisu", "fp16", 27360, ModelledAlgo::hier, {}, 2);
  CHECK(close(p.compute_ms, base.compute_ms * straggler_factor(0.02, 27360)));
  CHECK(close(p.step_ms, p.compute_ms + p.allreduce_ms));
  CHECK(p.efficiency < base.efficiency);
  CHECK(predict(m, "tiramisu", "fp16", 1, ModelledAlgo::hier, {}, 2).efficiency == 1.0);
}

TEST_CASE("machine constants by name", "[scaling]") {
  Machine m = summit();
  m.set("inter_alpha_us", 7);
  CHECK(close(m.inter_alpha, 7e-6));
  CHECK(close(m.get("inter_alpha_us"), 7));
  m.set("ports", 4);
  CHECK(m.node_bw() == 50e9);
  m.set("rate.tiramisu.fp32_tflops", 3);
  CHECK(m.rate("tiramisu", "fp32") == 3e12);
  CHECK_THROWS_WITH(m.set("warp_speed", 1), Contains("unknown machine constant"));
  CHECK_THROWS_WITH(m.set("ports", 0), Contains("at least 1"));
  CHECK_THROWS_WITH(machine_preset("frontier"), Contains("unknown machine"));
  CHECK_THROWS_WITH(parse_algo("butterfly"), Contains("known: ring"));
}

TEST_CASE("calibration: least squares recovers alpha and beta from synthetic points", "[scaling][calibrate]") {
  const double alpha = 7e-6, bw = 12e9;
  std::vector<Measurement> ms;
  for (const char* algo : {"ring", "rhd", "dbt"})
    for (int64_t n : {2, 3, 4, 8})
      for (double S = 1e3; S <= 1e9; S *= 10) {
        double a, b;
        fit_coefficients(algo, n, S, &a, &b);
        ms.push_back({algo, n, S, (alpha * a + b / bw) * 1e6});
      }
  const std::vector<Fit> fits = fit_measurements(ms);
  REQUIRE(fits.size() == 3);
  for (const Fit& f : fits) {
    INFO(f.algo);
    CHECK(f.points == 4 * 7);
    CHECK(close(f.alpha, alpha, test::tol::scaling_fit_f64));
    CHECK(close(f.bw, bw, test::tol::scaling_fit_f64));
    CHECK(f.rms_rel_error < 1e-9);
  }
  // The coefficients are the formulas': ring at n ranks = ring_time with that level.
  double a, b;
  fit_coefficients("ring", 6, 1e6, &a, &b);
  CHECK(close(alpha * a + b / bw, ring_time(6, 1e6, {alpha, bw}, 0)));
  fit_coefficients("rhd", 6, 1e6, &a, &b);
  CHECK(close(alpha * a + b / bw, rhd_time(6, 1e6, {alpha, bw}, 0)));

  // +-2% alternating noise: still within a few percent
  std::vector<Measurement> noisy;
  int i = 0;
  for (Measurement m : ms)
    if (m.algo == "ring") {
      m.time_us *= (i++ % 2) ? 1.02 : 0.98;
      noisy.push_back(m);
    }
  const Fit f = fit_measurements(noisy).at(0);
  CHECK(std::abs(f.alpha / alpha - 1) < 0.05);
  CHECK(std::abs(f.bw / bw - 1) < 0.05);
  CHECK(f.rms_rel_error > 0.01);

  // One size at one rank count cannot separate alpha from beta.
  CHECK_THROWS_WITH(fit_measurements({{"ring", 4, 1e6, 100}, {"ring", 4, 1e6, 101}}), Contains("two or more"));
  CHECK_THROWS_WITH(fit_measurements({{"ring", 1, 1e6, 100}}), Contains("more than one rank"));
}

TEST_CASE("calibration: both CSV formats", "[scaling][calibrate]") {
  const std::string simple = write_temp("simple",
                                        "# measured\nalgo,ranks,bytes,time_us\nring,4,1024,30\nring,4,1048576,200\n"
                                        "rhd,4,1048576,190\n");
  std::vector<Measurement> a = read_measurements(simple);
  REQUIRE(a.size() == 3);
  CHECK(a[1].algo == "ring");
  CHECK(a[1].ranks == 4);
  CHECK(a[1].bytes == 1048576);
  CHECK(a[1].time_us == 200);
  // nccl-tests style (size,count,type,algo,time_us,...): no ranks column -> the default
  const std::string nccl = write_temp("nccl",
                                      "size,count,type,algo,time_us,algbw,busbw,wrong\n"
                                      "1024,256,float,ring,25.5,0.04,0.06,0\n"
                                      "4194304,1048576,float,ring,900.0,4.66,6.99,0\n");
  CHECK_THROWS_WITH(read_measurements(nccl), Contains("--calibrate-ranks"));
  std::vector<Measurement> b = read_measurements(nccl, 8);
  REQUIRE(b.size() == 2);
  CHECK(b[0].ranks == 8);
  CHECK(b[1].bytes == 4194304);
  CHECK(b[1].time_us == 900.0);
  const Machine host = host_machine(fit_measurements(b), 8, 0.5);
  CHECK(host.gpus_per_node == 8);
  CHECK(host.gpu_counts.back() == 8);
  // The host machine reproduces the fitted points (two points, two unknowns: exact).
  CHECK(close(allreduce_time(host, ModelledAlgo::ring, 8, 4194304) * 1e6, 900.0, test::tol::scaling_fit_f64));
  CHECK_THROWS_WITH(read_measurements(write_temp("bad", "algo,ranks,time_us\nring,2,5\n")), Contains("bytes"));
  CHECK_THROWS_WITH(read_measurements(write_temp("nan", "algo,ranks,bytes,time_us\nring,2,x,5\n")),
                    Contains("not a number"));
  CHECK_THROWS_WITH(read_measurements("/nonexistent/x.csv"), Contains("cannot open"));
}
