#!/usr/bin/env bash
# run.sh - throughput, latency and CPU per request of byok-proxy against nginx
# as a plain reverse proxy, both in front of the same nginx mock upstream
# (DESIGN §9). Not part of ctest.
# Usage: tests/bench/run.sh [path/to/byok-proxy [path/to/other/byok-proxy]]
#   With a second binary (or BYOK_PROXY_BIN_B), both are measured in the same
#   run and the ratios B/A are printed.
# Env: BENCH_SECONDS (default 10) per measured run, BENCH_WARMUP (default 2),
#      BENCH_CONNECTIONS (default 64; a space-separated list such as "1 16 64"
#      runs every count, one table each), BENCH_THREADS (wrk threads, default 2,
#      1 when pinned; never more than the connections),
#      BENCH_PIN=1 (servers on CPU BENCH_SERVER_CPUS, default 0, wrk on CPU
#      BENCH_WRK_CPUS, default 1, via taskset),
#      BENCH_WORKERS (byok-proxy and nginx-proxy workers, default 2, 1 when
#      pinned), BYOK_PROXY_BIN / BYOK_PROXY_BIN_B (binaries, if not given as
#      $1 / $2), BENCH_REDIS (1: also each binary on the Redis store, against
#      a redis-server started here; 0: not; default: when redis-server is
#      installed), BENCH_REDIS_FSYNC (its appendfsync, default always),
#      BENCH_MODES (default "json sse": small JSON with chat.lua, streamed SSE
#      with sse.lua; one table per mode and connection count),
#      BENCH_PACED_RPS (default 3000; 0 = skip): with the json mode, one more
#      cell at BENCH_PACED_CONNECTIONS (default 64) connections offered that
#      many requests per second in all (paced.lua: random waits, so not in
#      lockstep) instead of as many as the target answers: the latency a
#      proxy adds when it is not saturated; each run BENCH_PACED_SECONDS
#      (default 15: its p99 needs the requests),
#      BENCH_STREAMS (default 8000; 0 = skip): then streams.mjs, the memory
#      test (open streams and a slow reader), with that many streams,
#      BENCH_ROUNDS (default 1): each cell's targets run that many times in
#      turn (the order reversed every other round); a cell then shows each
#      metric's median over the rounds and the CPU ratio of every round, and
#      the summary's ratios are the medians of the rounds' ratios: on a
#      machine whose speed drifts, a ratio taken within one round is the
#      steadier figure.
# Helpers (processes, CPU accounting, redis-server, formatting): lib.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN_A=${1:-${BYOK_PROXY_BIN:-$ROOT/build/byok-proxy}}
BIN_B=${2:-${BYOK_PROXY_BIN_B:-}}
SECONDS_RUN=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS_LIST=${BENCH_CONNECTIONS:-64}
PIN=${BENCH_PIN:-0}
if [ "$PIN" = 1 ]; then
  THREADS=${BENCH_THREADS:-1}
  WORKERS=${BENCH_WORKERS:-1}
else
  THREADS=${BENCH_THREADS:-2}
  WORKERS=${BENCH_WORKERS:-2}
fi
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
WRK_CPUS=${BENCH_WRK_CPUS:-1}
REDIS=${BENCH_REDIS:-auto}
REDIS_FSYNC=${BENCH_REDIS_FSYNC:-always}
MODES_LIST=${BENCH_MODES:-json sse}
STREAMS=${BENCH_STREAMS:-8000}
PACED_RPS=${BENCH_PACED_RPS:-3000}
PACED_CONNS=${BENCH_PACED_CONNECTIONS:-64}
PACED_SECONDS=${BENCH_PACED_SECONDS:-15}
ROUNDS=${BENCH_ROUNDS:-1}

# shellcheck source-path=SCRIPTDIR
. "$HERE/lib.sh"
for v in "$SECONDS_RUN" "$WARMUP" "$THREADS" "$WORKERS"; do
  is_uint "$v" || die "BENCH_SECONDS, BENCH_WARMUP, BENCH_THREADS and BENCH_WORKERS must be whole numbers"
done
if [ "$SECONDS_RUN" -eq 0 ] || [ "$THREADS" -eq 0 ] || [ "$WORKERS" -eq 0 ]; then
  die "BENCH_SECONDS, BENCH_THREADS and BENCH_WORKERS must be > 0"
fi
read -r -a CONNS <<<"$CONNS_LIST"
[ "${#CONNS[@]}" -gt 0 ] || die "BENCH_CONNECTIONS is empty"
for c in "${CONNS[@]}"; do
  if ! is_uint "$c" || [ "$c" -eq 0 ]; then die "BENCH_CONNECTIONS: '$c' is not a positive count"; fi
done
read -r -a MODES <<<"$MODES_LIST"
[ "${#MODES[@]}" -gt 0 ] || die "BENCH_MODES is empty"
for m in "${MODES[@]}"; do
  case $m in json | sse) ;; *) die "BENCH_MODES: '$m' is not json or sse" ;; esac
done
is_uint "$STREAMS" || die "BENCH_STREAMS must be a whole number (0 = skip the memory test)"
is_uint "$PACED_RPS" || die "BENCH_PACED_RPS must be a whole number of requests per second (0 = skip the paced cell)"
if ! is_uint "$PACED_CONNS" || [ "$PACED_CONNS" -eq 0 ]; then die "BENCH_PACED_CONNECTIONS must be a positive count"; fi
if ! is_uint "$PACED_SECONDS" || [ "$PACED_SECONDS" -eq 0 ]; then die "BENCH_PACED_SECONDS must be a positive number of seconds"; fi
if ! is_uint "$ROUNDS" || [ "$ROUNDS" -eq 0 ]; then die "BENCH_ROUNDS must be a positive count"; fi
[[ " ${MODES[*]} " == *" json "* ]] || PACED_RPS=0

for tool in nginx wrk curl node timeout; do
  command -v "$tool" >/dev/null || die "'$tool' not found (apt-get install nginx-light wrk curl; node for free ports)"
