// Scaling simulator, the pure part (no MPI, no GPU): an alpha-beta(-gamma) cost model of gradient allreduce per
// link level, step time with and without overlap of communication and compute, weak-scaling efficiency, and a
// least-squares calibration of alpha and beta from measured allreduce times. `climseg-bench scaling`
// (bench/scaling.cpp) is the command line around it; docs/scaling.md explains every formula and constant.
//
// Cost of one message of m bytes over a level: alpha + m / bw (Hockney). Reducing m bytes costs m / reduce_bw
// (the summation kernel, gamma = 1 / reduce_bw). Two levels: intra-node (NVLink) and inter-node (InfiniBand).
// Ranks are numbered node by node (gpus_per_node consecutive ranks per node), as mpirun places them.
//
//   ring   2(n-1) a + 2(n-1)/n S/B + (n-1)/n S g      every step waits for the slowest hop; across nodes NCCL runs
//                                                     one ring per port, so B = min(B_nvlink, ports x B_port)
//   rhd    recursive halving (reduce-scatter) then doubling (allgather), Rabenseifner; step k moves S/2^k to a
//          partner at distance 2^(k-1): intra-node while the pair stays in the node, otherwise inter-node with every
//          GPU of the node sending at once (B = ports x B_port / gpus_per_node); non-powers of two fold the extra
//          ranks first (+ a + S/B + S g) and unfold last (+ a + S/B) (Thakur, Rabenseifner, Gropp 2005)
//   dbt    as NCCL runs it: a pipelined chain inside the node, a double binary tree across nodes;
//          2 [(g-1) a_intra + ceil(log2 nodes) a_inter] + 2 S / min(B_nvlink, node B) + S g
//   hier   (engine spec section 8) intra-node reduce-scatter (ring), g concurrent inter-node allreduces of S/g
//          (one per local rank, spread over the ports; the cheaper of ring and rhd), intra-node allgather (ring)
//   hybrid2018  the 2018 Horovod fork (reference-systems.md 4.3): intra-node allreduce (NCCL ring), the buffer
//          split into `split` blocks, each copied to the host, reduced across nodes by its own MPI allreduce (the
//          cheaper of ring and rhd, on the host: host_reduce_bw), copied back, then broadcast inside the node
//
// With one node, hier == the intra-node ring and hybrid2018 == the intra-node ring (tests/unit/test_scaling_model).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace climseg::bench {

// The allreduce algorithms the simulator models (the 2018 paper's and ours), by their cost formulas: not
// comm::AllreduceAlgo, which names the implementations comm/ runs (the simulator also models ones comm/ lacks).
enum class ModelledAlgo : uint8_t { ring, rhd, dbt, hier, hybrid2018 };
const char* algo_name(ModelledAlgo a);
ModelledAlgo parse_algo(const std::string& s);  // throws climseg::Error listing the names
const std::vector<ModelledAlgo>& all_algos();

// One link level: per-message latency (s) and the per-direction bandwidth one stream gets (bytes/s).
struct Level {
  double alpha = 0;
  double bw = 0;
};

// A sustained compute rate for one network and gradient dtype, in FLOP/s of our own FLOP count (docs/models.md).
struct Rate {
  std::string model;  // deeplabv3plus, tiramisu, deepcam
  std::string dtype;  // fp16, fp32
  double flops = 0;
  std::string source;
};

