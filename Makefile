# yolk: make build | run | fleet | test | soak | lint | bench | bench-scale | bench-quick | image | up | down | k8s-check
GO      ?= go
BIN     := bin
CMDS    := master agent worker source
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/yolkgo/yolk/internal/command/master.version=$(VERSION)
IMAGE   ?= yolk:dev
COMPOSE ?= docker-compose
WORKERS ?= 3
# UP_TIMEOUT: seconds make up waits for every container to be healthy.
UP_TIMEOUT ?= 120

.PHONY: build nats-server run fleet test soak lint bench bench-scale bench-quick clean image up down k8s-check

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

# nats-server: the real NATS server, static, from the module in go.mod (make fleet
# runs a cluster of it; make image puts it in the image as /nats-server).
nats-server:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/nats-server github.com/nats-io/nats-server/v2

# run: the example in the foreground: the remote source, then the master with the
# agent and the workers. Ctrl-C stops the master (which stops the workers, then the
# agent), then the source, and make exits 0 after a clean stop (examples/run.sh says how).
run: build
	@bash examples/run.sh $(BIN)

# fleet: the fleet in the foreground (cmd/fleet): a 3-node NATS cluster with
# JetStream (client ports 4250-4252, leaf node ports 4260-4262), the source on :7002,
# then 3 hosts on :7001, :7011 and :7021 (run directories run/fleet/h0..h2) that
# join it as leaf nodes. Ctrl-C stops the hosts, the source, then the cluster, and
# make exits 0. bin/fleet --help lists its settings (FLEET_*).
fleet: build nats-server
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/fleet ./cmd/fleet
	@$(BIN)/fleet

# test: every test: the root module's, then the deploytest module's (its own go.mod,
# so that the root module does not require the Kubernetes libraries): the manifest
# test (deploytest/k8s) and the compose test (deploytest/compose), which needs a
# Docker Engine and fails without one unless YOLK_SKIP_DOCKER=1.
test:
	$(GO) test -race -count=1 ./...
	cd deploytest && $(GO) test -race -count=1 ./...
	@if [ "$${YOLK_SKIP_DOCKER:-}" = 1 ] && ! docker info >/dev/null 2>&1; then \
		echo "make test: no Docker Engine answers and YOLK_SKIP_DOCKER=1: the compose test was skipped"; fi

# soak: the long variants of the chaos and load tests (internal/e2e, YOLK_SOAK=1): 20
# kill cycles, 10 s pauses, faults and feed outages, 3 master restarts, 5 bursts of
# 10,000 messages, 3,000 changes. make test runs the short ones. About 25 minutes:
# the restart backoff of children killed again and again grows to 30 s.
soak:
	YOLK_SOAK=1 $(GO) test -race -count=1 -v -run '^Test(Chaos|Load)' -timeout 60m ./internal/e2e

# fuzz: every fuzz target for FUZZTIME each (default 5s; under two minutes in all on an idle machine).
fuzz:
	bash .ci/fuzz

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd deploytest && $(GO) vet ./...

# bench: yolk beside its baselines (../shared/anchors: egg's messenger path, a Node.js
# cluster) and its ceilings (raw NATS, bare Go net/http), and a fleet's convergence
# (3 nats-server nodes, 3 hosts) beside one host's, real processes, one run
# (under 5 minutes); prints the table, rewrites BENCHMARKS.md (keeping the notes
# after its <!-- notes --> marker) and saves the raw figures in bench/results.json.
# Needs node; installs wrk with apt-get when root.
bench:
	BENCH_MAKE_TARGET=bench CGO_ENABLED=0 $(GO) run -trimpath ./bench -out BENCHMARKS.md

# bench-quick: the same, reduced (under a minute); writes only a JSON file in $$TMPDIR.
bench-quick:
	BENCH_MAKE_TARGET=bench-quick CGO_ENABLED=0 $(GO) run -trimpath ./bench -quick

# bench-scale: how the costs grow (fan-out against 1 to 16 workers, convergence and
# memory against data sets of 1 KB to 50 MB, fetches per change against workers),
# beside raw NATS and the egg baseline; rewrites only the scale section of
# BENCHMARKS.md (between its scale markers) and the bench-scale-*.svg plots beside
# it. A few minutes; at most 12.
bench-scale:
	BENCH_MAKE_TARGET=bench-scale CGO_ENABLED=0 $(GO) run -trimpath ./bench -scale -out BENCHMARKS.md

clean:
	rm -rf $(BIN) run

# image: the Dockerfile's prebuilt stage, from the binaries of make build. It starts
# FROM scratch, so it never pulls (no registry needed). bin/tmp becomes the image's
# /tmp: scratch has no mkdir. It holds /nats-server too, for compose.fleet.yaml.
image: build
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/image/yolk ./cmd/yolk
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/image/nats-server github.com/nats-io/nats-server/v2
	@cd $(BIN)/image && for c in $(CMDS); do ln -f yolk $$c; done
	@mkdir -p $(BIN)/image-tmp
	DOCKER_BUILDKIT=0 docker build --target prebuilt -t $(IMAGE) .

# .env: the secrets docker-compose substitutes into compose.yaml and
# compose.fleet.yaml, random, made once
# (see .env.example); never committed.
.env:
	@umask 077; rnd() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }; \
	{ echo "# written by make up; see .env.example"; \
	  echo "YOLK_AGENT_SECRET=$$(rnd)"; echo "YOLK_WORKER_SECRET=$$(rnd)"; \
	  echo "YOLK_CLUSTER_PASSWORD=$$(rnd)"; } > $@
	@echo "make up: wrote $@ with random secrets"

# up: the compose example with $(WORKERS) workers, then wait (at most UP_TIMEOUT
# seconds) until every container is healthy (running, for pod, which has no health
# check) and the master ready. On failure it prints the state and the logs.
up: image .env
	@set -e; start=$$(date +%s); \
	fail() { echo "make up: $$1" >&2; $(COMPOSE) ps >&2; $(COMPOSE) logs --no-color --tail=40 >&2; exit 1; }; \
	YOLK_IMAGE=$(IMAGE) $(COMPOSE) up -d --scale worker=$(WORKERS) || fail "docker-compose up failed"; \
	until [ -n "$$ids" ] && [ -z "$$(docker inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' $$ids | grep -v ' healthy$$\| running$$')" ] \
		&& $(COMPOSE) exec -T master /master healthcheck --ready >/dev/null 2>&1; do \
		[ $$(( $$(date +%s) - start )) -lt $(UP_TIMEOUT) ] || fail "not healthy after $(UP_TIMEOUT)s"; \
		sleep 1; ids=$$($(COMPOSE) ps -q); \
	done; \
	port=$$(sed -n 's/^YOLK_PUBLISH_PORT=//p' .env); port=$${YOLK_PUBLISH_PORT:-$${port:-7001}}; \
	echo "make up: healthy in $$(( $$(date +%s) - start ))s with $(WORKERS) workers; try:"; \
	echo "  curl localhost:$$port/data"

down:
	$(COMPOSE) down -v --remove-orphans

# k8s-check: strict-decode every manifest under k8s/ and check what decoding cannot
# (the test is deploytest/k8s, in the deploytest module).
k8s-check:
	cd deploytest && $(GO) test -count=1 ./k8s/
