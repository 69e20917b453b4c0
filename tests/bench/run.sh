#!/usr/bin/env bash
# run.sh - throughput/latency of byok-proxy against nginx as a plain reverse
# proxy, both in front of the same nginx mock upstream (DESIGN §9). Not part
# of ctest. Usage: tests/bench/run.sh [path/to/byok-proxy]
# Env: BENCH_SECONDS (default 10) per measured run, BENCH_WARMUP (default 2),
#      BENCH_CONNECTIONS (default 64), BENCH_THREADS (default 2),
#      BYOK_PROXY_BIN (binary, if not given as $1).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-${BYOK_PROXY_BIN:-$ROOT/build/byok-proxy}}
SECONDS_RUN=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}

for tool in nginx wrk curl node; do
  command -v "$tool" >/dev/null || { echo "run.sh: '$tool' not found (apt-get install nginx-light wrk curl; node for free ports)" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "run.sh: byok-proxy binary '$BIN' not found; build it or pass its path" >&2; exit 2; }

TMP=$(mktemp -d /tmp/byok-bench.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    # Bounded wait for each process we started, then force.
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# Polls until "url" answers (any HTTP status), at most 10 s.
wait_http() {
  local url=$1 i
  for i in $(seq 1 200); do
    if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
    sleep 0.05
  done
  echo "run.sh: $url did not come up" >&2
  return 1
}

MOCK_PORT=$(free_port)
NGX_PORT=$(free_port)
BYOK_PORT=$(free_port)
ADMIN_PORT=$(free_port)
mkdir -p "$TMP/mock" "$TMP/nginx" "$TMP/byok"

REPLY='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}},"system_fingerprint":"fp_bench"}'

# Common http{} settings: no logs, temp paths inside our prefix.
http_common() {
  local dir=$1
  cat <<CONF
  access_log off;
  client_body_temp_path $dir/client_body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
CONF
}

# --- the mock upstream: nginx answering a fixed chat completion ---------
cat > "$TMP/mock/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $TMP/mock/nginx.pid;
error_log $TMP/mock/error.log warn;
events { worker_connections 8192; }
http {
$(http_common "$TMP/mock")
  server {
    listen 127.0.0.1:$MOCK_PORT;
    location = /v1/chat/completions {
      default_type application/json;
      add_header x-request-id req_bench always;
      return 200 '$REPLY';
    }
  }
}
CONF
nginx -p "$TMP/mock" -c "$TMP/mock/nginx.conf" -e "$TMP/mock/error.log" &
PIDS+=($!)

# --- the reference: nginx as a plain reverse proxy with header injection -
cat > "$TMP/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 2;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 8192; }
http {
$(http_common "$TMP/nginx")
  upstream mock {
    server 127.0.0.1:$MOCK_PORT;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$NGX_PORT;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer sk-bench-platform-key";
    }
  }
}
CONF
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" &
PIDS+=($!)

# --- byok-proxy, 2 workers ------------------------------------------------
cat > "$TMP/byok/config.json" <<CONF
{
  "listen": "127.0.0.1:$BYOK_PORT",
  "admin_listen": "127.0.0.1:$ADMIN_PORT",
  "workers": 2,
  "log_level": "warn",
  "store": {"backend": "sqlite", "path": "$TMP/byok/byok.db"},
  "usage": {"jsonl_path": "$TMP/byok/usage.jsonl", "spool_dir": "$TMP/byok/spool"},
  "upstreams": {"openai": "http://127.0.0.1:$MOCK_PORT"},
  "platform_keys": {"openai": {"key_env": "OPENAI_API_KEY"}},
  "pricing": {"openai": {"gpt-4o-mini": {"input_per_1m": 150000, "cached_input_per_1m": 75000, "output_per_1m": 600000}}}
}
CONF
ADMIN_TOKEN="adm-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
BYOK_MASTER_KEY=$(head -c 32 /dev/urandom | base64) BYOK_ADMIN_TOKEN=$ADMIN_TOKEN \
  OPENAI_API_KEY=sk-bench-platform-key "$BIN" --config "$TMP/byok/config.json" \
  >"$TMP/byok/stdout.log" 2>"$TMP/byok/stderr.log" &
PIDS+=($!)

