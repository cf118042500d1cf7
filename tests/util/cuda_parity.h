// The one CUDA-vs-CPU parity harness of tests/cuda/ (ggml test-backend-ops: one harness for every op): a layer runs
// forward and backward on the CPU (fp32, contiguous: the reference) and on CUDA in the variant's dtype and views,
// on the same values (inputs rounded to the tested dtype first), and everything it produced is compared with the
// tolerance rows of tests/util/tolerances.h: the output, the state after forward, the input gradients, the
// parameter gradients. It also checks that inputs and dy are read only and that nothing outside channel-slice
// views is written. Tests keep their own shape tables and variant sweeps and call check_parity for each.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/layer.h"
#include "engine/tensor.h"
#include "tests/util/tolerances.h"

namespace climseg::test {

// What the device does differently from the CPU reference, which picks the tolerance row:
//   eltwise    the same fp32 operations per element, 16-bit results rounded once (the "elementwise" rows)
//   reduction  fp32 sums in another order: GEMMs, per-channel and per-pixel reductions ("GEMM and reductions")
//   conv       cuDNN convolutions (the "convolution" rows)
enum class CudaKind { eltwise, reduction, conv };

// The row of tests/util/tolerances.h for a CUDA result of dtype dt (fp32, fp16, bf16) and kind k.
const Tolerance& cuda_tolerance(DType dt, CudaKind k);

// One CUDA run of a layer. The fields after `mode` are toggles that only some layers use.
struct Variant {
  DType dt = DType::f32;
  bool strided = false;                // channel-slice views of wider buffers (noise outside must survive)
  GradMode mode = GradMode::overwrite; // of input 0 and the parameters; odd inputs take the other mode
  bool drop_dx0 = false;               // dx[0] undefined: the gradient is not wanted
  bool training = true;                // ForwardArgs::training
  bool ties = false;                   // inputs from {-1, -0.5, 0, 0.5, 1} only (max-pool tie breaking)
  bool planned_ws = false;             // the Net's planned workspace (memory_needs) rather than ctx.workspace()
  bool deterministic = false;          // ExecContext::deterministic during the run
};
std::string describe(const Variant& v);

// How a test's layer is fed and checked; the defaults are the plain case (inputs U(-1, 1), He-scaled weights).
struct ParityOptions {
  CudaKind data = CudaKind::eltwise;    // row of y and dx
  CudaKind params = CudaKind::eltwise;  // row of the parameter gradients
  uint64_t seed = 2000;                 // first Philox stream; each operand takes the next
  double x_lo = -1.0, x_hi = 1.0;       // inputs U(x_lo, x_hi)
  bool he_params = true;  // weights U(+-sqrt(6 / fan_in)), "bias" U(-0.5, 0.5); false: U(param_lo, param_hi)
  double param_lo = -1.0, param_hi = 1.0;
  double dx_init = 0.5;            // prior dx contents U(-dx_init, dx_init) (accumulate adds to them) ...
  bool dx_init_per_pixel = false;  // ... times 1 / sqrt(output pixels), as dy
  bool compare_saved = false;      // the saved state is bit-identical with the CPU's (max-pool argmax)
  bool repeat_backward = false;    // a second overwrite backward gives bitwise the same dx[0] (determinism)
  // The device workspace of a planned_ws variant (forward: backward false); default: memory_needs(in, v.dt).
  std::function<Tensor(const Layer&, const std::vector<Shape>& in, DType dt, bool backward)> device_workspace;
};

// Runs `layer` on cpu and gpu as above and REQUIREs every comparison.
void check_parity(ExecContext& cpu, ExecContext& gpu, Layer& layer, const std::vector<Shape>& in,
                  const ParityOptions& o, const Variant& v);

}  // namespace climseg::test
