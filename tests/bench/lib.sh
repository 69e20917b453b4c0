# shellcheck shell=bash
# lib.sh - helpers of run.sh (sourced, not run): processes, CPU accounting,
# redis-server, number formatting. Uses run.sh's globals: TMP, PIDS, WRK_PID
# (the bounded wrk run or streams.mjs in progress), LAST_PID, SRV_RUN, WRK_RUN.

die() { echo "run.sh: $*" >&2; exit 2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# --- processes ------------------------------------------------------------
# Stops every process we started, newest first (each byok-proxy before the
# redis-server it writes to), each with TERM, a bounded wait, then KILL.
cleanup() {
  local i pid
  # timeout passes the TERM on to wrk (or streams.mjs, which then stops its
  # own proxy and upstream: given at most 30 s for that).
  if [ -n "$WRK_PID" ] && kill -TERM "$WRK_PID" 2>/dev/null; then
    for _ in $(seq 1 300); do kill -0 "$WRK_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[$i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}

free_port() {
  node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# Polls until "url" answers (any HTTP status), at most 10 s.
wait_http() {
  local url=$1
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
    sleep 0.05
  done
  echo "run.sh: $url did not come up" >&2
  return 1
}

# Starts a server (pinned to the server CPUs with BENCH_PIN=1) in the
# background; taskset execs it, so $! is the server's own pid.
start_server() {
  "${SRV_RUN[@]+"${SRV_RUN[@]}"}" "$@" &
  PIDS+=($!)
  # shellcheck disable=SC2034  # read by run.sh
  LAST_PID=$!
}

# bounded_wrk SECONDS OUTFILE WRK-ARGS...: wrk (pinned with BENCH_PIN=1) under
# timeout, in the background and waited for, so that a signal to this script
# is handled at once and cleanup stops the run.
bounded_wrk() {
  local limit=$1 out=$2 rc=0
  shift 2
  timeout "$limit" "${WRK_RUN[@]+"${WRK_RUN[@]}"}" wrk "$@" >"$out" &
  WRK_PID=$!
  wait "$WRK_PID" || rc=$?
  WRK_PID=
  [ "$rc" = 0 ] || { echo "run.sh: wrk $* failed (exit $rc)" >&2; exit 1; }
}

# --- redis-server -----------------------------------------------------------
# rcli PORT ARGS...: one redis-cli command against our server, bounded.
rcli() {
  local port=$1
  shift
  timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@"
}

# start_redis DIR PORT FSYNC: redis-server on 127.0.0.1:PORT with its AOF in
# DIR (appendonly yes, appendfsync FSYNC, no RDB snapshots), pinned like the
# other servers; waits (at most 10 s) until it answers PING. Sets LAST_PID.
start_redis() {
  local dir=$1 port=$2 fsync=$3
  mkdir -p "$dir"
  start_server redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --logfile "$dir/redis.log" \
    --daemonize no --save '' --appendonly yes --appendfsync "$fsync"
  for _ in $(seq 1 200); do
    [ "$(rcli "$port" PING 2>/dev/null)" = PONG ] && return 0
    kill -0 "$LAST_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "run.sh: redis-server on port $port did not come up:" >&2
  tail -5 "$dir/redis.log" >&2 || true
  return 1
}

# redis_cmdstats PORT: "command calls" lines from INFO commandstats (every
# command Redis executed, those called by a script included).
redis_cmdstats() {
  rcli "$1" INFO commandstats | tr -d '\r' |
    sed -nE 's/^cmdstat_([^:]+):calls=([0-9]+),.*/\1 \2/p'
}

# redis_cmds_per_req BEFORE AFTER REQUESTS: the difference of two
# redis_cmdstats snapshots per request, most frequent first, as
# "evalsha 1.00, xadd 1.00, …"; the snapshot's own INFO is left out.
redis_cmds_per_req() {
  [ "$3" -gt 0 ] || { echo -; return; }
  awk -v n="$3" '
    FILENAME == ARGV[1] { before[$1] = $2; next }
    $1 != "info" && $2 > before[$1] { printf "%s %.2f\n", $1, ($2 - before[$1]) / n }' "$1" "$2" |
    sort -k2,2nr -k1,1 | awk '{ out = out (NR > 1 ? ", " : "") $1 " " $2 } END { print (NR ? out : "none") }'
}

# --- CPU accounting from /proc/<pid>/stat --------------------------------
# A process and its direct children (an nginx master and its workers).
proc_tree() {
  local root=$1 f line rest
  echo "$root"
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    rest=${line##*) }            # fields from 3 (state) on; comm may hold spaces
    # shellcheck disable=SC2086  # split into fields on purpose
    set -- $rest
    [ "${2:-}" = "$root" ] && { f=${f#/proc/}; echo "${f%/stat}"; }
  done
  return 0
}
# user+system clock ticks (utime+stime, fields 14 and 15: all threads of each
# process) summed over the given pids.
cpu_ticks() {
  local p files=()
  for p in "$@"; do [ -r "/proc/$p/stat" ] && files+=("/proc/$p/stat"); done
  [ "${#files[@]}" -gt 0 ] || { echo 0; return; }
  awk '{ sub(/.*\) /, ""); t += $12 + $13 } END { print t + 0 }' "${files[@]}" 2>/dev/null || echo 0
}

# --- numbers ----------------------------------------------------------------
# field NAME LINE: NAME's value in a "BENCH_RESULT a=1 b=2" line.
field() { sed -E "s/.*[ ]$1=([0-9.]+).*/\\1/" <<<"$2"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }
# per_req CPU_US REQUESTS -> µs per request
per_req() { awk -v u="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.2f", u / n; else printf "-" }'; }
pct() { awk -v u="$1" -v w="$2" 'BEGIN { if (w > 0) printf "%.0f", 100 * u / w; else printf "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "-") printf "%.2f", a / b; else printf "-" }'; }
sum() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") printf "-"; else printf "%.2f", a + b }'; }
# p99 difference in ms, signed
added_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", (a - b) / 1000 }'; }
