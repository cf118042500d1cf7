#!/usr/bin/env bash
# README command 2 (and CI): install what is missing, build, run the test suite.
#   scripts/run-tests.sh          Release build in build/ (CUDA sources compiled when nvcc is found; the CUDA tests
#                                 run on a GPU and are reported as skipped without one)
#   scripts/run-tests.sh --asan   Debug build with AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/
#                                 (CPU backend: CUDA's runtime does not run under ASan's shadow memory)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--asan" ]; then
  CMAKE_BUILD_TYPE=Debug bash scripts/setup.sh build-asan -DCLIMSEG_SANITIZE=ON -DCLIMSEG_ENABLE_CUDA=OFF
  build=build-asan
else
  bash scripts/setup.sh build
  build=build
fi
ctest --test-dir "$build" --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" --timeout 900
