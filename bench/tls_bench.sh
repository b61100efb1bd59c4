#!/usr/bin/env bash
# HTTPS benchmark: the same tiny backend behind three TLS-terminating proxies, each with one
# worker and the same ECDSA P-256 certificate: nginx (ssl listener, upstream keepalive), HAProxy
# (bind ... ssl, connection reuse) and strangler-proxy (its "tls" listener), interleaved round
# by round.
#   bench/tls_bench.sh [BUILD_DIR]        (default: ./build)
# Environment: ROUNDS (default 3), DURATION (wrk -d, default 5s), RAW_DIR (keep raw outputs).
# Prints medians of the rounds for HTTPS requests/s over kept-alive connections (-c1, -c64) and
# for new connections (-c16 with "Connection: close": a full TLS handshake per request, so
# handshakes/s), each with its ratio to nginx and HAProxy from the same run. Needs nginx,
# haproxy, wrk, openssl and python3.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
proxy_bin=$build/strangler-proxy/strangler-proxy
rounds=${ROUNDS:-3}
duration=${DURATION:-5s}
[ -x "$proxy_bin" ] || { echo "tls_bench: build strangler-proxy first ($proxy_bin)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/strangler-tls-bench.XXXXXX")
source "$root/bench/bench_lib.sh"
require_tools nginx haproxy wrk openssl python3
tls_backend_and_strangler
nginx_port=$(free_port)
haproxy_port=$(free_port)

nginx_conf nginx "upstream backend { server 127.0.0.1:$backend_port; keepalive 256; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$nginx_port ssl; keepalive_requests 1000000;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
haproxy_start 1 "$haproxy_port" "$backend_port" "ssl crt $work/haproxy.pem"
for port in "$backend_port" "$nginx_port" "$strangler_tls_port" "$haproxy_port"; do wait_port "$port"; done

path=/api/drivers/7
declare -A urls=([nginx]="https://127.0.0.1:$nginx_port$path"
                 [haproxy]="https://127.0.0.1:$haproxy_port$path"
                 [strangler]="https://127.0.0.1:$strangler_tls_port$path")
targets="nginx haproxy strangler"
for target in $targets; do wrk -t1 -c4 -d1s "${urls[$target]}" >/dev/null; done  # warm up

echo "tls_bench: $rounds rounds x $duration, one worker each, $(nproc) cores" >&2
for round in $(seq "$rounds"); do
  for target in $targets; do
    wrk -t1 -c1 -d"$duration" "${urls[$target]}" >"$work/$target-c1-$round.txt"
    wrk -t2 -c64 -d"$duration" "${urls[$target]}" >"$work/$target-c64-$round.txt"
    wrk -t2 -c16 -d"$duration" -H "Connection: close" "${urls[$target]}" \
      >"$work/$target-new-$round.txt"
  done
  echo "tls_bench: round $round done" >&2
done

python3 - "$work" "$rounds" <<'PY'
import re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
targets = ("nginx", "haproxy", "strangler")
def parse(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    return rps, int(bad.group(1)) if bad else 0, sock.group(1).strip() if sock else ""
print(f"{'target':<10} {'-c1 req/s':>10} {'-c64 req/s':>11} {'new conn/s (-c16)':>18} {'non-2xx':>8}")
res = {}
for t in targets:
    row = []
    bad = 0
    for mode in ("c1", "c64", "new"):
        runs = [parse(f"{work}/{t}-{mode}-{r}.txt") for r in range(1, rounds + 1)]
        row.append(statistics.median(x[0] for x in runs))
        bad += sum(x[1] for x in runs)
    res[t] = row
    print(f"{t:<10} {row[0]:>10.0f} {row[1]:>11.0f} {row[2]:>18.0f} {bad:>8}")
for anchor in ("nginx", "haproxy"):
    s, a = res["strangler"], res[anchor]
    print(f"ratio strangler/{anchor}: HTTPS -c1 {s[0]/a[0]:.2f}, -c64 {s[1]/a[1]:.2f}, "
          f"new connections {s[2]/a[2]:.2f}")
PY