done
[ -x "$BIN_A" ] || die "byok-proxy binary '$BIN_A' not found; build it or pass its path"
[ -z "$BIN_B" ] || [ -x "$BIN_B" ] || die "second byok-proxy binary '$BIN_B' not found"
case "$REDIS" in
  0) ;;
  1) if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
       die "BENCH_REDIS=1 needs redis-server and redis-cli (scripts/setup.sh --test, or apt-get install redis-server)"
     fi ;;
  auto) if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then REDIS=1; else
          REDIS=0
          echo "run.sh: redis-server not installed: the Redis-store targets are skipped (scripts/setup.sh --test installs it)" >&2
        fi ;;
  *) die "BENCH_REDIS must be 0 or 1" ;;
esac
case "$REDIS_FSYNC" in always | everysec | no) ;; *) die "BENCH_REDIS_FSYNC must be always, everysec or no" ;; esac
SRV_RUN=()
WRK_RUN=()
if [ "$PIN" = 1 ]; then
  command -v taskset >/dev/null || die "BENCH_PIN=1 needs taskset (apt-get install util-linux)"
  taskset -c "$SERVER_CPUS" true 2>/dev/null || die "cannot pin to CPU(s) '$SERVER_CPUS'"
  taskset -c "$WRK_CPUS" true 2>/dev/null || die "cannot pin to CPU(s) '$WRK_CPUS'"
  SRV_RUN=(taskset -c "$SERVER_CPUS")
  WRK_RUN=(taskset -c "$WRK_CPUS")
fi
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/byok-bench.XXXXXX)
PIDS=()    # every server we started, in start order (cleanup stops them newest first)
WRK_PID=   # the bounded wrk run in progress, if any
trap cleanup EXIT
trap 'exit 130' INT TERM

MOCK_PORT=$(free_port)
NGX_PORT=$(free_port)
mkdir -p "$TMP/mock" "$TMP/nginx"

REPLY='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}},"system_fingerprint":"fp_bench"}'

# The streamed reply (PROVIDERS.md 1.1, stream_options.include_usage): 18
# events - the role chunk, 14 content chunks, the finish_reason chunk (each
# with "usage":null), the usage chunk ("choices":[]), then [DONE] - written
# with nginx's "\n" escapes, in two halves (an nginx token is at most 4 KiB).
# SSE_EVENTS and SSE_TOKENS are what the checks expect.
sse_events_of() {
  local head='{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_bench","choices":'
  local w
  SSE_PARTS=("data: $head"'[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}\n\n')
  for w in Hi ' there' '!' ' How' ' can' ' I' ' help' ' you' ' with' ' your' ' bench' ' run' ' today' '?'; do
    SSE_PARTS+=("data: $head"'[{"index":0,"delta":{"content":"'"$w"'"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n')
  done
  SSE_PARTS+=("data: $head"'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n')
  SSE_PARTS+=("data: $head"'[],"usage":{"prompt_tokens":12,"completion_tokens":14,"total_tokens":26,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n')
  SSE_PARTS+=('data: [DONE]\n\n')
}
sse_events_of
SSE_EVENTS=${#SSE_PARTS[@]}
SSE_TOKENS=14
SSE_HALF1=$(printf '%s' "${SSE_PARTS[@]:0:9}")
SSE_HALF2=$(printf '%s' "${SSE_PARTS[@]:9}")

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
  # SSE when the client asks for it (Accept: text/event-stream, as sse.lua
  # and the SDKs send it; byok-proxy and nginx forward it). X-Accel-Buffering
  # makes the nginx reference relay that reply unbuffered, as byok-proxy does.
  map \$http_accept \$mock_sse {
    default 0;
    "~*text/event-stream" 1;
  }
  server {
    listen 127.0.0.1:$MOCK_PORT;
    location = /v1/chat/completions {
      if (\$mock_sse) { rewrite ^ /sse-reply last; }
      default_type application/json;
      add_header x-request-id req_bench always;
      return 200 '$REPLY';
    }
    location = /sse-reply {
      internal;
      default_type text/event-stream;
      add_header x-request-id req_bench always;
      add_header cache-control no-cache always;
      add_header x-accel-buffering no always;
      set \$sse1 '$SSE_HALF1';
      set \$sse2 '$SSE_HALF2';
      return 200 '\$sse1\$sse2';
    }
  }
}
CONF
start_server nginx -p "$TMP/mock" -c "$TMP/mock/nginx.conf" -e "$TMP/mock/error.log"
MOCK_PID=$LAST_PID

# --- the reference: nginx as a plain reverse proxy with header injection -
cat > "$TMP/nginx/nginx.conf" <<CONF
daemon off;
worker_processes $WORKERS;
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
start_server nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log"
NGX_PID=$LAST_PID

wait_http "http://127.0.0.1:$MOCK_PORT/"
wait_http "http://127.0.0.1:$NGX_PORT/"
# Target tables, keyed by target name: base URL, proxy key for wrk, the pid
# whose CPU (with its direct children) is the proxy's, label; for byok-proxy
# targets also its dir and store backend, and on Redis the redis-server's
# port and pid and the SQLite target it is compared with.
declare -A URL KEY SRVPID LABEL BYOKDIR STORE REDISPORT REDISPID PAIR
TARGETS=(direct nginx)
URL[direct]="http://127.0.0.1:$MOCK_PORT"; KEY[direct]=sk-none; SRVPID[direct]=$MOCK_PID
LABEL[direct]="mock direct"
URL[nginx]="http://127.0.0.1:$NGX_PORT"; KEY[nginx]=sk-none; SRVPID[nginx]=$NGX_PID
LABEL[nginx]="nginx reverse proxy"

