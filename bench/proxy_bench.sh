#!/usr/bin/env bash
# Load benchmark: the same tiny backend measured direct, through nginx (proxy_pass, upstream
# keepalive, 1 worker), through HAProxy (1 thread, connection reuse) and through
# strangler-proxy (1 worker), interleaved round by round.
#   bench/proxy_bench.sh [BUILD_DIR]        (default: ./build)
# Environment: ROUNDS (default 5), DURATION (wrk -d, default 5s), WORKERS (strangler-proxy
# loops, nginx workers and HAProxy threads, default 1), PROBE_REQUESTS (sequential probe, default 20000), RAW_DIR (keep every raw
# output there). Needs nginx, wrk and python3. Prints medians of the rounds: req/s and
# p50/p99 at -c1 and -c64, the ratio to nginx, and RSS at 256 connections; then one run each
# of 1 MiB POST bodies and of 2,000 connections (with RSS), against nginx.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
proxy_bin=$build/strangler-proxy/strangler-proxy
rounds=${ROUNDS:-5}
duration=${DURATION:-5s}
workers=${WORKERS:-1}
[ -x "$proxy_bin" ] || { echo "proxy_bench: build strangler-proxy first ($proxy_bin)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/strangler-bench.XXXXXX")
source "$root/bench/bench_lib.sh"
require_tools nginx haproxy wrk python3
backend_port=$(free_port)
nginx_port=$(free_port)
strangler_port=$(free_port)
haproxy_port=$(free_port)

# The tiny backend: a fixed JSON answer.
nginx_conf backend "server { listen 127.0.0.1:$backend_port; keepalive_requests 1000000; client_max_body_size 0;
  location / { default_type application/json; return 200 '{\"id\":7,\"name\":\"tiny\",\"ok\":true}'; } }"
# nginx as the reverse proxy to compare with (as many workers as strangler-proxy has loops).
nginx_workers=$workers
nginx_conf nginx "upstream backend { server 127.0.0.1:$backend_port; keepalive 256; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$nginx_port; keepalive_requests 1000000; client_max_body_size 0;
    client_body_buffer_size 2m;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
# HAProxy as the other reverse proxy users pick: one thread, kept-alive backend connections.
haproxy_start "$workers" "$haproxy_port" "$backend_port"
# strangler-proxy with a route in front of the same backend (extracted to a second upstream
# name, so the routing path is exercised).
cat >"$work/strangler.json" <<CONF
{ "listen": "127.0.0.1:$strangler_port", "admin": { "listen": "127.0.0.1:0" },
  "upstreams": {
    "monolith": { "endpoints": ["127.0.0.1:$backend_port"], "max_idle_connections": 256 },
    "service":  { "endpoints": ["127.0.0.1:$backend_port"], "max_idle_connections": 256 } },
  "default_upstream": "monolith",
  "routes": [ { "name": "drivers", "match": { "path": "/api/drivers/**" }, "target": "service",
                "stage": "extracted", "fallback": true } ] }
CONF
"$proxy_bin" --config "$work/strangler.json" --workers "$workers" >"$work/strangler.log" 2>&1 &
strangler_pid=$!
pids+=($strangler_pid)
wait_port "$backend_port"; wait_port "$nginx_port"; wait_port "$strangler_port"; wait_port "$haproxy_port"

path=/api/drivers/7
declare -A ports=([direct]=$backend_port [nginx]=$nginx_port [haproxy]=$haproxy_port
                  [strangler]=$strangler_port)
declare -A urls
for target in "${!ports[@]}"; do urls[$target]="http://127.0.0.1:${ports[$target]}$path"; done
targets="direct nginx haproxy strangler"
for target in $targets; do wrk -t1 -c4 -d1s "${urls[$target]}" >/dev/null; done  # warm up

