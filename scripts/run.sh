#!/usr/bin/env bash
# Newcomer command 1: installs what is missing, builds, and starts the proxy
# on the embedded SQLite store with config/byok-proxy.json as shipped - or,
# when OPENAI_API_KEY is not set, with every provider simulated
# (var/byok-proxy.simulated.json, made by scripts/simulated-config.sh).
# Data plane on 127.0.0.1:8080, admin API on 127.0.0.1:8081.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"

mkdir -p var
# Development secrets, made once and kept in var/dev.env (mode 600). In
# production, set these in the environment from your secret store instead.
if [ ! -f var/dev.env ]; then
  umask 077
  {
    echo "BYOK_MASTER_KEY=$(openssl rand -base64 32)"
    echo "BYOK_ADMIN_TOKEN=$(openssl rand -hex 24)"
  } > var/dev.env
  echo "run: created var/dev.env with a new master key and admin token"
fi
set -a
# shellcheck disable=SC1091
. var/dev.env
set +a
echo "run: admin token is in var/dev.env (BYOK_ADMIN_TOKEN)"
config=config/byok-proxy.json
if [ -z "${OPENAI_API_KEY:-}" ] && [ "${BYOK_RUN_REAL:-0}" != "1" ]; then
  # No platform key: every provider is simulated (README "Simulated
  # providers"), so the walkthrough works on a machine with no provider
  # account. The config is the shipped one with the upstreams replaced.
  config=var/byok-proxy.simulated.json
  scripts/simulated-config.sh config/byok-proxy.json > "$config"
  echo "run: OPENAI_API_KEY is not set: every provider is SIMULATED (build/byok-sim's"
  echo "run: providers inside the proxy, no request leaves this machine); records are marked"
  echo "run: \"simulated\": true and, in this demo config, charge the wallet (simulate.charge)."
  echo "run: export OPENAI_API_KEY (and the other platform keys) to use the real providers."
fi
exec build/byok-proxy --config "$config"
