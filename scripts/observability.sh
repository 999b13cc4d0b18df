#!/usr/bin/env bash
# `make test-observability`: the alerting rules' promtool unit tests, then a real Prometheus
# (Debian's, installed if missing) scraping a live, loaded service every second: every rule and
# every panel of the Grafana dashboard must evaluate to at least one series.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

debian_package prometheus promtool
debian_package prometheus prometheus

promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml

db="analytics_obs_$$"
export DATABASE_URL=$(database_url "$db")
export REDIS_URL=$test_redis_url CACHE_PREFIX="obs-$$" APP_ADDR=127.0.0.1:0 RUST_LOG=warn
bin=${CARGO_TARGET_DIR:-target}/debug/analytics
cargo build --quiet --all-targets
prom_dir=$(mktemp -d)
prom_pid=""
cleanup() {
  [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null || true
  stop_server
  drop_database "$db"
  clear_prefix "obs-$$"
  rm -rf "$prom_dir"
}
trap cleanup EXIT
"$bin" migrate
"$bin" seed --users 200 --events 20000 --days 60 --seed 7
export TOKEN=$("$bin" keys create --name obs --role admin)
start_server "$bin"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$prom_dir/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/deploy/prometheus/alerts.yml
scrape_configs:
  - job_name: activity-analytics
    static_configs:
      - targets: ["$addr"]
YAML
prometheus --config.file="$prom_dir/prometheus.yml" --storage.tsdb.path="$prom_dir/data" \
  --web.listen-address="127.0.0.1:$port" >"$prom_dir/log" 2>&1 &
prom_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null || { cat "$prom_dir/log" >&2; exit 1; }

python3 scripts/observability_check.py "http://127.0.0.1:$port" "http://$addr" \
  deploy/grafana/dashboards/activity-analytics.json
