# Two commands on a fresh machine: `make run` and `make test`.
VENV   := .venv
PYTHON ?= python3
STAMP  := $(VENV)/.installed-stamp
BIN    := $(VENV)/bin

.PHONY: run test lint format install clean bench-quick

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Embedded default: SQLite file ./einlass.db, worker in-process, demo merchant.
run: $(STAMP)
	$(BIN)/einlass migrate
	$(BIN)/einlass demo
	$(BIN)/einlass serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-quick: $(STAMP)
	$(BIN)/python bench/ingest.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
