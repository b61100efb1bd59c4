#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with ctest.
# PostgreSQL suites use STRANGLER_PG_DSN when set; otherwise a throwaway cluster is started on a
# loopback port for the run (needs root or a user allowed to run PostgreSQL) and stopped after.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/install-deps.sh
scripts/build.sh
build_dir=${STRANGLER_BUILD_DIR:-build}

pg_dir=""
# The trap runs after the cd into the build dir below: paths from the repository's root.
cleanup() { [ -n "$pg_dir" ] && "$root/scripts/pg-throwaway.sh" stop "$pg_dir"; [ -n "$pg_dir" ] && rm -rf "$pg_dir"; return 0; }
trap cleanup EXIT
if [ -z "${STRANGLER_PG_DSN:-}" ]; then
  pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/strangler-pg.XXXXXX")
  if STRANGLER_PG_DSN=$(scripts/pg-throwaway.sh start "$pg_dir"); then
    export STRANGLER_PG_DSN
    echo "test: throwaway PostgreSQL at $STRANGLER_PG_DSN"
  else
    echo "test: could not start PostgreSQL; its suites will be skipped" >&2
    unset STRANGLER_PG_DSN
  fi
fi

cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" "$@"
