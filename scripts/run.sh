#!/usr/bin/env bash
# Newcomer command 1: installs what is missing, builds, and starts the proxy
# on the embedded SQLite store with config/byok-proxy.json as shipped.
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
if [ -z "${OPENAI_API_KEY:-}" ]; then
  echo "run: OPENAI_API_KEY is not set; starting with a placeholder platform key"
  echo "run: (wallet-billed OpenAI calls will get OpenAI's 401 until you export OPENAI_API_KEY)"
  export OPENAI_API_KEY=sk-placeholder-set-OPENAI_API_KEY
fi
echo "run: admin token is in var/dev.env (BYOK_ADMIN_TOKEN)"
exec build/byok-proxy --config config/byok-proxy.json
