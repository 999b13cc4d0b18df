#!/usr/bin/env bash
# A private Redis Cluster of real redis-server processes, for tests and local trials: nothing of
# the machine's own Redis is touched.
#
#   scripts/redis-cluster.sh start DIR [MASTERS] [REPLICAS_PER_MASTER]
#       starts MASTERS*(1+REPLICAS) nodes (default 3 masters, 1 replica each) on free ports, with
#       their files in DIR, creates the cluster, waits until every slot is served, and prints the
#       seed URLs comma-separated (the form REDIS_CLUSTER_URLS takes) on the last line.
#   scripts/redis-cluster.sh stop DIR
#       stops every node started in DIR (by the pid each one wrote) and removes DIR.
#
# Nodes use `--cluster-node-timeout 1000`, so a killed master's replica takes over within a
# few seconds, and `--cluster-require-full-coverage no`, so the other masters keep answering for
# their own slots meanwhile (with the default, every node refuses every command while any slot is
# unserved); they keep nothing on disk beyond nodes.conf.
set -euo pipefail

usage() { echo "usage: $0 start DIR [MASTERS] [REPLICAS] | stop DIR" >&2; exit 2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Cluster bus ports are the node's port + 10000, so both must be free.
free_node_port() {
  while :; do
    local p; p=$(free_port)
    if [ "$p" -lt 55000 ] && python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',$((p + 10000)))); s.close()" 2>/dev/null; then
      echo "$p"; return
    fi
  done
}

start() {
  local dir=$1 masters=${2:-3} replicas=${3:-1}
  command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
  mkdir -p "$dir"
  local nodes=() count=$((masters * (1 + replicas)))
  for _ in $(seq 1 "$count"); do
    local port; port=$(free_node_port)
    mkdir -p "$dir/$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$dir/$port/nodes.conf" --cluster-node-timeout 1000 \
      --cluster-require-full-coverage no \
      --dir "$dir/$port" --save "" --appendonly no --daemonize yes \
      --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" >/dev/null
    nodes+=("127.0.0.1:$port")
  done
  for node in "${nodes[@]}"; do
    for _ in $(seq 1 50); do redis-cli -p "${node#*:}" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" --cluster-yes >"$dir/create.log" 2>&1 \
    || { cat "$dir/create.log" >&2; exit 1; }
  # Every node must agree that every slot is served before a client may rely on it.
  for _ in $(seq 1 100); do
    local ok=1
    for node in "${nodes[@]}"; do
      redis-cli -p "${node#*:}" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.1
  done
  [ "$ok" = 1 ] || { echo "the cluster did not reach cluster_state:ok" >&2; exit 1; }
  # A replica that has not finished its first sync cannot take over from its master.
  for _ in $(seq 1 200); do
    local synced=1
    for node in "${nodes[@]}"; do
      local info; info=$(redis-cli -p "${node#*:}" info replication 2>/dev/null)
      if grep -q 'role:slave' <<<"$info" && ! grep -q 'master_link_status:up' <<<"$info"; then synced=0; fi
    done
    [ "$synced" = 1 ] && break
    sleep 0.1
  done
  [ "$synced" = 1 ] || { echo "the replicas did not finish their first sync" >&2; exit 1; }
  local urls=()
  for node in "${nodes[@]}"; do urls+=("redis://$node"); done
  (IFS=,; echo "${urls[*]}")
}

stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  for pidfile in "$dir"/*/redis.pid; do
    [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$dir"
}

case "${1:-}" in
  start) [ $# -ge 2 ] || usage; start "$2" "${3:-3}" "${4:-1}" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
