#!/usr/bin/env bash
# Reproduces the numbers of docs/tolerances.md, "What depends on the CPU": the same fp32 training run with two
# OpenBLAS kernel sets after one and two Adam steps, for several initialisation seeds (whether a rounding-level
# gradient changes sign is luck: some seeds show it, others not), and fp64 runs on 1, 2 and 4 ranks with each set.
#   scripts/cpu-divergence.sh [BUILD_DIR] [CORE_A] [CORE_B] [SEEDS]   (defaults: build Haswell Cooperlake "1 2 3 4 5 6 7 8")
# With LONG=1 also the precision test's 200-step fp32 run (tests/train/test_train_cli.cpp) with both kernel sets: the
# relative difference of the mean loss in windows of 20 (steps 1-60) and 50 steps.
# Needs /usr/bin/python3 with numpy (a test oracle of scripts/setup.sh) and mpirun. OpenBLAS falls back to what the
# CPU can run when a core is beyond it (then both runs may use the same kernels and agree).
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
a=${2:-Haswell}
b=${3:-Cooperlake}
seeds=${4:-1 2 3 4 5 6 7 8}
cli="$build/apps/climseg"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun="mpirun --allow-run-as-root --oversubscribe"
"$cli" data generate --out "$work/data" --samples 12 --height 32 --width 48 --seed 5 --valid-fraction 0.25 >/dev/null
args="train --data $work/data --model deeplabv3plus --width-multiplier 0.0625 --norm none --loss deepcam
      --optimizer adam --lr 2e-3 --reader-threads 1 --log-every 1000 --validate-every 1000 --quiet"
for core in "$a" "$b"; do
  for seed in $seeds; do
    OPENBLAS_CORETYPE=$core OPENBLAS_VERBOSE=2 "$cli" $args --seed "$seed" --batch 4 --steps 2 \
      --metrics "$work/fp32_${core}_$seed.jsonl" >"$work/log_$core" 2>&1
    OPENBLAS_CORETYPE=$core "$cli" $args --seed "$seed" --batch 4 --steps 1 \
      --save-weights "$work/w_${core}_$seed.safetensors" >/dev/null
  done
  echo "OPENBLAS_CORETYPE=$core: OpenBLAS says $(grep -m1 '^Core:' "$work/log_$core" || echo 'nothing')"
  OPENBLAS_CORETYPE=$core "$cli" $args --seed 7 --batch 4 --steps 50 --precision fp64 --metrics "$work/r1_$core.jsonl" \
    >/dev/null
  $mpirun -np 2 -x OPENBLAS_CORETYPE=$core "$cli" $args --seed 7 --batch 2 --steps 50 --precision fp64 \
    --metrics "$work/r2_$core.jsonl" >/dev/null 2>&1
  $mpirun -np 4 -x OPENBLAS_CORETYPE=$core "$cli" $args --seed 7 --batch 1 --steps 50 --precision fp64 \
    --ranks-per-node 2 --allreduce hierarchical --bucket-mb 0.1 --metrics "$work/r4_$core.jsonl" >/dev/null 2>&1
done
if [ "${LONG:-0}" = 1 ]; then
  "$cli" data generate --out "$work/data12" --samples 12 --height 32 --width 48 --seed 5 --valid-fraction 0.25 >/dev/null
  for core in "$a" "$b"; do
    OPENBLAS_CORETYPE=$core "$cli" train --data "$work/data12" --model deeplabv3plus --width-multiplier 0.0625 --batch 2 \
      --reader-threads 1 --log-every 1000 --seed 7 --loss deepcam --optimizer adam --lr 2e-3 --steps 200 \
      --validate-every 1000 --init-loss-scale 1024 --precision fp32 --quiet --metrics "$work/long_$core.jsonl" >/dev/null
  done
fi
/usr/bin/python3 - "$work" "$a" "$b" $seeds <<'PY'
import json, struct, sys
import numpy as np
work, a, b, *seeds = sys.argv[1:]
def load(p):
    raw = open(p, 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]; h = json.loads(raw[8:8 + n]); d = raw[8 + n:]
    return {k: np.frombuffer(d[v['data_offsets'][0]:v['data_offsets'][1]], dtype=np.float32)
            for k, v in h.items() if k != '__metadata__'}
def steps(p):
    return [j for j in map(json.loads, filter(str.strip, open(p))) if j.get('event') == 'step']
lr = 2e-3
print(f'fp32, {a} vs {b}, one Adam step (lr {lr}) then the loss of step 2, per seed:')
for seed in seeds:
    wa, wb = load(f'{work}/w_{a}_{seed}.safetensors'), load(f'{work}/w_{b}_{seed}.safetensors')
    d = np.concatenate([np.abs(wa[k].astype(np.float64) - wb[k]) for k in wa])
    la, lb = steps(f'{work}/fp32_{a}_{seed}.jsonl'), steps(f'{work}/fp32_{b}_{seed}.jsonl')
    x, y = la[1]['loss'], lb[1]['loss']
    print(f'  seed {seed}: {(d > lr).sum()} of {d.size} parameters apart by more than lr (largest {d.max():.3g}), '
          f'99.9% within {np.quantile(d, 0.999):.3g}; step-2 loss {x:.6f} vs {y:.6f} (relative {abs(x - y) / x:.2g})')
worst = 0.0
ref = steps(f'{work}/r1_{a}.jsonl')
for core in (a, b):
    for r in ('r1', 'r2', 'r4'):
        got = steps(f'{work}/{r}_{core}.jsonl')
        for key in ('loss', 'grad_norm'):
            worst = max(worst, max(abs(g[key] - f[key]) / abs(f[key]) for f, g in zip(ref, got)))
import os
if os.path.exists(f'{work}/long_{a}.jsonl'):
    la = [j['loss'] for j in steps(f'{work}/long_{a}.jsonl')]
    lb = [j['loss'] for j in steps(f'{work}/long_{b}.jsonl')]
    def rel(w0, n):
        x, y = np.mean(la[w0:w0 + n]), np.mean(lb[w0:w0 + n])
        return abs(x - y) / x
    print('fp32, 200 steps (the precision test), mean loss ' + ', '.join(
        f'steps {w0 + 1}-{w0 + n}: {rel(w0, n):.3f}' for w0, n in [(0, 20), (20, 20), (40, 20), (50, 50), (100, 50),
                                                                   (150, 50)]))
print(f'fp64, 50 Adam steps, 1/2/4 ranks x {a}/{b} against 1 rank {a}: worst relative difference of the loss and '
      f'gradient norm {worst:.2g}')
PY
