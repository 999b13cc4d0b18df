#!/usr/bin/env bash
# `make bench-partitions`: the monthly partitioning of `activities` (migration 8) side by side
# with the unpartitioned table it replaced, on the same 10 million events, in one run:
#
#   1. the release build of BEFORE (default: the last commit without partitions) seeds a fresh
#      database and is measured on it (seed time, cold statistics, keyset pages, lookups, creates);
#   2. the current build migrates that database (timed: what an operator upgrading waits for);
#   3. the current build is measured on the very same rows;
#   4. the current build seeds a database of its own (COPY into partitions), timed.
#
# Writes bench/partitions.json and bench/partitions.md. Takes about 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

debian_package wrk wrk
before=${BEFORE:-c2058ef}
events=${BENCH_SCALE_EVENTS:-10000000}
db_before=analytics_bench_partitions
db_after=analytics_bench_partitions_seed
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379} CACHE_PREFIX="bench-parts-$$" APP_ADDR=127.0.0.1:0
export RATE_LIMIT_PER_SECOND=10000000 RATE_LIMIT_BURST=10000000 RUST_LOG=warn
tmp=$(mktemp -d)
cleanup() {
  stop_server
  clear_prefix "bench-parts-$$"
  git worktree remove --force "$tmp/before" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# Both builds share the target directory, so only this crate is compiled twice.
target=${CARGO_TARGET_DIR:-$PWD/target}
git worktree add --detach "$tmp/before" "$before" >/dev/null
(cd "$tmp/before" && CARGO_TARGET_DIR=$target cargo build --release --quiet)
cp "$target/release/analytics" "$tmp/analytics-before"
CARGO_TARGET_DIR=$target cargo build --release --quiet
cp "$target/release/analytics" "$tmp/analytics-after"

psql_db() { psql -q -tA -h 127.0.0.1 -U postgres -d "$1" "${@:2}"; }

# seed BIN DB: a fresh database of $events events; prints the seconds it took.
seed() {
  drop_database "$2"
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$2" "$1" migrate >/dev/null
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$2" "$1" seed --users 20000 --events "$events" --days 90 --seed 1 2>&1 \
    | grep -o 'in [0-9.]* s' | tail -n1 | tr -dc '0-9.'
  psql_db "$2" -c "vacuum analyze" -c "checkpoint"
}

# median5 URL [curl args]: the median of five request times, in ms.
median5() {
  local url=$1; shift
  for _ in 1 2 3 4 5; do
    curl -s -o /dev/null -w "%{time_total}\n" "$@" "$url"
  done | sort -n | sed -n 3p | awk '{printf "%.1f", $1 * 1000}'
}

# measure BIN DB LABEL: cold statistics, keyset pages, lookups and creates, as JSON lines.
measure() {
  local bin=$1 db=$2 label=$3
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
  local token
  token=$("$bin" keys create --name "bench-parts-$$-$label" --role admin)
  SERVER_RUST_LOG=warn,activity_analytics=info start_server "$bin"
  local base="http://$addr" auth="Authorization: Bearer $token"
  local nc="Cache-Control: no-cache"
  local user id cursor yday
  user=$(curl -sf -H "$auth" "$base/api/v1/stats/top-users?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["user_id"])')
  id=$(curl -sf -H "$auth" "$base/api/v1/activities?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
  # 20 pages in: a cursor from the middle of the newest day.
  cursor=$(curl -sf -H "$auth" "$base/api/v1/activities?limit=1000" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_cursor"])')
  yday=$(date -u -d yesterday +%F)
  {
    for path in summary "timeseries?bucket=day" active-users top-users "timeseries?bucket=month&from=$(date -u -d '-89 days' +%F)" \
        "summary?from=${yday}T22:00:00Z&to=$(date -u +%F)T22:00:00Z"; do
      echo "stats $path $(median5 "$base/api/v1/stats/$path" -H "$auth" -H "$nc")"
    done
    echo "list first_page $(median5 "$base/api/v1/activities?limit=100" -H "$auth")"
    echo "list next_page $(median5 "$base/api/v1/activities?limit=100&cursor=$cursor" -H "$auth")"
    echo "list by_user $(median5 "$base/api/v1/activities?limit=100&user_id=$user" -H "$auth")"
    echo "list by_action $(median5 "$base/api/v1/activities?limit=100&action=purchase" -H "$auth")"
    echo "list last_week $(median5 "$base/api/v1/activities?limit=100&from=$(date -u -d '-7 days' +%F)&to=$(date -u -d '-6 days' +%F)" -H "$auth")"
    echo "get by_id $(median5 "$base/api/v1/activities/$id" -H "$auth")"
  } >"$tmp/$label.txt"
  echo "{\"user_id\":\"$user\",\"action\":\"bench\",\"value\":1.5}" >"$tmp/one.json"
  TOKEN=$token RANDOM_USERS=20000 BODY_FILE="$tmp/one.json" \
    wrk -t2 -c16 -d5s --latency -s bench/post.lua "$base/api/v1/activities" >"$tmp/$label.create"
  echo "create per_second $(awk '/Requests\/sec/ {print $2}' "$tmp/$label.create")" >>"$tmp/$label.txt"
  stop_server
  "$bin" keys revoke "bench-parts-$$-$label" >/dev/null
  # The creates landed on today: take them out again so both sides hold the same rows.
  psql_db "$db" -c "delete from activities where action = 'bench'" -c "vacuum analyze activities"
}

echo "== seeding with $before (unpartitioned)" >&2
seed_before=$(seed "$tmp/analytics-before" "$db_before")
measure "$tmp/analytics-before" "$db_before" before
echo "== migrating to partitions" >&2
start=$(date +%s.%N)
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db_before" "$tmp/analytics-after" migrate >/dev/null
migrate_seconds=$(echo "$(date +%s.%N) - $start" | bc)
psql_db "$db_before" -c "vacuum analyze" -c "checkpoint"
measure "$tmp/analytics-after" "$db_before" after
echo "== seeding with the current build (into partitions)" >&2
seed_after=$(seed "$tmp/analytics-after" "$db_after")
partitions=$(psql_db "$db_after" -c "select count(*) from activity_partitions()")
size_before=$(psql_db "$db_before" -c "select pg_size_pretty(pg_total_relation_size('activities'))")
drop_database "$db_after"

python3 - "$tmp" "$before" "$events" "$seed_before" "$seed_after" "$migrate_seconds" "$partitions" <<'PY'
import json, sys
tmp, before, events, seed_before, seed_after, migrate_s, partitions = sys.argv[1:8]
def read(label):
    out = {}
    for line in open(f"{tmp}/{label}.txt"):
        kind, name, value = line.split()
        out[f"{kind} {name}"] = float(value)
    return out
b, a = read("before"), read("after")
result = {
    "before": before, "events": int(events), "partitions_after_seed": int(partitions),
    "seed_seconds": {"before": float(seed_before), "after": float(seed_after)},
    "migrate_seconds": round(float(migrate_s), 1),
    "measures": {k: {"before": b[k], "after": a.get(k)} for k in b},
}
json.dump(result, open("bench/partitions.json", "w"), indent=2)
rows = [f"| {k} | {v['before']} | {v['after']} | {v['after'] / v['before']:.2f}× |" for k, v in result["measures"].items()]
md = [
    f"# Monthly partitions side by side ({int(events):,} events, 20,000 users, 90 days)",
    "",
    f"`bench/partitions.sh`: the build of `{before}` (unpartitioned) against the current one, on the same rows.",
    "Statistics are cold (`Cache-Control: no-cache`); times are the median of five requests, in ms; creates are per second (wrk, 16 connections, 5 s).",
    "",
    "| measure | unpartitioned | partitioned | ratio |",
    "| --- | ---: | ---: | ---: |",
    *rows,
    f"| seed (s) | {float(seed_before):.1f} | {float(seed_after):.1f} | {float(seed_after) / float(seed_before):.2f}× |",
    "",
    f"Migrating the unpartitioned database to partitions (`analytics migrate`, migration 8): **{float(migrate_s):.0f} s**; {partitions} partitions after a fresh seed.",
]
open("bench/partitions.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
drop_database "$db_before"
