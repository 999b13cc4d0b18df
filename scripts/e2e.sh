#!/usr/bin/env bash
# `make test-e2e`: the dashboard in headless Chromium (Debian's package, driven by
# playwright-core from npm) against a seeded server built from this tree. Screenshots go to
# target/e2e/.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "Chromium is needed at $chromium: apt-get install chromium (or set CHROMIUM=/path/to/chrome)" >&2
    exit 1
  fi
fi
(cd e2e && npm ci --no-audit --no-fund --silent)

db="analytics_e2e_$$"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
export REDIS_URL=redis://127.0.0.1:6379 CACHE_PREFIX="e2e-$$" APP_ADDR=127.0.0.1:0 RUST_LOG=warn
bin=target/debug/analytics
cargo build --quiet
"$bin" migrate
"$bin" seed --users 200 --events 20000 --days 60 --seed 7
token=$("$bin" keys create --name e2e --role admin)
log=$(mktemp)
LOG_FORMAT=json RUST_LOG=info "$bin" serve --no-migrate >"$log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  psql -q -h 127.0.0.1 -U postgres -c "drop database if exists $db with (force)" postgres >/dev/null 2>&1 || true
  redis-cli --scan --pattern "e2e-$$:*" | xargs -r redis-cli del >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  addr=$(grep -o '"address":"[^"]*"' "$log" | head -n1 | cut -d'"' -f4 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "${addr:-}" ] || { cat "$log"; echo "the server did not start" >&2; exit 1; }

cd e2e
BASE_URL="http://$addr" TOKEN="$token" CHROMIUM="$chromium" SCREENSHOT_DIR=../target/e2e node --test
