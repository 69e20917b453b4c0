#!/usr/bin/env bash
# What synchronous=FULL costs the usage writer, against NORMAL: builds
# tests/bench/usage_writer.c twice against build/libbyokcore.a (the second
# time with proxy/store_sqlite.c compiled with -DSTORE_SQLITE_SYNCHRONOUS=
# '"NORMAL"', which the linker takes instead of the library's copy) and runs
# both, alternating, in a temp dir on the disk under test.
#   tests/bench/usage_writer.sh [DIR] [SERIAL_N] [BURST_N] [ROUNDS]
# DIR defaults to a new directory under build/ (not /tmp: it may be tmpfs,
# where an fsync costs nothing). Build the tree first (cmake --build build).
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${1:-build}
serial_n=${2:-500}
burst_n=${3:-20000}
rounds=${4:-3}
[ -f build/libbyokcore.a ] || { echo "build/libbyokcore.a missing: build the tree first" >&2; exit 1; }
deps=$(pkg-config --cflags --libs libevent libevent_pthreads libevent_openssl libcurl hiredis jansson sqlite3 openssl)
cflags=(-O2 -D_GNU_SOURCE -Iinclude)
# shellcheck disable=SC2086
cc "${cflags[@]}" tests/bench/usage_writer.c build/libbyokcore.a $deps -lm -lpthread -o build/bench_usage_full
# shellcheck disable=SC2086
cc "${cflags[@]}" -DSTORE_SQLITE_SYNCHRONOUS='"NORMAL"' tests/bench/usage_writer.c proxy/store_sqlite.c \
  build/libbyokcore.a $deps -lm -lpthread -o build/bench_usage_normal
work=$(mktemp -d "$base/bench-usage-XXXXXX")
trap 'rm -rf "$work"' EXIT
df -T "$work" | tail -1
for r in $(seq "$rounds"); do
  for mode in serial burst; do
    n=$serial_n
    [ "$mode" = burst ] && n=$burst_n
    for sync in full normal; do
      d="$work/$r-$mode-$sync"
      mkdir -p "$d"
      printf 'round %s %-6s ' "$r" "$sync"
      # (a burst queues faster than any disk writes: the backlog warning is expected)
      "build/bench_usage_$sync" "$d" "$mode" "$n" 2> >(grep -v 'writer backlog' >&2)
    done
  done
done
