// Scaling simulator, the pure part: formulas, machine presets, step time, calibration. See bench/scaling_model.h
// for the formulas and docs/scaling.md for the source of every constant below.
#include "bench/scaling_model.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/check.h"

namespace climseg::bench {

namespace {

constexpr double kGB = 1e9;   // GB/s = 1e9 bytes/s (vendor datasheets)
constexpr double kUs = 1e-6;  // microseconds
constexpr double kTF = 1e12;  // TFLOP/s

int64_t pow2_floor(int64_t n) {
  int64_t p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

int ilog2(int64_t p) {
  int k = 0;
  while ((int64_t{1} << k) < p) ++k;
  return k;
}

double reduce_cost(double bytes, double reduce_bw) { return reduce_bw > 0 ? bytes / reduce_bw : 0.0; }

// The gradient's reduction time inside the best of ring and rhd across nodes (what a tuned MPI or NCCL picks).
double best_inter(int64_t nodes, double bytes, Level l, double reduce_bw) {
  return std::min(ring_time(nodes, bytes, l, reduce_bw), rhd_time(nodes, bytes, l, reduce_bw));
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\""), b = s.find_last_not_of(" \t\r\"");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string f;
  while (std::getline(ss, f, ',')) out.push_back(trim(f));
  return out;
}

// The constants settable by name: (name, pointer to member in CLI units' scale factor).
struct Field {
  const char* name;
  double Machine::*d = nullptr;
  int Machine::*i = nullptr;
  double scale = 1.0;  // CLI unit -> SI
};

const std::vector<Field>& fields() {
  static const std::vector<Field> f = {
      {"gpus_per_node", nullptr, &Machine::gpus_per_node},
      {"nvlink_link_gbs", &Machine::nvlink_link_bw, nullptr, kGB},
      {"nvlink_links", nullptr, &Machine::nvlink_links},
      {"intra_alpha_us", &Machine::intra_alpha, nullptr, kUs},
      {"port_gbs", &Machine::port_bw, nullptr, kGB},
      {"ports", nullptr, &Machine::ports},
      {"inter_alpha_us", &Machine::inter_alpha, nullptr, kUs},
      {"reduce_gbs", &Machine::reduce_bw, nullptr, kGB},
      {"host_reduce_gbs", &Machine::host_reduce_bw, nullptr, kGB},
      {"host_copy_gbs", &Machine::host_copy_bw, nullptr, kGB},
      {"split", nullptr, &Machine::split},
      {"peak_fp16_tflops", &Machine::peak_fp16, nullptr, kTF},
      {"peak_fp32_tflops", &Machine::peak_fp32, nullptr, kTF},
      {"fraction_fp16", &Machine::fraction_fp16, nullptr, 1.0},
      {"fraction_fp32", &Machine::fraction_fp32, nullptr, 1.0},
      {"jitter_cv", &Machine::jitter_cv, nullptr, 1.0},
  };
  return f;
}

}  // namespace

// ---- names --------------------------------------------------------------------------------------------------------

const char* algo_name(ModelledAlgo a) {
  switch (a) {
    case ModelledAlgo::ring:
      return "ring";
    case ModelledAlgo::rhd:
      return "rhd";
    case ModelledAlgo::dbt:
      return "dbt";
    case ModelledAlgo::hier:
      return "hier";
    case ModelledAlgo::hybrid2018:
      return "hybrid2018";
  }
  return "?";
}

const std::vector<ModelledAlgo>& all_algos() {
  static const std::vector<ModelledAlgo> a = {ModelledAlgo::ring, ModelledAlgo::rhd, ModelledAlgo::dbt, ModelledAlgo::hier, ModelledAlgo::hybrid2018};
  return a;
}

ModelledAlgo parse_algo(const std::string& s) {
  for (ModelledAlgo a : all_algos())
    if (s == algo_name(a)) return a;
  CS_THROW("unknown allreduce algorithm '", s, "' (known: ring, rhd, dbt, hier, hybrid2018)");
}

const char* overlap_name(Overlap o) { return o == Overlap::none ? "none" : "buckets"; }

// ---- networks -----------------------------------------------------------------------------------------------------

const std::vector<Network>& networks() {
  // docs/models.md "Counts at 768x1152" (checked by tests/net/test_models.cpp).
  static const std::vector<Network> n = {
      {"deeplabv3plus", 43714787, 13.024e12},
      {"tiramisu", 7504835, 4.188e12},
      {"deepcam", 56454720, 1.966e12},
  };
  return n;
}

const Network& network(const std::string& name) {
  for (const Network& n : networks())
    if (n.name == name) return n;
  CS_THROW("unknown network '", name, "' (known: deeplabv3plus, tiramisu, deepcam)");
}

int64_t dtype_bytes(const std::string& dtype) {
  if (dtype == "fp16" || dtype == "bf16") return 2;
  if (dtype == "fp32") return 4;
  CS_THROW("unknown gradient dtype '", dtype, "' (fp16, bf16 or fp32)");
}

// ---- machines -----------------------------------------------------------------------------------------------------

double Machine::rate(const std::string& model, const std::string& dtype, std::string* source) const {
  const std::string dt = dtype == "bf16" ? "fp16" : dtype;
  for (const Rate& r : rates)
    if (r.model == model && r.dtype == dt) {
      if (source) *source = r.source;
      return r.flops;
    }
  const double peak = dt == "fp16" ? peak_fp16 : peak_fp32, frac = dt == "fp16" ? fraction_fp16 : fraction_fp32;
  CS_CHECK(peak > 0 && frac > 0, "machine ", name, ": no compute rate for ", model, " ", dtype);
  if (source) *source = "peak x fraction";
  return peak * frac;
}

std::vector<std::string> Machine::constant_names() {
  std::vector<std::string> n;
  for (const Field& f : fields()) n.push_back(f.name);
  n.push_back("rate.<model>.<fp16|fp32>_tflops");
  return n;
}

void Machine::set(const std::string& key, double value) {
  for (const Field& f : fields())
    if (key == f.name) {
      if (f.d)
        this->*f.d = value * f.scale;
      else
        this->*f.i = static_cast<int>(value);
      CS_CHECK(gpus_per_node >= 1 && nvlink_links >= 1 && ports >= 1 && split >= 1, "machine ", name, ": ", key,
               " must be at least 1");
      return;
    }
  // rate.<model>.<dtype>_tflops
  const std::string pre = "rate.", post = "_tflops";
  if (key.rfind(pre, 0) == 0 && key.size() > pre.size() + post.size() &&
      key.compare(key.size() - post.size(), post.size(), post) == 0) {
    const std::string mid = key.substr(pre.size(), key.size() - pre.size() - post.size());
    const size_t dot = mid.find('.');
    CS_CHECK(dot != std::string::npos, "constant '", key, "': expected rate.<model>.<dtype>_tflops");
    const std::string model = mid.substr(0, dot), dtype = mid.substr(dot + 1);
    network(model);
    dtype_bytes(dtype);
    rates.erase(
        std::remove_if(rates.begin(), rates.end(), [&](const Rate& r) { return r.model == model && r.dtype == dtype; }),
        rates.end());
    rates.push_back({model, dtype, value * kTF, "set on the command line"});
    return;
  }
  std::string known;
  for (const std::string& n : constant_names()) known += (known.empty() ? "" : ", ") + n;
  CS_THROW("unknown machine constant '", key, "' (known: ", known, ")");
}

double Machine::get(const std::string& key) const {
  for (const Field& f : fields())
    if (key == f.name) return f.d ? this->*f.d / f.scale : static_cast<double>(this->*f.i);
  CS_THROW("unknown machine constant '", key, "'");
}

Machine summit() {
  Machine m;
  m.name = "summit";
  m.gpus_per_node = 6;          // OLCF Summit user guide; spec engine.md section 8 (4,560 nodes x 6)
  m.nvlink_link_bw = 25 * kGB;  // NVLink 2 brick: 25 GB/s per direction (NVIDIA V100 whitepaper)
  m.nvlink_links = 2;           // Summit: 2 bricks between each GPU pair of a socket -> 50 GB/s (OLCF user guide)
  m.intra_alpha = 3 * kUs;      // assumed (NCCL step latency over NVLink)
  m.port_bw = 12.5 * kGB;       // EDR InfiniBand 100 Gb/s per port (Mellanox ConnectX-5)
  m.ports = 2;                  // dual-rail EDR per node (OLCF user guide)
  m.inter_alpha = 5 * kUs;      // assumed (MPI latency over EDR including host software)
  m.reduce_bw = 300 * kGB;      // V100 HBM2 900 GB/s / 3 (read 2, write 1); assumed to reach peak
  m.host_reduce_bw = 10 * kGB;  // assumed: the fork's fp16 MPI_Op on POWER9, one core per rank
  m.host_copy_bw = 50 * kGB;    // NVLink 2 CPU<->GPU, 2 bricks (OLCF user guide)
  m.split = 4;                  // reference-systems.md 4.3: 4 blocks on local ranks 0,1,3,4
  m.peak_fp16 = 125 * kTF;      // V100 SXM2 tensor cores (NVIDIA datasheet)
  m.peak_fp32 = 15.7 * kTF;     // V100 SXM2 FP32 (NVIDIA datasheet)
  // The paper's sustained per-GPU rates at 27,360 GPUs (reference-systems.md 5.1), counted with its own FLOP
  // counter (14.41 TFLOP/sample for DeepLabv3+), converted to samples/s and then to our count (13.024).
  const double dl_fp16 = 999.0e15 / 27360 / 14.41e12 * 13.024e12, dl_fp32 = 325.8e15 / 27360 / 14.41e12 * 13.024e12;
  m.rates = {
      {"deeplabv3plus", "fp16", dl_fp16, "paper: 999.0 PF/s sustained / 27,360 GPUs, FLOP recounted (5.1)"},
      {"deeplabv3plus", "fp32", dl_fp32, "paper: 325.8 PF/s sustained / 27,360 GPUs, FLOP recounted (5.1)"},
      {"tiramisu", "fp16", 20.93 * kTF, "paper via GK: 20.93 TF/s per V100 (5.1)"},
      {"deepcam", "fp16", 3.6 * 1.966e12, "Cori-GPU V100 MLPerf v0.7 log: 3.6 samples/s (5.3)"},
  };
  m.fraction_fp16 = dl_fp16 / m.peak_fp16;  // used where no row exists
  m.fraction_fp32 = dl_fp32 / m.peak_fp32;
  for (int64_t g = 6; g < 27360; g *= 4) m.gpu_counts.push_back(g);
  m.gpu_counts.insert(m.gpu_counts.begin(), 1);
  m.gpu_counts.push_back(27360);
  return m;
}

Machine h100_cluster() {
  Machine m;
  m.name = "h100";
  m.gpus_per_node = 8;          // DGX H100 / HGX H100 8-GPU
  m.nvlink_link_bw = 25 * kGB;  // NVLink 4: 18 links x 25 GB/s = 450 GB/s per direction (H100 datasheet: 900 GB/s)
  m.nvlink_links = 18;
  m.intra_alpha = 2 * kUs;         // assumed
  m.port_bw = 50 * kGB;            // NDR InfiniBand 400 Gb/s (ConnectX-7)
  m.ports = 8;                     // DGX H100: 8 compute ports, one per GPU
  m.inter_alpha = 5 * kUs;         // assumed
  m.reduce_bw = 3350.0 / 3 * kGB;  // H100 SXM HBM3 3.35 TB/s / 3
  m.host_reduce_bw = 20 * kGB;     // assumed (hybrid2018 only)
  m.host_copy_bw = 55 * kGB;       // assumed: PCIe 5 x16 (64 GB/s raw) (hybrid2018 only)
  m.split = 8;                     // one block per port
  m.peak_fp16 = 989.4 * kTF;       // H100 SXM dense FP16/BF16 tensor (NVIDIA datasheet)
  m.peak_fp32 = 494.7 * kTF;       // H100 SXM dense TF32 tensor: "fp32" training runs in TF32 (datasheet)
  m.fraction_fp16 = 0.264;         // assumed: the fraction V100 reached in 2018 (summit().fraction_fp16)
  m.fraction_fp32 = 0.264;         // assumed, the same
  m.rates = {{"deepcam", "fp16", 82 * 1.966e12, "Eos H100 MLPerf v3.0 log: 82 samples/s at local batch 8 (5.3)"}};
  for (int64_t g = 1; g <= 32768; g *= 8) m.gpu_counts.push_back(g);
  return m;
}

Machine piz_daint() {
  Machine m;
  m.name = "daint";
  m.gpus_per_node = 1;  // Cray XC50: one P100 per node
  m.nvlink_link_bw = 0;
  m.intra_alpha = 0;
  m.port_bw = 10 * kGB;  // assumed: Aries NIC injection per node
  m.ports = 1;
  m.inter_alpha = 2 * kUs;        // assumed
  m.reduce_bw = 732.0 / 3 * kGB;  // P100 HBM2 732 GB/s / 3
  m.host_reduce_bw = 10 * kGB;    // assumed
  m.host_copy_bw = 12 * kGB;      // assumed: PCIe 3 x16
  m.split = 1;
  m.peak_fp16 = 18.7 * kTF;  // P100 PCIe (NVIDIA datasheet)
  m.peak_fp32 = 9.3 * kTF;
  m.rates = {{"tiramisu", "fp16", 3.96 * kTF, "paper: 21.0 PF/s / 5,300 P100 (5.1), precision not stated"},
             {"tiramisu", "fp32", 3.96 * kTF, "paper: 21.0 PF/s / 5,300 P100 (5.1), precision not stated"}};
  m.fraction_fp16 = 3.96 / 18.7;
  m.fraction_fp32 = 3.96 / 9.3;
  for (int64_t g = 1; g <= 4096; g *= 4) m.gpu_counts.push_back(g);
  m.gpu_counts.push_back(5300);
  return m;
}

std::vector<std::string> machine_names() { return {"summit", "h100", "daint"}; }

Machine machine_preset(const std::string& name) {
  if (name == "summit") return summit();
  if (name == "h100") return h100_cluster();
  if (name == "daint") return piz_daint();
  CS_THROW("unknown machine '", name, "' (presets: summit, h100, daint; host comes from --calibrate)");
}

// ---- allreduce ----------------------------------------------------------------------------------------------------

double ring_time(int64_t n, double bytes, Level l, double reduce_bw) {
  if (n <= 1) return 0;
  const double f = static_cast<double>(n - 1) / static_cast<double>(n);
  return 2.0 * static_cast<double>(n - 1) * l.alpha + 2.0 * f * bytes / l.bw + reduce_cost(f * bytes, reduce_bw);
}

double rhd_time(int64_t n, double bytes, Level l, double reduce_bw) {
  if (n <= 1) return 0;
  const int64_t p = pow2_floor(n);
  const double f = static_cast<double>(p - 1) / static_cast<double>(p);
  double t = 2.0 * ilog2(p) * l.alpha + 2.0 * f * bytes / l.bw + reduce_cost(f * bytes, reduce_bw);
  if (p != n) t += 2.0 * l.alpha + 2.0 * bytes / l.bw + reduce_cost(bytes, reduce_bw);  // fold + unfold
  return t;
}

double tree_time(int64_t n, double bytes, Level l, double reduce_bw) {
  if (n <= 1) return 0;
  return 2.0 * ilog2(n) * l.alpha + 2.0 * bytes / l.bw + reduce_cost(bytes, reduce_bw);
}

double allreduce_time(const Machine& m, ModelledAlgo a, int64_t gpus, double bytes) {
  CS_CHECK(gpus >= 1, "allreduce over ", gpus, " GPUs");
  if (gpus == 1 || bytes <= 0) return 0;
  const int64_t g = m.gpus_per_node;
  CS_CHECK(gpus <= g || gpus % g == 0, "machine ", m.name, ": ", gpus, " GPUs is not a whole number of ", g,
           "-GPU nodes");
  const int64_t nodes = gpus <= g ? 1 : gpus / g, local = gpus <= g ? gpus : g;
  const Level intra = m.intra();
  const double rb = m.reduce_bw;
  if (nodes == 1) {
    CS_CHECK(intra.bw > 0, "machine ", m.name, ": no intra-node bandwidth");
    switch (a) {
      case ModelledAlgo::rhd:
        return rhd_time(local, bytes, intra, rb);
      case ModelledAlgo::dbt:  // NCCL's intra-node chain, pipelined
        return 2.0 * static_cast<double>(local - 1) * intra.alpha + 2.0 * bytes / intra.bw + reduce_cost(bytes, rb);
      default:
        return ring_time(local, bytes, intra, rb);  // ring, hier, hybrid2018 (one node: just the ring)
    }
  }
  CS_CHECK(m.port_bw > 0, "machine ", m.name, ": no inter-node bandwidth");
  const double node_bw = m.node_bw();
  const double flat_bw = local > 1 ? std::min(intra.bw, node_bw) : node_bw;
  const double lf = static_cast<double>(local - 1) / static_cast<double>(local);
  switch (a) {
    case ModelledAlgo::ring:
      return ring_time(gpus, bytes, {std::max(intra.alpha, m.inter_alpha), flat_bw}, rb);
    case ModelledAlgo::rhd: {
      const int64_t p = pow2_floor(gpus);
      const Level inter{m.inter_alpha, std::min(m.port_bw, node_bw / static_cast<double>(local))};
      double t = 0, vol = bytes;
      for (int k = 1; (int64_t{1} << k) <= p; ++k) {
        const int64_t d = int64_t{1} << (k - 1);
        const Level l = (local % (2 * d) == 0) ? intra : inter;  // the pair block of 2d ranks stays in the node
        vol /= 2;
        t += 2.0 * (l.alpha + vol / l.bw) + reduce_cost(vol, rb);
      }
      if (p != gpus) t += 2.0 * (inter.alpha + bytes / inter.bw) + reduce_cost(bytes, rb);
      return t;
    }
    case ModelledAlgo::dbt:
      return 2.0 * (static_cast<double>(local - 1) * intra.alpha + ilog2(nodes) * m.inter_alpha) +
             2.0 * bytes / flat_bw + reduce_cost(bytes, rb);
    case ModelledAlgo::hier: {
      double t = 0;
      if (local > 1)
        t += 2.0 * (static_cast<double>(local - 1) * intra.alpha + lf * bytes / intra.bw) +
             reduce_cost(lf * bytes, rb);  // reduce-scatter + allgather
      const Level stream{m.inter_alpha, std::min(m.port_bw, node_bw / static_cast<double>(local))};
      return t + best_inter(nodes, bytes / static_cast<double>(local), stream, rb);
    }
    case ModelledAlgo::hybrid2018: {
      double t = local > 1 ? ring_time(local, bytes, intra, rb) : 0.0;  // ncclAllReduce in the node
      const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(m.split, local));
      const double block = bytes / static_cast<double>(blocks);
      if (m.host_copy_bw > 0) t += 2.0 * block / m.host_copy_bw;  // D2H, H2D
      const Level stream{m.inter_alpha, std::min(m.port_bw, node_bw / static_cast<double>(blocks))};
      t += best_inter(nodes, block, stream, m.host_reduce_bw > 0 ? m.host_reduce_bw : rb);
      if (local > 1)  // one pipelined ncclBcast per block, one after another
        t += static_cast<double>(blocks) * static_cast<double>(local - 1) * intra.alpha + bytes / intra.bw;
      return t;
    }
  }
  CS_THROW("unreachable");
}

