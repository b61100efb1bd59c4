#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL cluster on a loopback port for the test suite.
#   scripts/pg-throwaway.sh start DIR   -> prints the libpq DSN (KEY=VALUE) on stdout
#   scripts/pg-throwaway.sh stop DIR
# PostgreSQL refuses to run as root, so the cluster runs as an unprivileged user
# (STRANGLER_PG_USER, default "pgtest"), created when missing.
set -euo pipefail

action=${1:?usage: pg-throwaway.sh start|stop DIR}
dir=${2:?usage: pg-throwaway.sh start|stop DIR}
user=${STRANGLER_PG_USER:-pgtest}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bindir" ] || { echo "pg-throwaway: no PostgreSQL server binaries found" >&2; exit 1; }

as_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

case "$action" in
  start)
    if [ "$(id -u)" = 0 ]; then
      id -u "$user" >/dev/null 2>&1 || useradd -m "$user"
      user_name=$user
    else
      user_name=$(id -un)
    fi
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown "$user" "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
           || echo $((20000 + RANDOM % 20000)))
    as_user "$bindir/initdb" -D "$dir/data" -U "$user_name" --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
    as_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir/data -c fsync=off -c max_connections=300 -c wal_level=logical -c max_replication_slots=128 -c max_wal_senders=16" \
      start >/dev/null
    echo "$port" >"$dir/port"
    echo "host=127.0.0.1 port=$port user=$user_name dbname=postgres"
    ;;
  stop)
    [ -d "$dir/data" ] && as_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: pg-throwaway.sh start|stop DIR" >&2; exit 2 ;;
esac
