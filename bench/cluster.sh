#!/usr/bin/env bash
# `make bench-cluster`: the release build against one Redis and against a private Redis Cluster
# (3 masters + 3 replicas, started here and stopped after), in one run on the database of
# `make bench`: cached reads, creates, and the default dashboard read while creates land on today
# (the hot day every write and every default entry share). For the cluster it also counts the
# commands each master ran in each scenario: how the load spreads over the masters. Writes
# bench/cluster.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

debian_package wrk wrk
events=${BENCH_EVENTS:-1000000}
duration=${BENCH_SECONDS:-8}
connections=${BENCH_CONNECTIONS:-32}
export DATABASE_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/analytics_bench}
export APP_ADDR=127.0.0.1:0 RATE_LIMIT_PER_SECOND=10000000 RATE_LIMIT_BURST=10000000
export CACHE_TTL_SECONDS=3600 RUST_LOG=warn
bin=${CARGO_TARGET_DIR:-target}/release/analytics
db=${DATABASE_URL##*/}
bench_database "$bin" "$events"
export TOKEN=$("$bin" keys create --name "bench-cluster-$$" --role admin)
tmp=$(mktemp -d)
cluster_dir=$tmp/cluster
cleanup() {
  stop_server
  "$bin" keys revoke "bench-cluster-$$" >/dev/null 2>&1 || true
  clear_prefix "bench-cluster-$$"
  scripts/redis-cluster.sh stop "$cluster_dir" >/dev/null 2>&1 || true
  psql -q -h 127.0.0.1 -U postgres -d "$db" -c "delete from activities where action = 'bench_cluster'" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
cluster_urls=$(scripts/redis-cluster.sh start "$cluster_dir" 3 1 | tail -n1)
auth="Authorization: Bearer $TOKEN"
echo '{"user_id":"00000000-0000-4000-8000-000000000001","action":"bench_cluster","value":1.5}' >"$tmp/one.json"

# Commands each master has run so far, "port count" per line.
master_commands() {
  for url in ${cluster_urls//,/ }; do
    local port=${url##*:}
    if redis-cli -p "$port" role 2>/dev/null | head -n1 | grep -q master; then
      echo "$port $(redis-cli -p "$port" info stats | tr -d '\r' | awk -F: '/^total_commands_processed/ {print $2}')"
    fi
  done
}

scenario() { # backend name, then wrk arguments
  local backend=$1 name=$2; shift 2
  echo "== $backend $name" >&2
  [ "$backend" = cluster ] && master_commands >"$tmp/$backend.$name.before"
  wrk -t2 -c"$connections" -d"${duration}s" --latency "$@" >"$tmp/$backend.$name.txt"
  [ "$backend" = cluster ] && master_commands >"$tmp/$backend.$name.after"
  return 0
}

for backend in redis cluster; do
  if [ "$backend" = redis ]; then
    export REDIS_URL=$test_redis_url REDIS_CLUSTER_URLS= CACHE_PREFIX="bench-cluster-$$"
  else
    export REDIS_URL= REDIS_CLUSTER_URLS=$cluster_urls CACHE_PREFIX="bench-cluster-$$"
  fi
  SERVER_RUST_LOG=warn,activity_analytics=info start_server "$bin"
  base="http://$addr"
  for tz in UTC Europe/Berlin America/New_York; do
    for path in "summary?" "timeseries?bucket=day&" "timeseries?bucket=hour&" "active-users?" "top-users?"; do
      curl -sf -H "$auth" "$base/api/v1/stats/${path}tz=$tz" >/dev/null
    done
  done
  scenario "$backend" healthz "$base/healthz"
  scenario "$backend" summary_hit -H "$auth" "$base/api/v1/stats/summary"
  scenario "$backend" dashboard_hit -H "$auth" -s bench/dashboard.lua "$base"
  BODY_FILE=$tmp/one.json RANDOM_USERS=20000 scenario "$backend" creates -s bench/post.lua "$base/api/v1/activities"
  # The default dashboard read while 250 creates/s land on today.
  [ "$backend" = cluster ] && master_commands >"$tmp/$backend.live.before"
  python3 bench/creates.py "$addr" 250 "$duration" today >"$tmp/$backend.live.creates" &
  creates_pid=$!
  wrk -t2 -c"$connections" -d"${duration}s" --latency -H "$auth" "$base/api/v1/stats/summary" >"$tmp/$backend.live.txt"
  wait "$creates_pid"
  [ "$backend" = cluster ] && master_commands >"$tmp/$backend.live.after"
  curl -sf "$base/metrics" >"$tmp/$backend.metrics"
  stop_server
done

python3 - "$tmp" <<'PY' >bench/cluster.md
import json, re, sys, datetime, platform
tmp = sys.argv[1]

def wrk(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    def ms(label):
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", text)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return rps, ms("50"), ms("99")

def spread(name):
    before = dict(l.split() for l in open(f"{tmp}/cluster.{name}.before"))
    after = dict(l.split() for l in open(f"{tmp}/cluster.{name}.after"))
    counts = [int(after[p]) - int(before.get(p, 0)) for p in sorted(after)]
    total = sum(counts) or 1
    return " / ".join(f"{100 * c / total:.0f} %" for c in counts)

def metric(backend, series):
    text = open(f"{tmp}/{backend}.metrics").read()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(series)}(?:{{[^}}]*}})? ([\d.e+]+)$", text, re.M))

rows = ["| scenario | one Redis: req/s, p50, p99 | cluster 3+3: req/s, p50, p99 | cluster ÷ one | commands per master (cluster) |",
        "| --- | ---: | ---: | ---: | --- |"]
for name, label in [("healthz", "/healthz"), ("summary_hit", "summary HIT (one entry)"), ("dashboard_hit", "dashboard HITs (15 entries holding today)"), ("creates", "creates (one activity per request, 20,000 users)"), ("live", "summary while 250 creates/s land on today")]:
    one, cl = wrk(f"{tmp}/redis.{name}.txt"), wrk(f"{tmp}/cluster.{name}.txt")
    share = spread(name) if name != "healthz" else "(none)"
    rows.append(f"| {label} | {one[0]:,.0f}, {one[1]:.2f} ms, {one[2]:.2f} ms | {cl[0]:,.0f}, {cl[1]:.2f} ms, {cl[2]:.2f} ms | {cl[0] / one[0]:.2f} | {share} |")
live = []
for backend in ["redis", "cluster"]:
    creates = json.loads(open(f"{tmp}/{backend}.live.creates").read())
    hits = metric(backend, "analytics_cache_hits_total")
    misses = metric(backend, "analytics_cache_misses_total")
    bypasses = metric(backend, "analytics_cache_bypasses_total")
    live.append(f"- {backend}: creates achieved {creates['achieved_per_sec']:.0f}/s (p50 {creates['p50_ms']:.1f} ms, p99 {creates['p99_ms']:.1f} ms, {creates['failures']} failed); over the whole run {hits:,.0f} HITs, {misses:,.0f} MISSes, {bypasses:,.0f} BYPASSes")
print("\n".join([
    "# One Redis against a Redis Cluster (`make bench-cluster`)", "",
    f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node()}; the database of `make bench`; wrk -t2 -c32 per scenario; everything (service, Postgres, six Redis nodes, load generators) on the same 2 cores, so the cluster's nodes compete with the rest: read the ratios, not the absolutes.", "",
    *rows, "",
    "A cached answer is one key in one shard, so one entry is read from one master however hot (the summary row); different entries of the same hot day live in different shards (the dashboard row), and every write visits every shard (the creates row). Commands per master: each master's share of all commands the cluster's masters ran during the scenario (`INFO stats`), masters in port order. Live ingest:", "",
    *live,
]))
PY
cat bench/cluster.md
