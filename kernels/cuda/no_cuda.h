// CPU-only builds (backend boundary, Caffe's STUB_GPU): each kernels/cuda/*.h header defines its launchers there as
// inline stand-ins that throw through this one helper, so code naming them links and a call says what is missing.
#pragma once

#include "engine/check.h"

namespace climseg::cuda::detail {

[[noreturn]] inline void no_cuda(const char* who) {
  CS_THROW("cuda::", who, ": this climseg was built without CUDA");
}

}  // namespace climseg::cuda::detail
