# Skiff build entry points. `make run` builds and starts a single-node
# server; `make test` runs every test (unit and end-to-end).

.PHONY: all build run test unit e2e clean

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

clean:
	rm -rf bin
