#!/usr/bin/env bash
# gRPC-shaped benchmark: HTTP/2 end to end. h2load (nghttp2-client, prior knowledge in clear text)
# sends unary gRPC-framed POSTs (content-type application/grpc, te: trailers, a 16-byte message)
# through three proxies, one worker each, to the same HTTP/2 backend (nghttpd, reading the call
# and answering 16 bytes and the trailer grpc-status: 0): nginx (grpc_pass, upstream
# keepalive), HAProxy (bind ... proto h2, server ... proto h2) and strangler-proxy (its plain
# listener, an upstream with "protocol": "h2"), interleaved round by round.
#   bench/grpc_bench.sh [BUILD_DIR]        (default: ./build)
# Environment: ROUNDS (default 3), DURATION (h2load -D seconds, default 5).
# Prints medians of the rounds for calls/s with 1 connection x 1 stream (latency bound) and
# 8 connections x 32 streams (throughput), each with its ratio to nginx and HAProxy from the
# same run, and the failed calls. Needs nginx, haproxy, h2load, nghttpd, python3.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
proxy_bin=$build/strangler-proxy/strangler-proxy
rounds=${ROUNDS:-3}
duration=${DURATION:-5}
[ -x "$proxy_bin" ] || { echo "grpc_bench: build strangler-proxy first ($proxy_bin)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/strangler-grpc-bench.XXXXXX")
source "$root/bench/bench_lib.sh"
require_tools nginx haproxy h2load nghttpd python3
backend_port=$(free_port)
nginx_port=$(free_port)
haproxy_port=$(free_port)
strangler_port=$(free_port)

# One gRPC message: flag 0, length 11, "hello world".
printf '\0\0\0\0\013hello world' >"$work/call.bin"
mkdir -p "$work/htdocs/bench.Echo"
printf '0000hello there!' >"$work/htdocs/bench.Echo/Call"
nghttpd --no-tls -d "$work/htdocs" --trailer "grpc-status: 0" -a 127.0.0.1 "$backend_port" \
  >"$work/nghttpd.log" 2>&1 &
pids+=($!)
nginx_conf nginx "upstream backend { server 127.0.0.1:$backend_port; keepalive 256; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$nginx_port http2; keepalive_requests 1000000; http2_max_concurrent_streams 100;
    location / { grpc_pass grpc://backend; } }"
haproxy_start 1 "$haproxy_port" "$backend_port" "proto h2" "proto h2"
cat >"$work/strangler.json" <<CONF
{ "listen": "127.0.0.1:$strangler_port", "admin": { "listen": "127.0.0.1:0" },
  "upstreams": {
    "monolith": { "endpoints": ["127.0.0.1:$backend_port"], "max_idle_connections": 256,
                  "protocol": "h2" },
    "echo": { "endpoints": ["127.0.0.1:$backend_port"], "max_idle_connections": 256,
              "protocol": "h2" } },
  "default_upstream": "monolith",
  "routes": [ { "name": "echo", "match": { "path": "/bench.Echo/**" }, "target": "echo",
                "stage": "extracted" } ] }
CONF
"$proxy_bin" --config "$work/strangler.json" --workers 1 >"$work/strangler.log" 2>&1 &
pids+=($!)
for port in "$backend_port" "$nginx_port" "$strangler_port" "$haproxy_port"; do wait_port "$port"; done

path=/bench.Echo/Call
declare -A urls=([nginx]="http://127.0.0.1:$nginx_port$path"
                 [haproxy]="http://127.0.0.1:$haproxy_port$path"
                 [strangler]="http://127.0.0.1:$strangler_port$path")
targets="nginx haproxy strangler"
call=(-d "$work/call.bin" -H "content-type: application/grpc" -H "te: trailers")
for target in $targets; do  # warm up, and a check that calls succeed through each
  h2load -c 2 -m 8 -n 2000 "${call[@]}" "${urls[$target]}" >"$work/$target-warm.txt"
  grep -q "2000 succeeded" "$work/$target-warm.txt" || {
    echo "grpc_bench: calls through $target fail:" >&2; cat "$work/$target-warm.txt" >&2
    cat "$work"/*/error.log "$work"/*.log >&2; exit 1; }
done

echo "grpc_bench: $rounds rounds x ${duration}s, one worker each, $(nproc) cores" >&2
for round in $(seq "$rounds"); do
  for target in $targets; do
    h2load -t 1 -c 1 -m 1 -D "$duration" "${call[@]}" "${urls[$target]}" >"$work/$target-c1-$round.txt"
    h2load -t 1 -c 8 -m 32 -D "$duration" "${call[@]}" "${urls[$target]}" \
      >"$work/$target-c8m32-$round.txt"
  done
  echo "grpc_bench: round $round done" >&2
done

python3 "$root/bench/h2load_table.py" "$work" "$rounds" "calls/s" "gRPC"
