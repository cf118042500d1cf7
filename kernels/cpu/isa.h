// Which instruction-set-specific CPU kernels climseg may use, decided once per process at run time.
//
// The build's baseline is x86-64 (SSE2); a few kernels have a faster variant compiled with a target attribute and
// taken only when the CPU has the instructions (today: the fp32 direct convolution for AVX-512, kernels/cpu/conv.cpp).
// Such a variant adds its sums in another order than the portable path, so fp32 results differ in rounding between
// CPUs with and without it (docs/tolerances.md, "What depends on the CPU"). To run the portable paths on any CPU,
// for example to check that a test does not depend on which kernel ran, set
//
//   CLIMSEG_CPU_DISPATCH=portable   only the baseline x86-64 kernels
//   CLIMSEG_CPU_DISPATCH=auto       (or unset, or empty) the fastest kernels this CPU supports
//
// Any other value is an error naming the variable. OpenBLAS has its own switch for its per-core kernels
// (OPENBLAS_CORETYPE=Haswell, SkylakeX, Zen, ...).
#pragma once

namespace climseg::cpu {

enum class CpuDispatch { automatic, portable };

// CLIMSEG_CPU_DISPATCH as read (once) from the environment; throws climseg::Error for an unknown value.
CpuDispatch cpu_dispatch();

// Whether the AVX-512 (avx512f) kernels run: the CPU has them and CLIMSEG_CPU_DISPATCH is not "portable".
bool cpu_use_avx512();

}  // namespace climseg::cpu