wait_http "http://127.0.0.1:$MOCK_PORT/"
wait_http "http://127.0.0.1:$NGX_PORT/"
wait_http "http://127.0.0.1:$ADMIN_PORT/healthz"

admin() {
  curl -sS --fail-with-body --max-time 5 -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' "$@"
}
admin -o /dev/null -X POST "http://127.0.0.1:$ADMIN_PORT/admin/tenants" \
  -d '{"id":"bench","name":"bench","features":{"byok":false,"agency":false},"parent_id":null,"wallet_deduction":false,"plan_credits_micros":0,"wallet_micros":1000000000000000}'
BENCH_KEY=$(admin -X POST "http://127.0.0.1:$ADMIN_PORT/admin/tenants/bench/keys" -d '{"label":"bench"}' |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).key))')
export BENCH_KEY

# One request through each path, so a broken setup fails loudly here.
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
for url in "http://127.0.0.1:$MOCK_PORT" "http://127.0.0.1:$NGX_PORT" "http://127.0.0.1:$BYOK_PORT"; do
  code=$(curl -s -o "$TMP/check.json" -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $BENCH_KEY" -d "$BODY" "$url/v1/chat/completions")
  if [ "$code" != 200 ] || ! grep -q '"usage"' "$TMP/check.json"; then
    echo "run.sh: $url/v1/chat/completions answered $code: $(head -c 300 "$TMP/check.json")" >&2
    exit 1
  fi
done

declare -A RPS P50 P99 NON2XX SOCKERR
run_wrk() {
  local name=$1 url=$2 line
  if [ "$WARMUP" -gt 0 ]; then
    timeout $((WARMUP + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$HERE/chat.lua" "$url/v1/chat/completions" >/dev/null
  fi
  timeout $((SECONDS_RUN + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${SECONDS_RUN}s" --latency -s "$HERE/chat.lua" \
    "$url/v1/chat/completions" >"$TMP/wrk-$name.txt"
  line=$(grep '^BENCH_RESULT' "$TMP/wrk-$name.txt")
  RPS[$name]=$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$line")
  P50[$name]=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line")
  P99[$name]=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")
  NON2XX[$name]=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line")
  SOCKERR[$name]=$(sed -E 's/.*sockerr=([0-9]+).*/\1/' <<<"$line")
  echo "  $name: done" >&2
}

echo "bench: $CONNS connections, $THREADS wrk threads, ${SECONDS_RUN}s per target (+${WARMUP}s warm-up), $(nproc) cores" >&2
run_wrk direct "http://127.0.0.1:$MOCK_PORT"
run_wrk nginx "http://127.0.0.1:$NGX_PORT"
run_wrk byok "http://127.0.0.1:$BYOK_PORT"

ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }
echo
printf '%-22s %12s %10s %10s %8s %8s\n' target 'req/s' 'p50 ms' 'p99 ms' non-2xx sockerr
for name in direct nginx byok; do
  label=$name
  [ "$name" = direct ] && label="mock direct"
  [ "$name" = nginx ] && label="nginx reverse proxy"
  [ "$name" = byok ] && label="byok-proxy"
  printf '%-22s %12s %10s %10s %8s %8s\n' "$label" "${RPS[$name]}" "$(ms "${P50[$name]}")" "$(ms "${P99[$name]}")" \
    "${NON2XX[$name]}" "${SOCKERR[$name]}"
done
echo
awk -v b="${RPS[byok]}" -v n="${RPS[nginx]}" -v d="${RPS[direct]}" \
  -v bp="${P99[byok]}" -v np="${P99[nginx]}" -v dp="${P99[direct]}" 'BEGIN {
  printf "throughput byok/nginx : %.2f\n", b / n
  printf "throughput byok/direct: %.2f\n", b / d
  printf "added p99 vs direct   : byok %+.3f ms, nginx %+.3f ms\n", (bp - dp) / 1000, (np - dp) / 1000
}'
if [ -f "$TMP/byok/usage.jsonl" ]; then
  echo "byok usage records in JSONL: $(wc -l <"$TMP/byok/usage.jsonl")"
fi
if [ "${NON2XX[byok]}" != 0 ] || [ "${SOCKERR[byok]}" != 0 ]; then
  echo "warning: byok-proxy had non-2xx answers or socket errors (see above)" >&2
fi
