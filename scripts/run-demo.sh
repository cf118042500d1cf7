#!/usr/bin/env bash
# README command 1: install what is missing, build, and run the main job. Until `climseg train` exists (training
# issue) the main job is `climseg demo`, a short end-to-end demonstration of the engine (GPU if present, else CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
exec build/apps/climseg demo --profile "$@"
