#!/usr/bin/env bash
# Runs `strangler demo --fast` N times in a row, each in a fresh --workdir, and counts the runs
# that exited 0 and ended with `sync verify: identical` and `failed requests: 0`.
#   bench/demo_repeat.sh [N]       (default 20; about 15 s per run)
# Prints one line per run (seconds, client requests, the write pauses of its fenced cutovers)
# and "K of N identical". Exit 1 when any run failed; the output and workdir of every failed run
# are kept (their folder is printed), the others removed.
# Environment: STRANGLER_BUILD_DIR (default ./build), DEMO_TIMEOUT_S (default 300 per run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${STRANGLER_BUILD_DIR:-$root/build}
case "$build" in /*) ;; *) build=$root/$build ;; esac
runs=${1:-20}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/demo_repeat.sh [N]" >&2; exit 2; }
cli=$build/migrate-cli/strangler
[ -x "$cli" ] || { echo "demo_repeat: $cli not built (set STRANGLER_BUILD_DIR)" >&2; exit 1; }

base=$(mktemp -d "${TMPDIR:-/tmp}/strangler-demo-repeat.XXXXXX")
demo_pid=""
failed_runs=()
cleanup() {
  if [ -n "$demo_pid" ]; then kill -TERM "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true; fi
  if [ ${#failed_runs[@]} -eq 0 ]; then rm -rf "$base"; else echo "demo_repeat: failed runs kept in $base" >&2; fi
}
trap cleanup EXIT
trap 'failed_runs+=(interrupted); exit 130' INT TERM

passed=0
echo "demo_repeat: $runs runs of \`strangler demo --fast\`, $(nproc) cores" >&2
echo "demo_repeat: source $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -n "$(git -C "$root" status --porcelain -uno 2>/dev/null)" ] && echo ' + uncommitted changes'), strangler built $(date -r "$cli" '+%F %T')" >&2
for i in $(seq "$runs"); do
  dir=$base/run-$i
  mkdir -p "$dir"
  start=$EPOCHREALTIME
  timeout --kill-after=10 "${DEMO_TIMEOUT_S:-300}" "$cli" demo --fast --workdir "$dir/work" >"$dir/output.txt" 2>&1 &
  demo_pid=$!
  rc=0; wait "$demo_pid" || rc=$?
  demo_pid=""
  secs=$(python3 -c "print('%.1f' % ($EPOCHREALTIME - $start))")
  identical=0; no_failures=0
  grep -qE '^  sync verify: identical' "$dir/output.txt" && identical=1
  grep -qE '^  failed requests: 0$' "$dir/output.txt" && no_failures=1
  requests=$(grep -oE '^  client requests: [0-9]+' "$dir/output.txt" | grep -oE '[0-9]+$' || echo "?")
  pauses=$(grep -oE 'write pause [0-9]+ ms' "$dir/output.txt" | grep -oE '[0-9]+' | paste -sd, - || true)
  if [ "$rc" = 0 ] && [ "$identical" = 1 ] && [ "$no_failures" = 1 ]; then
    passed=$((passed + 1))
    printf 'run %2d: ok      %5s s, %s client requests, write pauses %s ms\n' "$i" "$secs" "$requests" "${pauses:--}"
    rm -rf "$dir"
  else
    failed_runs+=("$i")
    printf 'run %2d: FAILED  %5s s, exit %s, verify identical %s, no failed requests %s (output: %s)\n' \
      "$i" "$secs" "$rc" "$identical" "$no_failures" "$dir/output.txt"
    tail -25 "$dir/output.txt" | sed 's/^/    | /'
  fi
done
echo "$passed of $runs identical"
[ "$passed" = "$runs" ]