# --- byok-proxy instances: own dir, ports, store, tenant and key ----------
# byok_admin TOKEN CURL-ARGS...: one admin API call, bounded.
byok_admin() {
  local token=$1
  shift
  curl -sS --fail-with-body --max-time 5 -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"
}
# start_byok NAME BIN LABEL sqlite|redis: a byok-proxy in $TMP/NAME; on Redis
# with its own redis-server (AOF in $TMP/NAME/redis) started first.
start_byok() {
  local name=$1 bin=$2 backend=$4 dir="$TMP/$1" port admin_port token key store
  port=$(free_port)
  admin_port=$(free_port)
  mkdir -p "$dir"
  if [ "$backend" = redis ]; then
    REDISPORT[$name]=$(free_port)
    start_redis "$dir/redis" "${REDISPORT[$name]}" "$REDIS_FSYNC" || exit 1
    REDISPID[$name]=$LAST_PID
    store="{\"backend\": \"redis\", \"url\": \"redis://127.0.0.1:${REDISPORT[$name]}/0\"}"
  else
    store="{\"backend\": \"sqlite\", \"path\": \"$dir/byok.db\"}"
  fi
  cat > "$dir/config.json" <<CONF
{
  "listen": "127.0.0.1:$port",
  "admin_listen": "127.0.0.1:$admin_port",
  "workers": $WORKERS,
  "log_level": "warn",
  "store": $store,
  "usage": {"jsonl_path": "$dir/usage.jsonl", "spool_dir": "$dir/spool"},
  "upstreams": {"openai": "http://127.0.0.1:$MOCK_PORT"},
  "platform_keys": {"openai": {"key_env": "OPENAI_API_KEY"}},
  "pricing": {"openai": {"gpt-4o-mini": {"input_per_1m": 150000, "cached_input_per_1m": 75000, "output_per_1m": 600000}}}
}
CONF
  token="adm-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  BYOK_MASTER_KEY=$(head -c 32 /dev/urandom | base64) BYOK_ADMIN_TOKEN=$token \
    OPENAI_API_KEY=sk-bench-platform-key start_server "$bin" --config "$dir/config.json" \
    >"$dir/stdout.log" 2>"$dir/stderr.log"
  SRVPID[$name]=$LAST_PID
  wait_http "http://127.0.0.1:$admin_port/healthz" || { tail -5 "$dir/stderr.log" >&2; exit 1; }

  byok_admin "$token" -o /dev/null -X POST "http://127.0.0.1:$admin_port/admin/tenants" \
    -d '{"id":"bench","name":"bench","features":{"byok":false,"agency":false},"parent_id":null,"wallet_deduction":false,"plan_credits_micros":0,"wallet_micros":1000000000000000}'
  key=$(byok_admin "$token" -X POST "http://127.0.0.1:$admin_port/admin/tenants/bench/keys" -d '{"label":"bench"}' |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).key))')
  [ -n "$key" ] || { echo "run.sh: no proxy key from $name's admin API" >&2; exit 1; }
  URL[$name]="http://127.0.0.1:$port"
  KEY[$name]=$key
  LABEL[$name]=$3
  BYOKDIR[$name]=$dir
  STORE[$name]=$backend
  TARGETS+=("$name")
}

# BYOK_TARGETS: every byok-proxy target, each Redis one right after the
# SQLite one of the same binary (run back to back: the least drift between
# the two); REDIS_TARGETS: the Redis ones.
BYOK_TARGETS=()
REDIS_TARGETS=()
# add_byok NAME BIN LABEL: the SQLite target, then (BENCH_REDIS) its Redis twin.
add_byok() {
  start_byok "$1" "$2" "$3" sqlite
  BYOK_TARGETS+=("$1")
  if [ "$REDIS" = 1 ]; then
    start_byok "$1_redis" "$2" "$3 redis" redis
    PAIR[$1_redis]=$1
    BYOK_TARGETS+=("$1_redis")
    REDIS_TARGETS+=("$1_redis")
  fi
}
if [ -n "$BIN_B" ]; then
  add_byok byokA "$BIN_A" "byok-proxy A"
  add_byok byokB "$BIN_B" "byok-proxy B"
else
  add_byok byok "$BIN_A" "byok-proxy"
fi

# One request through each path, so a broken setup fails loudly here. A new
# key reaches a Redis instance's data plane through its follower (pub/sub,
# milliseconds): a 401 is asked again for up to 2 s.
declare -A SERVED   # requests each target answered (the check request + every wrk run)
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
for t in "${TARGETS[@]}"; do
  for _ in $(seq 1 40); do
    code=$(curl -s -o "$TMP/check.json" -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
      -H "Authorization: Bearer ${KEY[$t]}" -d "$BODY" "${URL[$t]}/v1/chat/completions") || true
    [ "$code" = 401 ] || break
    sleep 0.05
  done
  if [ "$code" != 200 ] || ! grep -q '"usage"' "$TMP/check.json"; then
    echo "run.sh: ${URL[$t]}/v1/chat/completions (${LABEL[$t]}) answered $code: $(head -c 300 "$TMP/check.json")" >&2
    exit 1
  fi
  SERVED[$t]=1
done

