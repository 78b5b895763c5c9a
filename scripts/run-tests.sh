#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite (CTest + GoogleTest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh "$@"
ctest --test-dir "${VLM_BUILD_DIR:-build}" --output-on-failure -j"$(nproc)" --timeout 900
