#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs the side-by-side demo: the RideShare
# monolith, driver-service, the sync job and strangler-proxy, each a real process on loopback
# with its own SQLite file under ./run/demo, while the drivers route moves through every stage.
# It stays up afterwards with the dashboard's URL printed; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build_dir=${STRANGLER_BUILD_DIR:-build}
workdir=${STRANGLER_WORKDIR:-run/demo}
rm -rf "$workdir"
mkdir -p "$workdir"
exec "$build_dir/migrate-cli/strangler" demo --workdir "$workdir" --keep-running "$@"
