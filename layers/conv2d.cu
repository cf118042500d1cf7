// Conv2d and ConvTranspose2d (ConvLayer), CUDA path: cuDNN (kernels/cudnn/conv.h) for the convolution and its
// gradients, on the layer's ConvGeometry (kernels/conv_geometry.h, the same geometry the layer's memory_needs
// sizes its workspace from); for ConvTranspose2d cuDNN runs the conv backwards:
//   forward         = cuDNN backward-data of the conv (its dY = our x, its dX = our y)
//   backward-data   = cuDNN forward of the conv on our dy
//   backward-filter = cuDNN backward-filter with the conv's X = our dy and its dY = our x
// The bias through the kernels of kernels/cuda/eltwise.h. Channel-slice views are accepted everywhere (staged
// through the workspace where cuDNN needs packed tensors).
#include "kernels/cuda/eltwise.h"
#include "kernels/cudnn/conv.h"
#include "layers/conv2d.h"

namespace climseg {

void ConvLayer::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  cudnn::conv_layer_forward(ctx, geometry(a.x[0].shape()), a.x[0], a.params[0], a.y, a.workspace);
  conv_epilogue_cuda(ctx, bias_ ? a.params[1] : Tensor(), a.epilogue, a.y);
}

void conv_epilogue_cuda(ExecContext& ctx, const Tensor& own_bias, const Epilogue& e, const Tensor& y) {
  const Tensor& b = e.bias.defined() ? e.bias : own_bias;
  if (b.defined()) cuda::add_bias(ctx, b, y);
  if (e.residual.defined()) cuda::add_fwd(ctx, y, e.residual, y);
  if (e.relu) cuda::relu_fwd(ctx, y, y);
}

void ConvLayer::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  const bool pacc = a.param_mode == GradMode::accumulate;
  // The bias gradient takes its scratch from ctx.workspace(), which conv_layer_backward also uses when the Net gave
  // no planned workspace: both are queued on ctx's stream, and ctx.workspace() waits for the stream before growing.
  if (bias_) cuda::bias_grad(ctx, a.dy, a.grads[1], pacc);
  cudnn::conv_layer_backward(ctx, geometry(a.x[0].shape()), a.x[0], a.params[0], a.dy, a.dx[0],
                             a.dx_mode[0] == GradMode::accumulate, a.grads[0], pacc, a.workspace);
}

}  // namespace climseg
