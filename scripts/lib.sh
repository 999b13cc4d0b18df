# Sourced by scripts/fuzz.sh, scripts/e2e.sh and bench/run.sh: run a built `analytics serve`
# on a free port for an outside client, and tidy up after it.

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
  psql -q -h 127.0.0.1 -U postgres -c "drop database if exists $1 with (force)" postgres >/dev/null 2>&1 || true
}

clear_prefix() {
  # Keys are "{PREFIX}:…" (a Redis Cluster hash tag).
  redis-cli --scan --pattern "{$1}:*" | xargs -r redis-cli del >/dev/null 2>&1 || true
}
