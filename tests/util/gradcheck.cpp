#include "tests/util/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "engine/philox.h"
#include "tests/util/tolerances.h"

namespace climseg::test {

std::string GradCheckResult::str() const {
  std::ostringstream os;
  os << (ok ? "PASS" : "FAIL") << ": " << checked << " elements checked, " << skipped << " skipped at kinks, "
     << "max relative error " << max_rel_err;
  for (const std::string& f : failures) os << "\n  " << f;
  return os.str();
}

namespace {

void fill_uniform(Tensor& t, uint64_t seed, uint64_t stream, double scale) {
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set_flat(i, scale * (2.0 * philox_uniform(seed, stream, static_cast<uint64_t>(i)) - 1.0));
}

// A double tensor of shape s; when strided, a channel slice [pad, pad + c) of a wider buffer whose other channels
// hold a sentinel value (checked afterwards).
struct Buf {
  Tensor whole, view;
};
constexpr double kSentinel = 12345.678;
constexpr int64_t kPad = 3;

Buf make_buf(Shape s, bool strided) {
  Buf b;
  if (!strided) {
    b.whole = b.view = Tensor::zeros(s, DType::f64, Device::cpu);
    return b;
  }
  Shape w = s;
  w.c = s.c + 2 * kPad + 1;
  b.whole = Tensor::empty(w, DType::f64, Device::cpu);
  for (int64_t i = 0; i < b.whole.numel(); ++i) b.whole.set_flat(i, kSentinel);
  b.view = b.whole.channel_slice(kPad, s.c);
  b.view.zero();
  return b;
}

bool sentinel_intact(const Buf& b) {
  if (b.whole.shape() == b.view.shape()) return true;
  int64_t cw = b.whole.shape().c, c = b.view.shape().c;
  for (int64_t i = 0; i < b.whole.numel(); ++i) {
    int64_t ch = i % cw;
    if ((ch < kPad || ch >= kPad + c) && b.whole.get_flat(i) != kSentinel) return false;
  }
  return true;
}

struct Setup {
  std::vector<Buf> x, dx;
  Buf y, dy;
  std::vector<Tensor> params, grads;
  Tensor saved, ws_fwd, ws_bwd;
};

Tensor bytes_tensor(size_t n) {
  return n ? Tensor::zeros(Shape{1, 1, 1, static_cast<int64_t>(n)}, DType::u8, Device::cpu) : Tensor();
}

double loss_of(const Tensor& y, const Tensor& r) {
  double s = 0;
  for (int64_t i = 0; i < y.numel(); ++i) s += y.get_flat(i) * r.get_flat(i);
  return s;
}

}  // namespace

GradCheckResult check_gradients(Layer& layer, const std::vector<Shape>& in_shapes, const GradCheckOptions& opt) {
  GradCheckResult res;
  ExecContext ctx(Device::cpu);
  const Shape out_shape = layer.output_shape(in_shapes);
  const std::vector<ParamSpec> specs = layer.param_specs(in_shapes);
  const MemoryNeeds mem = layer.memory_needs(in_shapes, DType::f64);

  // Reference inputs, parameters and the loss weights r (= dy).
  std::vector<Tensor> x0;
  for (size_t i = 0; i < in_shapes.size(); ++i) {
    x0.push_back(Tensor::empty(in_shapes[i], DType::f64, Device::cpu));
    fill_uniform(x0.back(), opt.seed, 100 + i, opt.input_scale);
  }
  std::vector<Tensor> p0;
  for (size_t i = 0; i < specs.size(); ++i) {
    p0.push_back(Tensor::empty(specs[i].shape, DType::f64, Device::cpu));
    fill_uniform(p0.back(), opt.seed, 200 + i, 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(1, specs[i].fan_in))));
  }
  Tensor r = Tensor::empty(out_shape, DType::f64, Device::cpu);
  fill_uniform(r, opt.seed, 300, 1.0);

  auto make_setup = [&](bool strided) {
    Setup s;
    for (size_t i = 0; i < in_shapes.size(); ++i) {
      s.x.push_back(make_buf(in_shapes[i], strided));
      s.x.back().view.copy_from(x0[i]);
      s.dx.push_back(make_buf(in_shapes[i], strided));
    }
    s.y = make_buf(out_shape, strided);
    s.dy = make_buf(out_shape, strided);
    s.dy.view.copy_from(r);
    for (size_t i = 0; i < specs.size(); ++i) {
      s.params.push_back(p0[i].clone());
      s.grads.push_back(Tensor::zeros(specs[i].shape, DType::f64, Device::cpu));
    }
    s.saved = bytes_tensor(mem.saved_bytes);
    s.ws_fwd = bytes_tensor(mem.fwd_workspace);
    s.ws_bwd = bytes_tensor(mem.bwd_workspace);
    return s;
  };
  auto forward = [&](Setup& s) {
    ForwardArgs fa;
    for (auto& b : s.x) fa.x.push_back(b.view);
    fa.y = s.y.view;
    fa.params = s.params;
    fa.saved = s.saved;
    fa.workspace = s.ws_fwd;
    fa.training = opt.training;
    layer.forward(ctx, fa);
  };
  auto backward = [&](Setup& s, GradMode mode) {
    BackwardArgs ba;
    for (auto& b : s.x) ba.x.push_back(b.view);
    ba.y = s.y.view;
    ba.dy = s.dy.view;
    for (auto& b : s.dx) ba.dx.push_back(b.view);
    ba.dx_mode.assign(s.dx.size(), mode);
    ba.params = s.params;
    ba.grads = s.grads;
    ba.param_mode = mode;
    ba.saved = s.saved;
    ba.workspace = s.ws_bwd;
    layer.backward(ctx, ba);
  };
  auto fail = [&](const std::string& msg) {
    res.ok = false;
    if (res.failures.size() < 8) res.failures.push_back(msg);
  };

  // 1. Analytic gradients (overwrite mode) on contiguous tensors.
  Setup s = make_setup(false);
  forward(s);
  backward(s, GradMode::overwrite);

  // 2. Central differences, input by input, parameter by parameter.
  auto check_tensor = [&](const std::string& what, Tensor target, const Tensor& analytic, bool is_input) {
    int64_t n = target.numel();
    int64_t stride = std::max<int64_t>(1, n / std::max(1, opt.max_elements));
    for (int64_t i = 0; i < n; i += stride) {
      double v = target.get_flat(i);
      if (is_input && opt.kink_range > 0 && std::fabs(v - opt.kink) < opt.kink_range) {
        res.skipped++;
        continue;
      }
      target.set_flat(i, v + opt.step);
      forward(s);
      double lp = loss_of(s.y.view, r);
      target.set_flat(i, v - opt.step);
      forward(s);
      double lm = loss_of(s.y.view, r);
      target.set_flat(i, v);
      double numeric = (lp - lm) / (2 * opt.step);
      double a = analytic.get_flat(i);
      double scale = std::max({1.0, std::fabs(a), std::fabs(numeric)});
      double rel = std::fabs(a - numeric) / scale;
      res.max_rel_err = std::max(res.max_rel_err, rel);
      res.checked++;
      if (!(rel <= opt.tol)) {
        std::ostringstream os;
        os << layer.name() << ": d loss / d " << what << "[" << i << "]: analytic " << a << ", numeric " << numeric
           << " (relative error " << rel << ")";
        fail(os.str());
      }
    }
  };
  for (size_t i = 0; i < in_shapes.size(); ++i)
    check_tensor("input " + std::to_string(i), s.x[i].view, s.dx[i].view, true);
  for (size_t i = 0; i < specs.size(); ++i) check_tensor(specs[i].name, s.params[i], s.grads[i], false);
  forward(s);  // restore the saved state for the unperturbed inputs

  // 3. Accumulate mode: noise + overwrite result.
  if (opt.check_modes) {
    Setup a = make_setup(false);
    std::vector<Tensor> noise_dx, noise_g;
    for (size_t i = 0; i < a.dx.size(); ++i) {
      fill_uniform(a.dx[i].view, opt.seed, 400 + i, 1.0);
      noise_dx.push_back(a.dx[i].view.clone());
    }
    for (size_t i = 0; i < a.grads.size(); ++i) {
      fill_uniform(a.grads[i], opt.seed, 500 + i, 1.0);
      noise_g.push_back(a.grads[i].clone());
    }
    forward(a);
    backward(a, GradMode::accumulate);
    auto check_acc = [&](const std::string& what, const Tensor& got, const Tensor& noise, const Tensor& base) {
      for (int64_t j = 0; j < got.numel(); ++j) {
        double want = noise.get_flat(j) + base.get_flat(j);
        if (std::fabs(got.get_flat(j) - want) > tol::cpu_same_ops_f64.atol + tol::cpu_same_ops_f64.rtol * std::fabs(want)) {
          std::ostringstream os;
          os << layer.name() << ": accumulate mode: " << what << "[" << j << "] = " << got.get_flat(j)
             << ", expected noise + gradient = " << want;
          fail(os.str());
          return;
        }
      }
    };
    for (size_t i = 0; i < a.dx.size(); ++i)
      check_acc("dx " + std::to_string(i), a.dx[i].view, noise_dx[i], s.dx[i].view);
    for (size_t i = 0; i < a.grads.size(); ++i) check_acc("grad " + specs[i].name, a.grads[i], noise_g[i], s.grads[i]);
  }

  // 4. Strided views: same numbers, nothing written outside the slices.
  if (opt.check_strided) {
    Setup t = make_setup(true);
    forward(t);
    backward(t, GradMode::overwrite);
    auto check_same = [&](const std::string& what, const Tensor& got, const Tensor& ref) {
      for (int64_t j = 0; j < got.numel(); ++j) {
        double g = got.get_flat(j), f = ref.get_flat(j);
        if (std::fabs(g - f) > tol::cpu_same_ops_f64.atol + tol::cpu_same_ops_f64.rtol * std::fabs(f)) {
          std::ostringstream os;
          os << layer.name() << ": strided views: " << what << "[" << j << "] = " << g << ", contiguous gives " << f;
          fail(os.str());
          return;
        }
      }
    };
    check_same("output", t.y.view, s.y.view);
    for (size_t i = 0; i < t.dx.size(); ++i) check_same("dx " + std::to_string(i), t.dx[i].view, s.dx[i].view);
    for (size_t i = 0; i < t.grads.size(); ++i) check_same("grad " + specs[i].name, t.grads[i], s.grads[i]);
    if (!sentinel_intact(t.y)) fail(layer.name() + ": forward wrote outside its output's channel slice");
    for (size_t i = 0; i < t.dx.size(); ++i)
      if (!sentinel_intact(t.dx[i])) fail(layer.name() + ": backward wrote outside dx " + std::to_string(i) + "'s slice");
    for (size_t i = 0; i < t.x.size(); ++i)
      if (!sentinel_intact(t.x[i])) fail(layer.name() + ": wrote into its input buffer " + std::to_string(i));
  }
  return res;
}

}  // namespace climseg::test
