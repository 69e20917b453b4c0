#!/usr/bin/env bash
# Newcomer command 2 (and what CI runs): installs what is missing, builds the
# proxy twice (release and ASan+UBSan), installs the e2e test and load-test
# kit dependencies from npm, and runs every test with ctest: cmocka unit tests, the
# end-to-end tests (real binary, mock upstreams, official SDKs) and a replay
# of the fuzz seeds and crash regressions. Then builds the fuzz targets with
# clang + libFuzzer (build-fuzz/) and fuzzes each for BYOK_FUZZ_SECONDS
# (default 20; they run nproc at a time); a crash fails the run.
# BYOK_SKIP_ASAN=1 / BYOK_SKIP_FUZZ=1 skip those stages.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test

jobs=$(nproc)

echo "== format (clang-format, .clang-format at the root)"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"

(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
# The load-test kit (its own SDK pins; tests/e2e/loadtest.test.mjs runs it).
(cd loadtest && npm ci --no-audit --no-fund --loglevel=error)
# The README's "Try it" SDK example (tests/e2e/tryit.test.mjs runs it).
(cd examples && npm ci --no-audit --no-fund --loglevel=error)

if [ "${BYOK_SKIP_ASAN:-0}" != "1" ]; then
  # Sanitizer build: every test runs against it too (ASan aborts on the first
  # memory error, UBSan on the first undefined behaviour).
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DBYOK_SANITIZE=ON \
    -DBYOK_FUZZ=ON -DBYOK_FUZZ_REPLAY=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  rm -f build-asan/tests/fuzz/work/*.summary
  echo "== tests against the sanitizer build"
  BYOK_SANITIZER=asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --test-dir build-asan --output-on-failure -j"$jobs"
fi

echo "== tests against the release build"
ctest --test-dir build --output-on-failure -j"$jobs"

if [ "${BYOK_SKIP_ASAN:-0}" != "1" ]; then
  echo "== fuzz seeds and regressions replayed (ASan+UBSan build)"
  cat build-asan/tests/fuzz/work/*.summary 2>/dev/null || true
fi

if [ "${BYOK_SKIP_FUZZ:-0}" != "1" ]; then
  fuzz_seconds=${BYOK_FUZZ_SECONDS:-20}
  echo "== fuzzing (clang + libFuzzer + ASan/UBSan, $fuzz_seconds s per target)"
  # Only the fuzz targets and byokcore are built here.
  CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DBYOK_SANITIZE=ON \
    -DBYOK_FUZZ=ON -DBYOK_FUZZ_REPLAY=OFF -DBYOK_FUZZ_SECONDS="$fuzz_seconds" >/dev/null
  cmake --build build-fuzz -j"$jobs" --target fuzz_targets
  rm -f build-fuzz/tests/fuzz/work/*.summary
  fuzz_rc=0
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-fuzz -L fuzz --output-on-failure -j"$jobs" || fuzz_rc=$?
  echo "== fuzz runs (executions per target)"
  cat build-fuzz/tests/fuzz/work/*.summary 2>/dev/null || true
  [ "$fuzz_rc" -eq 0 ] || exit "$fuzz_rc"
fi
