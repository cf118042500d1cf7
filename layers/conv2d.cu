// Conv2d, CUDA path: cuDNN (kernels/cudnn/conv.h) for the convolution and its gradients, the bias kernels of
// kernels/cuda/eltwise.h for the bias. The geometry (pads, TF 'SAME' asymmetry, output size) comes from
// layers/conv_geometry.h, the same function the layer's memory_needs uses for its workspace. Channel-slice
// views are accepted everywhere (staged through the workspace where cuDNN needs packed tensors).
#include "kernels/cuda/eltwise.h"
#include "kernels/cudnn/conv.h"
#include "layers/conv_geometry.h"
#include "layers/conv2d.h"

namespace climseg {

void Conv2d::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  const cudnn::ConvGeometry g = cudnn::conv2d_geometry(*this, a.x[0].shape());
  cudnn::conv2d_forward(ctx, g, a.x[0], a.params[0], a.y, a.workspace);
  conv_epilogue_cuda(ctx, cfg_.bias ? a.params[1] : Tensor(), a.epilogue, a.y);
}

void conv_epilogue_cuda(ExecContext& ctx, const Tensor& own_bias, const Epilogue& e, const Tensor& y) {
  const Tensor& b = e.bias.defined() ? e.bias : own_bias;
  if (b.defined()) cuda::add_bias(ctx, b, y);
  if (e.residual.defined()) cuda::add_fwd(ctx, y, e.residual, y);
  if (e.relu) cuda::relu_fwd(ctx, y, y);
}

void Conv2d::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  const cudnn::ConvGeometry g = cudnn::conv2d_geometry(*this, a.x[0].shape());
  const bool pacc = a.param_mode == GradMode::accumulate;
  // The bias gradient takes its scratch from ctx.workspace(), which conv2d_backward also uses when the Net gave no
  // planned workspace: both are queued on ctx's stream, and ctx.workspace() waits for the stream before growing.
  if (cfg_.bias) cuda::bias_grad(ctx, a.dy, a.grads[1], pacc);
  const Tensor& dx = a.dx[0];
  cudnn::conv2d_backward(ctx, g, a.x[0], a.params[0], a.dy, dx, a.dx_mode[0] == GradMode::accumulate, a.grads[0],
                         pacc, a.workspace);
}

}  // namespace climseg
