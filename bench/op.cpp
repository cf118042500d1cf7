#include "bench/op.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include <omp.h>

#include "engine/philox.h"
#include "engine/profiler.h"
#include "tests/util/tolerances.h"

namespace climseg::bench {

// ---- descriptors ------------------------------------------------------------------------------------------------

std::string OpDesc::str() const {
  return detail::concat(op, " n=", n, " h=", h, " w=", w, " c=", c, " k=", k, " r=", r, " s=", s, " stride=", stride,
                        " pad=", pad, " dil=", dil, " groups=", groups, extra.empty() ? "" : " extra=", extra,
                        " dtype=", dtype_name(dtype), " device=", device_name(device));
}

namespace {
int64_t to_int(const std::string& key, const std::string& v) {
  try {
    size_t used = 0;
    long long x = std::stoll(v, &used);
    CS_CHECK(used == v.size(), "");
    return x;
  } catch (...) {
    CS_THROW("op descriptor: ", key, "=", v, " is not an integer");
  }
}

void set_key(OpDesc& d, const std::string& key, const std::string& v) {
  if (key == "n") d.n = to_int(key, v);
  else if (key == "h") d.h = to_int(key, v);
  else if (key == "w") d.w = to_int(key, v);
  else if (key == "c") d.c = to_int(key, v);
  else if (key == "k") d.k = to_int(key, v);
  else if (key == "r") d.r = to_int(key, v);
  else if (key == "s") d.s = to_int(key, v);
  else if (key == "stride") d.stride = to_int(key, v);
  else if (key == "pad") d.pad = v;
  else if (key == "dil") d.dil = to_int(key, v);
  else if (key == "groups") d.groups = to_int(key, v);
  else if (key == "extra") d.extra = v;
  else if (key == "dtype") d.dtype = parse_dtype(v);
  else if (key == "device") d.device = parse_device(v);
  else CS_THROW("op descriptor: unknown key '", key, "' (n h w c k r s stride pad dil groups extra dtype device)");
}
}  // namespace

OpDesc parse_op_descriptor(const std::string& text) {
  std::string t = text;
  std::replace(t.begin(), t.end(), ',', ' ');
  std::istringstream in(t);
  OpDesc d;
  CS_CHECK(static_cast<bool>(in >> d.op), "op descriptor is empty (expected e.g. 'conv2d n=2 h=96 w=144 c=256 k=256 r=3 s=3')");
  for (std::string kv; in >> kv;) {
    size_t eq = kv.find('=');
    CS_CHECK(eq != std::string::npos && eq > 0, "op descriptor: '", kv, "' is not key=value");
    set_key(d, kv.substr(0, eq), kv.substr(eq + 1));
  }
  if (d.k < 0) d.k = d.c;
  CS_CHECK(d.n > 0 && d.h > 0 && d.w > 0 && d.c > 0 && d.k > 0, "op descriptor: sizes must be positive: ", d.str());
  return d;
}

std::vector<OpDesc> load_op_shapes(const std::string& path) {
  std::ifstream f(path);
  CS_CHECK(f.good(), "cannot read the shape list ", path);
  std::vector<OpDesc> out;
  int line_no = 0;
  for (std::string line; std::getline(f, line);) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> col;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) col.push_back(c);
    if (line.back() == ',') col.push_back("");
    CS_CHECK(col.size() == 15, path, ":", line_no, ": expected 15 columns, got ", col.size());
    static const char* keys[] = {"n", "h", "w", "c", "k", "r", "s", "stride", "pad", "dil", "groups"};
    OpDesc d;
    d.network = col[0];
    d.name = col[1];
    d.op = col[2];
    try {
      for (int i = 0; i < 11; ++i) set_key(d, keys[i], col[3 + i]);
    } catch (const Error& e) {
      CS_THROW(path, ":", line_no, ": ", e.what());
    }
    d.extra = col[14];
    out.push_back(d);
  }
  return out;
}

// ---- running one op ---------------------------------------------------------------------------------------------

