#!/usr/bin/env bash
# `make bench`: the release build on a database of 1 million seeded events, loaded with wrk for a
# fixed time per scenario. Writes bench/results.json and bench/results.md. Ratios are taken
# within one run (HIT against /healthz, HIT against MISS), because this machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. bench/matrix.sh

debian_package wrk wrk
events=${BENCH_EVENTS:-1000000}
duration=${BENCH_SECONDS:-8}
connections=${BENCH_CONNECTIONS:-32}
export DATABASE_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/analytics_bench}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379} CACHE_PREFIX="bench-$$" APP_ADDR=127.0.0.1:0
export RATE_LIMIT_PER_SECOND=10000000 RATE_LIMIT_BURST=10000000 CACHE_TTL_SECONDS=3600 RUST_LOG=warn
bin=${CARGO_TARGET_DIR:-target}/release/analytics
bench_database "$bin" "$events"
export TOKEN=$("$bin" keys create --name "bench-$$" --role admin)
tmp=$(mktemp -d)
cleanup() {
  stop_server
  "$bin" keys revoke "bench-$$" >/dev/null 2>&1 || true
  clear_prefix "bench-$$"
  rm -rf "$tmp"
}
trap cleanup EXIT
SERVER_RUST_LOG=warn,activity_analytics=info start_server "$bin"
base="http://$addr"
auth="Authorization: Bearer $TOKEN"

# Warm the entries the HIT scenarios read.
for path in summary "timeseries?bucket=day" top-users; do
  curl -sf -H "$auth" "$base/api/v1/stats/$path" >/dev/null
