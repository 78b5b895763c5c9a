#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang-14, AddressSanitizer and UndefinedBehaviorSanitizer, then
# runs each one for a bounded time on its committed seed corpus. Exits non-zero if any target crashes,
# hangs, leaks or runs out of memory (the reproducer is left in $BUILD_DIR/fuzz-artifacts/).
#
#   scripts/run-fuzzers.sh                 # every target, FUZZ_SECONDS (default 8) each
#   FUZZ_SECONDS=300 scripts/run-fuzzers.sh image tokenizer
#
# Environment: BUILD_DIR (default build-fuzz), FUZZ_SECONDS, FUZZ_RSS_MB (2048), FUZZ_TIMEOUT (10 s per
# input), FUZZ_KEEP_CORPUS=1 to keep what each run discovered in $BUILD_DIR/fuzz-corpus/<target>,
# WITH_TESTS=1 to also build the test suite in the same sanitized build and run it (CTest) first: CI
# uses this so that one clang ASan+UBSan build serves both.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-fuzz}"
SECONDS_EACH="${FUZZ_SECONDS:-8}"
RSS_MB="${FUZZ_RSS_MB:-2048}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"
ALL_TARGETS=(safetensors config tokenizer chat_template image chat_request messages_json)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

command -v clang++-14 >/dev/null || { echo "run-fuzzers: clang++-14 not found (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 2; }

start=$(date +%s)
with_tests=OFF
[ "${WITH_TESTS:-0}" = 1 ] && with_tests=ON
CC=clang-14 CXX=clang++-14 cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVLM_SANITIZE=ON -DVLM_FUZZ=ON -DVLM_BUILD_BENCH=OFF -DVLM_BUILD_TESTS=$with_tests -DVLM_HWY_FEW_TARGETS=ON >/dev/null
if [ "$with_tests" = ON ]; then
  cmake --build "$BUILD_DIR" -j"$(nproc)"
  # Leak checking needs ptrace-free LSan; keep it on, it is part of what the sanitized suite checks.
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 1200
else
  cmake --build "$BUILD_DIR" --target "${TARGETS[@]/%/_fuzz}" -j"$(nproc)"
fi
built=$(date +%s)

# Leaks count as failures; UBSan findings abort (the build uses -fno-sanitize-recover=undefined).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
artifacts="$BUILD_DIR/fuzz-artifacts"
mkdir -p "$artifacts"
failed=()
for t in "${TARGETS[@]}"; do
  seeds="$ROOT/fuzz/corpus/$t"
  work="$BUILD_DIR/fuzz-corpus/$t"
  [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ] || rm -rf "$work"
  mkdir -p "$work" "$seeds"
  log="$BUILD_DIR/fuzz-$t.log"
  # New inputs go to the scratch corpus (first directory); the committed seeds are only read.
  if "$BUILD_DIR/fuzz/${t}_fuzz" -max_total_time="$SECONDS_EACH" -rss_limit_mb="$RSS_MB" -timeout="$TIMEOUT" \
      -print_final_stats=1 -artifact_prefix="$artifacts/${t}-" "$work" "$seeds" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz $t: ok (${runs:-?} executions in ${SECONDS_EACH}s)"
  else
    echo "fuzz $t: FAILED (log: $log)"
    grep -E "ERROR: |SUMMARY: |runtime error|Test unit written" "$log" | head -8 | sed 's/^/    /'
    failed+=("$t")
  fi
done
end=$(date +%s)
echo "run-fuzzers: build $((built - start))s, fuzzing $((end - built))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "run-fuzzers: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
