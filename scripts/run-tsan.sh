#!/usr/bin/env bash
# ThreadSanitizer pass over the multi-threaded components: thread pool (core), every parallel
# kernel (kernels), the step batcher and generator (generate), sessions and the prompt cache
# (api), and the HTTP server with its worker threads, including the real `vlm serve` child
# processes its tests start (server). Not part of `.ci/run` (another ~10 minutes on 2 cores);
# run it after touching threads, locks or shared state.
#
#   scripts/run-tsan.sh                  # those five suites
#   scripts/run-tsan.sh test_server      # some of them
#
# Environment: BUILD_DIR (default build-tsan). Exits non-zero if a suite fails or any process
# (tests or `vlm serve` children) wrote a ThreadSanitizer report; the reports stay in
# $BUILD_DIR/tsan-reports/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-tsan}"
ALL_SUITES=(test_core test_kernels test_generate test_api test_server)
if [ $# -gt 0 ]; then SUITES=("$@"); else SUITES=("${ALL_SUITES[@]}"); fi

command -v clang++-14 >/dev/null || { echo "run-tsan: clang++-14 not found (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 2; }
CC=clang-14 CXX=clang++-14 cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVLM_TSAN=ON -DVLM_BUILD_BENCH=OFF -DVLM_BUILD_TESTS=ON -DVLM_HWY_FEW_TARGETS=ON >/dev/null
cmake --build "$BUILD_DIR" --target "${SUITES[@]}" -j"$(nproc)"

reports="$BUILD_DIR/tsan-reports"
rm -rf "$reports" && mkdir -p "$reports"
# log_path: the `vlm serve` children the server tests start capture their stderr, so every
# process writes its reports to a file of its own (report.<pid>).
export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 log_path=$reports/report suppressions=$ROOT/scripts/tsan-suppressions.txt"
export VLM_PRECISION=exact  # as CTest sets it for the suites
failed=()
for s in "${SUITES[@]}"; do
  start=$(date +%s)
  if (cd "$BUILD_DIR/tests" && "./$s" >"$BUILD_DIR/$s.tsan.log" 2>&1); then
    echo "tsan $s: passed in $(($(date +%s) - start)) s"
  else
    echo "tsan $s: FAILED (log: $BUILD_DIR/$s.tsan.log)"
    failed+=("$s")
  fi
done
if compgen -G "$reports/report.*" >/dev/null; then
  echo "tsan: reports written:"
  grep -h -A3 "WARNING: ThreadSanitizer" "$reports"/report.* | head -40 | sed 's/^/    /'
  failed+=(reports)
fi
[ ${#failed[@]} -eq 0 ] || { echo "tsan: FAILED: ${failed[*]}"; exit 1; }
echo "tsan: no reports"
