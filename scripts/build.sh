#!/usr/bin/env bash
# Configures (once) and builds everything into ./build (or $STRANGLER_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${STRANGLER_BUILD_DIR:-build}
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build_dir" -j "$(nproc)"