done
user=$(curl -sf -H "$auth" "$base/api/v1/stats/top-users?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["user_id"])')
echo "{\"user_id\":\"$user\",\"action\":\"bench\",\"value\":1.5}" >"$tmp/one.json"
python3 - "$user" >"$tmp/batch.json" <<'PY'
import json, sys
print(json.dumps({"activities": [{"user_id": sys.argv[1], "action": "bench_batch", "duration_ms": i} for i in range(1000)]}))
PY

run() { # name, then wrk arguments
  local name=$1; shift
  echo "== $name" >&2
  wrk -t2 -c"$connections" -d"${duration}s" --latency "$@" >"$tmp/$name.txt"
}
run healthz "$base/healthz"
run summary_hit -H "$auth" "$base/api/v1/stats/summary"
run summary_miss -H "$auth" -H "Cache-Control: no-cache" "$base/api/v1/stats/summary"
run timeseries_hit -H "$auth" "$base/api/v1/stats/timeseries?bucket=day"
run top_users_hit -H "$auth" "$base/api/v1/stats/top-users"

# Live ingest: reads of each default statistic while single creates land outside its range
# (60 days ago: the same write cost, no effect on the answer) or on today, at 50 and 250
# creates/s from another process. The cache counters before and after give each run's HIT share.
# Each pair runs BENCH_LIVE_REPEATS times (default 4, of BENCH_LIVE_SECONDS, default 5 s),
# alternating elsewhere and today, and each side reports its median run: single runs on this
# shared machine swing by ±25 % on their own, in both directions, and would decide a ratio.
live_seconds=${BENCH_LIVE_SECONDS:-5}
live_repeats=${BENCH_LIVE_REPEATS:-4}
live_names=()
for rate in 50 250; do
  for path in summary "timeseries?bucket=hour" "timeseries?bucket=day" "timeseries?bucket=week" \
      "timeseries?bucket=month" active-users top-users "users/$user"; do
    for rep in $(seq 1 "$live_repeats"); do
      for when in elsewhere today; do
        slug=$(echo "$path" | sed -e 's/timeseries?bucket=/timeseries_/' -e 's/users\/.*/user_profile/' -e 's/-/_/g')
        name="live_${slug}_${rate}_${when}_r${rep}"
        live_names+=("$name")
        curl -sf -H "$auth" "$base/api/v1/stats/$path" >/dev/null
        curl -sf "$base/metrics" >"$tmp/$name.before"
        python3 bench/creates.py "$addr" "$rate" "$live_seconds" "$when" "$user" >"$tmp/$name.creates" &
        creates_pid=$!
        echo "== $name" >&2
        wrk -t2 -c"$connections" -d"${live_seconds}s" --latency -H "$auth" "$base/api/v1/stats/$path" >"$tmp/$name.txt"
        wait "$creates_pid"
        curl -sf "$base/metrics" >"$tmp/$name.after"
      done
    done
  done
done
echo "${live_names[@]}" >"$tmp/live_names"

RANDOM_USERS=20000 BODY_FILE="$tmp/one.json" run create -s bench/post.lua "$base/api/v1/activities"
BODY_FILE="$tmp/batch.json" run batch_1000 -s bench/post.lua -c 4 "$base/api/v1/activities/batch"

# cold_ms BASE AUTH: the median of five uncached answers of each statistic over the default
# 30 days, in seconds (what a client waits, database included).
cold_ms() {
  for path in summary "timeseries?bucket=day" active-users top-users; do
    for _ in 1 2 3 4 5; do
      curl -s -o /dev/null -w "%{time_total}\n" -H "$2" -H "Cache-Control: no-cache" "$1/api/v1/stats/$path"
    done | sort -n | sed -n 3p
  done | tr '\n' ' '
}
cold=$(cold_ms "$base" "$auth")
stop_server
"$bin" keys revoke "bench-$$" >/dev/null

# The miss path at scale: the same cold answers on a database of BENCH_SCALE_EVENTS (10 million
# by default; 0 skips), seeded once and kept for later runs (about two minutes the first time).
scale_events=${BENCH_SCALE_EVENTS:-10000000}
cold_scale="" seed_line=""
if [ "$scale_events" -gt 0 ]; then
  export DATABASE_URL=${BENCH_SCALE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/analytics_bench_scale}
  "$bin" migrate
  have=$(psql -tA -h 127.0.0.1 -U postgres -d "${DATABASE_URL##*/}" -c "select count(*) from activities")
  if [ "$have" -ne "$scale_events" ]; then
    psql -q -h 127.0.0.1 -U postgres -d "${DATABASE_URL##*/}" -c "truncate activities"
    "$bin" seed --users 20000 --events "$scale_events" --days 90 --seed 1 2>&1 | tee "$tmp/seed.txt"
    seed_line=$(grep -o "seeded .*" "$tmp/seed.txt" | tail -n1)
    psql -q -h 127.0.0.1 -U postgres -d "${DATABASE_URL##*/}" -c "vacuum analyze"
  fi
  scale_token=$("$bin" keys create --name "bench-$$" --role read)
  SERVER_RUST_LOG=warn,activity_analytics=info start_server "$bin"
  # The unions of closed days the server stores when it starts (migration 13): a service runs
  # with them, so the cold answers wait for them like a service that has been up for a minute.
  wait_for_stores
  cold_scale=$(cold_ms "http://$addr" "Authorization: Bearer $scale_token")
  matrix "$bin" "$scale_token" "$tmp/matrix.txt"
  # Rollup rows per million events (issue 13 asks what finer rollups would cost; this is the base).
  psql -tA -F ' ' -h 127.0.0.1 -U postgres -d "${DATABASE_URL##*/}" -c \
    "select relname, n_live_tup from pg_stat_user_tables where relname like 'activity\_%' and relname not like 'activities%' order by 1" \
    >"$tmp/rollup_rows.txt"
  # Export every event, as NDJSON and as CSV, while sampling the server's resident memory every
  # 0.1 s: the rate, and whether memory stays flat (it holds one page of 1000 rows at a time).
  rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status"; }
  for format in ndjson csv; do
    rss_before=$(rss_kb)
    ( while kill -0 "$server_pid" 2>/dev/null; do rss_kb; sleep 0.1; done ) >"$tmp/rss_$format.txt" 2>/dev/null &
    sampler=$!
    transfer=$(curl -s -o /dev/null -w '%{size_download} %{time_total}' \
      -H "Authorization: Bearer $scale_token" "http://$addr/api/v1/activities/export?format=$format")
    kill "$sampler" 2>/dev/null || true
    echo "$format $transfer $rss_before $(sort -n "$tmp/rss_$format.txt" | tail -n1)" >>"$tmp/export.txt"
  done
  stop_server
  "$bin" keys revoke "bench-$$" >/dev/null
fi

# The same matrix with the same 10 million events from a million users (issue 17: distinct counts
# read bitmaps that grow with the users), on BENCH_USERS_DATABASE_URL, seeded once and kept
# (about two minutes the first time); BENCH_USERS=0 skips it.
bench_users=${BENCH_USERS:-1000000}
if [ "$scale_events" -gt 0 ] && [ "$bench_users" -gt 0 ]; then
  export DATABASE_URL=${BENCH_USERS_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/analytics_bench_users}
  bench_database "$bin" "$scale_events" "$bench_users"
  users_token=$("$bin" keys create --name "bench-$$" --role read)
  SERVER_RUST_LOG=warn,activity_analytics=info start_server "$bin"
  wait_for_stores
  matrix "$bin" "$users_token" "$tmp/matrix_users.txt"
  stop_server
  "$bin" keys revoke "bench-$$" >/dev/null
fi

python3 - "$tmp" "$events" "$connections" "$duration" "$cold" "$scale_events" "$cold_scale" "$seed_line" "$bench_users" <<'PY'
import json, re, sys, platform, os, datetime
tmp, events, connections, duration, cold, scale_events, cold_scale, seed_line = sys.argv[1:9]
exports = {}
if os.path.exists(f"{tmp}/export.txt"):
    for line in open(f"{tmp}/export.txt"):
        fmt, size, secs, rss_before, rss_peak = line.split()
        exports[fmt] = {"bytes": int(size), "seconds": float(secs),
                        "events_per_sec": round(int(scale_events) / float(secs)),
                        "rss_before_mb": round(int(rss_before) / 1024, 1), "rss_peak_mb": round(int(rss_peak) / 1024, 1)}
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
def parse(name):
    text = open(f"{tmp}/{name}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {p: float(v) * unit[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {"rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else None}
names = ["healthz", "summary_hit", "summary_miss", "timeseries_hit", "top_users_hit", "create", "batch_1000"]
results = {n: parse(n) for n in names}
results["batch_1000"]["events_per_sec"] = results["batch_1000"]["rps"] * 1000

def counters(path):
    out = {}
    for line in open(path):
        m = re.match(r'analytics_cache_(hits|misses|bypasses)_total\{endpoint="(\w+)"\} (\d+)', line)
        if m:
            out[(m.group(1), m.group(2))] = int(m.group(3))
    return out

live = {}
for name in open(f"{tmp}/live_names").read().split():
    r = parse(name)
    before, after = counters(f"{tmp}/{name}.before"), counters(f"{tmp}/{name}.after")
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    endpoint = max({e for (_, e) in delta}, key=lambda e: sum(v for (k, x), v in delta.items() if x == e))
    hits = delta.get(("hits", endpoint), 0)
    lookups = hits + delta.get(("misses", endpoint), 0) + delta.get(("bypasses", endpoint), 0)
    r["hit_share"] = round(hits / lookups, 4) if lookups else None
    r["creates"] = json.loads(open(f"{tmp}/{name}.creates").read())
    live[name] = r
live_rows = ["| endpoint, creates/s | creates elsewhere: req/s, p99 | on today: req/s, p99 | ratio | p99 ratio | HITs on today | creates/s achieved (today) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
live_summary = {}
runs = {}
for name, r in live.items():
    base_name, when, _rep = name.rsplit("_", 2)
    runs.setdefault(base_name, {}).setdefault(when, []).append(r)
for base_name, sides in runs.items():
    # Each side's median run (the lower middle one of an even count); HIT share and achieved
    # create rate from the worst of today's runs.
    today, elsewhere = (sorted(sides[w], key=lambda r: r["rps"])[(len(sides[w]) - 1) // 2] for w in ("today", "elsewhere"))
    hit_share = min((r["hit_share"] or 0) for r in sides["today"])
    achieved = min(r["creates"]["achieved_per_sec"] for r in sides["today"])
    ratio = today["rps"] / elsewhere["rps"]
    p99_ratio = today["p99_ms"] / elsewhere["p99_ms"]
    live_summary[base_name] = {"ratio": round(ratio, 3), "p99_ratio": round(p99_ratio, 2),
                               "hit_share_today": hit_share, "runs_per_side": len(sides["today"]),
                               "creates_per_sec_today": achieved}
    endpoint, rate = base_name[len("live_"):].rsplit("_", 1)
    live_rows.append(
        f"| {endpoint}, {rate}/s | {elsewhere['rps']:,.0f}, {elsewhere['p99_ms']:.1f} ms | {today['rps']:,.0f}, {today['p99_ms']:.1f} ms "
        f"| **{ratio:.2f}×** | {p99_ratio:.2f}× | {100 * hit_share:.1f} % | {achieved} |")
stats = ["summary", "timeseries_day", "active_users", "top_users"]
def ms(text):
    return dict(zip(stats, (round(float(x) * 1000, 1) for x in text.split())))
seed = re.search(r"seeded (\d+) events .* in ([\d.]+) s \((\d+) events/s\)", seed_line)
out = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": f"{os.cpu_count()} cores, {platform.machine()}, load generator on the same machine",
    "events_in_database": int(events), "connections": int(connections), "seconds_per_scenario": int(duration),
    "scenarios": results,
    "live": live,
    "live_summary": live_summary,
    "cold_ms": ms(cold),
    "scale": {
        "events_in_database": int(scale_events),
        "cold_ms": ms(cold_scale),
        "export": exports,
        "seed": {"events": int(seed.group(1)), "seconds": float(seed.group(2)), "events_per_sec": int(seed.group(3))}
                if seed else None,
    },
    "ratios": {
        "summary_hit_over_healthz": round(results["summary_hit"]["rps"] / results["healthz"]["rps"], 3),
        "summary_hit_over_miss": round(results["summary_hit"]["rps"] / results["summary_miss"]["rps"], 1),
    },
}
def read_matrix(path):
    m = {}
    if os.path.exists(path):
        for line in open(path):
            name, variant, secs = line.split()
            m.setdefault(name, {})[variant] = round(float(secs) * 1000, 1)
    return m
matrix = read_matrix(f"{tmp}/matrix.txt")
matrix_users = read_matrix(f"{tmp}/matrix_users.txt")
out["scale"]["matrix_ms"] = matrix
out["scale"]["matrix_ms_users"] = {"users": int(sys.argv[9]), "matrix_ms": matrix_users}
rollup_rows = {}
if os.path.exists(f"{tmp}/rollup_rows.txt"):
    for line in open(f"{tmp}/rollup_rows.txt"):
        if line.strip():
            name, n = line.split()
            rollup_rows[name] = round(int(n) / (int(scale_events) / 1e6))
out["scale"]["rollup_rows_per_million_events"] = rollup_rows
json.dump(out, open("bench/results.json", "w"), indent=2)
rows = ["| scenario | req/s | p50 ms | p99 ms | non-2xx |", "| --- | ---: | ---: | ---: | ---: |"]
for n in names:
    r = results[n]
    rows.append(f"| {n} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']} |")
md = "\n".join([
    f"Run {out['date']} on {out['machine']}; {int(events):,} events; wrk -t2 -c{connections}, {duration} s per scenario.",
    "", *rows, "",
    f"- summary HIT / healthz: **{out['ratios']['summary_hit_over_healthz']}**; summary HIT / MISS: **{out['ratios']['summary_hit_over_miss']}×**",
    f"- batch ingest: **{results['batch_1000']['events_per_sec']:,.0f} events/s** (batches of 1000, 4 connections)",
    f"- cold (uncached) answers over 30 days, median of 5, ms: " + ", ".join(f"{k} {v}" for k, v in out["cold_ms"].items()),
] + ["", "Live ingest: wrk on one default statistic while single creates arrive from another process, dated 60 days ago (elsewhere) or now (today); each side the median of its runs (alternating, " + str(max(v["runs_per_side"] for v in live_summary.values())) + " per side):", "", *live_rows] + ([
    f"- the same on {int(scale_events):,} events, ms: " + ", ".join(f"{k} {v}" for k, v in out["scale"]["cold_ms"].items()),
] if cold_scale else []) + ([
    f"- seeding {seed.group(1)} events: {float(seed.group(2)):.0f} s (**{int(seed.group(3)):,} events/s**)",
] if seed else []) + [
    f"- export of all {int(scale_events):,} events as {fmt}: {e['seconds']:.0f} s (**{e['events_per_sec']:,} events/s**, {e['bytes'] / e['seconds'] / 1e6:.0f} MB/s); server memory {e['rss_before_mb']} MB before, **{e['rss_peak_mb']} MB** at most during it"
    for fmt, e in exports.items()
])
variants = ["default", "cut", "action", "cut_action", "berlin", "kathmandu", "berlin_first", "kathmandu_first"]
def matrix_table(m):
    # Cells over 100 ms (issue 17's bound) in bold; zone cells over twice the default marked †.
    def cell(name, v):
        x = m[name].get(v, float("nan"))
        text = f"**{x:.1f}**" if x > 100 else f"{x:.1f}"
        base = m[name].get("default")
        if v in ("berlin", "kathmandu") and base and x > 2 * base:
            text += " †"
        return text
    return ["| request | default | cut | action | cut + action | Berlin | Kathmandu | Berlin first | Kathmandu first |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"] + [
            f"| {name} | " + " | ".join(cell(name, v) for v in variants) + " |" for name in m]
if matrix:
    md += "\n".join(["", "", f"Cold answers on {int(scale_events):,} events, median of 5, ms, by parameters: default 30 days; cut = "
                      "from 02:00 forty days ago to 22:00 ten days ago (active-users: the date ten days ago); action = one action; "
                      "Berlin / Kathmandu = the default 30 days of that zone (tz=), after its first request (first: that request, "
                      "which reads its days' edges from the per-user rows and stores them in the background); "
                      "users/heaviest = the seeded user with the most events, users/typical = the 10,001st. "
                      "Bold: over 100 ms; †: a zone over twice the default:", "", *matrix_table(matrix)])
if matrix_users:
    md += "\n".join(["", "", f"The same matrix on the same {int(scale_events):,} events seeded for {int(sys.argv[9]):,} users:", "",
                      *matrix_table(matrix_users)])
if rollup_rows:
    md += "\n\nRollup rows per million events (scale database): " + ", ".join(f"{k} {v:,}" for k, v in rollup_rows.items())
open("bench/results.md", "w").write(md + "\n")
print(md)
PY
