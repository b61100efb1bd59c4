#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (a build directory of their own) and runs each one on
# its seed corpus for a bounded time or number of runs. New inputs go to the build directory;
# the committed seeds (fuzz/corpus/<target>/) are only read. Exits non-zero when a target
# crashes (the input is kept as <build-dir>/artifacts/<target>-crash-*).
#
#   fuzz/run.sh [--build-dir DIR] [--time SECONDS | --runs N] [TARGET...]
#
# Targets: path_router, config, acl_translators, request_path (default: all). Defaults: build-fuzz, 20 s each.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir="$root/build-fuzz"
limit=(-max_total_time=20)
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build_dir=$2; shift 2 ;;
    --time) limit=(-max_total_time="$2"); shift 2 ;;
    --runs) limit=(-runs="$2"); shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(path_router config acl_translators request_path)

cxx=${FUZZ_CXX:-clang++}
if ! command -v "$cxx" >/dev/null; then
  echo "fuzz: $cxx not found (scripts/install-deps.sh installs clang)" >&2
  exit 1
fi
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  CXX=$cxx cmake -S "$root/fuzz" -B "$build_dir" "${generator[@]}" >/dev/null
fi
if ! cmake --build "$build_dir" -j "${FUZZ_JOBS:-2}" >"$build_dir/build.log" 2>&1; then
  grep -E "error|FAILED" "$build_dir/build.log" | head -20 >&2
  echo "fuzz: the build failed (all of it in $build_dir/build.log)" >&2
  exit 1
fi

status=0
for target in "${targets[@]}"; do
  binary="$build_dir/${target}_fuzzer"
  corpus="$build_dir/corpus/$target"
  mkdir -p "$corpus" "$build_dir/artifacts"
  log="$build_dir/$target.log"
  started=$(date +%s)
  if "$binary" "${limit[@]}" -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build_dir/artifacts/$target-" "$corpus" "$root/fuzz/corpus/$target" \
      >"$log" 2>&1; then
    crashes=0
  else
    crashes=1
    status=1
    grep -E "ERROR|runtime error|SUMMARY|^[a-z].*\(input:|Test unit written" "$log" | head -20 >&2 || true
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  elapsed=$(( $(date +%s) - started ))
  echo "FIGURE fuzz.$target.execs = ${execs:-0} (goal: -) - inputs run in ${elapsed} s ($(ls "$corpus" | wc -l) in the corpus)"
  echo "FIGURE fuzz.$target.crashes = $crashes (goal: 0) - crashes, sanitizer reports or failed checks"
  if [ -n "${STRANGLER_FAULT_REPORT:-}" ]; then
    printf '{"name":"fuzz.%s.execs","value":%s,"goal":"-","what":"inputs run in %s s"}\n' \
      "$target" "${execs:-0}" "$elapsed" >>"$STRANGLER_FAULT_REPORT"
    printf '{"name":"fuzz.%s.crashes","value":%s,"goal":"0","what":"crashes, sanitizer reports or failed checks"}\n' \
      "$target" "$crashes" >>"$STRANGLER_FAULT_REPORT"
  fi
done
exit $status