# sse_events FILE: checks a streamed reply (every event JSON but the last,
# [DONE]; one usage chunk with "choices":[] and units) and prints its events'
# count, or why it is wrong.
# shellcheck disable=SC2016  # JavaScript, not shell
sse_events() {
  node -e '
    const ev = require("fs").readFileSync(process.argv[1], "utf8").split("\n\n").filter((e) => e.trim());
    const bad = (why) => { console.log(`bad: ${why}`); process.exit(0); };
    if (ev.length === 0 || ev[ev.length - 1] !== "data: [DONE]") bad("no data: [DONE] at the end");
    const chunks = ev.slice(0, -1).map((e) => { try { return JSON.parse(e.replace(/^data: /, "")); } catch { bad(`not JSON: ${e.slice(0, 80)}`); } });
    const usage = chunks.filter((c) => c.usage);
    if (usage.length !== 1 || usage[0] !== chunks[chunks.length - 1] || usage[0].choices.length !== 0 ||
        !(usage[0].usage.completion_tokens > 0)) bad("no usage chunk (choices:[] and usage) before [DONE]");
    if (chunks.some((c) => c.object !== "chat.completion.chunk")) bad("an event is not a chat.completion.chunk");
    console.log(ev.length);' "$1"
}
# record_of DIR ID SECONDS: polls (bounded) for the usage record ID in DIR's
# JSONL file and prints "outcome estimated input_tokens output_tokens".
record_of() {
  for _ in $(seq 1 $(( $3 * 20 ))); do
    if [ -f "$1/usage.jsonl" ] && grep -q "\"id\":\"$2\"" "$1/usage.jsonl"; then
      grep "\"id\":\"$2\"" "$1/usage.jsonl" | head -1 |
        node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>{const r=JSON.parse(s);
          console.log(r.outcome, r.estimated, r.units.input_tokens, r.units.output_tokens)})'
      return 0
    fi
    sleep 0.05
  done
  echo "none"
}
# With SSE cells: one streamed request through each path, which must answer
# 200 with all $SSE_EVENTS events and the usage chunk; byok-proxy must record
# it with the mock's units, provider-reported (not estimated).
SSE_BODY='{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}'
if [[ " ${MODES[*]} " == *" sse "* ]]; then
  for t in "${TARGETS[@]}"; do
    code=$(curl -sN -o "$TMP/check.sse" -D "$TMP/check.head" -w '%{http_code}' --max-time 5 -X POST \
      -H 'Content-Type: application/json' -H 'Accept: text/event-stream' -H "Authorization: Bearer ${KEY[$t]}" \
      -d "$SSE_BODY" "${URL[$t]}/v1/chat/completions") || true
    events=$(sse_events "$TMP/check.sse")
    if [ "$code" != 200 ] || [ "$events" != "$SSE_EVENTS" ]; then
      echo "run.sh: streamed ${URL[$t]}/v1/chat/completions (${LABEL[$t]}) answered $code, events: $events" \
        "(want $SSE_EVENTS): $(head -c 300 "$TMP/check.sse")" >&2
      exit 1
    fi
    SERVED[$t]=$(( SERVED[$t] + 1 ))
    [ -n "${BYOKDIR[$t]:-}" ] || continue
    id=$(tr -d '\r' <"$TMP/check.head" | sed -nE 's/^x-proxy-request-id: *//Ip' | head -1)
    rec=$(record_of "${BYOKDIR[$t]}" "$id" 5)
    if [ "$rec" != "ok false 12 $SSE_TOKENS" ]; then
      echo "run.sh: ${LABEL[$t]}: the streamed request's usage record $id (outcome estimated input output):" \
        "'$rec', want 'ok false 12 $SSE_TOKENS'" >&2
      exit 1
    fi
  done
fi
declare -A CUTOFF   # upper bound of requests in flight when a wrk run stopped
for t in "${TARGETS[@]}"; do CUTOFF[$t]=0; done

# run_wrk MODE TARGET CONNECTIONS: warm-up, then the measured run with the
# CPU of the proxy (process + direct children), of the mock and, for a Redis
# target, of its redis-server and the commands it executed sampled around it.
# Results are keyed "MODE,TARGET,CONNECTIONS", or with BENCH_ROUNDS > 1
# "MODE,TARGET,CONNECTIONS/ROUND" (aggregate_cell then fills the first).
declare -A RPS P50 P99 REQS NON2XX SOCKERR CPU_US MOCK_US REDIS_US WALL_US RCMDS
declare -A SCRIPT=([json]=chat.lua [sse]=sse.lua [paced]=paced.lua) \
  MODE_NAME=([json]=JSON [sse]=SSE [paced]="JSON paced")
