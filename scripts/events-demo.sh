#!/usr/bin/env bash
# `climseg events` on synthetic data, end to end (docs/events.md): a 60-day --sequence series at 96x144, its truth
# catalogue recovered from the generator's own labels; then, with weights from `climseg train` (README command 1:
# bash scripts/run-train.sh --save-weights W), predict on the same history files and verify the predicted events.
#
#   bash scripts/events-demo.sh OUT_DIR [WEIGHTS]
#
# Writes OUT_DIR/seq (the data), OUT_DIR/labels-events and (with WEIGHTS) OUT_DIR/pred.nc and OUT_DIR/pred-events;
# docs/images/events-tracks.png is OUT_DIR/labels-events/tracks.png, docs/images/events-frequency.png
# OUT_DIR/pred-events/frequency.png.
set -euo pipefail
out=${1:?usage: events-demo.sh OUT_DIR [WEIGHTS]}
weights=${2:-}
cd "$(dirname "$0")/.."
bash scripts/setup.sh build >/dev/null
cs=build/apps/climseg
mkdir -p "$out"
"$cs" data generate --format netcdf --sequence --force --out "$out/seq" --samples 480 --height 96 --width 144 \
  --seed 7 --start-date 2001-08-01
"$cs" events --input "$out/seq/labels/*.nc" --fields "$out/seq/synthetic.cam.h2.*.nc" \
  --truth "$out/seq/truth.csv" --out "$out/labels-events"
if [[ -n "$weights" ]]; then
  "$cs" predict --weights "$weights" --input "$out/seq/synthetic.cam.h2.*.nc" --output "$out/pred.nc" --batch 8
  "$cs" events --input "$out/pred.nc" --fields "$out/seq/synthetic.cam.h2.*.nc" --truth "$out/seq/truth.csv" \
    --out "$out/pred-events"
fi
