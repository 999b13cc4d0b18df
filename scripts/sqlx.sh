#!/usr/bin/env bash
# The compile-time query data in `.sqlx/`: `scripts/sqlx.sh prepare` regenerates it after a query
# or a migration changed; `scripts/sqlx.sh check` (in `make lint`) fails when it is out of date.
# Both compile against a throwaway database migrated from `migrations/`, so what the macros check
# is the schema the migrations make, never a developer's local one. Installs sqlx-cli (crates.io)
# when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

mode=${1:-check}
case $mode in
  prepare) flags=() ;;
  check) flags=(--check) ;;
  *) echo "usage: $0 prepare|check" >&2; exit 2 ;;
esac

if ! cargo sqlx --version >/dev/null 2>&1; then
  echo "installing sqlx-cli from crates.io (about 2 minutes)" >&2
  cargo install sqlx-cli --locked --version 0.9.0 --no-default-features --features postgres,rustls
fi

db="analytics_sqlx_$$"
trap 'drop_database "$db"' EXIT
export DATABASE_URL
DATABASE_URL=$(database_url "$db")
cargo sqlx database create
cargo sqlx migrate run >/dev/null
cargo sqlx prepare "${flags[@]}" -- --all-targets
