// dtype dispatch for CPU reference paths: calls f(T{}) with T = float or double.
//   dispatch_cpu_float(t, "relu", [&](auto tag) { using T = decltype(tag); cpu::relu_fwd<T>(...); });
#pragma once

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

}  // namespace climseg
