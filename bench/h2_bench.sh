#!/usr/bin/env bash
# HTTP/2 benchmark: h2load (nghttp2-client) against the same tiny HTTP/1.1 backend behind three
# proxies that end HTTP/2 over TLS, one worker each, the same ECDSA P-256 certificate: nginx
# (listen ... ssl http2, upstream keepalive), HAProxy (bind ... ssl alpn h2, connection reuse)
# and strangler-proxy (its "tls" listener, ALPN h2), interleaved round by round.
#   bench/h2_bench.sh [BUILD_DIR]        (default: ./build)
# Environment: ROUNDS (default 3), DURATION (h2load -D seconds, default 5).
# Prints medians of the rounds for HTTP/2 requests/s with 1 connection x 1 stream (latency bound)
# and 8 connections x 32 streams each (throughput), each with its ratio to nginx and HAProxy
# from the same run, and the failed requests. Needs nginx, haproxy, h2load, openssl, python3.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
proxy_bin=$build/strangler-proxy/strangler-proxy
rounds=${ROUNDS:-3}
duration=${DURATION:-5}
[ -x "$proxy_bin" ] || { echo "h2_bench: build strangler-proxy first ($proxy_bin)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/strangler-h2-bench.XXXXXX")
source "$root/bench/bench_lib.sh"
require_tools nginx haproxy h2load openssl python3
tls_backend_and_strangler
nginx_port=$(free_port)
haproxy_port=$(free_port)

nginx_conf nginx "upstream backend { server 127.0.0.1:$backend_port; keepalive 256; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$nginx_port ssl http2; keepalive_requests 1000000;
    http2_max_concurrent_streams 100;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
haproxy_start 1 "$haproxy_port" "$backend_port" "ssl crt $work/haproxy.pem alpn h2,http/1.1"
for port in "$backend_port" "$nginx_port" "$strangler_tls_port" "$haproxy_port"; do wait_port "$port"; done

path=/api/drivers/7
declare -A urls=([nginx]="https://127.0.0.1:$nginx_port$path"
                 [haproxy]="https://127.0.0.1:$haproxy_port$path"
                 [strangler]="https://127.0.0.1:$strangler_tls_port$path")
targets="nginx haproxy strangler"
for target in $targets; do h2load -c 2 -m 8 -n 2000 "${urls[$target]}" >/dev/null; done  # warm up

echo "h2_bench: $rounds rounds x ${duration}s, one worker each, $(nproc) cores" >&2
for round in $(seq "$rounds"); do
  for target in $targets; do
    h2load -t 1 -c 1 -m 1 -D "$duration" "${urls[$target]}" >"$work/$target-c1-$round.txt"
    h2load -t 1 -c 8 -m 32 -D "$duration" "${urls[$target]}" >"$work/$target-c8m32-$round.txt"
  done
  echo "h2_bench: round $round done" >&2
done

python3 "$root/bench/h2load_table.py" "$work" "$rounds" "req/s" "HTTP/2"
