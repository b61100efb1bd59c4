#!/usr/bin/env bash
# The fault and abuse suite (RELIABILITY.md): the real proxy with its target SIGKILLed under
# load, reload storms, hostile HTTP, the admin API; the sync job SIGKILLed mid-snapshot and
# mid-watch; the libFuzzer targets. Prints every figure and a table of them at the end.
#
#   scripts/fault-suite.sh [--full] [--no-fuzz]
#
# The short form (the default) is what ctest runs, plus 20 s per fuzz target; --full puts more
# load and time on every test (32 connections, 500 reloads...) and fuzzes 5 minutes per target.
# PostgreSQL figures of the sync test are included when STRANGLER_PG_DSN is set.
set -euo pipefail
cd "$(dirname "$0")/.."
full=0
fuzz=1
for arg in "$@"; do
  case "$arg" in
    --full) full=1 ;;
    --no-fuzz) fuzz=0 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "fault-suite: unknown option $arg" >&2; exit 2 ;;
  esac
done
build_dir=${STRANGLER_BUILD_DIR:-build}
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build_dir" -j "$(nproc)" --target fault_test sync_kill_test strangler strangler-proxy

status=0
work=$(mktemp -d "${TMPDIR:-/tmp}/strangler-fault.XXXXXX")
trap '[ "$status" = 0 ] && rm -rf "$work"' EXIT
export STRANGLER_FAULT_REPORT="$work/figures.jsonl"
[ "$full" = 1 ] && export STRANGLER_FAULT_FULL=1

# Runs one step, keeping its output in the work folder; shows the figures and any failure.
step() {
  local name=$1
  shift
  echo "== $name"
  if "$@" >"$work/$name.log" 2>&1; then
    grep '^FIGURE' "$work/$name.log" || true
  else
    status=1
    grep -E '^FIGURE|Failure|FAILED|Expected|Which is|actual' "$work/$name.log" | head -60 || true
    echo "!! $name failed; full output in $work/$name.log"
  fi
}

step proxy "$build_dir/tests/fault/fault_test"
sync_filter='*sqlite3*'
[ -n "${STRANGLER_PG_DSN:-}" ] && sync_filter='*'
step sync "$build_dir/tests/acl/sync_kill_test" --gtest_filter="$sync_filter"
if [ "$fuzz" = 1 ]; then
  seconds=20
  [ "$full" = 1 ] && seconds=300
  step fuzz fuzz/run.sh --time "$seconds"
fi

echo
python3 - "$STRANGLER_FAULT_REPORT" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("| figure | value | goal | what |")
print("| --- | ---: | --- | --- |")
for r in rows:
    value = r["value"]
    text = str(int(value)) if float(value).is_integer() else f"{value:.1f}"
    print(f"| {r['name']} | {text} | {r['goal']} | {r['what']} |")
PY
[ "$status" = 0 ] && echo "fault-suite: all passed" || echo "fault-suite: FAILURES (see above)"
exit "$status"
