#!/usr/bin/env bash
# Configures and builds vlm.cpp (Release, Ninja, ccache when present) into ./build.
# Extra arguments are passed to CMake's configure step (e.g. -DVLM_SANITIZE=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${VLM_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=${VLM_BUILD_TYPE:-Release} "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
