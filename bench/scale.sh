#!/usr/bin/env bash
# `make bench-scale`: the numbers behind docs/scale.md's capacity model, in one run. A private
# Postgres primary + hot standby (with pg_stat_statements) holding the 1 M events of `make bench`,
# the machine's Redis and a private Redis Cluster (3 + 3). For each request kind (a cached
# summary, a recomputed one, a create, a batch of 100) it counts, over 200 requests one at a
# time, the Redis commands and the Postgres statements (primary and replica apart) each request
# costs; then it measures throughput with wrk for one Redis with and without the replica.
# Writes bench/scale.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

debian_package wrk wrk
events=${BENCH_EVENTS:-1000000}
duration=${BENCH_SECONDS:-8}
requests=${BENCH_COUNTED_REQUESTS:-200}
bin=${CARGO_TARGET_DIR:-target}/release/analytics
tmp=$(mktemp -d)
# Under /tmp itself: the servers run as `postgres`, who cannot enter mktemp's private directory.
pg_dir=$(mktemp -u "${TMPDIR:-/tmp}/aa-pg.XXXXXX")
cluster_dir=$tmp/cluster
cleanup() {
  stop_server
  scripts/pg-standby.sh stop "$pg_dir" >/dev/null 2>&1 || true
  scripts/redis-cluster.sh stop "$cluster_dir" >/dev/null 2>&1 || true
  clear_prefix "bench-scale-$$"
  rm -rf "$tmp"
}
trap cleanup EXIT

read -r primary standby < <(PG_STANDBY_EXTRA_CONF="shared_preload_libraries = 'pg_stat_statements'" scripts/pg-standby.sh start "$pg_dir" | tail -n1)
cluster_urls=$(scripts/redis-cluster.sh start "$cluster_dir" 3 1 | tail -n1)
primary_url="postgres://postgres@127.0.0.1:$primary/analytics"
replica_url="postgres://postgres@127.0.0.1:$standby/analytics"
export DATABASE_URL=$primary_url APP_ADDR=127.0.0.1:0 RATE_LIMIT_PER_SECOND=10000000 RATE_LIMIT_BURST=10000000
export CACHE_TTL_SECONDS=3600 RUST_LOG=warn CACHE_PREFIX="bench-scale-$$"
"$bin" migrate
"$bin" seed --users 20000 --events "$events" --days 90 --seed 1 >/dev/null
psql -q "$primary_url" -c "create extension if not exists pg_stat_statements" -c "vacuum analyze" -c "checkpoint"
# The standby has every seeded row before anything is measured.
until [ "$(psql -tA "$primary_url" -c "select coalesce(bool_and(replay_lsn >= pg_current_wal_lsn()), false) from pg_stat_replication")" = t ]; do sleep 0.5; done
export TOKEN=$("$bin" keys create --name "bench-scale-$$" --role admin)
auth="Authorization: Bearer $TOKEN"
python3 - >"$tmp/batch.json" <<'PY'
import json
print(json.dumps({"activities": [{"user_id": "00000000-0000-4000-8000-%012x" % i, "action": "bench_scale", "value": 1.0} for i in range(100)]}))
PY

redis_commands() { # the Redis commands run so far: one Redis, or the cluster's masters added up
  if [ -n "${REDIS_CLUSTER_URLS:-}" ]; then
    local total=0
    for url in ${REDIS_CLUSTER_URLS//,/ }; do
      local port=${url##*:}
      if redis-cli -p "$port" role | head -n1 | grep -q master; then
        total=$((total + $(redis-cli -p "$port" info stats | tr -d '\r' | awk -F: '/^total_commands_processed/ {print $2}')))
      fi
    done
    echo "$total"
  else
    redis-cli -u "$test_redis_url" info stats | tr -d '\r' | awk -F: '/^total_commands_processed/ {print $2}'
  fi
}
statements() { # statements run so far on the server at port $1, this tool's own excluded
  psql -tA "postgres://postgres@127.0.0.1:$1/analytics" -c \
    "select coalesce(sum(calls), 0) from pg_stat_statements where query not like '%pg_stat_statements%'"
}

# count CONFIG KIND: $requests requests of KIND one after another, and what each cost.
count() {
  local config=$1 kind=$2 r0 p0 s0
  r0=$(redis_commands); p0=$(statements "$primary"); s0=$(statements "$standby")
  for i in $(seq 1 "$requests"); do
    case $kind in
      hit) curl -sf -o /dev/null -H "$auth" "$base/api/v1/stats/summary" ;;
      miss) curl -sf -o /dev/null -H "$auth" -H "Cache-Control: no-cache" "$base/api/v1/stats/summary" ;;
      create) curl -sf -o /dev/null -H "$auth" -H "Content-Type: application/json" \
        -d "{\"user_id\":\"00000000-0000-4000-8000-$(printf %012x "$i")\",\"action\":\"bench_scale\",\"value\":1.5}" "$base/api/v1/activities" ;;
      batch) curl -sf -o /dev/null -H "$auth" -H "Content-Type: application/json" -d @"$tmp/batch.json" "$base/api/v1/activities/batch" ;;
    esac
  done
  # Background work a request caused (settling its cache_pending row) lands within 200 ms.
  sleep 0.5
  echo "$config $kind $(( $(redis_commands) - r0 )) $(( $(statements "$primary") - p0 )) $(( $(statements "$standby") - s0 ))" >>"$tmp/counts"
}

