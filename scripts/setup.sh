#!/usr/bin/env bash
# Installs what is missing (Debian packages via apt-get), then configures and builds climseg.
#   scripts/setup.sh [BUILD_DIR] [extra cmake arguments...]
# CUDA is used when nvcc is found (PATH, CUDACXX or /usr/local/cuda/bin/nvcc); architectures default to 80;90.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true

# python3-torch, python3-h5py, python3-numpy, python3-netcdf4, python3-xarray and python3-scipy are test oracles (tests/torch,
# tests/py, run by /usr/bin/python3); netcdf-bin's ncgen writes and ncdump reads the NetCDF test files.
packages=(build-essential cmake ninja-build pkg-config libhdf5-dev libopenmpi-dev openmpi-bin libcli11-dev catch2
          nlohmann-json3-dev libopenblas-dev libpng-dev libnetcdf-dev netcdf-bin python3-numpy python3-torch python3-h5py
          python3-netcdf4 python3-xarray python3-scipy)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" "$@"
cmake --build "$build_dir" -j "$jobs"
