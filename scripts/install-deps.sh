#!/usr/bin/env bash
# Installs every Debian package Strangler needs to build, test and run its demo.
# Idempotent and quiet when everything is already there.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config clang-format
  # libraries
  libpoco-dev libsoci-dev libboost-dev libsqlite3-dev libpq-dev
  nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
  libhttp-parser-dev libssl-dev libnghttp2-dev
  # servers and tools the tests and benchmarks drive for real
  postgresql postgresql-15-wal2json sqlite3 python3 python3-websockets python3-grpcio nginx haproxy wrk openssl curl nghttp2-client nghttp2-server
  # the dashboard's browser test (headless Chromium over the DevTools protocol)
  chromium chromium-driver
  # several proxy replicas sharing their config (tests/etcd: a real 3-member cluster)
  etcd-server etcd-client
  # a second HTTP/1.1 parser as the next hop (Node's llhttp: tests/strangler-proxy/llhttp_*)
  nodejs
  # the fuzz targets (fuzz/run.sh): clang with its libFuzzer and sanitizer runtimes
  clang libclang-rt-dev
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
sudo_cmd=()
[ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "install-deps: done"
fi

# The Kubernetes manifests' check (tests/deploy) validates against the API schemas of an npm
# package, pinned by tests/deploy/package-lock.json. npm is Debian's package unless the installed
# Node.js brought its own (Debian's npm would conflict with such a nodejs).
if ! command -v npm >/dev/null; then
  echo "install-deps: installing npm"
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
modules=$(cd "$(dirname "$0")/../tests/deploy" && pwd)
if [ ! -d "$modules/node_modules/kubernetes-models" ]; then
  echo "install-deps: installing the manifest check's npm modules (tests/deploy)"
  (cd "$modules" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