// ---- step time ------------------------------------------------------------------------------------------------------

StepTime step_time(const Machine& m, ModelledAlgo a, int64_t gpus, double compute, double grad_bytes, const StepOptions& o) {
  return step_time(compute, grad_bytes, o, [&](double b) { return allreduce_time(m, a, gpus, b); });
}

double straggler_factor(double cv, int64_t gpus) {
  return gpus <= 1 ? 1.0 : 1.0 + cv * std::sqrt(2.0 * std::log(static_cast<double>(gpus)));
}

Prediction predict(const Machine& m, const std::string& model, const std::string& dtype, int64_t gpus, ModelledAlgo a,
                   const StepOptions& o, int64_t batch) {
  CS_CHECK(batch >= 1, "batch per GPU must be at least 1, got ", batch);
  const Network& net = network(model);
  const double compute = static_cast<double>(batch) * net.flop_per_sample / m.rate(model, dtype);
  const double bytes = static_cast<double>(net.params * dtype_bytes(dtype));
  const StepTime one = step_time(m, a, 1, compute, bytes, o);
  const StepTime t = step_time(m, a, gpus, compute * straggler_factor(m.jitter_cv, gpus), bytes, o);
  Prediction p;
  p.machine = m.name;
  p.model = model;
  p.dtype = dtype;
  p.gpus = gpus;
  p.algo = a;
  p.overlap = o.overlap;
  p.lag = o.lag;
  p.allreduce_ms = t.allreduce * 1e3;
  p.compute_ms = t.compute * 1e3;
  p.step_ms = t.step * 1e3;
  p.efficiency = one.step / t.step;
  return p;
}