struct Machine {
  std::string name;
  int gpus_per_node = 1;
  // Intra-node (NVLink): a ring send uses `nvlink_links` links of `nvlink_link_bw` each (per direction).
  double nvlink_link_bw = 0;
  int nvlink_links = 1;
  double intra_alpha = 0;
  // Inter-node (InfiniBand): `ports` ports per node of `port_bw` each (per direction); one stream drives one port.
  double port_bw = 0;
  int ports = 1;
  double inter_alpha = 0;
  // Summation kernel on the GPU (bytes of reduced output per second), and on the host (hybrid2018's MPI_Op).
  double reduce_bw = 0;
  double host_reduce_bw = 0;
  double host_copy_bw = 0;  // hybrid2018's device<->host copies (per direction)
  // Stragglers: each GPU's compute time varies with this coefficient of variation; a synchronous step waits for
  // the slowest of N, about mean x (1 + cv sqrt(2 ln N)) (the expected maximum of N normals). Default 0 (not in
  // the presets: the paper gives no per-GPU spread).
  double jitter_cv = 0;
  int split = 1;  // hybrid2018: blocks reduced by concurrent inter-node allreduces (2018: 4)
  // Compute: peaks (FLOP/s) and the sustained rates; without a row for (model, dtype) the rate is
  // peak(dtype) x fraction(dtype).
  double peak_fp16 = 0, peak_fp32 = 0;
  double fraction_fp16 = 0, fraction_fp32 = 0;
  std::vector<Rate> rates;
  std::vector<int64_t> gpu_counts;  // the sweep of the CSV table

  Level intra() const { return {intra_alpha, nvlink_link_bw * nvlink_links}; }
  Level inter_stream() const { return {inter_alpha, port_bw}; }
  double node_bw() const { return port_bw * ports; }
  // The compute rate for a network and dtype, and where it comes from.
  double rate(const std::string& model, const std::string& dtype, std::string* source = nullptr) const;
  // Sets one constant by name (as listed by `climseg-bench scaling --list-constants`), in the CLI's units
  // (GB/s = 1e9 bytes/s, us, TFLOP/s); throws for an unknown name.
  void set(const std::string& key, double value);
  static std::vector<std::string> constant_names();
  double get(const std::string& key) const;
};

Machine summit();        // 4,560 nodes x 6 V100, NVLink 2, 2 x EDR (docs/scaling.md lists every source)
Machine h100_cluster();  // 8 H100 per node, NVLink 4 + NVSwitch, 8 x NDR
Machine piz_daint();     // 1 P100 per node, Aries (assumed constants; for Tiramisu's 2018 number)
Machine machine_preset(const std::string& name);  // summit, h100, daint; throws otherwise
std::vector<std::string> machine_names();

// The three networks: trainable parameters and training FLOP per sample at 768x1152 (docs/models.md).
struct Network {
  std::string name;
  int64_t params = 0;
  double flop_per_sample = 0;
};
const std::vector<Network>& networks();
const Network& network(const std::string& name);
int64_t dtype_bytes(const std::string& dtype);  // fp16 2, fp32 4

// ---- allreduce ----------------------------------------------------------------------------------------------
// Single-level textbook formulas (one Level, n ranks, S bytes, reduce_bw for gamma; reduce_bw <= 0: free).
double ring_time(int64_t n, double bytes, Level l, double reduce_bw);
double rhd_time(int64_t n, double bytes, Level l, double reduce_bw);
double tree_time(int64_t n, double bytes, Level l, double reduce_bw);  // double binary tree, pipelined
// Predicted time (s) of one allreduce of `bytes` over `gpus` GPUs of machine m (gpus <= gpus_per_node, or a
// multiple of it). 0 for one GPU.
double allreduce_time(const Machine& m, ModelledAlgo a, int64_t gpus, double bytes);

// ---- step time ----------------------------------------------------------------------------------------------
enum class Overlap : uint8_t { none, buckets };
const char* overlap_name(Overlap o);

struct StepOptions {
  Overlap overlap = Overlap::none;
  int lag = 0;                               // 1: step t-1's allreduce runs during all of step t
  double bucket_bytes = 64.0 * 1024 * 1024;  // engine spec section 8 default (Horovod's fusion threshold too)
  double backward_fraction = 2.0 / 3.0;      // backward = 2 x forward (training FLOP = 3 x forward)
};

struct StepTime {
  double compute = 0;    // s, forward + backward of the local batch
  double allreduce = 0;  // s, one allreduce of the whole gradient (buckets: the sum over buckets)
  double step = 0;       // s
};

