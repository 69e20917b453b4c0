#!/usr/bin/env bash
# Installs what byok-proxy needs to build, run and test on Debian 12, and
# nothing when it is all there already. Usage: scripts/setup.sh [--test]
set -euo pipefail

build_pkgs=(build-essential cmake pkg-config libevent-dev libssl-dev libcurl4-openssl-dev
            libhiredis-dev libjansson-dev libsqlite3-dev openssl jq)
# clang + libclang-rt-14-dev: the libFuzzer build (libclang_rt.fuzzer and the
# sanitizer runtimes come from the latter). chromium: the load-test kit's
# test renders its HTML report headless (playwright-core drives it).
test_pkgs=(libcmocka-dev redis-server nginx-light wrk sqlite3 openssl ca-certificates curl
           clang-format clang libclang-rt-14-dev chromium)

want=("${build_pkgs[@]}")
if [ "${1:-}" = "--test" ]; then
  want+=("${test_pkgs[@]}")
  command -v node >/dev/null 2>&1 || want+=(nodejs npm)
  command -v npm >/dev/null 2>&1 || want+=(npm)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
