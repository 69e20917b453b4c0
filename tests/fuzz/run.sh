#!/usr/bin/env bash
# run.sh - runs one fuzz target as a ctest test (tests/fuzz/CMakeLists.txt).
#
#   run.sh replay BINARY NAME WORKDIR          every seed and regression once
#   run.sh fuzz   BINARY NAME WORKDIR SECONDS  libFuzzer for SECONDS from them
#
# Inputs are tests/fuzz/seeds/NAME/ and tests/fuzz/regressions/NAME/ (either
# may be missing). The target's whole output goes to WORKDIR/NAME.log; stdout
# gets one summary line, also written to WORKDIR/NAME.summary for
# scripts/test.sh. A crash, leak, timeout or failed CHECK fails the test and
# prints the end of the log and where the input that did it was saved.
set -uo pipefail

mode=$1 bin=$2 name=$3 work=$4 seconds=${5:-20}
here=$(cd "$(dirname "$0")" && pwd)

inputs=()
for d in "$here/seeds/$name" "$here/regressions/$name"; do
  if [ -d "$d" ]; then inputs+=("$d"); fi
done
mkdir -p "$work"
log="$work/$name.log"
summary="$work/$name.summary"
rm -f "$summary"

report() { echo "$1" | tee "$summary"; }

failed() {
  echo "---- last lines of $log"
  tail -n 60 "$log"
  echo "----"
  report "fuzz $name ($mode): FAILED ($1)"
  exit 1
}

case $mode in
replay)
  if [ "${#inputs[@]}" -eq 0 ]; then
    report "fuzz $name (replay): no seeds or regressions, nothing to replay"
    exit 0
  fi
  "$bin" "${inputs[@]}" >"$log" 2>&1
  rc=$?
  [ "$rc" -eq 0 ] || failed "exit status $rc"
  n=$(sed -n 's/^replay: \([0-9]*\) input(s) ran.*/\1/p' "$log")
  report "fuzz $name (replay): ${n:-?} inputs replayed, ok"
  ;;
fuzz)
  # New inputs go to the first corpus directory, in the build tree; the
  # input that fails is written under artifacts/.
  corpus="$work/corpus-$name"
  artifacts="$work/artifacts-$name"
  mkdir -p "$corpus" "$artifacts"
  "$bin" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" "${inputs[@]}" >"$log" 2>&1
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "fuzz $name: the failing input is under $artifacts/:"
    ls -t "$artifacts" | head -n 3
    echo "fix the bug, then add that file to tests/fuzz/regressions/$name/ (README.md)"
    failed "exit status $rc"
  fi
  done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1)
  [ -n "$done_line" ] || failed "no 'Done N runs' line"
  runs=$(echo "$done_line" | sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/')
  secs=$(echo "$done_line" | sed -E 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\2/')
  seed=$(sed -n 's/^INFO: Seed: \([0-9]*\).*/\1/p' "$log" | head -n 1)
  cov=$(sed -n 's/^#[0-9]*.*DONE *cov: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
  ncorpus=$(find "$corpus" -type f | wc -l)
  report "fuzz $name: $runs runs in $secs s, ${cov:-?} edges, corpus $ncorpus, seed ${seed:-?}, ok"
  ;;
*)
  echo "usage: run.sh replay|fuzz BINARY NAME WORKDIR [SECONDS]" >&2
  exit 2
  ;;
esac
