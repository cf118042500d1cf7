#!/usr/bin/env bash
# Runs the CPU test suite (ctest, the cuda label skips itself without a GPU) once per CPU kernel setting, to check that
# no test depends on which kernels the CPU runs (docs/tolerances.md, "What depends on the CPU"):
#   scripts/cpu-matrix.sh [BUILD_DIR] [SETTING...]
# A SETTING is "default" (the environment as it is), "portable" (CLIMSEG_CPU_DISPATCH=portable: no AVX-512 kernels)
# or an OpenBLAS core name (OPENBLAS_CORETYPE=NAME, e.g. Haswell, SkylakeX, Cooperlake, Zen, Sandybridge; OpenBLAS
# prints "Core: NAME" with OPENBLAS_VERBOSE=2, and falls back to what the CPU can run). Default settings:
# default portable Haswell SkylakeX Cooperlake Sandybridge. Prints one summary line per setting; exits non-zero when
# any setting had a failing test.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
settings=("$@")
[ ${#settings[@]} -eq 0 ] && settings=(default portable Haswell SkylakeX Cooperlake Sandybridge)
status=0
for s in "${settings[@]}"; do
  case "$s" in
    default) envs=() ;;
    portable) envs=(CLIMSEG_CPU_DISPATCH=portable) ;;
    *) envs=(OPENBLAS_CORETYPE="$s") ;;
  esac
  core=$(env "${envs[@]}" OPENBLAS_VERBOSE=2 "$build"/tests/unit_test_cpu_gemm "[nothing]" 2>&1 | grep -m1 '^Core:' || true)
  log=$(mktemp)
  start=$(date +%s)
  env "${envs[@]}" ctest --test-dir "$build" --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" --timeout 900 \
    >"$log" 2>&1
  rc=$?
  summary=$(grep -E "tests passed" "$log" | tail -1)
  printf '%-12s %-22s %s (%ss)\n' "$s" "${core:-Core: ?}" "$summary" "$(( $(date +%s) - start ))"
  if [ $rc -ne 0 ]; then
    status=1
    grep -E '\*\*\*Failed|FAILED:|with expansion' -A3 "$log" | head -40
  fi
  rm -f "$log"
done
exit $status
