#!/usr/bin/env bash
# Fenced cutover under live writes: how long do writes pause, and is any acknowledged write lost?
#   bench/cutover_bench.sh [sqlite3|postgresql] [--cutovers N]     (default: both engines, N=20)
# Starts, on loopback ports in a temp dir, the monolith (--seed 1000: drivers 1001..2000),
# `strangler sync run` + `sync watch`, driver-service and strangler-proxy with the drivers route
# (data "drivers", sticky header X-User-Id, stage canary 50). bench/cutover_load.py sends about
# RATE (default 200) writes/s through the proxy (PUT /api/drivers/{id}/location, each writer
# owning its drivers, lat = 37 + per-driver counter * 1e-5) plus GETs, while the script runs N
# cutovers alternating `routes extract drivers --with-data --json` and `routes rollback drivers
# --json`, GAP_S (default 1) seconds apart. Then the load stops, the sync catches up
# (`sync status` pending 0 both ways), `sync verify` must say identical, and every driver's last
# acknowledged write must be what the proxy serves.
# Prints: write pause p50/max over the cutovers; the anchor, p50/p99 of the acknowledged writes
# outside every cutover command, and the ratio max pause / p99 write; writes sent, acknowledged,
# failed (503 apart) and lost. Exit 1 when a write is lost, a cutover fails, the sync does not
# catch up or verify differs (the work dir is then kept and named).
# Environment: STRANGLER_BUILD_DIR (default ./build), RATE, WRITERS (default 8), GAP_S,
# WARMUP_S (default 2), CAPTURE (auto|logical|trigger: passed to `sync run`/`sync watch` as
# --capture; unset: the build's default), KEEP=1 (keep the work dir), STRANGLER_PG_USER (see
# scripts/pg-throwaway.sh). Needs python3; psql and the PostgreSQL server binaries for postgresql.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${STRANGLER_BUILD_DIR:-$root/build}
case "$build" in /*) ;; *) build=$root/$build ;; esac

engines=()
cutovers=20
while [ $# -gt 0 ]; do
  case "$1" in
    sqlite3|postgresql) engines+=("$1") ;;
    --cutovers) cutovers=${2:?--cutovers N}; shift ;;
    --cutovers=*) cutovers=${1#--cutovers=} ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "usage: bench/cutover_bench.sh [sqlite3|postgresql] [--cutovers N]" >&2; exit 2 ;;
  esac
  shift
done
if [ ${#engines[@]} -ne 1 ]; then
  [ ${#engines[@]} -eq 0 ] && engines=(sqlite3 postgresql)
  rc=0
  for engine in "${engines[@]}"; do "$0" "$engine" --cutovers "$cutovers" || rc=1; done
  exit $rc
fi
engine=${engines[0]}

cli=$build/migrate-cli/strangler
proxy_bin=$build/strangler-proxy/strangler-proxy
monolith_bin=$build/monolith/monolith
service_bin=$build/extracted/driver-service/driver-service
for bin in "$cli" "$proxy_bin" "$monolith_bin" "$service_bin"; do
  [ -x "$bin" ] || { echo "cutover_bench: $bin not built (set STRANGLER_BUILD_DIR)" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "cutover_bench: python3 not found" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/strangler-cutover-bench.XXXXXX")
pg_dir=""
pids=()
keep=${KEEP:-0}
load_pid=""
cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$pg_dir" ]; then "$root/scripts/pg-throwaway.sh" stop "$pg_dir" || true; rm -rf "$pg_dir"; fi
  if [ "$keep" = 1 ]; then echo "cutover_bench: logs and databases kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "cutover_bench[$engine]: $*" >&2; }
# wait_line FILE REGEX [SECONDS]: prints the first matching line of a growing log.
wait_line() {
  local deadline=$((SECONDS + ${3:-30}))
  while [ $SECONDS -lt $deadline ]; do
    if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "cutover_bench: no '$2' in $1 after ${3:-30} s:" >&2; cat "$1" >&2; return 1
}
die() { log "$*"; keep=1; exit 1; }
port_of() { grep -oE '127\.0\.0\.1:[0-9]+' | head -1 | cut -d: -f2; }

if [ "$engine" = postgresql ]; then
  command -v psql >/dev/null || { echo "cutover_bench: psql not found" >&2; exit 1; }
  pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/strangler-cutover-pg.XXXXXX")
  dsn=$("$root/scripts/pg-throwaway.sh" start "$pg_dir")
  psql -q "$dsn" -c 'CREATE DATABASE bench_monolith' -c 'CREATE DATABASE bench_drivers'
  base=${dsn% dbname=postgres}
  monolith_db="postgresql://$base dbname=bench_monolith"
  service_db="postgresql://$base dbname=bench_drivers"
else
  monolith_db="sqlite3://db=$work/monolith.db"
  service_db="sqlite3://db=$work/drivers.db"
fi
sync_args=(--from "$monolith_db" --to "$service_db")

"$monolith_bin" --listen 127.0.0.1:0 --db "$monolith_db" --seed 1000 >"$work/monolith.log" 2>&1 &
pids+=($!)
monolith_port=$(wait_line "$work/monolith.log" 'listening on http://' 60 | port_of) || die "monolith did not start"
capture_args=()
[ -n "${CAPTURE:-}" ] && capture_args=(--capture "$CAPTURE")  # builds with `sync --capture` only
"$cli" sync run "${sync_args[@]}" "${capture_args[@]}" >"$work/sync-run.log" 2>&1 || { cat "$work/sync-run.log" >&2; die "sync run failed"; }
"$cli" sync watch "${sync_args[@]}" "${capture_args[@]}" --status-listen 127.0.0.1:0 >"$work/sync-watch.log" 2>&1 &
pids+=($!)
wait_line "$work/sync-watch.log" 'sync status on' >/dev/null || die "sync watch did not start"
for _ in $(seq 200); do  # the watch holds the single-writer lease once it applies
  "$cli" sync status "${sync_args[@]}" --json 2>/dev/null | grep -q '"lease":{' && break
  sleep 0.05
done
"$service_bin" --listen 127.0.0.1:0 --db "$service_db" --monolith "http://127.0.0.1:$monolith_port" \
  >"$work/driver-service.log" 2>&1 &
pids+=($!)
service_port=$(wait_line "$work/driver-service.log" 'listening on http://' | port_of) || die "driver-service did not start"

config=$work/strangler.json
cat >"$config" <<JSON
{ "listen": "127.0.0.1:0",
  "admin": { "listen": "127.0.0.1:0", "token_env": "STRANGLER_BENCH_ADMIN_TOKEN" },
  "debug_headers": true,
  "upstreams": {
    "monolith":       { "endpoints": ["127.0.0.1:$monolith_port"] },
    "driver-service": { "endpoints": ["127.0.0.1:$service_port"] } },
  "default_upstream": "monolith",
  "routes": [ { "name": "drivers", "match": { "path": "/api/drivers/**", "methods": ["GET", "PUT"] },
                "target": "driver-service", "stage": "canary", "percent": 50,
                "data": "drivers", "sticky": { "header": "X-User-Id" } } ] }
JSON
export STRANGLER_BENCH_ADMIN_TOKEN=bench-$RANDOM$RANDOM
"$proxy_bin" --config "$config" >"$work/proxy.log" 2>&1 &
pids+=($!)
line=$(wait_line "$work/proxy.log" 'strangler-proxy listening on') || die "strangler-proxy did not start"
proxy_port=$(echo "$line" | grep -oE 'http://127\.0\.0\.1:[0-9]+' | sed -n 1p | cut -d: -f3)
admin_port=$(echo "$line" | grep -oE 'admin http://127\.0\.0\.1:[0-9]+' | cut -d: -f3)
admin=(--config "$config" --admin "http://127.0.0.1:$admin_port")
log "monolith :$monolith_port, driver-service :$service_port, proxy :$proxy_port (admin :$admin_port), $(nproc) cores"
capture=$("$cli" sync status "${sync_args[@]}" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("capture", "not reported"))' 2>/dev/null || echo '?')
log "change capture: $capture"
log "source $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -n "$(git -C "$root" status --porcelain -uno 2>/dev/null)" ] && echo ' + uncommitted changes'), strangler built $(date -r "$cli" '+%F %T')"

python3 "$root/bench/cutover_load.py" load --port "$proxy_port" --out "$work/load.json" \
  --rate "${RATE:-200}" --writers "${WRITERS:-8}" >"$work/load.log" 2>&1 &
load_pid=$!
sleep "${WARMUP_S:-2}"

log "$cutovers cutovers, ${GAP_S:-1} s apart, under ${RATE:-200} writes/s"
failed=0
: >"$work/cutovers.tsv"
for i in $(seq "$cutovers"); do
  if [ $((i % 2)) = 1 ]; then
    kind=extract; cmd=(routes extract drivers --with-data "${sync_args[@]}" --json)
  else
    kind=rollback; cmd=(routes rollback drivers --json)
  fi
  out=$work/cutover-$i.out
  t0=$EPOCHREALTIME
  rc=0; "$cli" "${admin[@]}" "${cmd[@]}" >"$out" 2>&1 || rc=$?
  t1=$EPOCHREALTIME
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$kind" "$t0" "$t1" "$rc" "$out" >>"$work/cutovers.tsv"
  if [ "$rc" != 0 ]; then
    log "cutover #$i ($kind) failed with exit $rc:"; cat "$out" >&2
    failed=1; break
  fi
  sleep "${GAP_S:-1}"
done

kill -TERM "$load_pid"
wait "$load_pid" || { cat "$work/load.log" >&2; die "load generator failed"; }
load_pid=""

caught_up=0
for _ in $(seq 600); do  # up to about 60 s
  status=$("$cli" sync status "${sync_args[@]}" --json 2>/dev/null || true)
  if echo "$status" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d.get("pending_changes")==0 and d.get("reverse_pending",0)==0 else 1)' 2>/dev/null; then
    caught_up=1; break
  fi
  sleep 0.1
done
[ "$caught_up" = 1 ] || log "the sync did not catch up: $status"
verify_rc=0
"$cli" sync verify "${sync_args[@]}" --json >"$work/verify.json" 2>"$work/verify.err" || verify_rc=$?

report_rc=0
python3 "$root/bench/cutover_load.py" report --engine "$engine" --load "$work/load.json" \
  --cutovers "$work/cutovers.tsv" --proxy "$proxy_port" --monolith "$monolith_port" \
  --service "$service_port" --verify "$work/verify.json" --verify-rc "$verify_rc" \
  --caught-up "$caught_up" || report_rc=$?
if [ "$report_rc" != 0 ] || [ "$failed" != 0 ]; then keep=1; exit 1; fi