echo "proxy_bench: $rounds rounds x $duration, strangler-proxy workers=$workers, $(nproc) cores" >&2
for round in $(seq "$rounds"); do
  for target in $targets; do
    wrk -t1 -c1 -d"$duration" --latency "${urls[$target]}" >"$work/$target-c1-$round.txt"
    wrk -t2 -c64 -d"$duration" --latency "${urls[$target]}" >"$work/$target-c64-$round.txt"
    python3 "$root/bench/latency_probe.py" "${ports[$target]}" "$path" "${PROBE_REQUESTS:-20000}" \
      >"$work/$target-probe-$round.txt"
  done
  echo "proxy_bench: round $round done" >&2
done

# RSS under 256 (or N) connections: peak resident size sampled while wrk runs.
peak_rss() {  # PID URL [CONNECTIONS]
  local peak=0 connections=${3:-256}
  wrk -t2 -c"$connections" -d"$duration" "$2" >"$work/rss-wrk-$connections.txt" &
  local wrk_pid=$!
  while kill -0 "$wrk_pid" 2>/dev/null; do
    local rss
    rss=$(ps -o rss= -p "$1" | tr -d ' ')
    [ -n "$rss" ] && [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.2
  done
  echo "$peak"
}
nginx_worker=$(pgrep -P "$(cat "$work/nginx/nginx.pid")" | head -1)
rss_strangler=$(peak_rss "$strangler_pid" "${urls[strangler]}")
rss_nginx=$(peak_rss "$nginx_worker" "${urls[nginx]}")
rss_haproxy=$(peak_rss "$haproxy_pid" "${urls[haproxy]}")

python3 - "$work" "$rounds" "$rss_strangler" "$rss_nginx" "$rss_haproxy" <<'PY'
import re, statistics, sys
work, rounds, rss_s, rss_n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rss_h = int(sys.argv[5])
targets = ("direct", "nginx", "haproxy", "strangler")
unit = {"us": 1.0, "ms": 1000.0, "s": 1e6}
def parse(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    pct = {}
    for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        pct[p] = float(v) * unit[u]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    return rps, pct["50"], pct["99"], int(errors.group(1)) if errors else 0, sock.group(1) if sock else ""
res = {}
for t in targets:
    for c in ("c1", "c64"):
        runs = [parse(f"{work}/{t}-{c}-{r}.txt") for r in range(1, rounds + 1)]
        res[t, c] = tuple(statistics.median(x[i] for x in runs) for i in range(3)) + (sum(x[3] for x in runs),)
print(f"{'target':<10} {'-c1 req/s':>10} {'p50 µs':>8} {'p99 µs':>8} {'-c64 req/s':>11} {'p50 µs':>8} {'p99 µs':>8} {'non-2xx':>8}")
for t in targets:
    a, b = res[t, "c1"], res[t, "c64"]
    print(f"{t:<10} {a[0]:>10.0f} {a[1]:>8.0f} {a[2]:>8.0f} {b[0]:>11.0f} {b[1]:>8.0f} {b[2]:>8.0f} {a[3]+b[3]:>8}")
import json
probe = {}
for t in targets:
    runs = [json.load(open(f"{work}/{t}-probe-{r}.txt")) for r in range(1, rounds + 1)]
    probe[t] = {k: statistics.median(x[k] for x in runs) for k in ("p50", "p99", "p999", "max")}
print()
print("sequential probe, one keep-alive connection (monotonic clock, client overhead included):")
print(f"{'target':<10} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9} {'max µs':>8}")
for t in targets:
    p = probe[t]
    print(f"{t:<10} {p['p50']:>8.0f} {p['p99']:>8.0f} {p['p999']:>9.0f} {p['max']:>8.0f}")
print("added by the proxy (probe, p50 / p99 over direct): " + "; ".join(
    f"{t} +{probe[t]['p50']-probe['direct']['p50']:.0f} / +{probe[t]['p99']-probe['direct']['p99']:.0f} µs"
    for t in ("nginx", "haproxy", "strangler")))
d = res["direct", "c1"]
print()
print("added latency at -c1 (p50 over direct): " + ", ".join(
    f"{t} +{res[t, 'c1'][1]-d[1]:.0f} µs" for t in ("nginx", "haproxy", "strangler")))
print("added latency at -c1 (p99 over direct): " + ", ".join(
    f"{t} +{res[t, 'c1'][2]-d[2]:.0f} µs" for t in ("nginx", "haproxy", "strangler")))
for anchor in ("nginx", "haproxy"):
    print(f"throughput ratio strangler/{anchor}: -c1 {res['strangler','c1'][0]/res[anchor,'c1'][0]:.2f}, "
          f"-c64 {res['strangler','c64'][0]/res[anchor,'c64'][0]:.2f}")
print(f"RSS at -c256 (peak): strangler {rss_s/1024:.1f} MiB, nginx worker {rss_n/1024:.1f} MiB, "
      f"haproxy {rss_h/1024:.1f} MiB")
PY

# Large bodies and many connections, one run each after the rounds: 1 MiB POST bodies at -c16
# (nginx buffers a request body before proxying it, in memory with client_body_buffer_size 2m;
# strangler-proxy reads a body of up to 1 MiB whole, streams larger ones), and GETs over
# 2,000 connections with each proxy's peak RSS meanwhile.
ulimit -n 65536 2>/dev/null || true
head -c 1048576 /dev/zero | tr '\0' 'b' >"$work/body.bin"
cat >"$work/post.lua" <<LUA
local f = io.open("$work/body.bin", "rb"); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.headers["Content-Type"] = "application/octet-stream"
LUA
for target in nginx haproxy strangler; do
  wrk -t2 -c16 -d"$duration" -s "$work/post.lua" "${urls[$target]}" >"$work/$target-body.txt"
done
rss_strangler_2k=$(peak_rss "$strangler_pid" "${urls[strangler]}" 2000)
cp "$work/rss-wrk-2000.txt" "$work/strangler-c2000.txt"
rss_nginx_2k=$(peak_rss "$nginx_worker" "${urls[nginx]}" 2000)
cp "$work/rss-wrk-2000.txt" "$work/nginx-c2000.txt"
rss_haproxy_2k=$(peak_rss "$haproxy_pid" "${urls[haproxy]}" 2000)
cp "$work/rss-wrk-2000.txt" "$work/haproxy-c2000.txt"
python3 - "$work" "$rss_strangler_2k" "$rss_nginx_2k" "$rss_haproxy_2k" <<'PY'
import re, sys
work, rss_s, rss_n, rss_h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def rps(path):
    text = open(path).read()
    found = re.search(r"Requests/sec:\s+([\d.]+)", text)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return float(found.group(1)) if found else 0.0, int(bad.group(1)) if bad else 0
body = {t: rps(f"{work}/{t}-body.txt") for t in ("nginx", "haproxy", "strangler")}
conns = {t: rps(f"{work}/{t}-c2000.txt") for t in ("nginx", "haproxy", "strangler")}
rss = {"nginx": rss_n, "haproxy": rss_h, "strangler": rss_s}
ratio = lambda a, b: a / b if b else 0.0
print()
print("1 MiB POST bodies at -c16: " + ", ".join(
    f"{t} {body[t][0]:.0f} req/s (non-2xx {body[t][1]})" for t in body) +
      f"; ratio strangler/nginx {ratio(body['strangler'][0], body['nginx'][0]):.2f}, "
      f"strangler/haproxy {ratio(body['strangler'][0], body['haproxy'][0]):.2f}")
print("2,000 connections: " + ", ".join(
    f"{t} {conns[t][0]:.0f} req/s (RSS {rss[t]/1024:.1f} MiB, non-2xx {conns[t][1]})" for t in conns) +
      f"; ratio strangler/nginx {ratio(conns['strangler'][0], conns['nginx'][0]):.2f}, "
      f"strangler/haproxy {ratio(conns['strangler'][0], conns['haproxy'][0]):.2f}")
PY
