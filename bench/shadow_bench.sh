#!/usr/bin/env bash
# Shadow cost benchmark: the same wrk load through strangler-proxy with the route in `shadow`
# (every GET copied to the target and compared) and with the route in `monolith` (the anchor:
# a canary at 0%, same router path, no copies), interleaved round by round. The monolith and
# the target are two tiny nginx servers answering the same JSON.
#   bench/shadow_bench.sh [BUILD_DIR]        (default: ./build)
# Environment: ROUNDS (default 5), DURATION (wrk -d, default 5s), CONNECTIONS (default 64),
# WORKERS (proxy loops, default 1), RAW_DIR (keep raw wrk output). Needs nginx, wrk, python3.
# Prints medians: req/s and p50/p99 per mode, the client-visible p99 ratio shadow/anchor
# (goal ≤ 1.1), and the shadow counters (compared, matched, dropped).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
proxy_bin=$build/strangler-proxy/strangler-proxy
rounds=${ROUNDS:-5}
duration=${DURATION:-5s}
connections=${CONNECTIONS:-64}
workers=${WORKERS:-1}
[ -x "$proxy_bin" ] || { echo "shadow_bench: build strangler-proxy first ($proxy_bin)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/strangler-bench.XXXXXX")
source "$root/bench/bench_lib.sh"
require_tools nginx wrk python3 curl

monolith_port=$(free_port)
target_port=$(free_port)
body='{\"id\":7,\"name\":\"tiny\",\"ok\":true}'
# Two backends, as in a deployment: the copies must not queue behind the monolith's own work.
nginx_conf monolith "server { listen 127.0.0.1:$monolith_port; keepalive_requests 1000000;
  location / { default_type application/json; return 200 '$body'; } }"
# The target stands in for a service on another host: it runs at idle CPU priority (chrt -i), so
# what is measured is the proxy's own cost of shadowing, not two servers sharing two cores.
nginx_launcher="chrt -i 0"
nginx_conf target "server { listen 127.0.0.1:$target_port; keepalive_requests 1000000;
  location / { default_type application/json; return 200 '$body'; } }"

start_proxy() {  # MODE STAGE PORT ADMIN_PORT (runs in this shell, so cleanup kills it)
  local port=$3 admin=$4
  cat >"$work/$1.json" <<CONF
{ "listen": "127.0.0.1:$port", "admin": { "listen": "127.0.0.1:$admin" },
  "upstreams": {
    "monolith": { "endpoints": ["127.0.0.1:$monolith_port"], "max_idle_connections": 256 },
    "service":  { "endpoints": ["127.0.0.1:$target_port"], "max_idle_connections": 256 } },
  "default_upstream": "monolith",
  "routes": [ { "name": "drivers", "match": { "path": "/api/drivers/**" }, "target": "service",
                "stage": "$2" } ] }
CONF
  "$proxy_bin" --config "$work/$1.json" --workers "$workers" >"$work/$1.log" 2>&1 &
  pids+=($!)
}
anchor_port=$(free_port); anchor_admin=$(free_port)
shadow_port=$(free_port); shadow_admin=$(free_port)
start_proxy anchor monolith "$anchor_port" "$anchor_admin"
start_proxy shadow shadow "$shadow_port" "$shadow_admin"
wait_port "$monolith_port"; wait_port "$target_port"; wait_port "$anchor_port"; wait_port "$shadow_port"; wait_port "$shadow_admin"

path=/api/drivers/7
declare -A urls=([anchor]="http://127.0.0.1:$anchor_port$path" [shadow]="http://127.0.0.1:$shadow_port$path")
for mode in anchor shadow; do wrk -t1 -c4 -d1s "${urls[$mode]}" >/dev/null; done  # warm up

echo "shadow_bench: $rounds rounds x $duration at -c$connections, workers=$workers, $(nproc) cores" >&2
for round in $(seq "$rounds"); do
  for mode in anchor shadow; do
    wrk -t2 -c"$connections" -d"$duration" --latency "${urls[$mode]}" >"$work/$mode-$round.txt"
  done
  echo "shadow_bench: round $round done" >&2
done
sleep 1  # let the last copies be compared
curl -s "http://127.0.0.1:$shadow_admin/diffs?route=drivers" >"$work/diffs.json"

python3 - "$work" "$rounds" <<'PY'
import json, re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
unit = {"us": 1.0, "ms": 1000.0, "s": 1e6}
def parse(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    pct = {p: float(v) * unit[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return rps, pct["50"], pct["99"], int(errors.group(1)) if errors else 0
res = {}
for mode in ("anchor", "shadow"):
    runs = [parse(f"{work}/{mode}-{r}.txt") for r in range(1, rounds + 1)]
    res[mode] = [statistics.median(x[i] for x in runs) for i in range(3)] + [sum(x[3] for x in runs)]
print(f"{'mode':<28} {'req/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'non-2xx':>8}")
names = {"anchor": "anchor (stage monolith)", "shadow": "shadow (copy + compare)"}
for mode in ("anchor", "shadow"):
    r = res[mode]
    print(f"{names[mode]:<28} {r[0]:>9.0f} {r[1]:>8.0f} {r[2]:>8.0f} {r[3]:>8}")
c = json.load(open(f"{work}/diffs.json"))["counters"]
print(f"client-visible p99 ratio shadow/anchor: {res['shadow'][2] / res['anchor'][2]:.2f} (goal <= 1.1); "
      f"throughput ratio {res['shadow'][0] / res['anchor'][0]:.2f}")
print(f"shadow copies: compared {c['compared']}, matched {c['matched']}, mismatched {c['mismatched']}, "
      f"dropped {c['dropped']}, target errors {c['target_errors']}")
PY
