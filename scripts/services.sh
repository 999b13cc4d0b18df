#!/usr/bin/env bash
# Makes sure Postgres and Redis answer on the addresses in .env (or the defaults):
# uses them where they already run, else starts them with `docker compose` where Docker
# runs, else with local server binaries, else says exactly what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_host=127.0.0.1; pg_port=5432; redis_port=6379

answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_for() {
  for _ in $(seq 1 60); do answers "$1" "$2" && return 0; sleep 0.5; done
  echo "$3 did not come up on $1:$2" >&2; return 1
}

start_postgres() {
  if answers $pg_host $pg_port; then echo "postgres: already answering on $pg_host:$pg_port"; return; fi
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "postgres: starting with docker compose"; docker compose up -d postgres
  elif command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    echo "postgres: starting the local cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  elif command -v pg_ctl >/dev/null; then
    data=${PGDATA:-$PWD/target/pgdata}
    [ -d "$data" ] || { initdb -D "$data" -U postgres --auth=trust >/dev/null; }
    echo "postgres: starting pg_ctl in $data"; pg_ctl -D "$data" -l "$data/log" -o "-p $pg_port -k /tmp" start
  else
    echo "postgres is not running and cannot be started here. Install Docker, or Postgres 15+" >&2
    echo "  (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@15)," >&2
    echo "  with user 'postgres' allowed to connect from 127.0.0.1 without a password." >&2
    exit 1
  fi
  wait_for $pg_host $pg_port postgres
}

start_redis() {
  if answers 127.0.0.1 $redis_port; then echo "redis: already answering on 127.0.0.1:$redis_port"; return; fi
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "redis: starting with docker compose"; docker compose up -d redis
  elif command -v redis-server >/dev/null; then
    echo "redis: starting redis-server"
    redis-server --daemonize yes --bind 127.0.0.1 --port $redis_port --save "" --appendonly no >/dev/null
  else
    echo "redis is not running and cannot be started here. Install Docker, or Redis 7" >&2
    echo "  (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)." >&2
    exit 1
  fi
  wait_for 127.0.0.1 $redis_port redis
}

start_postgres
start_redis
