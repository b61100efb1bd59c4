#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and starts the RideShare monolith on an
# embedded SQLite database with seeded demo data. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build_dir=${STRANGLER_BUILD_DIR:-build}
workdir=${STRANGLER_WORKDIR:-run}
mkdir -p "$workdir"
listen=${STRANGLER_LISTEN:-127.0.0.1:8081}
echo "Starting the RideShare monolith (SQLite: $workdir/monolith.db)."
echo "Try:  curl -s http://$listen/api/drivers/nearby?lat=37.5665\&lng=126.978\&radius_km=3"
exec "$build_dir/monolith/monolith" --listen "$listen" --db "sqlite3://db=$workdir/monolith.db" --seed 1000