configs=("redis primary" "redis replica" "cluster replica")
for config in "${configs[@]}"; do
  read -r cache db <<<"$config"
  if [ "$cache" = redis ]; then export REDIS_URL=$test_redis_url REDIS_CLUSTER_URLS=; else export REDIS_URL= REDIS_CLUSTER_URLS=$cluster_urls; fi
  if [ "$db" = replica ]; then export DATABASE_REPLICA_URL=$replica_url; else export DATABASE_REPLICA_URL=; fi
  name="$cache+$db"
  SERVER_RUST_LOG=warn,activity_analytics=info start_server "$bin"
  base="http://$addr"
  curl -sf -o /dev/null -H "$auth" "$base/api/v1/stats/summary"
  # The default dashboard stays cached, as in production: creates update its entries.
  for path in "timeseries?bucket=day" active-users top-users; do curl -sf -o /dev/null -H "$auth" "$base/api/v1/stats/$path"; done
  for kind in hit miss create batch; do count "$name" "$kind"; done
  if [ "$cache" = redis ]; then
    wrk -t2 -c32 -d"${duration}s" "$base/healthz" >"$tmp/$name.healthz"
    wrk -t2 -c32 -d"${duration}s" -H "$auth" "$base/api/v1/stats/summary" >"$tmp/$name.hit"
    wrk -t2 -c32 -d"${duration}s" -H "$auth" -H "Cache-Control: no-cache" "$base/api/v1/stats/summary" >"$tmp/$name.miss"
    curl -sf "$base/metrics" | grep '^analytics_db_reads_total' >"$tmp/$name.reads" || true
  fi
  stop_server
done

python3 - "$tmp" "$requests" <<'PY' >bench/scale.md
import re, sys, datetime, platform
tmp, n = sys.argv[1], int(sys.argv[2])
rows = ["| setup | request | Redis commands | Postgres statements on the primary | on the replica |", "| --- | --- | ---: | ---: | ---: |"]
labels = {"hit": "summary HIT", "miss": "summary recomputed (`no-cache`)", "create": "one create (four default entries cached)", "batch": "a batch of 100"}
for line in open(f"{tmp}/counts"):
    config, kind, redis, primary, replica = line.split()
    rows.append(f"| {config} | {labels[kind]} | {int(redis) / n:.1f} | {int(primary) / n:.1f} | {int(replica) / n:.1f} |")
def rps(path):
    return float(re.search(r"Requests/sec:\s+([\d.]+)", open(path).read()).group(1))
tput = ["| setup | /healthz req/s | summary HIT req/s | HIT ÷ healthz | summary recomputed req/s |", "| --- | ---: | ---: | ---: | ---: |"]
for config in ["redis+primary", "redis+replica"]:
    h, hit, miss = rps(f"{tmp}/{config}.healthz"), rps(f"{tmp}/{config}.hit"), rps(f"{tmp}/{config}.miss")
    tput.append(f"| {config} | {h:,.0f} | {hit:,.0f} | {hit / h:.2f} | {miss:,.0f} |")
reads = open(f"{tmp}/redis+replica.reads").read().strip().replace("\n", "; ")
print("\n".join([
    "# Cost per request and throughput (`make bench-scale`)", "",
    f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node()}; a private primary and hot standby holding the 1 M events of `make bench`, the machine's Redis and a private 3 + 3 Redis Cluster; counts over {n} requests one at a time (Redis `INFO stats`, `pg_stat_statements`), throughput with wrk -t2 -c32 for 8 s; everything on the same 2 cores.", "",
    *rows, "",
    *tput, "",
    f"Where the replica run's reads went: {reads}",
]))
PY
cat bench/scale.md