namespace {

Tensor random_host(Shape s, uint64_t stream, double scale, double offset = 0.0) {
  Tensor t = Tensor::empty(s, DType::f64, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set_flat(i, offset + scale * (2.0 * philox_uniform(2024, stream, static_cast<uint64_t>(i)) - 1.0));
  return t;
}

// Host fp64 data for an op: inputs U(-1, 1) (labels uniform in [0, classes)), parameters by their init with noise,
// He scale for weights so sums stay O(1), and the output gradient U(-1, 1) / sqrt(output size) ... kept O(1) too.
struct HostData {
  std::vector<Tensor> x, p;
  Tensor dy;
};

HostData make_data(const OpInstance& op) {
  HostData h;
  for (size_t i = 0; i < op.inputs.size(); ++i) {
    if (op.index_input[i]) {
      Tensor t = Tensor::empty(op.inputs[i], DType::i32, Device::cpu);
      for (int64_t j = 0; j < t.numel(); ++j)
        t.set_flat(j, std::floor(philox_uniform(2024, 50 + i, static_cast<uint64_t>(j)) * static_cast<double>(op.classes)));
      h.x.push_back(t);
    } else {
      h.x.push_back(random_host(op.inputs[i], 10 + i, 1.0));
    }
  }
  uint64_t stream = 20;
  for (const ParamSpec& s : op.layer->param_specs(op.inputs)) {
    double fan = static_cast<double>(std::max<int64_t>(1, s.fan_in));
    switch (s.init) {
      case Init::ones: h.p.push_back(random_host(s.shape, stream++, 0.25, 1.0)); break;
      case Init::zeros: h.p.push_back(random_host(s.shape, stream++, 0.25)); break;
      default: h.p.push_back(random_host(s.shape, stream++, std::sqrt(3.0 / fan))); break;
    }
  }
  h.dy = random_host(op.layer->output_shape(op.inputs), 30, 1.0);
  return h;
}

Tensor on(const Tensor& host, DType dt, Device dev) {
  Tensor t = dtype_is_float(host.dtype()) ? host.cast(dt) : host;
  return dev == Device::cpu ? t : t.to(dev);
}

Tensor bytes(size_t n, Device dev) {
  return n ? Tensor::zeros(Shape{1, 1, 1, static_cast<int64_t>(n)}, DType::u8, dev) : Tensor();
}

struct Run {
  ForwardArgs fa;
  BackwardArgs ba;
};

Run bind(const OpInstance& op, const HostData& h, DType dt, Device dev, bool backward) {
  Run r;
  MemoryNeeds m = op.layer->memory_needs(op.inputs, dt);
  for (const Tensor& t : h.x) r.fa.x.push_back(on(t, dt, dev));
  for (const Tensor& t : h.p) r.fa.params.push_back(on(t, dt, dev));
  r.fa.y = Tensor::zeros(op.layer->output_shape(op.inputs), dt, dev);
  r.fa.saved = bytes(m.saved_bytes, dev);
  r.fa.workspace = bytes(m.fwd_workspace, dev);
  if (backward) {
    r.ba.x = r.fa.x;
    r.ba.y = r.fa.y;
    r.ba.dy = on(h.dy, dt, dev);
    for (size_t i = 0; i < op.inputs.size(); ++i)
      r.ba.dx.push_back(op.index_input[i] ? Tensor() : Tensor::zeros(op.inputs[i], dt, dev));
    r.ba.dx_mode.assign(op.inputs.size(), GradMode::overwrite);
    r.ba.params = r.fa.params;
    for (const Tensor& p : r.fa.params) r.ba.grads.push_back(Tensor::zeros(p.shape(), dt, dev));
    r.ba.saved = r.fa.saved;
    r.ba.workspace = bytes(m.bwd_workspace, dev);
  }
  return r;
}

// Share of the tolerance budget used by the worst element of got vs ref (both brought to the host).
double budget_used(const Tensor& got, const Tensor& ref, const test::Tolerance& t) {
  Tensor g = got.device() == Device::cpu ? got : got.to(Device::cpu);
  double worst = 0;
  for (int64_t i = 0; i < g.numel(); ++i) {
    double a = g.get_flat(i), b = ref.get_flat(i);
    double used = std::fabs(a - b) / (t.atol + t.rtol * std::fabs(b));
    if (!(used <= worst)) worst = used;  // NaN propagates as a failure
  }
  return worst;
}

const test::Tolerance& tolerance_for(DType dt, Device dev) {
  if (dev == Device::cpu) return test::tol::cpu_f32_vs_f64;
  return dt == DType::f32 ? test::tol::cuda_f32_gemm : dt == DType::f16 ? test::tol::cuda_f16_gemm
                                                                         : test::tol::cuda_bf16_gemm;
}

// Verifies a small instance of the op: the device/dtype under test against the CPU path in fp64.
std::string verify(const OpDesc& d, bool backward) {
  OpDesc small = d;
  small.n = 1;
  small.h = std::min<int64_t>(d.h, 12);
  small.w = std::min<int64_t>(d.w, 16);
  OpInstance op = make_op(small);
  HostData h = make_data(op);
  ExecContext cpu(Device::cpu);
  Run ref = bind(op, h, DType::f64, Device::cpu, backward);
  op.layer->forward(cpu, ref.fa);
  if (backward) op.layer->backward(cpu, ref.ba);
  // The device sees inputs rounded to its dtype; so does a second reference, so rounding of the inputs is not
  // counted against the op.
  HostData hr = h;
  if (d.dtype != DType::f64) {
    for (Tensor& t : hr.x) if (dtype_is_float(t.dtype())) t = t.cast(d.dtype).cast(DType::f64);
    for (Tensor& t : hr.p) t = t.cast(d.dtype).cast(DType::f64);
    hr.dy = hr.dy.cast(d.dtype).cast(DType::f64);
    ref = bind(op, hr, DType::f64, Device::cpu, backward);
    op.layer->forward(cpu, ref.fa);
    if (backward) op.layer->backward(cpu, ref.ba);
  }
  ExecContext ctx(d.device);
  Run got = bind(op, hr, d.dtype, d.device, backward);
  op.layer->forward(ctx, got.fa);
  if (backward) op.layer->backward(ctx, got.ba);
  ctx.synchronize();
  const test::Tolerance& t = tolerance_for(d.dtype, d.device);
  double worst = budget_used(got.fa.y, ref.fa.y, t);
  if (backward) {
    for (size_t i = 0; i < got.ba.dx.size(); ++i)
      if (got.ba.dx[i].defined()) worst = std::max(worst, budget_used(got.ba.dx[i], ref.ba.dx[i], t));
    for (size_t i = 0; i < got.ba.grads.size(); ++i)
      worst = std::max(worst, budget_used(got.ba.grads[i], ref.ba.grads[i], t));
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s(%.0f%%)", worst <= 1.0 ? "pass" : "FAIL", 100.0 * worst);
  return buf;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

struct Timing {
  double med = 0, min = 0;
};

template <class F>
Timing time_it(ExecContext& ctx, const OpRunOptions& opt, F&& f) {
  std::vector<double> ms;
  for (int r = 0; r < opt.warmup + opt.reps; ++r) {
    Profiler prof(ctx.device());
    ctx.profiler = &prof;
    prof.begin_step(ctx.stream());
    f();
    prof.end_step(ctx.stream());
    ctx.profiler = nullptr;
    if (r >= opt.warmup) ms.push_back(prof.report().total.ms);
  }
  return {median(ms), *std::min_element(ms.begin(), ms.end())};
}

struct Row {
  OpDesc d;
  std::string provider, direction, verify;
  Timing t;
  LayerCost cost;
  double torch_ms = -1;
};

std::string shape_str(const OpDesc& d) {
  return detail::concat(d.n, "x", d.h, "x", d.w, "x", d.c, "->", d.k, " k", d.r, "x", d.s, " s", d.stride, " p",
                        d.pad, " d", d.dil, " g", d.groups, d.extra.empty() ? "" : " ", d.extra);
}

// PyTorch's CPU time for each (descriptor, direction), from bench/torch_ops.py; -1 where it has no equivalent.
std::map<std::string, double> torch_times(const std::vector<Row>& rows, const OpRunOptions& opt) {
  std::map<std::string, double> out;
  char tmpl[] = "/tmp/climseg-bench-XXXXXX";
  if (!mkdtemp(tmpl)) return out;
  std::string dir = tmpl;
  {
    std::ofstream f(dir + "/ops.txt");
    for (const Row& r : rows) f << r.direction << " " << r.d.str() << "\n";
  }
  std::string cmd = detail::concat("/usr/bin/python3 ", CLIMSEG_SOURCE_DIR, "/bench/torch_ops.py ", dir,
                                   "/ops.txt ", opt.warmup, " ", opt.reps, " > ", dir, "/times.txt 2> ", dir,
                                   "/err.txt");
  int rc = std::system(cmd.c_str());
  std::ifstream f(dir + "/times.txt");
  int i = 0;
  for (std::string line; std::getline(f, line) && i < static_cast<int>(rows.size()); ++i)
    out[rows[i].direction + " " + rows[i].d.str()] = std::stod(line);
  {
    std::ifstream e(dir + "/err.txt");
    std::stringstream ss;
    ss << e.rdbuf();
    if (rc != 0)
      std::fprintf(stderr, "climseg-bench: PyTorch timing failed (exit %d): %s\n", rc, ss.str().c_str());
    else
      std::fprintf(stderr, "climseg-bench: PyTorch: %s", ss.str().c_str());
  }
  std::system(detail::concat("rm -rf ", dir).c_str());
  return out;
}

}  // namespace

int run_ops(const std::vector<OpDesc>& descs, const OpRunOptions& opt) {
  std::fprintf(stderr, "climseg-bench: %d CPU threads (OpenMP)\n", omp_get_max_threads());
  std::vector<Row> rows;
  int failures = 0;
  for (const OpDesc& d : descs) {
    OpInstance op = make_op(d);
    const bool bwd = opt.backward && d.op != "concat";  // concat's backward is a no-op in a planned Net
    std::string v;
    try {
      v = verify(d, bwd);
    } catch (const Error& e) {
      v = "FAIL(error)";
      std::fprintf(stderr, "climseg-bench: verifying %s: %s\n", d.str().c_str(), e.what());
    }
    if (v.rfind("pass", 0) != 0) ++failures;
    HostData h = make_data(op);
    ExecContext ctx(d.device);
    Run run = bind(op, h, d.dtype, d.device, bwd);
    Row fr{d, d.device == Device::cpu ? "cpu" : "cuda", "fwd", v, {}, op.layer->forward_cost(op.inputs, d.dtype)};
    fr.t = time_it(ctx, opt, [&] { op.layer->forward(ctx, run.fa); });
    rows.push_back(fr);
    if (bwd) {
      Row br = fr;
      br.direction = "bwd";
      br.cost = op.layer->backward_cost(op.inputs, d.dtype);
      br.t = time_it(ctx, opt, [&] { op.layer->backward(ctx, run.ba); });
      rows.push_back(br);
    }
    std::fprintf(stderr, "climseg-bench: %s %s done\n", d.name.empty() ? d.op.c_str() : d.name.c_str(), v.c_str());
  }
  if (opt.torch) {
    auto tt = torch_times(rows, opt);
    for (Row& r : rows) {
      auto it = tt.find(r.direction + " " + r.d.str());
      if (it != tt.end()) r.torch_ms = it->second;
    }
  }
  if (opt.header)
    std::printf("network,name,op,direction,provider,dtype,layout,shape,time_ms_median,time_ms_min,gflops,gbps,"
                "pct_peak,verify%s\n", opt.torch ? ",torch_ms_median,ratio_ours_over_torch" : "");
  for (const Row& r : rows) {
    std::printf("%s,%s,%s,%s,%s,%s,NHWC,%s,%.4f,%.4f,%.2f,%.2f,,%s", r.d.network.c_str(), r.d.name.c_str(),
                r.d.op.c_str(), r.direction.c_str(), r.provider.c_str(), dtype_name(r.d.dtype),
                shape_str(r.d).c_str(), r.t.med, r.t.min, r.cost.flops / (r.t.med * 1e6),
                r.cost.bytes / (r.t.med * 1e6), r.verify.c_str());
    if (opt.torch) {
      if (r.torch_ms > 0)
        std::printf(",%.4f,%.3f", r.torch_ms, r.t.med / r.torch_ms);
      else
        std::printf(",,");
    }
    std::printf("\n");
  }
  return failures;
}

}  // namespace climseg::bench
