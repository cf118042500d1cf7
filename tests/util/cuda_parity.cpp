#include "tests/util/cuda_parity.h"

#include <catch2/catch.hpp>

#include <cmath>

#include "engine/check.h"
#include "engine/philox.h"
#include "tests/util/compare.h"
#include "tests/util/device_operand.h"

namespace climseg::test {

namespace {

// random_host(s, seed, lo, hi); with `ties`, values from {-1, -0.5, 0, 0.5, 1} only (the same stream).
Tensor uniform_host(Shape s, uint64_t seed, double lo, double hi, bool ties = false) {
  if (!ties) return random_host(s, seed, lo, hi);
  Tensor t = Tensor::empty(s, DType::f32, Device::cpu);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set_flat(i, std::round(2.0 * (2.0 * philox_uniform(seed, 0, static_cast<uint64_t>(i)) - 1.0)) / 2.0);
  return t;
}

Tensor zero_bytes(size_t n, Device d) {
  return n ? Tensor::zeros(Shape{1, 1, 1, static_cast<int64_t>(n)}, DType::u8, d) : Tensor();
}

// Sets the context's deterministic flag for one variant and restores it on any exit.
struct DeterministicScope {
  ExecContext& c;
  bool saved;
  DeterministicScope(ExecContext& ctx, bool det) : c(ctx), saved(ctx.deterministic) { c.deterministic = det; }
  ~DeterministicScope() { c.deterministic = saved; }
};

}  // namespace

const Tolerance& cuda_tolerance(DType dt, CudaKind k) {
  switch (dt) {
    case DType::f32:
      return k == CudaKind::eltwise ? tol::cuda_f32_exact : k == CudaKind::reduction ? tol::cuda_f32_gemm
                                                                                     : tol::cuda_f32_conv;
    case DType::f16:
      return k == CudaKind::eltwise ? tol::cuda_f16_eltwise : k == CudaKind::reduction ? tol::cuda_f16_gemm
                                                                                       : tol::cuda_f16_conv;
    case DType::bf16:
      return k == CudaKind::eltwise ? tol::cuda_bf16_eltwise : k == CudaKind::reduction ? tol::cuda_bf16_gemm
                                                                                        : tol::cuda_bf16_conv;
    default: CS_THROW("no CUDA tolerance for ", dtype_name(dt));
  }
}

std::string describe(const Variant& v) {
  return std::string(dtype_name(v.dt)) + (v.strided ? " strided" : " contiguous") +
         (v.mode == GradMode::accumulate ? " accumulate" : " overwrite") + (v.drop_dx0 ? " dx0-unwanted" : "") +
         (v.training ? "" : " inference") + (v.ties ? " ties" : "") +
         (v.planned_ws ? " planned-workspace" : " ctx-workspace") + (v.deterministic ? " deterministic" : "");
}

void check_parity(ExecContext& cpu, ExecContext& gpu, Layer& layer, const std::vector<Shape>& in,
                  const ParityOptions& o, const Variant& v) {
  INFO(layer.type() << " x " << in.at(0).str() << " " << describe(v));
  DeterministicScope det(gpu, v.deterministic);
  const Tolerance& td = cuda_tolerance(v.dt, o.data);
  const Tolerance& tp = cuda_tolerance(v.dt, o.params);
  INFO("tolerance rows: " << td.name << " / " << tp.name);
  uint64_t seed = o.seed;
  const size_t nin = in.size();
  const Shape out = layer.output_shape(in);
  const MemoryNeeds mc = layer.memory_needs(in, DType::f32), mg = layer.memory_needs(in, v.dt);
  auto device_ws = [&](bool backward) {
    if (!v.planned_ws) return Tensor();  // the layer takes ctx.workspace()
    if (o.device_workspace) return o.device_workspace(layer, in, v.dt, backward);
    return zero_bytes(backward ? mg.bwd_workspace : mg.fwd_workspace, Device::cuda);
  };

  // ---- operands (rounded to dt) ----
  std::vector<Tensor> x_ref;
  for (size_t i = 0; i < nin; ++i) x_ref.push_back(rounded(uniform_host(in[i], seed++, o.x_lo, o.x_hi, v.ties), v.dt));
  const std::vector<ParamSpec> specs = layer.param_specs(in);
  std::vector<Tensor> p_ref, p_dev;
  for (const ParamSpec& s : specs) {
    double lo = o.param_lo, hi = o.param_hi;
    if (o.he_params) {
      hi = s.name == "bias" ? 0.5 : std::sqrt(6.0 / static_cast<double>(s.fan_in));  // He variance
      lo = -hi;
    }
    p_ref.push_back(rounded(uniform_host(s.shape, seed++, lo, hi), v.dt));
    p_dev.push_back(p_ref.back().cast(v.dt).to(Device::cuda));
  }
  std::vector<Tensor> st_ref, st_dev;  // fp32 state (running statistics)
  for (const ParamSpec& s : layer.state_specs(in)) {
    const bool var = s.init == Init::ones;
    st_ref.push_back(uniform_host(s.shape, seed++, var ? 0.5 : -0.5, var ? 1.5 : 0.5));
    st_dev.push_back(st_ref.back().to(Device::cuda));
  }

  // ---- forward ----
  ForwardArgs fc;
  fc.x = x_ref;
  fc.y = Tensor::empty(out, DType::f32, Device::cpu);
  fc.params = p_ref;
  fc.state = st_ref;
  fc.saved = zero_bytes(mc.saved_bytes, Device::cpu);
  fc.workspace = zero_bytes(mc.fwd_workspace, Device::cpu);
  fc.training = v.training;
  fc.step = 17;
  layer.forward(cpu, fc);

  std::vector<DevOperand> xd;
  for (size_t i = 0; i < nin; ++i) xd.push_back(to_device(x_ref[i], v.dt, v.strided, seed++));
  const uint64_t yseed = seed++;
  DevOperand yd = to_device(uniform_host(out, yseed, -4.0, 4.0), v.dt, v.strided, seed++);  // garbage to overwrite
  ForwardArgs fg;
  for (const DevOperand& d : xd) fg.x.push_back(d.view);
  fg.y = yd.view;
  fg.params = p_dev;
  fg.state = st_dev;
  fg.saved = zero_bytes(mg.saved_bytes, Device::cuda);
  fg.workspace = device_ws(false);
  fg.training = v.training;
  fg.step = 17;
  layer.forward(gpu, fg);
  gpu.synchronize();
  {
    INFO("forward output");
    CS_REQUIRE_CLOSE(yd.view, fc.y, td.atol, td.rtol);
  }
  if (o.compare_saved && fc.saved.defined()) {
    INFO("saved state is the CPU's");
    CS_REQUIRE_CLOSE(fg.saved, fc.saved, 0.0, 0.0);
  }
  require_outside_untouched(yd, "y");
  for (size_t i = 0; i < st_ref.size(); ++i) {
    INFO("state " << i << " after forward");
    CS_REQUIRE_CLOSE(st_dev[i], st_ref[i], tol::cuda_f32_gemm.atol, tol::cuda_f32_gemm.rtol);
  }
  for (size_t i = 0; i < nin; ++i) {
    INFO("input " << i << " is read only");
    CS_REQUIRE_CLOSE(xd[i].view, x_ref[i], 0.0, 0.0);
    require_outside_untouched(xd[i], "x");
  }

  // ---- backward ----
  const double gscale = 1.0 / std::sqrt(static_cast<double>(out.pixels()));  // keeps sums over pixels O(1)
  Tensor dy_ref = rounded(uniform_host(out, seed++, -gscale, gscale), v.dt);
  DevOperand dyd = to_device(dy_ref, v.dt, v.strided, seed++);
  BackwardArgs bc, bg;
  bc.x = x_ref;
  bc.y = fc.y;
  bc.dy = dy_ref;
  bc.saved = fc.saved;
  bc.workspace = zero_bytes(mc.bwd_workspace, Device::cpu);
  bg.x = fg.x;
  bg.y = yd.view;
  bg.dy = dyd.view;
  bg.saved = fg.saved;
  bg.workspace = device_ws(true);
  const double dx_init = o.dx_init * (o.dx_init_per_pixel ? gscale : 1.0);
  std::vector<DevOperand> dxd(nin);
  for (size_t i = 0; i < nin; ++i) {
    // Mixed modes across inputs: even inputs take v.mode, odd ones the other.
    GradMode m = (i % 2 == 0) == (v.mode == GradMode::accumulate) ? GradMode::accumulate : GradMode::overwrite;
    bc.dx_mode.push_back(m);
    bg.dx_mode.push_back(m);
    if (i == 0 && v.drop_dx0) {
      bc.dx.emplace_back();
      bg.dx.emplace_back();
      continue;
    }
    // Prior contents: accumulate adds to them, overwrite must ignore them.
    Tensor init = rounded(uniform_host(in[i], seed++, -dx_init, dx_init), v.dt);
    bc.dx.push_back(init.clone());
    dxd[i] = to_device(init, v.dt, v.strided, seed++);
    bg.dx.push_back(dxd[i].view);
  }
  bc.params = p_ref;
  bg.params = p_dev;
  bc.param_mode = bg.param_mode = v.mode;
  for (const ParamSpec& s : specs) {
    Tensor init = rounded(uniform_host(s.shape, seed++, -0.5, 0.5), v.dt);
    bc.grads.push_back(init.clone());
    bg.grads.push_back(init.cast(v.dt).to(Device::cuda));
  }
  layer.backward(cpu, bc);
  layer.backward(gpu, bg);
  gpu.synchronize();
  for (size_t i = 0; i < nin; ++i) {
    if (!bc.dx[i].defined()) continue;
    INFO("input gradient " << i << (bc.dx_mode[i] == GradMode::accumulate ? " (accumulate)" : " (overwrite)"));
    CS_REQUIRE_CLOSE(bg.dx[i], bc.dx[i], td.atol, td.rtol);
    require_outside_untouched(dxd[i], "dx");
  }
  for (size_t j = 0; j < specs.size(); ++j) {
    INFO("parameter gradient " << specs[j].name);
    CS_REQUIRE_CLOSE(bg.grads[j], bc.grads[j], tp.atol, tp.rtol);
  }
  {
    INFO("dy is read only");
    CS_REQUIRE_CLOSE(dyd.view, dy_ref, 0.0, 0.0);
    require_outside_untouched(dyd, "dy");
  }
  if (o.repeat_backward && bg.dx[0].defined() && bg.dx_mode[0] == GradMode::overwrite) {
    // Determinism: the same backward again (overwrite into a fresh buffer) gives the same bits.
    Tensor first = bg.dx[0].to(Device::cpu);
    BackwardArgs again = bg;
    again.dx[0] = Tensor::zeros(in[0], v.dt, Device::cuda, &gpu);
    layer.backward(gpu, again);
    gpu.synchronize();
    INFO("second CUDA backward is bitwise identical");
    CS_REQUIRE_CLOSE(again.dx[0], first, 0.0, 0.0);
  }
}

}  // namespace climseg::test
