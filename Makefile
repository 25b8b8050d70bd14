# yolk: make build | run | test | lint
GO      ?= go
BIN     := bin
CMDS    := master agent worker source
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build run test lint clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

# run: the example in the foreground: the remote source, then the master with the
# agent and the workers. Ctrl-C stops both cleanly.
run: build
	@set -e; $(BIN)/source & src=$$!; \
	trap 'kill -TERM $$src 2>/dev/null; wait $$src' EXIT; \
	until $(BIN)/source healthcheck 2>/dev/null; do \
		kill -0 $$src 2>/dev/null || { echo "make run: the source did not start" >&2; exit 1; }; sleep 0.05; \
	done; \
	$(BIN)/master

test:
	$(GO) test -race -count=1 ./...

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf $(BIN) run