run_wrk() {
  local mode=$1 t=$2 c=$3 th=$THREADS out="$TMP/wrk-$1-$2-$3${4:+-$4}" line srv_pids mock_pids s0 s1 m0 m1 r0=0 r1=0 w0 w1
  local rport=${REDISPORT[$2]:-} script="$HERE/${SCRIPT[$1]}" secs=$SECONDS_RUN
  [ "$mode" != paced ] || secs=$PACED_SECONDS
  [ "$th" -gt "$c" ] && th=$c
  if [ "$WARMUP" -gt 0 ]; then
    BENCH_KEY=${KEY[$t]} bounded_wrk $((WARMUP + 30)) "$out.warm" \
      -t"$th" -c"$c" -d"${WARMUP}s" -s "$script" "${URL[$t]}/v1/chat/completions"
    line=$(grep '^BENCH_RESULT' "$out.warm")
    SERVED[$t]=$(( SERVED[$t] + $(field requests "$line") ))
    CUTOFF[$t]=$(( CUTOFF[$t] + c ))
  fi
  read -r -a srv_pids <<<"$(proc_tree "${SRVPID[$t]}" | tr '\n' ' ')"
  read -r -a mock_pids <<<"$(proc_tree "$MOCK_PID" | tr '\n' ' ')"
  [ -z "$rport" ] || redis_cmdstats "$rport" >"$out.cmd0"
  s0=$(cpu_ticks "${srv_pids[@]}"); m0=$(cpu_ticks "${mock_pids[@]}"); w0=$(date +%s%N)
  [ -z "$rport" ] || r0=$(cpu_ticks "${REDISPID[$t]}")
  BENCH_KEY=${KEY[$t]} bounded_wrk $((secs + 30)) "$out.txt" \
    -t"$th" -c"$c" -d"${secs}s" --latency -s "$script" "${URL[$t]}/v1/chat/completions"
  w1=$(date +%s%N); s1=$(cpu_ticks "${srv_pids[@]}"); m1=$(cpu_ticks "${mock_pids[@]}")
  [ -z "$rport" ] || r1=$(cpu_ticks "${REDISPID[$t]}")
  [ -z "$rport" ] || redis_cmdstats "$rport" >"$out.cmd1"
  line=$(grep '^BENCH_RESULT' "$out.txt")
  local k="$mode,$t,$c${4:+/$4}"
  RPS[$k]=$(field rps "$line")
  P50[$k]=$(field p50_us "$line")
  P99[$k]=$(field p99_us "$line")
  REQS[$k]=$(field requests "$line")
  NON2XX[$k]=$(field non2xx "$line")
  SOCKERR[$k]=$(field sockerr "$line")
  CPU_US[$k]=$(( (s1 - s0) * 1000000 / CLK_TCK ))
  MOCK_US[$k]=$(( (m1 - m0) * 1000000 / CLK_TCK ))
  WALL_US[$k]=$(( (w1 - w0) / 1000 ))
  if [ -n "$rport" ]; then
    REDIS_US[$k]=$(( (r1 - r0) * 1000000 / CLK_TCK ))
    RCMDS[$k]=$(redis_cmds_per_req "$out.cmd0" "$out.cmd1" "${REQS[$k]}")
  fi
  SERVED[$t]=$(( SERVED[$t] + REQS[$k] ))
  CUTOFF[$t]=$(( CUTOFF[$t] + c ))
  echo "  ${MODE_NAME[$mode]}, $c conns, ${LABEL[$t]}${4:+, round $4}: done" >&2
}
# run_cell MODE CONNECTIONS: every target once, or BENCH_ROUNDS times in turn
# (every other round in reverse order) and then aggregate_cell.
run_cell() {
  local m=$1 c=$2 r t i order
  if [ "$ROUNDS" -eq 1 ]; then
    for t in "${TARGETS[@]}"; do run_wrk "$m" "$t" "$c"; done
    return
  fi
  for r in $(seq 1 "$ROUNDS"); do
    order=()
    for i in "${!TARGETS[@]}"; do
      if [ $((r % 2)) -eq 1 ]; then order+=("${TARGETS[$i]}"); else order=("${TARGETS[$i]}" "${order[@]}"); fi
    done
    for t in "${order[@]}"; do run_wrk "$m" "$t" "$c" "$r"; done
  done
  for t in "${TARGETS[@]}"; do aggregate_cell "$m" "$t" "$c"; done
}
# median VALUES...: the middle one (the lower of the two middle ones).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# aggregate_cell MODE TARGET CONNECTIONS: the rounds' medians under the key
# without a round: req/s, p50 and p99 each their own median; the CPU figures
# (proxy, mock, redis-server, wall clock, requests, Redis commands) from the
# round whose proxy CPU per request is the median; failures summed.
aggregate_cell() {
  local base="$1,$2,$3" r k pick cpus=() rps=() p50=() p99=() non=0 err=0 mid
  for r in $(seq 1 "$ROUNDS"); do
    k="$base/$r"
    cpus+=("$(per_req "${CPU_US[$k]}" "${REQS[$k]}")")
    rps+=("${RPS[$k]}"); p50+=("${P50[$k]}"); p99+=("${P99[$k]}")
    non=$(( non + NON2XX[$k] )); err=$(( err + SOCKERR[$k] ))
  done
  mid=$(median "${cpus[@]}")
  for r in $(seq 1 "$ROUNDS"); do
    [ "${cpus[$((r - 1))]}" = "$mid" ] && { pick="$base/$r"; break; }
  done
  RPS[$base]=$(median "${rps[@]}"); P50[$base]=$(median "${p50[@]}"); P99[$base]=$(median "${p99[@]}")
  NON2XX[$base]=$non; SOCKERR[$base]=$err
  CPU_US[$base]=${CPU_US[$pick]}; MOCK_US[$base]=${MOCK_US[$pick]}; WALL_US[$base]=${WALL_US[$pick]}
  REQS[$base]=${REQS[$pick]}
  if [ -n "${REDIS_US[$pick]:-}" ]; then REDIS_US[$base]=${REDIS_US[$pick]}; RCMDS[$base]=${RCMDS[$pick]}; fi
}
# round_ratios KEY REF [F [G]]: F(KEY/round) over G(REF/round) for each
# round ("" with one round), F and G proxy_cpu (the default) or both_cpu
# (proxy+redis); cpu_ratio: their median, or the plain ratio with one round.
round_ratios() {
  local f=${3:-proxy_cpu} g=${4:-proxy_cpu} r v=()
  [ "$ROUNDS" -gt 1 ] && [ -n "${REQS[$1/1]:-}" ] || return 0
  for r in $(seq 1 "$ROUNDS"); do v+=("$(ratio "$($f "$1/$r")" "$($g "$2/$r")")"); done
  echo "${v[*]}"
}
cpu_ratio() {
  local v
  v=$(round_ratios "$@")
  if [ -z "$v" ]; then ratio "$(${3:-proxy_cpu} "$1")" "$(${4:-proxy_cpu} "$2")"; return; fi
  # shellcheck disable=SC2086  # the ratios, one word each
  median $v
}

# proxy_cpu MODE,TARGET,CONNS: the proxy's µs/req ("-" for the mock itself);
# redis_cpu: its redis-server's ("-" off Redis); both_cpu: their sum.
proxy_cpu() { case $1 in *,direct,*) echo - ;; *) per_req "${CPU_US[$1]}" "${REQS[$1]}" ;; esac; }
redis_cpu() { if [ -n "${REDIS_US[$1]:-}" ]; then per_req "${REDIS_US[$1]}" "${REQS[$1]}"; else echo -; fi; }
both_cpu() { if [ -n "${REDIS_US[$1]:-}" ]; then sum "$(proxy_cpu "$1")" "$(redis_cpu "$1")"; else proxy_cpu "$1"; fi; }

