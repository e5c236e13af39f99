# Skiff build entry points. `make run` builds and starts a single-node
# server; `make test` runs every test (unit and end-to-end).

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)

.PHONY: all build run test unit e2e clean

all: build

build:
	VERSION=$(VERSION) COMMIT=$(COMMIT) scripts/build

run: build
	bin/skiff server $(ARGS)

test:
	scripts/test

unit:
	scripts/test unit

e2e: build
	scripts/test e2e

clean:
	rm -rf bin
