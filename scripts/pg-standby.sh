#!/usr/bin/env bash
# A private Postgres primary and a hot standby streaming from it, for tests and local trials:
# the machine's own Postgres is not touched.
#
#   scripts/pg-standby.sh start DIR
#       initdb's a primary into DIR/primary (trust auth, replication allowed from 127.0.0.1),
#       starts it on a free port, clones it with `pg_basebackup -R` into DIR/standby, starts that
#       on another free port, waits until the standby streams, and prints the two ports
#       ("PRIMARY STANDBY") on the last line.
#   scripts/pg-standby.sh stop-standby DIR
#       stops the standby at once (immediate), as a crash would; the primary goes on.
#   scripts/pg-standby.sh stop DIR
#       stops both at once (immediate) and removes DIR.
#
# PG_STANDBY_EXTRA_CONF, if set, is appended to both servers' postgresql.conf (`make bench-scale`
# loads pg_stat_statements with it). Postgres refuses to run as root, so as root the servers
# run as the `postgres` user.
set -euo pipefail

usage() { echo "usage: $0 start DIR | stop-standby DIR | stop DIR" >&2; exit 2; }

bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
[ -x "$bindir/initdb" ] || bindir=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() {
  local dir=$1
  [ -x "$bindir/initdb" ] || { echo "Postgres server binaries (initdb) are not installed" >&2; exit 1; }
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  local primary_port standby_port
  primary_port=$(free_port)
  as_owner "$bindir/initdb" -D "$dir/primary" -U postgres --auth=trust >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  echo "host replication all 127.0.0.1/32 trust" >>"$dir/primary/pg_hba.conf"
  cat >>"$dir/primary/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $primary_port
unix_socket_directories = '$dir'
wal_level = replica
max_wal_senders = 4
fsync = off
synchronous_commit = on
full_page_writes = off
${PG_STANDBY_EXTRA_CONF:-}
CONF
  as_owner "$bindir/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w start >/dev/null
  standby_port=$(free_port)
  as_owner "$bindir/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$dir/standby" -R -X stream >"$dir/basebackup.log" 2>&1 \
    || { cat "$dir/basebackup.log" >&2; exit 1; }
  cat >>"$dir/standby/postgresql.conf" <<CONF
port = $standby_port
hot_standby = on
hot_standby_feedback = on
CONF
  as_owner "$bindir/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -w start >/dev/null
  for _ in $(seq 1 100); do
    if [ "$("$bindir/psql" -h 127.0.0.1 -p "$primary_port" -U postgres -Atc "select count(*) from pg_stat_replication where state = 'streaming'" 2>/dev/null)" = 1 ]; then
      echo "$primary_port $standby_port"
      return 0
    fi
    sleep 0.1
  done
  echo "the standby did not start streaming" >&2
  exit 1
}

stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  for node in standby primary; do
    [ -f "$dir/$node/postmaster.pid" ] && as_owner "$bindir/pg_ctl" -D "$dir/$node" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
}

case "${1:-}" in
  start) [ $# -eq 2 ] || usage; start "$2" ;;
  stop-standby) [ $# -eq 2 ] || usage; as_owner "$bindir/pg_ctl" -D "$2/standby" -m immediate stop >/dev/null ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
