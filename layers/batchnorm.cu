// BatchNorm2d, CUDA path: the kernels in kernels/cuda/norm.cu (CPU path, shapes and the saved layout:
// layers/batchnorm.cpp). Statistics and running statistics are fp32 for fp32, fp16 and bf16 data.
#include "kernels/cuda/norm.h"
#include "layers/batchnorm.h"

namespace climseg {

namespace {
// A u8 view of `bytes` bytes at byte `offset` of a u8 buffer tensor (workspace or saved), sharing its memory.
Tensor byte_view(const Tensor& t, size_t offset, size_t bytes) {
  CS_CHECK(t.defined() && t.nbytes() >= offset + bytes, "batchnorm2d: buffer ", t.defined() ? t.str() : "undefined",
           " is smaller than ", offset + bytes, " bytes");
  return Tensor::wrap(static_cast<unsigned char*>(t.data()) + offset, Shape{1, 1, 1, static_cast<int64_t>(bytes)},
                      DType::u8, t.device(), t.buffer());
}
}  // namespace

void BatchNorm2d::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  const Tensor& x = a.x[0];
  const int64_t P = x.shape().pixels(), C = x.shape().c;
  CS_CHECK(a.training || !a.state.empty(), name(),
           ": inference needs the running statistics (ForwardArgs::state: running_mean, running_var)");
  const size_t stat_bytes = saved_layout(C, x.dtype()).bytes;
  // Statistics in the saved buffer, or at the start of the workspace when nothing is saved for backward.
  Tensor stats = a.saved.defined() ? byte_view(a.saved, 0, stat_bytes) : byte_view(a.workspace, 0, stat_bytes);
  Tensor res = cfg_.residual ? a.x[1] : Tensor();
  Tensor rm = a.state.empty() ? Tensor() : a.state[0];
  Tensor rv = a.state.empty() ? Tensor() : a.state[1];
  if (a.training) {
    Tensor ws = byte_view(a.workspace, cuda::norm_align(stat_bytes), cuda::bn_fwd_workspace_bytes(P, C));
    cuda::bn_fwd_train(ctx, x, res, a.params[0], a.params[1], rm, rv, cfg_.momentum, cfg_.eps, cfg_.relu, a.y, stats,
                       ws);
  } else {
    cuda::bn_fwd_infer(ctx, x, res, a.params[0], a.params[1], rm, rv, cfg_.eps, cfg_.relu, a.y, stats);
  }
}

void BatchNorm2d::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  const Tensor& x = a.x[0];
  const int64_t P = x.shape().pixels(), C = x.shape().c;
  CS_CHECK(a.saved.defined(), name(), ": backward needs the saved statistics from forward");
  Tensor stats = byte_view(a.saved, 0, saved_layout(C, x.dtype()).bytes);
  Tensor ws = byte_view(a.workspace, 0, cuda::bn_bwd_workspace_bytes(P, C));
  Tensor dres = cfg_.residual ? a.dx[1] : Tensor();
  cuda::bn_bwd(ctx, x, cfg_.relu ? a.y : Tensor(), a.dy, a.params[0], stats, cfg_.relu, a.grads[0], a.grads[1],
               a.param_mode == GradMode::accumulate, a.dx[0], a.dx_mode[0] == GradMode::accumulate, dres,
               cfg_.residual && a.dx_mode[1] == GradMode::accumulate, ws);
}

}  // namespace climseg
