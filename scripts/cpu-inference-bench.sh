#!/bin/sh
# Side-by-side CPU inference benchmark (docs/perf/2026-12-06-cpu-inference.md): climseg-bench model --infer (batch
# norm folded), PyTorch eager (bench/torch_model.py --infer: eval, no_grad, channels_last) and climseg without
# folding, one after another per model, same threads (OMP_NUM_THREADS, else all cores), fp32, batch 1.
#   scripts/cpu-inference-bench.sh [build-dir] [height] [width] [warmup] [steps] [models...]
set -eu
build=${1:-build}; h=${2:-768}; w=${3:-1152}; warmup=${4:-1}; steps=${5:-3}
shift 5 2>/dev/null || shift $#
models=${*:-"deepcam deeplabv3plus"}
here=$(cd "$(dirname "$0")/.." && pwd)
header=1
for m in $models; do
  common="--model $m --batch 1 --height $h --width $w --warmup $warmup --steps $steps"
  nh=""; [ $header = 1 ] || nh="--no-header"; header=0
  "$build/bench/climseg-bench" model --infer --device cpu --dtype fp32 $common $nh
  /usr/bin/python3 "$here/bench/torch_model.py" --infer --device cpu --dtype fp32 $common --no-header
  "$build/bench/climseg-bench" model --infer --no-fold --device cpu --dtype fp32 $common --no-header
done