// ---- calibration ----------------------------------------------------------------------------------------------------

std::vector<Measurement> read_measurements(const std::string& path, int64_t default_ranks) {
  std::ifstream in(path);
  CS_CHECK(in, "cannot open calibration file '", path, "'");
  std::string line;
  std::vector<std::string> head;
  int line_no = 0;
  while (head.empty() && std::getline(in, line)) {
    ++line_no;
    if (trim(line).empty() || trim(line)[0] == '#') continue;
    head = split_csv(lower(line));
  }
  CS_CHECK(!head.empty(), path, ": empty calibration file");
  auto col = [&](std::initializer_list<const char*> names) -> int {
    for (const char* n : names)
      for (size_t i = 0; i < head.size(); ++i)
        if (head[i] == n) return static_cast<int>(i);
    return -1;
  };
  const int c_algo = col({"algo", "algorithm"}), c_ranks = col({"ranks", "nranks", "np", "world_size", "gpus"});
  const int c_bytes = col({"bytes", "size"}), c_time = col({"time_us", "time"});
  CS_CHECK(c_bytes >= 0 && c_time >= 0, path, ": the header needs a bytes (or size) and a time_us column");
  CS_CHECK(c_ranks >= 0 || default_ranks > 0, path,
           ": no ranks/nranks column; give the rank count (--calibrate-ranks)");
  std::vector<Measurement> out;
  while (std::getline(in, line)) {
    ++line_no;
    if (trim(line).empty() || trim(line)[0] == '#') continue;
    const std::vector<std::string> f = split_csv(line);
    const int need = std::max({c_algo, c_ranks, c_bytes, c_time});
    CS_CHECK(static_cast<int>(f.size()) > need, path, ":", line_no, ": expected at least ", need + 1, " fields");
    Measurement m;
    m.algo = c_algo >= 0 ? f[static_cast<size_t>(c_algo)] : "ring";
    try {
      m.ranks = c_ranks >= 0 ? std::stoll(f[static_cast<size_t>(c_ranks)]) : default_ranks;
      m.bytes = std::stod(f[static_cast<size_t>(c_bytes)]);
      m.time_us = std::stod(f[static_cast<size_t>(c_time)]);
    } catch (const std::exception&) {
      CS_THROW(path, ":", line_no, ": not a number in '", line, "'");
    }
    CS_CHECK(m.ranks >= 1 && m.bytes >= 0 && m.time_us > 0 && std::isfinite(m.time_us), path, ":", line_no,
             ": ranks must be >= 1, bytes >= 0 and time_us > 0");
    out.push_back(m);
  }
  CS_CHECK(!out.empty(), path, ": no measurements");
  return out;
}

