// ConvTranspose2d, CUDA path: the gradient of a convolution, run through cuDNN (kernels/cudnn/conv.h):
//   forward       = cuDNN backward-data of the conv (its dY = our x, its dX = our y)
//   backward-data = cuDNN forward of the conv on our dy
//   backward-filter = cuDNN backward-filter with the conv's X = our dy and its dY = our x
// The index math for padding, output_padding and TF 'SAME' is written out in layers/conv_geometry.h. Bias as
// in Conv2d: kernels/cuda/eltwise.h.
#include "kernels/cuda/eltwise.h"
#include "kernels/cudnn/conv.h"
#include "layers/conv_geometry.h"
#include "layers/conv2d.h"

namespace climseg {

void ConvTranspose2d::forward_cuda(ExecContext& ctx, const ForwardArgs& a) {
  const cudnn::ConvGeometry g = cudnn::conv_transpose2d_geometry(*this, a.x[0].shape());
  cudnn::conv_transpose2d_forward(ctx, g, a.x[0], a.params[0], a.y, a.workspace);
  conv_epilogue_cuda(ctx, cfg_.bias ? a.params[1] : Tensor(), a.epilogue, a.y);
}

void ConvTranspose2d::backward_cuda(ExecContext& ctx, const BackwardArgs& a) {
  const cudnn::ConvGeometry g = cudnn::conv_transpose2d_geometry(*this, a.x[0].shape());
  const bool pacc = a.param_mode == GradMode::accumulate;
  // The bias gradient first (see Conv2d::backward_cuda).
  if (cfg_.bias) cuda::bias_grad(ctx, a.dy, a.grads[1], pacc);
  cudnn::conv_transpose2d_backward(ctx, g, a.x[0], a.params[0], a.dy, a.dx[0], a.dx_mode[0] == GradMode::accumulate,
                                   a.grads[0], pacc, a.workspace);
}

}  // namespace climseg
