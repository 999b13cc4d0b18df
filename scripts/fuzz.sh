#!/usr/bin/env bash
# `make fuzz` (and, shorter, `make test`): runs schemathesis (from PyPI) against a running server
# built from this tree, with an admin token, on a throwaway database. Fails on any 5xx or any
# response that breaks the OpenAPI document. Deterministic (`--seed 1`); FUZZ_EXAMPLES sets the
# depth. The stateful phase chains calls through the links schemathesis learns from `Location`
# headers (create, then read, patch and delete what was created).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

venv=target/fuzz-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi

db="analytics_fuzz_$$"
export DATABASE_URL=$(database_url "$db")
export REDIS_URL=$test_redis_url CACHE_PREFIX="fuzz-$$" APP_ADDR=127.0.0.1:0
export RATE_LIMIT_PER_SECOND=100000 RATE_LIMIT_BURST=100000 RUST_LOG=warn
bin=${CARGO_TARGET_DIR:-target}/debug/analytics
# --all-targets: the same feature set as `make test`, so after it this builds nothing.
cargo build --quiet --all-targets
cleanup() {
  stop_server
  drop_database "$db"
  clear_prefix "fuzz-$$"
}
trap cleanup EXIT
"$bin" migrate
token=$("$bin" keys create --name fuzz --role admin)
start_server "$bin"

"$venv/bin/schemathesis" run "http://$addr/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "${FUZZ_EXAMPLES:-100}" \
  --seed 1
