# The commands a person wants. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
CARGO ?= cargo
BIN := $(or $(CARGO_TARGET_DIR),./target)/release/analytics

.PHONY: run test test-cluster bench-cluster bench-scale test-e2e test-client test-observability lint sqlx-prepare fmt migrate services seed prewarm bench bench-partitions fuzz build release clean

## Start Postgres and Redis if needed, migrate, seed demo data once, print a dev key, serve.
run: services release
	@[ -f .env ] || cp .env.example .env
	$(BIN) migrate
	$(BIN) seed --users 2000 --events 200000 --days 90 --if-empty
	@echo; echo "Dev API key (admin), valid until you run 'analytics keys revoke dev-<time>':"
	@$(BIN) keys create --name "dev-$$(date +%s)" --role admin
	@echo "Dashboard: http://127.0.0.1:8080/   (add #token=<the key above>)"; echo
	$(BIN) serve

## Every test: unit tests, the integration tests against real Postgres and Redis, the cache's
## promise tests again on a private Redis Cluster (3 masters + 3 replicas, started and stopped by
## the script), a short deterministic fuzz run of the live API (`make fuzz` is the long one), the
## typed TypeScript client against a live server, and the alerting rules and Grafana panels
## against a real Prometheus (installed from Debian's packages if missing).
test: services
	$(CARGO) test --all-targets
	./scripts/cluster-tests.sh
	FUZZ_EXAMPLES=8 ./scripts/fuzz.sh
	./scripts/client.sh
	./scripts/observability.sh

## The cache's promise tests on a private Redis Cluster (part of `make test`).
test-cluster: services
	./scripts/cluster-tests.sh

## The typed client (clients/typescript) against a live server; fails if it is out of date.
test-client: services
	./scripts/client.sh

## promtool unit tests of the alerting rules, then every rule and dashboard query evaluated by a
## real Prometheus scraping a loaded service.
test-observability: services
	./scripts/observability.sh

## Formatting, clippy, and the compile-time query data in `.sqlx/` against a freshly migrated
## database (`make sqlx-prepare` regenerates it after a query or migration changed).
lint: services
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	./scripts/sqlx.sh check

sqlx-prepare: services
	./scripts/sqlx.sh prepare

fmt:
	$(CARGO) fmt --all

services:
	@./scripts/services.sh

migrate: services release
	@[ -f .env ] || cp .env.example .env
	$(BIN) migrate

seed: migrate
	$(BIN) seed --users 2000 --events 200000 --days 90

prewarm: release
	$(BIN) prewarm

bench: services release
	./bench/run.sh

## One Redis against a private Redis Cluster (3 + 3 nodes), one run: bench/cluster.md.
bench-cluster: services release
	./bench/cluster.sh

## Redis commands and Postgres statements per request, and throughput with a read replica:
## bench/scale.md, the numbers behind docs/scale.md.
bench-scale: services release
	./bench/scale.sh

# The partitioned table side by side with the unpartitioned one it replaced (about 15 minutes).
bench-partitions: services
	./bench/partitions.sh

build:
	$(CARGO) build

release:
	$(CARGO) build --release

clean:
	$(CARGO) clean

## Property-based API fuzzing with schemathesis against a live server: no 5xx, no response outside the schema.
fuzz: services
	./scripts/fuzz.sh

## The dashboard in headless Chromium against a seeded server; screenshots in target/e2e/.
test-e2e: services
	./scripts/e2e.sh