// Step time given the compute time and a function giving the allreduce time of a number of bytes.
template <class F>
StepTime step_time(double compute, double grad_bytes, const StepOptions& o, F&& allreduce_of);
StepTime step_time(const Machine& m, ModelledAlgo a, int64_t gpus, double compute, double grad_bytes, const StepOptions& o);

struct Prediction {
  std::string machine, model, dtype;
  int64_t gpus = 0;
  ModelledAlgo algo = ModelledAlgo::ring;
  Overlap overlap = Overlap::none;
  int lag = 0;
  double allreduce_ms = 0, compute_ms = 0, step_ms = 0, efficiency = 0;
};

// The straggler factor 1 + cv sqrt(2 ln N) (1 for one GPU).
double straggler_factor(double cv, int64_t gpus);

// Weak scaling with `batch` samples per GPU: efficiency(N) = step(1) / step(N).
Prediction predict(const Machine& m, const std::string& model, const std::string& dtype, int64_t gpus, ModelledAlgo a,
                   const StepOptions& o, int64_t batch);

// ---- calibration ------------------------------------------------------------------------------------------------
struct Measurement {
  std::string algo;  // a name of ModelledAlgo, or anything else (fitted with the ring's coefficients)
  int64_t ranks = 0;
  double bytes = 0;
  double time_us = 0;
};

// Reads a CSV with a header: either (algo, ranks, bytes, time_us) or `climseg-bench allreduce`'s nccl-tests style
// (size, count, type, algo, time_us, ...; the rank count from a ranks/nranks/np column, else `default_ranks`).
std::vector<Measurement> read_measurements(const std::string& path, int64_t default_ranks = 0);

struct Fit {
  std::string algo;
  double alpha = 0;  // s
  double bw = 0;     // bytes/s (1 / beta); the reduction cost is folded in (it scales with S like beta)
  int points = 0;
  double rms_rel_error = 0;
};

// Least squares of t = alpha x A + beta x B over the points of each algorithm, where A and B are the algorithm's
// single-level latency and bandwidth coefficients (ring: 2(n-1) and 2(n-1)/n S). Needs two independent points.
std::vector<Fit> fit_measurements(const std::vector<Measurement>& ms);
// The single-level coefficients used by the fit: time = alpha * a + beta * b.
void fit_coefficients(const std::string& algo, int64_t n, double bytes, double* a, double* b);
// A one-node machine ("host") whose intra-node level is the fit of `algo` (ring if present, else the first).
Machine host_machine(const std::vector<Fit>& fits, int64_t max_ranks, double tflops);

// ---- template body -----------------------------------------------------------------------------------------------
template <class F>
StepTime step_time(double compute, double grad_bytes, const StepOptions& o, F&& allreduce_of) {
  StepTime t;
  t.compute = compute;
  if (o.lag >= 1) {  // the reduction of step t-1's gradient has the whole step t to finish
    t.allreduce = allreduce_of(grad_bytes);
    t.step = compute > t.allreduce ? compute : t.allreduce;
    return t;
  }
  if (o.overlap == Overlap::none) {
    t.allreduce = allreduce_of(grad_bytes);
    t.step = compute + t.allreduce;
    return t;
  }
  // Buckets: backward produces the gradient at a uniform rate; bucket i (of nb, the last one smaller) is ready when
  // backward has produced its last byte; buckets are reduced one after another on the communication stream.
  const double fwd = compute * (1.0 - o.backward_fraction), bwd = compute * o.backward_fraction;
  double done = 0, end = 0;
  while (done < grad_bytes) {
    const double b = grad_bytes - done < o.bucket_bytes ? grad_bytes - done : o.bucket_bytes;
    done += b;
    const double ready = fwd + bwd * (done / grad_bytes);
    const double c = allreduce_of(b);
    end = (ready > end ? ready : end) + c;
    t.allreduce += c;
  }
  t.step = compute > end ? compute : end;
  return t;
}

}  // namespace climseg::bench
