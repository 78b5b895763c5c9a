#!/usr/bin/env bash
# Installs dependencies, builds (Release) and describes a bundled sample image with the bundled
# model (a small trained Qwen2-VL that captions simple shapes, 4-bit MLX layout).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
./build/tools/vlm generate --model models/qwen2-vl-shapes-4bit --image "${1:-assets/images/shapes_02.png}" \
  --prompt "Describe the image." --temperature 0 --max-tokens 32
