#!/usr/bin/env bash
# Newcomer command 2 (and what CI runs): installs what is missing, builds the
# proxy twice (release and ASan+UBSan), installs the e2e test dependencies
# from npm, and runs every test with ctest: cmocka unit tests and the
# end-to-end tests (real binary, mock upstreams, official SDKs).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test

jobs=$(nproc)

echo "== format (clang-format, .clang-format at the root)"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"

(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)

if [ "${BYOK_SKIP_ASAN:-0}" != "1" ]; then
  # Sanitizer build: every test runs against it too (ASan aborts on the first
  # memory error, UBSan on the first undefined behaviour).
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DBYOK_SANITIZE=ON \
    -DBYOK_FUZZ=ON -DBYOK_FUZZ_REPLAY=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  echo "== tests against the sanitizer build"
  BYOK_SANITIZER=asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --test-dir build-asan --output-on-failure -j"$jobs"
fi

echo "== tests against the release build"
ctest --test-dir build --output-on-failure -j"$jobs"
