# Two commands on a fresh machine: `make run` and `make test`.
VENV   := .venv
PYTHON ?= python3
STAMP  := $(VENV)/.installed-stamp
BIN    := $(VENV)/bin

.PHONY: run test lint format install system-packages clean bench-quick

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Debian packages the tests and benchmarks need: nginx (tests/test_nginx.py runs
# the configs in deploy/ against the real one), wrk, and Chromium for the admin
# UI's browser tests (Playwright drives /usr/bin/chromium; no browser download).
# A no-op when all are there; run as root (or with sudo) on Debian 12.
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)

system-packages:
	@{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null && command -v wrk >/dev/null && \
	  test -x /usr/bin/chromium || \
	  ($(SUDO) apt-get update && \
	   DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends \
	     nginx wrk chromium fonts-dejavu-core)

install: system-packages $(STAMP)

# Embedded default: SQLite file ./einlass.db, worker in-process, demo merchant.
run: $(STAMP)
	$(BIN)/einlass migrate
	$(BIN)/einlass demo
	$(BIN)/einlass serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: system-packages lint
	$(BIN)/pytest -n 2 --dist loadgroup

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-quick: $(STAMP)
	$(BIN)/python bench/ingest.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
