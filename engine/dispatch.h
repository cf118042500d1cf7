// dtype dispatch: one switch from a runtime DType to a compile-time element type, for every backend.
//   dispatch_cpu_float(t, "relu", [&](auto tag) { using T = decltype(tag); cpu::relu_fwd<T>(...); });
//   dispatch_float_storage<Half, BFloat16, true>(t, f, on_other): f(static_cast<T*>(nullptr)) with T the element
//   type that stores t. The 16-bit types are parameters because the host (engine/dtype.h Half, BFloat16) and CUDA
//   (cuda_fp16.h __half, cuda_bf16.h __nv_bfloat16) spell them differently: kernels/cuda/common.cuh dispatch() is
//   this with the CUDA types and without fp64, io/pipeline.cpp's loader the host types with fp64.
#pragma once

#include <utility>

#include "engine/check.h"
#include "engine/dtype.h"

namespace climseg {

template <class F>
void dispatch_cpu_float(DType t, const char* who, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    default: CS_THROW(who, ": the CPU path computes in fp32 or fp64, not ", dtype_name(t));
  }
}

// Calls f(static_cast<T*>(nullptr)) with T = float, double (only when kWithF64), F16 or BF16 for t; any other
// dtype calls on_other(), which throws (the caller's message names what it takes).
template <class F16, class BF16, bool kWithF64, class F, class OnOther>
void dispatch_float_storage(DType t, F&& f, OnOther&& on_other) {
  switch (t) {
    case DType::f32: f(static_cast<float*>(nullptr)); return;
    case DType::f64:
      if constexpr (kWithF64) {
        f(static_cast<double*>(nullptr));
        return;
      }
      break;
    case DType::f16: f(static_cast<F16*>(nullptr)); return;
    case DType::bf16: f(static_cast<BF16*>(nullptr)); return;
    default: break;
  }
  std::forward<OnOther>(on_other)();
}

}  // namespace climseg