print_table() {
  local m=$1 c=$2 t k proxy_pct redis_pct rr
  echo
  echo "== ${MODE_NAME[$m]}, $c connections =="
  # µ is two bytes: its header cells are one wider for printf. The redis
  # columns only when there is a Redis target.
  printf '%-22s %9s %7s %7s %13s %6s' target 'req/s' 'p50 ms' 'p99 ms' 'proxy µs/req' 'cpu %'
  [ "$REDIS" = 0 ] || printf ' %13s %7s %12s' 'redis µs/req' 'redis %' 'proxy+redis'
  printf ' %12s %7s %7s\n' 'mock µs/req' non-2xx sockerr
  for t in "${TARGETS[@]}"; do
    k="$m,$t,$c"
    proxy_pct=-; redis_pct=-
    [ "$t" = direct ] || proxy_pct=$(pct "${CPU_US[$k]}" "${WALL_US[$k]}")
    [ -z "${REDIS_US[$k]:-}" ] || redis_pct=$(pct "${REDIS_US[$k]}" "${WALL_US[$k]}")
    printf '%-22s %9s %7s %7s %12s %6s' "${LABEL[$t]}" "${RPS[$k]}" "$(ms "${P50[$k]}")" "$(ms "${P99[$k]}")" \
      "$(proxy_cpu "$k")" "$proxy_pct"
    [ "$REDIS" = 0 ] || printf ' %12s %7s %12s' "$(redis_cpu "$k")" "$redis_pct" "$(both_cpu "$k")"
    printf ' %11s %7s %7s\n' "$(per_req "${MOCK_US[$k]}" "${REQS[$k]}")" "${NON2XX[$k]}" "${SOCKERR[$k]}"
  done
  echo
  local n="$m,nginx,$c" d="$m,direct,$c" s
  for t in "${BYOK_TARGETS[@]}"; do
    k="$m,$t,$c"
    printf '%-18s vs nginx: throughput %s (target ≥ 1.0), CPU/req %s (target ≤ 1.0)' \
      "${LABEL[$t]}" "$(ratio "${RPS[$k]}" "${RPS[$n]}")" "$(cpu_ratio "$k" "$n")"
    [ -z "${REDIS_US[$k]:-}" ] || printf ', with redis-server %s' "$(cpu_ratio "$k" "$n" both_cpu)"
    rr=$(round_ratios "$k" "$n")
    [ -z "$rr" ] || printf '; CPU/req per round %s' "$rr"
    printf '; throughput vs direct %s\n' "$(ratio "${RPS[$k]}" "${RPS[$d]}")"
  done
  printf 'added p99 vs direct: nginx %s ms' "$(added_ms "${P99[$n]}" "${P99[$d]}")"
  for t in "${BYOK_TARGETS[@]}"; do
    printf ', %s %s ms' "${LABEL[$t]}" "$(added_ms "${P99[$m,$t,$c]}" "${P99[$d]}")"
  done
  # DESIGN §9 sets the p99 target for small JSON only.
  case $m in json | paced) echo '   (target ≤ 1 ms at 64 connections)' ;; *) echo ;; esac
  if [ -n "$BIN_B" ]; then
    local a="$m,byokA,$c" bb="$m,byokB,$c"
    printf 'B/A: CPU µs/req %s, req/s %s\n' "$(cpu_ratio "$bb" "$a")" \
      "$(ratio "${RPS[$bb]}" "${RPS[$a]}")"
    if [ "$REDIS" = 1 ]; then
      a="$m,byokA_redis,$c" bb="$m,byokB_redis,$c"
      printf 'B/A on Redis: CPU µs/req %s (proxy+redis %s), req/s %s\n' \
        "$(cpu_ratio "$bb" "$a")" "$(cpu_ratio "$bb" "$a" both_cpu both_cpu)" \
        "$(ratio "${RPS[$bb]}" "${RPS[$a]}")"
    fi
  fi
  for t in "${REDIS_TARGETS[@]+"${REDIS_TARGETS[@]}"}"; do
    k="$m,$t,$c" s="$m,${PAIR[$t]},$c"
    printf '%s: redis/sqlite CPU µs/req %s proxy alone, %s proxy+redis (target ≤ 1.2); p99 %s; req/s %s\n' \
      "${LABEL[$t]}" "$(cpu_ratio "$k" "$s")" \
      "$(cpu_ratio "$k" "$s" both_cpu)" "$(ratio "${P99[$k]}" "${P99[$s]}")" \
      "$(ratio "${RPS[$k]}" "${RPS[$s]}")"
    printf '%s: Redis commands per request: %s\n' "${LABEL[$t]}" "${RCMDS[$k]}"
  done
}

# summary_table: one markdown row per cell (mode, connections) and SQLite
# byok-proxy target (with two binaries a "proxy" column says which), for the
# README: CPU µs/req of nginx and byok-proxy and their ratio, req/s over
# nginx's, p99 added over the mock direct, and the Redis twin's CPU over the
# SQLite target's (proxy alone, proxy+redis).
summary_table() {
  local m c t k n d r cell sqlite_targets=() col='' sep='' cells=()
  for t in "${BYOK_TARGETS[@]}"; do [ -n "${PAIR[$t]:-}" ] || sqlite_targets+=("$t"); done
  [ -z "$BIN_B" ] || { col='| proxy '; sep='|---'; }
  echo
  echo "Summary (CPU µs/req of the proxy alone; ratios byok-proxy / nginx; p99 added over the mock direct;" \
    "redis/sqlite = the Redis target's CPU µs/req over the SQLite target's):"
  echo
  echo "${col}| mode | conns | nginx µs/req | byok-proxy µs/req | CPU ratio | req/s ratio | added p99 nginx | added p99 byok-proxy | redis/sqlite proxy | redis/sqlite proxy+redis |"
  echo "${sep}|---|---|---|---|---|---|---|---|---|---|"
  for m in "${MODES[@]}"; do
    for c in "${CONNS[@]}"; do cells+=("$m $c"); done
  done
  [ "$PACED_RPS" -eq 0 ] || cells+=("paced $PACED_CONNS")
  for cell in "${cells[@]}"; do
    read -r m c <<<"$cell"
    for t in "${sqlite_targets[@]}"; do
      k="$m,$t,$c" n="$m,nginx,$c" d="$m,direct,$c" r="$m,${t}_redis,$c"
      [ -z "$BIN_B" ] || printf '| %s ' "${LABEL[$t]}"
      printf '| %s | %s | %s | %s | %s | %s | %s ms | %s ms |' "${MODE_NAME[$m]}" "$c" "$(proxy_cpu "$n")" \
        "$(proxy_cpu "$k")" "$(cpu_ratio "$k" "$n")" "$(ratio "${RPS[$k]}" "${RPS[$n]}")" \
        "$(added_ms "${P99[$n]}" "${P99[$d]}")" "$(added_ms "${P99[$k]}" "${P99[$d]}")"
      if [ -n "${RPS[$r]:-}" ]; then
        printf ' %s | %s |\n' "$(cpu_ratio "$r" "$k")" "$(cpu_ratio "$r" "$k" both_cpu)"
      else
        printf ' - | - |\n'
      fi
    done
  done
}

