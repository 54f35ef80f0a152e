# The two commands of the README: `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint typecheck unit install clean openapi browser

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
test: $(INSTALLED) browser lint typecheck
	$(BIN)/pytest

## The console's browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: $(INSTALLED)
	$(BIN)/ruff check app tests migrations docker
	$(BIN)/ruff format --check app tests migrations docker

typecheck: $(INSTALLED)
	$(BIN)/mypy

openapi: $(INSTALLED)
	$(BIN)/video-gateway openapi > openapi.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
