// The per-element optimizer updates, written once for both devices: kernels/cpu/optim.cpp and kernels/cuda/optim.cu
// include this header, so the CPU reference and the CUDA kernels evaluate the same expressions in the same order.
// W is the master precision (float or double). Every arithmetic step goes through the helpers below: plain
// operators on the host (built with -ffp-contract=off, so never fused) and the explicitly rounded intrinsics on the
// device (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn and their double twins, which nvcc never contracts into an
// FMA). Together they make an fp32 update bit-identical on both devices for the same inputs and per-tensor factors.
//
// Formulas (g: the gradient element after loss-scale removal, clipping and LARC; w: master weight):
//   sgd    (torch.optim.SGD, dampening 0): d = g + wd*w; buf = momentum*buf + d; d = nesterov ? d + momentum*buf
//          : buf (no momentum: d as is); w = w - lr*d
//   adam   (torch.optim.Adam): g = g + wd*w; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
//          w = w - (lr/bc1) * (m / (sqrt(v)/sqrt(bc2) + eps)),   bc_k = 1 - b_k^t
//   adamw  (torch.optim.AdamW): w = w*(1 - lr*wd), then adam without the L2 term
//   lamb   (apex FusedLAMB, adam_w_mode, grad averaging, bias correction): m, v as adam without L2;
//          u = (m/bc1) / (sqrt(v/bc2) + eps) + wd*w; then per tensor w = w - (lr*r)*u with the trust ratio r
// The scalars (bias corrections, step size, 1 - lr*wd) are formed in double by the caller and rounded once to W.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define CS_OPTIM_HD __host__ __device__ __forceinline__
#else
#define CS_OPTIM_HD inline
#endif

namespace climseg::optim {

enum class Update : int { sgd = 0, adam = 1, adamw = 2, lamb = 3 };

// Per-step scalars in the master precision.
template <class W>
struct Scalars {
  W grad_scale = 1;    // multiplies every gradient element first (1 / loss scale)
  W lr = 0;            // sgd: w -= lr * d
  W weight_decay = 0;  // sgd, adam: L2 term added to the gradient; lamb: inside u
  W momentum = 0;      // sgd
  bool has_momentum = false;
  bool nesterov = false;
  W beta1 = 0, one_minus_beta1 = 0, beta2 = 0, one_minus_beta2 = 0, eps = 0;
  W step_size = 0;     // adam, adamw: lr / bc1
  W bc2_sqrt = 1;      // adam, adamw: sqrt(bc2)
  W bc1 = 1, bc2 = 1;  // lamb
  W decay = 1;         // adamw: 1 - lr * weight_decay
};

// ---- rounding-explicit arithmetic ------------------------------------------------------------------------------
// One float and one double overload per operation: on the device the explicitly rounded intrinsic, on the host the
// plain operator (or std::sqrt).
#if defined(__CUDA_ARCH__)
#define CS_OPTIM_PICK(device, host) device
#else
#define CS_OPTIM_PICK(device, host) host
#endif
#define CS_OPTIM_BINARY(name, op, f_rn, d_rn)                                                \
  CS_OPTIM_HD float name(float a, float b) { return CS_OPTIM_PICK(f_rn(a, b), a op b); }     \
  CS_OPTIM_HD double name(double a, double b) { return CS_OPTIM_PICK(d_rn(a, b), a op b); }
CS_OPTIM_BINARY(mul, *, __fmul_rn, __dmul_rn)
CS_OPTIM_BINARY(add, +, __fadd_rn, __dadd_rn)
CS_OPTIM_BINARY(sub, -, __fsub_rn, __dsub_rn)
CS_OPTIM_BINARY(div, /, __fdiv_rn, __ddiv_rn)
#undef CS_OPTIM_BINARY
CS_OPTIM_HD float sqrt_rn(float a) { return CS_OPTIM_PICK(__fsqrt_rn(a), std::sqrt(a)); }
CS_OPTIM_HD double sqrt_rn(double a) { return CS_OPTIM_PICK(__dsqrt_rn(a), std::sqrt(a)); }
#undef CS_OPTIM_PICK

// ---- the updates -----------------------------------------------------------------------------------------------

// The gradient the update sees: (grad_scale * raw) * factor, factor = clip coefficient x LARC factor of the tensor.
template <class W>
CS_OPTIM_HD W effective_grad(const Scalars<W>& s, W raw, W factor) {
  return mul(mul(s.grad_scale, raw), factor);
}

// torch.optim.SGD with dampening 0. buf is untouched without momentum.
template <class W>
CS_OPTIM_HD void sgd_update(const Scalars<W>& s, W g, W& w, W& buf) {
  W d = s.weight_decay != W(0) ? add(g, mul(s.weight_decay, w)) : g;
  if (s.has_momentum) {
    buf = add(mul(s.momentum, buf), d);  // first step: buf = 0 * momentum + d = d exactly (PyTorch's clone)
    d = s.nesterov ? add(d, mul(s.momentum, buf)) : buf;
  }
  w = sub(w, mul(s.lr, d));
}

// Adam's moments (shared by adam, adamw and lamb).
template <class W>
CS_OPTIM_HD void adam_moments(const Scalars<W>& s, W g, W& m, W& v) {
  m = add(mul(s.beta1, m), mul(s.one_minus_beta1, g));
  v = add(mul(s.beta2, v), mul(mul(s.one_minus_beta2, g), g));
}

// torch.optim.Adam (l2 = true, weight decay into the gradient) and AdamW (l2 = false, decoupled decay).
template <class W>
CS_OPTIM_HD void adam_update(const Scalars<W>& s, W g, W& w, W& m, W& v, bool adamw) {
  if (adamw) {
    w = mul(w, s.decay);
  } else if (s.weight_decay != W(0)) {
    g = add(g, mul(s.weight_decay, w));
  }
  adam_moments(s, g, m, v);
  const W denom = add(div(sqrt_rn(v), s.bc2_sqrt), s.eps);
  w = sub(w, mul(s.step_size, div(m, denom)));
}

// LAMB's update direction from the (already updated) moments and the weight before the step.
template <class W>
CS_OPTIM_HD W lamb_direction(const Scalars<W>& s, W w, W m, W v) {
  const W mhat = div(m, s.bc1), vhat = div(v, s.bc2);
  return add(div(mhat, add(sqrt_rn(vhat), s.eps)), mul(s.weight_decay, w));
}

// ---- per-tensor factors (double, both devices) -----------------------------------------------------------------

// LAMB trust ratio r = ||w|| / ||u||, 1 when either norm is 0 (apex FusedLAMB's "ratio", without its lr).
CS_OPTIM_HD double lamb_trust_ratio(double w_sumsq, double u_sumsq) {
  if (w_sumsq == 0.0 || u_sumsq == 0.0) return 1.0;
  return div(sqrt_rn(w_sumsq), sqrt_rn(u_sumsq));
}

}  // namespace climseg::optim