# stable_count TARGET COMMAND...: COMMAND's number once the target's usage
# writer has caught up: polls until it stops moving (at most ~5 s).
stable_count() {
  local t=$1 n prev=-1
  shift
  for _ in $(seq 1 25); do
    n=$("$@") || n=0
    [ "$n" = "$prev" ] && [ "$n" -ge "${SERVED[$t]}" ] && break
    prev=$n
    sleep 0.2
  done
  echo "$n"
}
# shellcheck disable=SC2317  # both called through stable_count
jsonl_lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
# shellcheck disable=SC2317
stream_len() { rcli "$1" XLEN byok:usage; }

{
  echo "bench: modes ${MODES[*]}, connections ${CONNS[*]}, $THREADS wrk thread(s) (at most one per connection)," \
    "${SECONDS_RUN}s per target (+${WARMUP}s warm-up), $(nproc) cores"
  if [ "$PIN" = 1 ]; then
    echo "pinned: servers (redis-server included) on CPU $SERVER_CPUS, wrk on CPU $WRK_CPUS;" \
      "$WORKERS proxy worker(s), $WORKERS nginx worker(s), 1 mock worker"
  else
    echo "not pinned; $WORKERS proxy worker(s), $WORKERS nginx worker(s), 1 mock worker"
  fi
  for t in "${BYOK_TARGETS[@]}"; do
    bin=$BIN_A
    case $t in byokB*) bin=$BIN_B ;; esac
    echo "${LABEL[$t]}: $bin, ${STORE[$t]} store"
  done
  echo "stores and JSONL files in $TMP ($(df --output=fstype "$TMP" | tail -1 | tr -d ' ')):" \
    "SQLite synchronous=FULL$([ "$REDIS" = 1 ] && echo "; redis-server $(redis-server --version | sed -E 's/.* v=([^ ]+).*/\1/')," \
    "appendonly yes, appendfsync $REDIS_FSYNC (BENCH_REDIS_FSYNC), no RDB snapshots")"
} >&2

# Per connection count each mode in turn, so that a cell's JSON and SSE runs
# see the least drift of the machine between them.
for c in "${CONNS[@]}"; do
  for m in "${MODES[@]}"; do run_cell "$m" "$c"; done
done
# The paced cell: every target offered the same load (mean wait per
# connection = connections * 1000 / rate ms).
if [ "$PACED_RPS" -gt 0 ]; then
  BENCH_PACE_MS=$(awk -v c="$PACED_CONNS" -v r="$PACED_RPS" 'BEGIN { printf "%.3f", c * 1000 / r }')
  export BENCH_PACE_MS
  run_cell paced "$PACED_CONNS"
fi

for m in "${MODES[@]}"; do
  for c in "${CONNS[@]}"; do print_table "$m" "$c"; done
done
if [ "$PACED_RPS" -gt 0 ]; then
  echo
  echo "(JSON paced: $PACED_RPS requests/s offered over $PACED_CONNS connections, random waits of mean ${BENCH_PACE_MS} ms" \
    "per connection, ${PACED_SECONDS}s per target; latency from each request's send)"
  print_table paced "$PACED_CONNS"
fi
summary_table

echo
echo "CPU: user+system from /proc/<pid>/stat over each measured run (${CLK_TCK} Hz ticks): nginx master + workers," \
  "byok-proxy's process (all threads); 'mock µs/req' is the mock upstream's."
[ "$REDIS" = 0 ] || echo "Redis targets: 'redis µs/req' is their redis-server's CPU (appendonly yes, appendfsync" \
  "$REDIS_FSYNC), 'proxy+redis' the sum; Redis commands per request count the commands Redis executed in the" \
  "measured run (INFO commandstats), scripts' own calls included."
