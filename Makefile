# Skiff build entry points. `make run` builds and starts a single-node
# server; `make test` runs every test (unit and end-to-end).

.PHONY: all build run test unit e2e bench bench-smoke bench-node conformance docs image clean

all: build

build:
	scripts/build

run: build
	scripts/run $(ARGS)

test:
	scripts/test

unit:
	scripts/test unit

e2e: build
	scripts/test e2e

# Every benchmark in docs/benchmarks.md (about an hour); ARGS="runs".
# Node runs take /tmp/skiff-node.lock, as the end-to-end tests do.
bench: build
	scripts/bench all $(ARGS)

# One quick run of each benchmark, small sizes; fails on any error.
bench-smoke: build
	scripts/bench smoke

# Benchmarks a whole node: start-up, memory, pod density (docs/benchmarks.md).
# Needs root and the host to itself; ARGS="runs idle-seconds pods".
bench-node: build
	scripts/bench-node $(ARGS)

# The upstream conformance suite on a two-node skiff cluster, offline
# (docs/conformance.md); ARGS="--sample", "--focus RE"...
conformance: build
	scripts/conformance $(ARGS)

# Regenerates docs/configuration.md from the CLI flag definitions; a unit
# test fails while it is stale.
docs:
	go test -count=1 -run TestReferenceUpToDate ./pkg/cli -args -update

# Builds the container image; needs a Docker engine, so CI does not run it.
image:
	docker build -t skiff:dev .

clean:
	rm -rf bin
