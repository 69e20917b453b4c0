#!/usr/bin/env bash
# Prints CONFIG (default config/byok-proxy.json) with every upstream
# simulated (README "Simulated providers"): the proxy starts the simulator
# inside itself, needs no provider key, and marks its records "simulated".
# The demo tunables below make replies look like a model's (a first token
# after 250 ms, 40 tokens a second, 24-token replies) and let simulated
# wallet lines charge, so balances move in the walkthrough.
set -euo pipefail
config="${1:-config/byok-proxy.json}"
jq '.upstreams |= with_entries(.value = "simulate")
    | .simulate = {"charge": true, "ttfb_ms": 250, "tokens_per_s": 40, "reply_tokens": 24,
                   "audio_rtf": 1.0}' "$config"
