#!/usr/bin/env bash
# `make test-e2e`: the dashboard in headless Chromium (Debian's package, driven by
# playwright-core from npm) against a seeded server built from this tree. Screenshots go to
# target/e2e/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

chromium=${CHROMIUM:-/usr/bin/chromium}
debian_package chromium "$chromium"
(cd e2e && npm ci --no-audit --no-fund --silent)

db="analytics_e2e_$$"
export DATABASE_URL=$(database_url "$db")
export REDIS_URL=$test_redis_url CACHE_PREFIX="e2e-$$" APP_ADDR=127.0.0.1:0 RUST_LOG=warn
bin=${CARGO_TARGET_DIR:-target}/debug/analytics
# --all-targets: the same feature set as `make test`, so after it this builds nothing.
cargo build --quiet --all-targets
cleanup() {
  stop_server
  drop_database "$db"
  clear_prefix "e2e-$$"
}
trap cleanup EXIT
"$bin" migrate
"$bin" seed --users 200 --events 20000 --days 60 --seed 7
token=$("$bin" keys create --name e2e --role admin)
start_server "$bin"

cd e2e
BASE_URL="http://$addr" TOKEN="$token" CHROMIUM="$chromium" SCREENSHOT_DIR=../target/e2e node --test
