#include "train/sgd.h"

#include "engine/dispatch.h"
#include "engine/profiler.h"
#include "kernels/cpu/eltwise.h"
#if defined(CLIMSEG_HAVE_CUDA)
#include "kernels/cuda/eltwise.h"
#endif

namespace climseg {

void sgd_step(ExecContext& ctx, const Tensor& params, const Tensor& grads, double lr) {
  CS_CHECK(params.defined() && grads.defined(), "sgd_step: undefined parameter or gradient buffer");
  CS_CHECK(params.shape() == grads.shape() && params.dtype() == grads.dtype(), "sgd_step: ", params.str(), " vs ",
           grads.str());
  CS_CHECK(params.device() == ctx.device() && grads.device() == ctx.device(), "sgd_step: buffers on ",
           device_name(params.device()), ", context on ", device_name(ctx.device()));
  CS_CHECK(params.is_contiguous() && grads.is_contiguous(), "sgd_step: flat buffers must be contiguous");
  ProfileScope scope(ctx, ProfCategory::optimizer, "sgd", 2.0 * static_cast<double>(params.numel()),
                     3.0 * static_cast<double>(params.nbytes()));
  if (ctx.device() == Device::cpu) {
    dispatch_cpu_float(params.dtype(), "sgd", [&](auto tag) {
      using T = decltype(tag);
      cpu::axpy<T>(params.numel(), static_cast<T>(-lr), grads.data_as<T>(), params.data_as<T>());
    });
    return;
  }
#if defined(CLIMSEG_HAVE_CUDA)
  cuda::axpy(ctx, -lr, grads, params);
#else
  CS_THROW("sgd_step on CUDA: this climseg was built without CUDA");
#endif
}

}  // namespace climseg
