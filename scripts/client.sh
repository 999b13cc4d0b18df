#!/usr/bin/env bash
# `make test-client`: the typed TypeScript client (clients/typescript) against a live, seeded
# server. Fails when the committed generated types differ from what the server's /openapi.json
# generates now (run `npm run generate` there with the server up), then compiles and runs the
# client's tests on Node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v npm >/dev/null || { echo "Node.js and npm are needed for the client test" >&2; exit 1; }
(cd clients/typescript && npm ci --no-audit --no-fund --silent)

db="analytics_client_$$"
export DATABASE_URL=$(database_url "$db")
export REDIS_URL=$test_redis_url CACHE_PREFIX="client-$$" APP_ADDR=127.0.0.1:0 RUST_LOG=warn
bin=${CARGO_TARGET_DIR:-target}/debug/analytics
cargo build --quiet --all-targets
generated=$(mktemp --suffix=.d.ts)
cleanup() {
  stop_server
  drop_database "$db"
  clear_prefix "client-$$"
  rm -f "$generated"
}
trap cleanup EXIT
"$bin" migrate
"$bin" seed --users 200 --events 20000 --days 60 --seed 7
token=$("$bin" keys create --name client --role write)
read_token=$("$bin" keys create --name client-reader --role read)
start_server "$bin"

cd clients/typescript
npx --no-install openapi-typescript "http://$addr/openapi.json" -o "$generated" >/dev/null
if ! diff -u src/schema.d.ts "$generated"; then
  echo "clients/typescript/src/schema.d.ts is out of date with /openapi.json:" >&2
  echo "  cd clients/typescript && OPENAPI_URL=http://127.0.0.1:8080/openapi.json npm run generate" >&2
  exit 1
fi
BASE_URL="http://$addr" TOKEN="$token" READ_TOKEN="$read_token" npm test --silent
