# Sourced by the scripts that run a built `analytics serve` on a free port for an outside client
# (fuzz, e2e, client, observability, bench), and tidy up after it.

# The Postgres and Redis the scripts use: the variables the Rust tests read, with the same
# defaults (the services `scripts/services.sh` starts).
admin_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
test_redis_url=${TEST_REDIS_URL:-redis://127.0.0.1:6379}

# database_url NAME: the URL of database NAME on that Postgres.
database_url() {
  echo "${admin_url%/*}/$1"
}

# debian_package PACKAGE PROGRAM: installs PACKAGE from Debian's packages when PROGRAM (a name
# on PATH or a path) is missing, as root; otherwise says what to install and fails.
debian_package() {
  if command -v "$2" >/dev/null 2>&1 || [ -x "$2" ]; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $1 from Debian's packages" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  else
    echo "$2 is needed: apt-get install $1" >&2
    return 1
  fi
}

# start_server BIN: starts it (settings from the environment) and sets $addr to host:port.
start_server() {
  server_log=$(mktemp)
  LOG_FORMAT=json RUST_LOG=${SERVER_RUST_LOG:-info} "$1" serve --no-migrate >"$server_log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    addr=$(grep -o '"address":"[^"]*"' "$server_log" | head -n1 | cut -d'"' -f4 || true)
    [ -n "$addr" ] && return 0
    sleep 0.1
  done
  cat "$server_log" >&2
  echo "the server did not start" >&2
  return 1
}

stop_server() {
  [ -n "${server_pid:-}" ] || return 0
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}

# drop_database NAME / clear_prefix PREFIX: remove what a throwaway run created.
drop_database() {
  psql -q "$admin_url" -c "drop database if exists $1 with (force)" >/dev/null 2>&1 || true
}

clear_prefix() {
  # Keys are "{PREFIX}:…" (a Redis Cluster hash tag).
  redis-cli -u "$test_redis_url" --scan --pattern "{$1}:*" | xargs -r redis-cli -u "$test_redis_url" del >/dev/null 2>&1 || true
}

# bench_database BIN EVENTS [USERS]: migrates $DATABASE_URL and brings it back to the EVENTS
# seeded events of `make bench` from USERS users (default 20,000; deterministic, about 15 s to
# reseed a million events), then vacuums and checkpoints, so every run measures the same data
# and neither lands in the middle of a measurement. The write scenarios of a previous run leave
# their rows behind; this is what removes them.
bench_database() {
  local bin=$1 events=$2 users=${3:-20000} db=${DATABASE_URL##*/}
  "$bin" migrate
  local have
  have=$(psql -tA -h 127.0.0.1 -U postgres -d "$db" -c "select count(*) from activities")
  if [ "$have" -ne "$events" ]; then
    psql -q -h 127.0.0.1 -U postgres -d "$db" -c "truncate activities"
    "$bin" seed --users "$users" --events "$events" --days 90 --seed 1
  fi
  psql -q -h 127.0.0.1 -U postgres -d "$db" -c "vacuum analyze" -c "checkpoint"
}
