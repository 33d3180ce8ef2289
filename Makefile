# The README's commands call these. Servers: `.ci/run` installs and starts them, then runs `check`.
CARGO ?= cargo
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
export TEST_KAFKA_BROKERS ?= 127.0.0.1:9092
export TEST_REDIS_URL ?= redis://127.0.0.1:6379
export TEST_S3_ENDPOINT ?= http://127.0.0.1:9000

.PHONY: run fmt lint test check bench bench-tools chart-check image asyncapi chaos

## run: pdp on the embedded defaults (SQLite and the embedded log under ./data), http on :8080
run:
	$(CARGO) run -p pdp -- dev

fmt:
	$(CARGO) fmt --all

## lint: formatting and clippy with warnings denied
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## test: every test, against the real PostgreSQL and Kafka-compatible broker
test:
	$(CARGO) test --workspace --lib --bins --tests

## chaos: the whole authorization on separate processes of two instances (tests/chaos.rs), run
## CHAOS_RUNS (20) times with seeded faults — kill -9 of every process, broker, PostgreSQL and
## Redis crashes — none started after CHAOS_MINUTES (120), CHAOS_SEED to replay one; each run
## starts its own servers: tansu (`.ci/run` builds it), PostgreSQL's server programs,
## redis-server and moto's S3 server (all of which `.ci/run` installs). Prints the table.
CHAOS_RUNS ?= 20
CHAOS_MINUTES ?= 120
chaos:
	CHAOS_RUNS=$(CHAOS_RUNS) CHAOS_MINUTES=$(CHAOS_MINUTES) \
	  $(CARGO) test --workspace --test chaos -- --ignored --nocapture

## chart-check: the Helm chart and k8s/ manifests, rendered by the real Helm engine and validated
## against the Kubernetes schemas (helm-python-sdk, kubernetes-validate; `.ci/run` installs them)
chart-check:
	python3 charts/check.py

## asyncapi: rewrite proto/asyncapi/pdp.yaml from the event messages and asyncapi/template.yaml
## (a test fails while the committed document differs)
asyncapi:
	$(CARGO) run -q -p pdp -- asyncapi > proto/asyncapi/pdp.yaml

## image: the pdp image, where a container engine exists (docker or podman)
IMAGE ?= registry.hlj.example/pdp/pdp:$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ENGINE ?= $(shell command -v docker || command -v podman)
image:
	@test -n "$(ENGINE)" || { echo "no container engine (docker or podman) on this machine" >&2; exit 1; }
	$(ENGINE) build -t $(IMAGE) .

## check: what CI runs once the servers are up
check: lint test chart-check

## bench: producer, outbox relay and embedded log throughput (needs PostgreSQL and the broker);
## the gateway's own overhead against direct gRPC calls to an empty service (in process); and a
## real read through the gateway of `pdp dev` against the same call straight to the service
## (wrk and h2load, from `bench-tools`), with nginx as a plain proxy beside it for CPU per
## request; and the sandbox: a 10-million-row load (peak RSS) and
## aggregate queries through disclosure control, on plain DataFusion and on DuckDB; and the
## audit archive: its ingest rate and verifying a million records; and what grows: the relay's
## claim and the inbox's duplicate check with ten million rows behind them (`tables`), and list
## and get latencies through the gateway as a tenant grows to 100 000 resources, 10 000 plans and
## a million audit records, on `pdp dev` and on the cluster, with the list queries' plans (`scale`)
bench: bench-tools
	$(CARGO) bench -p pdp-kit --bench throughput
	$(CARGO) bench -p pdp-kit --bench tables
	$(CARGO) bench -p pdp-gateway --bench overhead
	$(CARGO) bench -p pdp --bench gateway
	$(CARGO) bench -p pdp-sandbox --bench engine
	$(CARGO) bench -p pdp-termination --bench archive
	$(CARGO) bench -p pdp --bench scale

## bench-tools: the load tools of the gateway bench (Debian's wrk and nghttp2-client for h2load),
## nginx (Debian's nginx-light, which the gateway's CPU per request is compared with; apt is kept
## from starting it as a service) and DuckDB (PyPI), which the sandbox bench compares with
bench-tools:
	@command -v wrk >/dev/null && command -v h2load >/dev/null && command -v nginx >/dev/null || \
		{ apt-get update -qq; made=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
		    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made=1; fi; \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nghttp2-client nginx-light; \
		  status=$$?; [ -z "$$made" ] || rm -f /usr/sbin/policy-rc.d; exit $$status; }
	@python3 -c "import duckdb" 2>/dev/null || python3 -m pip install --quiet "duckdb==1.4.2" \
		|| python3 -m pip install --quiet --break-system-packages "duckdb==1.4.2"
