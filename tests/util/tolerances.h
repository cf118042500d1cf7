// The one table of test tolerances: |got - ref| <= atol + rtol * |ref| (tests/util/compare.h) unless a row says
// otherwise. docs/tolerances.md shows the same rows with their reasons; tests/unit/test_tolerances.cpp fails when
// the two disagree. A row is loosened only with a written reason (STYLE.md F), never "3x until green".
//
// The reference is always the CPU path in fp32, run on inputs already rounded to the tested dtype, so a row only
// has to cover what the device does differently: the rounding of its 16-bit results and the order of its sums.
// The test data keep values O(1): inputs U(-1, 1), He-scaled weights, and output gradients scaled by 1/sqrt(P) so
// that sums over P pixels (weight and bias gradients) stay O(1) as well.
#pragma once

namespace climseg::test {

struct Tolerance {
  const char* name;
  double atol;
  double rtol;
  const char* reason;
};

namespace tol {

// ---- CPU reference (double) -----------------------------------------------------------------------------------
inline constexpr Tolerance gradcheck_f64{
    "gradcheck fp64", 1e-6, 1e-6,
    "central differences with h = 1e-5 (layers) or 1e-6 (whole nets) in double: truncation O(h^2) ~ 1e-10 and "
    "cancellation ~ 2^-52 |L| / h ~ 1e-10 for O(1) losses; the test is |a - n| <= 1e-6 max(1, |a|, |n|) (Caffe's "
    "relative test floored at 1), so a wrong term of 1e-6 of the gradient's scale is caught"};

inline constexpr Tolerance cpu_same_ops_f64{
    "cpu fp64 same operations", 1e-12, 1e-12,
    "the same arithmetic reached two ways (channel-slice views vs contiguous buffers, accumulate = noise + "
    "overwrite result, planned arena vs plain buffers): differences only from BLAS blocking with other leading "
    "dimensions, a few ulps of double"};

inline constexpr Tolerance cpu_winograd_f64{
    "cpu fp64 winograd", 1e-12, 1e-11,
    "the Winograd F(2x2,3x3) forward (and data gradient) against the im2col forward (and col2im gather), both in "
    "double, O(1) random data: the same products "
    "regrouped (input and output transforms of +, - and exact halvings, 16 GEMMs over channels instead of one dot "
    "product over 9 taps), so the transforms add a few roundings per output on sums up to 4x the direct one's "
    "magnitude; measured below 2e-14. A wrong transform coefficient or tile offset gives O(1) errors"};

inline constexpr Tolerance optimizer_f64_reference{
    "optimizer fp64 reference", 1e-12, 1e-12,
    "climseg's optimizers in fp64 against the textbook formulas written as plain loops in the test (5 steps on O(1) "
    "weights): the same operations grouped differently (sqrt(v)/sqrt(bc2) vs sqrt(v/bc2), clip and LARC factors "
    "combined before multiplying, sums in chunks), a few ulps of double per step; a wrong term (a missing bias "
    "correction, weight decay in the wrong place) changes the result by more than 1e-4"};

inline constexpr Tolerance torch_f64{
    "pytorch fp64", 1e-10, 1e-10,
    "the same formula evaluated by PyTorch in float64 (CPU kernels, possibly other summation orders and fused "
    "operations): differences of a few ulps of double per term, summed over at most ~1e4 terms"};

inline constexpr Tolerance torch_f64_network{
    "pytorch fp64 whole network", 1e-9, 1e-8,
    "a whole network (about 80 layers with batch norm) against an independent PyTorch definition, both in float64 "
    "on the same fp32-representable weights and input: the pytorch fp64 row's per-layer differences compound through "
    "the depth, and batch norm divides by standard deviations of small groups; a wrong padding, order or layout "
    "gives O(1) differences, eight orders above this budget"};

inline constexpr Tolerance torch_f32_net{
    "pytorch fp32 net", 1e-5, 1e-4,
    "a small net (3x3 conv, batch norm, grouped conv, transposed conv, affine, 1x1 conv) in fp32 on both sides, "
    "climseg's CPU path vs PyTorch's CPU kernels with the same weights (exchanged through a safetensors file): "
    "sums of at most 72 O(1) terms per layer in other orders, about sqrt(n) * 2^-24 relative each, through 5 "
    "layers, about 1e-6 expected; as the cpu fp32 vs fp64 row"};

inline constexpr Tolerance cpu_f32_vs_f64{
    "cpu fp32 vs fp64", 1e-5, 1e-4,
    "the CPU path in fp32 against the same path in fp64 on the same (fp32-rounded) data: fp32 rounding of O(1) "
    "sums of up to ~2e4 terms (K*R*S), about sqrt(n) * 2^-24 relative to the sum of magnitudes; as the fp32 GEMM "
    "row. Used by climseg-bench op to verify CPU rows"};

inline constexpr Tolerance cpu_folded_f32{
    "cpu fp32 folded inference", 0, 5e-5,
    "applied norm-wise: |folded - unfolded| <= rtol * max|unfolded logit| over the batch. The same network in fp32 with the per-channel maps folded into the convolutions (Net::fold_batchnorm: w * s rounded once to fp32, the bias b * s + t computed in double) against running them: every folded layer rounds differently (a few 2^-24 per output), compounded through 20-60 layers whose batch norms scale by up to ~3x (small widths, statistics calibrated on the batch then perturbed); measured at most 7.4e-6 of the largest logit (DeepCAM and DeepLabv3+ at width 1/8, 32x48); a forgotten shift or scale changes logits by 0.6-20x of the largest logit"};
inline constexpr Tolerance cpu_folded_f64{
    "cpu fp64 folded inference", 0, 1e-12,
    "as the fp32 row in fp64: measured at most 9.1e-15 of the largest logit, budget 100x that; a forgotten shift shows even where it is small next to the logits (DeepCAM without batch norm: 1.4e-5)"};

// ---- CUDA vs CPU ----------------------------------------------------------------------------------------------

inline constexpr Tolerance cuda_f32_exact{
    "cuda fp32 elementwise", 0.0, 0.0,
    "relu, add, copy, accumulate, bias add, axpy: the same IEEE fp32 operation per element on both devices, no FMA "
    "contraction (axpy uses __fmul_rn/__fadd_rn), denormals kept (no fast math): bit-identical"};

inline constexpr Tolerance cuda_f16_eltwise{
    "cuda fp16 elementwise", 6e-8, 9.77e-4,
    "fp32 maths rounded once to fp16 (<= 2^-11 relative, half an ulp); budget one ulp, 2^-10. atol is the fp16 "
    "subnormal spacing 2^-24"};

inline constexpr Tolerance cuda_bf16_eltwise{
    "cuda bf16 elementwise", 0.0, 7.82e-3,
    "fp32 maths rounded once to bf16 (<= 2^-8 relative); budget one ulp, 2^-7. bf16 keeps fp32's exponent range, so "
    "no absolute term is needed for O(1) data"};

inline constexpr Tolerance cuda_f32_gemm{
    "cuda fp32 GEMM and reductions", 1e-5, 1e-4,
    "cuBLAS (no TF32) and OpenBLAS, the chunked and the blocked bias sums, add in different orders: error about "
    "sqrt(n) * 2^-24 * sum |terms| for n <= 1728 terms of O(1) sums, about 1e-6 expected; 10x margin"};

inline constexpr Tolerance cuda_f16_gemm{
    "cuda fp16 GEMM and reductions", 1e-3, 2e-3,
    "fp16 products are exact in fp32 and accumulate in fp32 (tensor cores, no reduced-precision split-K); the "
    "result is rounded to fp16 (2^-11 relative), and once more after the bias add, whose intermediate rounding "
    "is up to 2^-11 of an O(1) GEMM value: atol 2x that, rtol 4 half-ulps"};

inline constexpr Tolerance cuda_bf16_gemm{
    "cuda bf16 GEMM and reductions", 8e-3, 1.6e-2,
    "as fp16 with bf16's 8-bit significand: rounding 2^-8 relative, twice with a bias; atol 2x 2^-8 of an O(1) "
    "value, rtol 4 half-ulps"};

inline constexpr Tolerance cuda_f32_conv{
    "cuda fp32 convolution", 3e-5, 3e-4,
    "cuDNN with FMA math (no TF32) vs the CPU im2col + OpenBLAS path: sums of up to c/groups * r * s = 2736 terms "
    "(decoder 3x3 over 304 channels) instead of the GEMM row's 1728, sqrt(2736/1728) = 1.26x the GEMM error, and "
    "cuDNN may pick Winograd or FFT algorithms whose transforms add rounding of a few times direct summation's: "
    "about 3e-6 expected; 10x margin"};

inline constexpr Tolerance cuda_f16_conv{
    "cuda fp16 convolution", 2e-3, 2e-3,
    "as the fp16 GEMM row (fp32 accumulation on tensor cores, the result rounded to fp16, again after the bias "
    "add), plus Winograd/FFT algorithms rounding their transformed operands to fp16: an independent 2^-11 relative "
    "error on each of n terms of size ~1/sqrt(n), about 2^-11 absolute on an O(1) output: atol 1e-3 + 2^-11 "
    "rounded up"};

inline constexpr Tolerance cuda_bf16_conv{
    "cuda bf16 convolution", 1.6e-2, 1.6e-2,
    "as the fp16 convolution row with bf16's 8-bit significand: the bf16 GEMM row's 8e-3 plus 2^-8 for "
    "transformed operands, rounded up to 2x the GEMM row's atol"};

inline constexpr Tolerance cuda_f32_net{
    "cuda fp32 net (chained layers)", 5e-5, 5e-4,
    "three chained GEMMs plus residual and concat in fp32: the per-layer fp32 GEMM error (1e-6 expected) grows "
    "through the chain and the backward pass; 5x the single-layer budget"};

inline constexpr Tolerance cuda_f32_loss_track{
    "cuda fp32 SGD loss tracking", 1e-6, 1e-4,
    "losses of a few plain SGD steps on the same net: parameters drift apart by the per-step gradient error "
    "(cuda fp32 net row) times the learning rate, far below 1e-4 relative over 5 steps"};

// ---- training runs: `climseg train --device cuda` against `--device cpu` (tests/cuda/test_cuda_train_cli.cpp) ----
// The three networks, small widths, 32x48, batch 2, 10 SGD steps, each model's reference loss.
inline constexpr Tolerance cuda_train_step1_f32{
    "cuda train step-1 loss fp32", 0, 1e-5,
    "one forward pass of the same initial weights on the same batch: fp32 sums in other orders through 20-60 "
    "layers, about 1e-6 relative (measured at most 8.3e-7 under the emulator for the three networks); the loss is "
    "a mean or sum over 3072 pixels, so a wrong layer moves it by far more"};
inline constexpr Tolerance cuda_train_step1_f16{
    "cuda train step-1 loss fp16", 0, 1.953125e-3,
    "as the fp32 row, every stored value rounded to fp16 on both sides (the CPU emulates the storage): where the "
    "two fp32 results straddle a rounding boundary they round one ulp apart, and deep nets amplify such flips (DeepCAM's "
    "fp16 loss moves 3-4 u from fp32's while its bf16 loss moves at most 2.3 u); measured at most 8.2e-4 = 1.7 u "
    "(u = 2^-11); 4 u = 2^-9"};
inline constexpr Tolerance cuda_train_step1_bf16{
    "cuda train step-1 loss bf16", 0, 1.5625e-2,
    "as the fp16 row with bf16's u = 2^-8: 4 u = 2^-6 (measured at most 1.3e-4: bf16's coarser grid makes "
    "straddled rounding boundaries rarer per value, not larger)"};
inline constexpr Tolerance cuda_train_mean{
    "cuda train 10-step mean loss", 0, 0.05,
    "the mean loss of 10 SGD steps in any precision: the weights part by lr times the per-step gradient difference, "
    "which batch norm over 2-12 values (these nets at 32x48, batch 2) makes a cancellation residue of up to 2e-3 "
    "(fp32) to 20% (fp16) of the gradient norm; measured at most 1.1% (0.5% fp32); the same 5% as the CPU's "
    "fp16/bf16-vs-fp32 curves (docs/training.md). A wrong backward or optimizer path on CUDA stalls or wrecks the "
    "curve, beyond 5%"};
inline constexpr Tolerance cuda_predict_f32{
    "cuda predict logits fp32", 0, 1e-5,
    "applied norm-wise: |cuda - cpu| <= rtol * max|cpu logit| over the batch. A whole network's forward (DeepCAM at "
    "width 1/16, about 60 layers, batch norm with running statistics) in fp32: sums in other orders err relative to "
    "the magnitudes summed, so a logit near zero carries the error of its largest terms; measured 1.4e-6 of the "
    "largest logit (466 after 8 steps); a wrong layer changes logits by O(1) of their scale"};

inline constexpr Tolerance scaling_formula_f64{
    "scaling model fp64", 0, 1e-12,
    "bench/scaling_model's allreduce and step-time formulas against the same formulas worked by hand in the test "
    "(tests/unit/test_scaling_model.cpp), all in double: sums of a few to a few dozen terms grouped differently, "
    "a few ulps; a wrong term (a missing 2, n instead of n-1, a latency per bucket) changes the result by more than "
    "1e-4 of it"};

inline constexpr Tolerance scaling_fit_f64{
    "scaling fit fp64", 0, 1e-9,
    "alpha and beta recovered by the calibration's least squares from exact synthetic times (times spanning 1e-5 to "
    "1 s): the 2x2 normal equations lose about log10 of their condition number (~1e6 for sizes from 1 KB to 1 GB) "
    "digits of double's 16, leaving ~1e-10; a wrong coefficient (2(n-1) vs n-1) is off by a factor"};
// ---- allreduce (comm/): not the default formula; the bound is |got - ref| <= (ranks - 1) * rtol * sum_r |x_r| ------
// Every element is the result of ranks-1 additions, each of one received partial sum into a local one, computed in
// fp32 and rounded once to the storage type; each rounding errs by at most half an ulp of the partial sum
// (|partial| <= sum |x_r|), plus 2^-24 relative for the fp32 addition of 16-bit operands. rtol = eps (one ulp, 2u)
// covers both with a factor ~2 margin; ref is the fp64 sum of the inputs (already rounded to the dtype).
inline constexpr Tolerance allreduce_f32{
    "allreduce fp32 sum", 0, 1.1920928955078125e-07,
    "(ranks-1) additions per element, each rounded to fp32 (u = 2^-24 of a partial sum <= sum|x|); rtol = eps = "
    "2^-23, applied as (ranks-1) * rtol * sum|x|"};
inline constexpr Tolerance allreduce_f64{
    "allreduce fp64 sum", 0, 2.220446049250313e-16,
    "(ranks-1) additions per element in fp64 (the CPU reference runs), each rounded once (u = 2^-53 of a partial "
    "sum <= sum|x|); rtol = eps = 2^-52, applied as (ranks-1) * rtol * sum|x|"};
inline constexpr Tolerance allreduce_f16{
    "allreduce fp16 sum", 0, 9.765625e-04,
    "(ranks-1) additions per element in fp32, each rounded once to fp16 (u = 2^-11 plus 2^-24 for the fp32 add); "
    "rtol = eps = 2^-10, applied as (ranks-1) * rtol * sum|x|"};
inline constexpr Tolerance allreduce_bf16{
    "allreduce bf16 sum", 0, 7.8125e-03,
    "(ranks-1) additions per element in fp32, each rounded once to bf16 (u = 2^-8 plus 2^-24 for the fp32 add); "
    "rtol = eps = 2^-7, applied as (ranks-1) * rtol * sum|x|"};

// ---- data parallelism: N ranks against one (train CLI, fp64 reference runs) -----------------------------------
inline constexpr Tolerance data_parallel_f64{
    "data parallel fp64 vs 1 rank", 0, 1e-9,
    "one rank x batch 4 against 2 x 2 and 4 x 1 ranks, 50 Adam steps of a width-1/16 DeepLabv3+ in fp64 "
    "(tests/mpi/test_train_dist_cli.cpp), per-step loss and applied gradient norm: the same sums in other orders "
    "(per-rank means added by the allreduce, other GEMM shapes and BLAS kernels), a few ulps of 2^-52 per "
    "operation; in fp64 a ReLU, max-pool or sign decision flips only for a value within ~1e-16 of its kink, so "
    "the runs stay within ~1e-15 (measured below 1e-14 with OpenBLAS's Haswell, SkylakeX and Cooperlake kernels"
    " and the portable conv paths); 1e-9 leaves a millionfold margin and is still eight orders below the O(1) "
    "change of a rank dropped from the sum or a mean taken twice"};

}  // namespace tol

// The whole table, for reports and for reconciling with docs/tolerances.md.
inline constexpr Tolerance kTolerances[] = {
    tol::gradcheck_f64,   tol::cpu_same_ops_f64,  tol::cpu_winograd_f64,    tol::optimizer_f64_reference,
    tol::torch_f64,       tol::torch_f64_network, tol::torch_f32_net,       tol::cpu_f32_vs_f64,
    tol::cpu_folded_f32, tol::cpu_folded_f64,
    tol::cuda_f32_exact,  tol::cuda_f16_eltwise,  tol::cuda_bf16_eltwise,   tol::cuda_f32_gemm,
    tol::cuda_f16_gemm,   tol::cuda_bf16_gemm,    tol::cuda_f32_conv,       tol::cuda_f16_conv,
    tol::cuda_bf16_conv,  tol::cuda_f32_net,      tol::cuda_f32_loss_track, tol::scaling_formula_f64,
    tol::scaling_fit_f64, tol::allreduce_f32,     tol::allreduce_f64,      tol::allreduce_f16,       tol::allreduce_bf16,
    tol::data_parallel_f64, tol::cuda_train_step1_f32, tol::cuda_train_step1_f16, tol::cuda_train_step1_bf16,
    tol::cuda_train_mean, tol::cuda_predict_f32};

}  // namespace climseg::test