void fit_coefficients(const std::string& algo, int64_t n, double bytes, double* a, double* b) {
  *a = *b = 0;
  if (n <= 1) return;
  const double dn = static_cast<double>(n);
  if (algo == "rhd") {
    const int64_t p = pow2_floor(n);
    *a = 2.0 * ilog2(p) + (p != n ? 2.0 : 0.0);
    *b = 2.0 * static_cast<double>(p - 1) / static_cast<double>(p) * bytes + (p != n ? 2.0 * bytes : 0.0);
  } else if (algo == "dbt" || algo == "tree") {
    *a = 2.0 * ilog2(n);
    *b = 2.0 * bytes;
  } else {  // ring, and anything else (one level: hier and hybrid2018 are the ring)
    *a = 2.0 * (dn - 1);
    *b = 2.0 * (dn - 1) / dn * bytes;
  }
}

std::vector<Fit> fit_measurements(const std::vector<Measurement>& ms) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<const Measurement*>> by;
  for (const Measurement& m : ms) {
    if (m.ranks <= 1) continue;  // nothing is communicated
    if (!by.count(m.algo)) order.push_back(m.algo);
    by[m.algo].push_back(&m);
  }
  CS_CHECK(!order.empty(), "calibration: no measurement with more than one rank");
  std::vector<Fit> fits;
  for (const std::string& algo : order) {
    // Relative least squares: each row t = alpha a + beta b is divided by t, so small (latency-bound) and large
    // (bandwidth-bound) messages count alike.
    double saa = 0, sab = 0, sbb = 0, sa = 0, sb = 0;
    for (const Measurement* m : by[algo]) {
      double a, b;
      fit_coefficients(algo, m->ranks, m->bytes, &a, &b);
      const double t = m->time_us * kUs;
      a /= t;
      b /= t;
      saa += a * a;
      sab += a * b;
      sbb += b * b;
      sa += a;
      sb += b;
    }
    const double det = saa * sbb - sab * sab;
    Fit f;
    f.algo = algo;
    f.points = static_cast<int>(by[algo].size());
    CS_CHECK(f.points >= 2 && det > 1e-12 * saa * sbb, "calibration of '", algo,
             "': need points at two or more message sizes (or rank counts) to separate alpha from beta");
    double alpha = (sa * sbb - sb * sab) / det, beta = (saa * sb - sab * sa) / det;
    if (alpha < 0) {  // latency below resolution: fit the bandwidth alone
      alpha = 0;
      beta = sb / sbb;
    }
    CS_CHECK(beta > 0, "calibration of '", algo, "': the fit gave no positive bandwidth (times fall with size?)");
    f.alpha = alpha;
    f.bw = 1.0 / beta;
    double e2 = 0;
    for (const Measurement* m : by[algo]) {
      double a, b;
      fit_coefficients(algo, m->ranks, m->bytes, &a, &b);
      const double t = m->time_us * kUs, rel = (alpha * a + beta * b - t) / t;
      e2 += rel * rel;
    }
    f.rms_rel_error = std::sqrt(e2 / f.points);
    fits.push_back(f);
  }
  return fits;
}

Machine host_machine(const std::vector<Fit>& fits, int64_t max_ranks, double tflops) {
  CS_CHECK(!fits.empty(), "host machine: no fit");
  CS_CHECK(max_ranks >= 1 && max_ranks <= (int64_t{1} << 30), "host machine: bad rank count ", max_ranks);
  CS_CHECK(tflops > 0, "host machine: the compute rate must be positive (--host-tflops)");
  const Fit* f = &fits.front();
  for (const Fit& x : fits)
    if (x.algo == "ring") f = &x;
  Machine m;
  m.name = "host";
  m.gpus_per_node = static_cast<int>(max_ranks);
  m.nvlink_link_bw = f->bw;
  m.nvlink_links = 1;
  m.intra_alpha = f->alpha;
  m.reduce_bw = 0;  // folded into the fitted bandwidth
  m.peak_fp16 = m.peak_fp32 = tflops * kTF;
  m.fraction_fp16 = m.fraction_fp32 = 1.0;
  for (int64_t g = 1; g < max_ranks; g *= 2) m.gpu_counts.push_back(g);
  m.gpu_counts.push_back(max_ranks);
  return m;
}

}  // namespace climseg::bench
