#!/usr/bin/env bash
# README command 1: install what is missing, build, and run the main job: `climseg train` with its defaults, a small
# DeepLabv3+ trained on a synthetic dataset (generated once into ~/.cache/climseg) on the GPU if one is visible, else
# on the CPU (2-3 minutes on 2 cores), ending with the validation mean IoU next to the all-background baseline and
# the per-category profile. Extra arguments go to `climseg train` (`--help` lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
exec build/apps/climseg train --profile "$@"
