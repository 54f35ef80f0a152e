# The two commands of the README: `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint typecheck unit fmt install clean openapi browser bench bench-smoke soak wrk

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(INSTALLED)

## Start SeaweedFS, the simulator, the API (and worker), render one video end to end, serve until Ctrl-C.
run: $(INSTALLED)
	$(BIN)/video-gateway dev

## Lint, type-check and run the whole suite against the local Postgres and a private SeaweedFS.
test: $(INSTALLED) browser wrk lint typecheck
	$(BIN)/pytest -n 2

## The fast inner loop: the pure-logic tests only (no S3, simulators or stacks), on 2 processes, about a minute.
unit: $(INSTALLED)
	$(BIN)/pytest -n 2 tests/unit

## Format and autofix what ruff can, then lint and type-check: what `make test` checks first.
fmt: $(INSTALLED)
	$(BIN)/ruff format app tests migrations docker bench docs/examples
	$(BIN)/ruff check --fix app tests migrations docker bench docs/examples
	$(BIN)/mypy

## The console's browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

## The webhook-ingest benchmark's load generator (Debian's wrk: far cheaper than a Python client on 2 cores).
wrk:
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }

## Every benchmark of bench/ side by side with its baseline; writes bench/results/<date>.json and docs/benchmarks/.
bench: $(INSTALLED) wrk
	$(BIN)/python -m bench run

## The same benchmarks on a tiny size (the suite runs this too): proves they run, measures nothing.
bench-smoke: $(INSTALLED) wrk
	$(BIN)/python -m bench run --smoke

## Bounded soak with faults (default 20 minutes): `make soak SOAK_MINUTES=5` for a shorter one.
SOAK_MINUTES ?= 20
soak: $(INSTALLED) wrk
	$(BIN)/python -m bench soak --minutes $(SOAK_MINUTES)

lint: $(INSTALLED)
	$(BIN)/ruff check app tests migrations docker bench docs/examples
	$(BIN)/ruff format --check app tests migrations docker bench docs/examples

typecheck: $(INSTALLED)
	$(BIN)/mypy

openapi: $(INSTALLED)
	$(BIN)/video-gateway openapi > openapi.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
