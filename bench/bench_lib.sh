# Shared by the wrk benchmarks (sourced): process cleanup, free ports, throwaway nginx servers.
# Expects $work (a temp dir, removed on exit) to be set by the caller.
# Fails with a hint when one of the named tools is missing.
require_tools() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found (scripts/install-deps.sh)" >&2; exit 1; }
  done
}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${RAW_DIR:-}" ]; then mkdir -p "$RAW_DIR" && cp "$work"/*.txt "$RAW_DIR"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: nothing listens on port $1" >&2; exit 1
}

# HAProxy in front of 127.0.0.1:BACKEND_PORT on 127.0.0.1:PORT with THREADS threads and kept-alive
# backend connections; BIND_OPTIONS (e.g. "ssl crt FILE") go on its bind line, SERVER_OPTIONS
# (e.g. "proto h2") on its server line. Sets haproxy_pid.
haproxy_start() {  # THREADS PORT BACKEND_PORT [BIND_OPTIONS] [SERVER_OPTIONS]
  cat >"$work/haproxy.cfg" <<CONF
global
  nbthread $1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend front
  bind 127.0.0.1:$2 ${4:-}
  default_backend back
backend back
  server tiny 127.0.0.1:$3 ${5:-}
CONF
  haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
  haproxy_pid=$!
  pids+=($haproxy_pid)
}

nginx_conf() {  # NAME SERVER_BLOCK (worker processes: $nginx_workers, default 1, for this call)
  mkdir -p "$work/$1"
  cat >"$work/$1/nginx.conf" <<CONF
worker_processes ${nginx_workers:-1};
daemon off;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/$1/body;
  proxy_temp_path $work/$1/proxy;
  fastcgi_temp_path $work/$1/fastcgi;
  uwsgi_temp_path $work/$1/uwsgi;
  scgi_temp_path $work/$1/scgi;
  $2
}
CONF
  ${nginx_launcher:-} nginx -p "$work/$1" -c "$work/$1/nginx.conf" &
  nginx_launcher=""
  nginx_workers=""
  pids+=($!)
}


# What the HTTPS benchmarks share: an ECDSA P-256 certificate for 127.0.0.1 ($work/cert.pem,
# $work/key.pem, and both in $work/haproxy.pem), the tiny nginx backend, and strangler-proxy
# ($proxy_bin, one worker) with its "tls" listener routing to it. Sets backend_port and
# strangler_tls_port.
tls_backend_and_strangler() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"
  backend_port=$(free_port)
  strangler_tls_port=$(free_port)
  nginx_conf backend "server { listen 127.0.0.1:$backend_port; keepalive_requests 1000000;
    location / { default_type application/json; return 200 '{\"id\":7,\"name\":\"tiny\",\"ok\":true}'; } }"
  cat >"$work/strangler.json" <<CONF
{ "listen": "127.0.0.1:$(free_port)", "admin": { "listen": "127.0.0.1:0" },
  "tls": { "listen": "127.0.0.1:$strangler_tls_port", "cert_file": "$work/cert.pem",
           "key_file": "$work/key.pem" },
  "upstreams": {
    "monolith": { "endpoints": ["127.0.0.1:$backend_port"], "max_idle_connections": 256 },
    "service":  { "endpoints": ["127.0.0.1:$backend_port"], "max_idle_connections": 256 } },
  "default_upstream": "monolith",
  "routes": [ { "name": "drivers", "match": { "path": "/api/drivers/**" }, "target": "service",
                "stage": "extracted" } ] }
CONF
  "$proxy_bin" --config "$work/strangler.json" --workers 1 >"$work/strangler.log" 2>&1 &
  pids+=($!)
}
