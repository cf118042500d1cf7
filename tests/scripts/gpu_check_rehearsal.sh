#!/usr/bin/env bash
# ctest gpu_check_rehearsal (emulation build only): scripts/gpu-check --rehearse against this build, then checks
# that it passed and that its summary lists every stage with a status, and that the result files are there.
#   gpu_check_rehearsal.sh SOURCE_DIR BUILD_DIR OUT_DIR
set -uo pipefail
src=$1 build=$2 out=$3
rm -rf "$out"
bash "$src/scripts/gpu-check" --rehearse "$build" "$out"
rc=$?
fail=0
for s in env tests-sync tests memcheck nets torch ops; do
  if ! grep -Eq "^gpu-check: \[(PASS|FAIL|SKIP|TIMEOUT|PART)\] $s \(" "$out/summary.txt"; then
    echo "gpu_check_rehearsal: the summary has no line for stage '$s'"
    fail=1
  fi
done
for f in summary.txt stages.csv networks.csv compare.csv ops.csv env.txt logs.tar.gz; do
  [ -s "$out/$f" ] || { echo "gpu_check_rehearsal: $out/$f missing or empty"; fail=1; }
done
n=$(find "$out" -type f | wc -l)
[ "$n" -le 8 ] || { echo "gpu_check_rehearsal: $n files in $out (the device tool brings back 8)"; fail=1; }
# Six climseg rows and their PyTorch counterparts where PyTorch runs on the CPU (fp32/bf16 here: bf16).
[ "$(grep -c '^climseg,' "$out/networks.csv")" -eq 6 ] || { echo "gpu_check_rehearsal: networks.csv lacks climseg rows"; fail=1; }
[ "$(grep -c '^pytorch,.*,bf16,' "$out/networks.csv")" -eq 3 ] || { echo "gpu_check_rehearsal: networks.csv lacks the PyTorch bf16 rows"; fail=1; }
grep -q '^gpu-check: RESULT: PASS' "$out/summary.txt" || { echo "gpu_check_rehearsal: no RESULT: PASS"; fail=1; }
[ "$rc" -eq 0 ] || { echo "gpu_check_rehearsal: gpu-check exited with $rc"; fail=1; }
[ "$fail" -eq 0 ] && echo "gpu_check_rehearsal: passed"
exit "$fail"
