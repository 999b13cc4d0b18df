#!/usr/bin/env bash
# `make bench-partitions`: the monthly partitioning of `activities` (migration 8) side by side
# with the unpartitioned table it replaced, on the same 10 million events, in one run:
#
#   1. the release build of BEFORE (default: the last commit without partitions) seeds a fresh
#      database (timed); a copy of it is migrated by the current build (timed: what an operator
#      upgrading waits for);
#   2. both builds serve their copy at once, and every measure (cold statistics, keyset pages,
#      lookups, creates) alternates between them;
#   3. the current build seeds a database of its own (COPY into partitions), timed;
#   4. bench/partition_width.sh compares monthly with daily partitions on the migrated copy.
#
# Writes bench/partitions.json and bench/partitions.md. Takes about 25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

debian_package wrk wrk
before=${BEFORE:-c2058ef}
events=${BENCH_SCALE_EVENTS:-10000000}
db_before=analytics_bench_unpartitioned
db_after=analytics_bench_partitioned
db_seed=analytics_bench_partitioned_seed
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379} CACHE_PREFIX="bench-parts-$$" APP_ADDR=127.0.0.1:0
export RATE_LIMIT_PER_SECOND=10000000 RATE_LIMIT_BURST=10000000 RUST_LOG=warn
tmp=$(mktemp -d)
cleanup() {
  kill "${before_pid:-}" "${after_pid:-}" 2>/dev/null || true
  clear_prefix "bench-parts-$$"
  git worktree remove --force "$tmp/before" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# The current build first. Two checkouts of one package must not share a target directory:
# cargo names their artifacts alike and would take one's for the other's, so the other build
# gets a copy of this one's compiled dependencies, without this crate's own artifacts.
target=${CARGO_TARGET_DIR:-$PWD/target}
rm -rf "$target"/release/.fingerprint/activity-analytics-*
CARGO_TARGET_DIR=$target cargo build --release --quiet
cp "$target/release/analytics" "$tmp/analytics-after"
git worktree add --detach "$tmp/before" "$before" >/dev/null
mkdir -p "$tmp/target/release"
cp -a "$target/release/build" "$target/release/deps" "$target/release/.fingerprint" "$tmp/target/release/"
rm -rf "$tmp"/target/release/.fingerprint/activity-analytics-* "$tmp"/target/release/deps/*activity_analytics* \
  "$tmp"/target/release/deps/analytics-*
(cd "$tmp/before" && CARGO_TARGET_DIR=$tmp/target cargo build --release --quiet)
cp "$tmp/target/release/analytics" "$tmp/analytics-before"
grep -q activity_partitions_ensure "$tmp/analytics-after" || { echo "the current build has no migration 8" >&2; exit 1; }
if grep -q activity_partitions_ensure "$tmp/analytics-before"; then echo "$before already has partitions" >&2; exit 1; fi

psql_db() { psql -q -tA -h 127.0.0.1 -U postgres -d "$1" "${@:2}"; }

# seed BIN DB: a fresh database of $events events; prints the seconds it took.
seed() {
  set -e
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

# serve BIN DB LABEL: starts BIN on DB with an admin key; sets ${LABEL}_addr, ${LABEL}_pid, ${LABEL}_token.
serve() {
  local bin=$1 db=$2 label=$3 log token addr
  token=$(DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" "$bin" keys create --name "bench-parts-$$-$label" --role admin)
  log="$tmp/$label.log"
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" LOG_FORMAT=json RUST_LOG=warn,activity_analytics=info \
    "$bin" serve --no-migrate >"$log" 2>&1 &
  eval "${label}_pid=$!"
  for _ in $(seq 1 100); do
    addr=$(grep -o '"address":"[^"]*"' "$log" | head -n1 | cut -d'"' -f4 || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$log" >&2; exit 1; }
  eval "${label}_addr=$addr ${label}_token=$token"
}

# sample LABEL NAME PATH [curl args]: 7 request times of PATH on LABEL's server, in ms, appended
# to $tmp/LABEL.samples as "NAME ms".
sample() {
  local label=$1 name=$2 path=$3; shift 3
  local addr_var="${label}_addr" token_var="${label}_token"
  for _ in 1 2 3 4 5 6 7; do
    curl -s -o /dev/null -w "%{time_total}\n" -H "Authorization: Bearer ${!token_var}" "$@" "http://${!addr_var}$path" \
      | awk -v n="$name" '{printf "%s %.2f\n", n, $1 * 1000}'
  done >>"$tmp/$label.samples"
}

echo "== seeding with $before (unpartitioned)" >&2
seed_before=$(seed "$tmp/analytics-before" "$db_before")
echo "== copying it, and migrating the copy to partitions" >&2
drop_database "$db_after"
psql_db postgres -c "create database $db_after template $db_before"
start=$(date +%s.%N)
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db_after" "$tmp/analytics-after" migrate >/dev/null
migrate_seconds=$(echo "$(date +%s.%N) - $start" | bc)
psql_db "$db_after" -c "vacuum analyze" -c "checkpoint"

# Both servers up at once, on identical rows; every measure alternates between them, three
# rounds of seven requests each, so a busy moment of this shared machine hits both sides.
serve "$tmp/analytics-before" "$db_before" before
serve "$tmp/analytics-after" "$db_after" after
nc="Cache-Control: no-cache"
user=$(curl -sf -H "Authorization: Bearer $before_token" "http://$before_addr/api/v1/stats/top-users?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["user_id"])')
id=$(curl -sf -H "Authorization: Bearer $before_token" "http://$before_addr/api/v1/activities?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
cursor=$(curl -sf -H "Authorization: Bearer $before_token" "http://$before_addr/api/v1/activities?limit=1000" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_cursor"])')
yday=$(date -u -d yesterday +%F)
measures=(
  "stats_summary|/api/v1/stats/summary|nc"
  "stats_timeseries_day|/api/v1/stats/timeseries?bucket=day|nc"
  "stats_active_users|/api/v1/stats/active-users|nc"
  "stats_top_users|/api/v1/stats/top-users|nc"
  "stats_timeseries_month_90d|/api/v1/stats/timeseries?bucket=month&from=$(date -u -d '-89 days' +%F)|nc"
  "stats_summary_from_22h|/api/v1/stats/summary?from=${yday}T22:00:00Z&to=$(date -u +%F)T22:00:00Z|nc"
  "stats_user_profile|/api/v1/stats/users/$user|nc"
  "list_first_page|/api/v1/activities?limit=100|"
  "list_next_page|/api/v1/activities?limit=100&cursor=$cursor|"
  "list_by_user|/api/v1/activities?limit=100&user_id=$user|"
  "list_by_action|/api/v1/activities?limit=100&action=purchase|"
  "list_one_day_last_week|/api/v1/activities?limit=100&from=$(date -u -d '-7 days' +%F)&to=$(date -u -d '-6 days' +%F)|"
  "get_by_id|/api/v1/activities/$id|"
)
for round in 1 2 3; do
  echo "== round $round" >&2
  for m in "${measures[@]}"; do
    IFS='|' read -r name path cache <<<"$m"
    for label in before after; do
      if [ -n "$cache" ]; then sample "$label" "$name" "$path" -H "$nc"; else sample "$label" "$name" "$path"; fi
    done
  done
done
# Single creates from 20,000 users, alternating, 5 s each, twice per side; then taken out again.
echo "{}" >"$tmp/one.json"
for round in 1 2; do
  for label in before after; do
    addr_var="${label}_addr" token_var="${label}_token"
    TOKEN=${!token_var} RANDOM_USERS=20000 BODY_FILE="$tmp/one.json" \
      wrk -t2 -c16 -d5s -s bench/post.lua "http://${!addr_var}/api/v1/activities" \
      | awk '/Requests\/sec/ {print "create_per_second", $2}' >>"$tmp/$label.samples"
  done
done
kill "$before_pid" "$after_pid" 2>/dev/null || true
wait "$before_pid" "$after_pid" 2>/dev/null || true
for db in "$db_before" "$db_after"; do
  psql_db "$db" -c "delete from activities where action = 'bench'"
done
echo "== seeding with the current build (into partitions)" >&2
seed_after=$(seed "$tmp/analytics-after" "$db_seed")
partitions=$(psql_db "$db_seed" -c "select count(*) from activity_partitions()")
drop_database "$db_seed"

python3 - "$tmp" "$before" "$events" "$seed_before" "$seed_after" "$migrate_seconds" "$partitions" <<'PY'
import json, statistics, sys
tmp, before, events, seed_before, seed_after, migrate_s, partitions = sys.argv[1:8]
def read(label):
    out = {}
    for line in open(f"{tmp}/{label}.samples"):
        name, value = line.split()
        out.setdefault(name, []).append(float(value))
    return {k: round(statistics.median(v), 2) for k, v in out.items()}
b, a = read("before"), read("after")
result = {
    "before": before, "events": int(events), "partitions_after_seed": int(partitions),
    "seed_seconds": {"before": float(seed_before), "after": float(seed_after)},
    "migrate_seconds": round(float(migrate_s), 1),
    "medians": {k: {"before": b[k], "after": a.get(k)} for k in b},
}
json.dump(result, open("bench/partitions.json", "w"), indent=2)
rows = [f"| {k} | {v['before']:,} | {v['after']:,} | {v['after'] / v['before']:.2f}× |" for k, v in result["medians"].items()]
md = [
    f"# Monthly partitions side by side ({int(events):,} events, 20,000 users, 90 days)",
    "",
    f"`bench/partitions.sh`: the build of `{before}` (unpartitioned) and the current one, each serving its own copy of the same rows",
    "(the current one's migrated to partitions), both up at once. Request times are in ms, the median of 21 (three rounds of seven,",
    "alternating between the two); statistics are cold (`Cache-Control: no-cache`); creates are per second (wrk, 16 connections, 5 s,",
    "median of two runs per side, alternating).",
    "",
    "| measure | unpartitioned | partitioned | ratio |",
    "| --- | ---: | ---: | ---: |",
    *rows,
    f"| seed, s (one run each) | {float(seed_before):.1f} | {float(seed_after):.1f} | {float(seed_after) / float(seed_before):.2f}× |",
    "",
    f"Migrating the unpartitioned database to partitions (`analytics migrate`, migration 8): **{float(migrate_s):.0f} s**; {partitions} partitions after a fresh seed.",
]
open("bench/partitions.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
drop_database "$db_before"
{ echo; echo "## Monthly or daily partitions"; echo; bench/partition_width.sh "$db_after"; } | tee -a bench/partitions.md
drop_database "$db_after"