status=0
# BENCH_PROFILE=1: where each request's CPU goes, in the same setup. For
# each mode at 64 connections: the syscalls per request of nginx and of
# byok-proxy (strace -c over a whole bounded wrk run, so every request of
# the run is counted), then a perf record of byok-proxy (call graphs) with
# its split by library and its top functions, and the stacks folded for a
# flame graph viewer (flamegraph.pl, inferno, speedscope) in
# BENCH_PROFILE_DIR.
# syscalls_per_req MODE TARGET: prints "calls/request syscall" lines.
syscalls_per_req() {
  local m=$1 t=$2 out="$TMP/strace-$1-$2" pids=() args=() line reqs
  read -r -a pids <<<"$(proc_tree "${SRVPID[$t]}" | tr '\n' ' ')"
  for p in "${pids[@]}"; do args+=(-p "$p"); done
  strace -f -c -o "$out.txt" "${args[@]}" 2>/dev/null &
  local spid=$!
  # strace is attached once it stopped the process for the first time;
  # 200 ms is ample on loopback, and a late attach only undercounts.
  for _ in $(seq 1 20); do grep -q "TracerPid:[[:space:]]*[1-9]" "/proc/${pids[0]}/status" && break; sleep 0.05; done
  BENCH_KEY=${KEY[$t]} bounded_wrk 40 "$out.wrk" -t1 -c64 -d3s -s "$HERE/${SCRIPT[$m]}" "${URL[$t]}/v1/chat/completions"
  kill -INT "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  line=$(grep '^BENCH_RESULT' "$out.wrk")
  reqs=$(field requests "$line")
  SERVED[$t]=$(( SERVED[$t] + reqs ))
  CUTOFF[$t]=$(( CUTOFF[$t] + 64 ))
  awk -v n="$reqs" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" && n > 0 {
      printf "%8.2f %s\n", $4 / n, $NF } $NF == "total" && n > 0 { printf "%8.2f total\n", $4 / n }' "$out.txt" |
    sort -rn | awk 'n++ < 12'
}
PROFILE=${BENCH_PROFILE:-0}
PROFILE_DIR=${BENCH_PROFILE_DIR:-$ROOT/build/bench-profile}
if [ "$PROFILE" = 1 ]; then
  for tool in perf strace; do command -v "$tool" >/dev/null || die "BENCH_PROFILE=1 needs $tool (apt-get install linux-perf strace)"; done
  mkdir -p "$PROFILE_DIR"
  pt=${BYOK_TARGETS[0]}
  for m in "${MODES[@]}"; do
    echo
    echo "== profile: ${MODE_NAME[$m]}, 64 connections =="
    echo "syscalls per request, nginx reverse proxy (all its processes):"
    syscalls_per_req "$m" nginx
    echo "syscalls per request, ${LABEL[$pt]} (all its threads):"
    syscalls_per_req "$m" "$pt"
    BENCH_KEY=${KEY[$pt]} bounded_wrk 40 "$TMP/perf-$m.wrk" -t1 -c64 -d6s -s "$HERE/${SCRIPT[$m]}" \
      "${URL[$pt]}/v1/chat/completions" &
    wpid=$!
    perf record -q -F 999 -g --call-graph dwarf,8192 -p "${SRVPID[$pt]}" -o "$PROFILE_DIR/$m.perf.data" \
      -- sleep 4 >/dev/null 2>&1 || echo "run.sh: perf record failed (perf_event_paranoid?)" >&2
    wait "$wpid" || true
    SERVED[$pt]=$(( SERVED[$pt] + $(field requests "$(grep '^BENCH_RESULT' "$TMP/perf-$m.wrk")") ))
    CUTOFF[$pt]=$(( CUTOFF[$pt] + 64 ))
    echo "${LABEL[$pt]}: CPU samples by thread and library (perf record -g, $PROFILE_DIR/$m.perf.data):"
    # Into files first: a reader that stops early (head) would kill perf
    # with SIGPIPE, and pipefail the script.
    perf report -i "$PROFILE_DIR/$m.perf.data" --no-children --sort comm,dso -g none --stdio \
      >"$TMP/perf-$m.dso" 2>/dev/null || true
    awk '/^ +[0-9]/ && n++ < 14' "$TMP/perf-$m.dso"
    echo "top functions:"
    perf report -i "$PROFILE_DIR/$m.perf.data" --no-children --sort sym -g none --stdio \
      >"$TMP/perf-$m.sym" 2>/dev/null || true
    awk '/^ +[0-9]/ && n++ < 25' "$TMP/perf-$m.sym"
    # Folded stacks, root first: "thread;caller;...;leaf count"; kernel
    # frames end in "_[k]" (the convention of flamegraph.pl's stackcollapse).
    perf script -i "$PROFILE_DIR/$m.perf.data" 2>/dev/null | awk '
      /^[^ \t]/ { comm = $1; n = 0; next }
      /^[ \t]+[0-9a-f]+ / { f = $2; sub(/\+0x[0-9a-f]+$/, "", f); if ($NF == "([kernel.kallsyms])") f = f "_[k]"; st[n++] = f; next }
      /^$/ { if (n) { s = comm; for (i = n - 1; i >= 0; i--) s = s ";" st[i]; c[s]++ } n = 0 }
      END { for (s in c) print s, c[s] }' >"$PROFILE_DIR/$m.folded"
    echo "folded stacks for a flame graph: $PROFILE_DIR/$m.folded"
    node "$HERE/flamegraph.mjs" "$PROFILE_DIR/$m.folded" "$PROFILE_DIR/$m.svg" \
      "${LABEL[$pt]}, ${MODE_NAME[$m]}, 64 connections: perf record -g, $(date -u +%Y-%m-%d)" ||
      echo "run.sh: the flame graph was not drawn" >&2
  done
fi

# check LABEL WHAT RECORDS TARGET: records against requests answered. wrk does
# not count requests still in flight when a run stops; the proxy may still
# answer and record them, at most one per connection and run.
check() {
  local verdict=MISMATCH
  if [ "$3" -ge "${SERVED[$4]}" ] && [ "$3" -le $(( SERVED[$4] + CUTOFF[$4] )) ]; then verdict=ok; else status=1; fi
  printf '%s usage records in %s: %s for %s requests answered (+ up to %s in flight at wrk stops): %s\n' \
    "$1" "$2" "$3" "${SERVED[$4]}" "${CUTOFF[$4]}" "$verdict"
}
for t in "${BYOK_TARGETS[@]}"; do
  if [ "${STORE[$t]}" = redis ]; then
    check "${LABEL[$t]}" "the stream byok:usage" "$(stable_count "$t" stream_len "${REDISPORT[$t]}")" "$t"
  fi
  check "${LABEL[$t]}" JSONL "$(stable_count "$t" jsonl_lines "${BYOKDIR[$t]}/usage.jsonl")" "$t"
done
for t in "${BYOK_TARGETS[@]}"; do
  for m in "${MODES[@]}"; do
    for c in "${CONNS[@]}"; do
      if [ "${NON2XX[$m,$t,$c]}" != 0 ] || [ "${SOCKERR[$m,$t,$c]}" != 0 ]; then
        echo "warning: ${LABEL[$t]} had non-2xx answers or socket errors, ${MODE_NAME[$m]} at $c connections (see above)" >&2
      fi
    done
  done
done

# The memory test (DESIGN §9: open streams, a slow reader) of each binary,
# bounded like a wrk run; it starts its own proxy, upstream and clients.
if [ "$STREAMS" -gt 0 ]; then
  for bin in "$BIN_A" ${BIN_B:+"$BIN_B"}; do
    echo
    echo "== memory: $STREAMS open streams, then a slow reader (streams.mjs, $bin) =="
    rc=0
    BENCH_STREAMS=$STREAMS timeout 900 node "$HERE/streams.mjs" "$bin" &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=
    [ "$rc" = 0 ] || { echo "run.sh: streams.mjs failed (exit $rc)" >&2; status=1; }
  done
fi
exit "$status"
