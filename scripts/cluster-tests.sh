#!/usr/bin/env bash
# The cache's promise tests again, on a real Redis Cluster (3 masters, 3 replicas) started for
# this run in a temporary directory and stopped after it: the same tests that show the promises
# on one Redis (`cache`, `live`, `faults`, `erasure`), with `TEST_REDIS_CLUSTER_URLS` making
# every app of theirs use the cluster. Tests written for one Redis process of their own (stopped,
# paused, filled, or read key by key) are skipped: the cluster's own faults are in `cluster`.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$(mktemp -d "${TMPDIR:-/tmp}/aa-cluster.XXXXXX")
trap 'scripts/redis-cluster.sh stop "$dir"' EXIT
urls=$(scripts/redis-cluster.sh start "$dir" 3 1 | tail -n1)
echo "Redis Cluster for the promise tests: $urls"

TEST_REDIS_CLUSTER_URLS=$urls ${CARGO:-cargo} test --test api -- \
  cache:: live:: faults:: erasure:: \
  --skip in_memory \
  --skip clearing_the_cache_removes_only_keys_under_the_prefix \
  --skip index_walks_keep_only_entries_alive \
  --skip requests_go_on_while_redis_is_down \
  --skip a_write_whose_invalidation_failed_is_applied_before \
  --skip another_instance_reflects_a_write_whose_invalidation_failed \
  --skip a_create_whose_cache_update_times_out
