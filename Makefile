# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run headless test lint bench standin clean

$(STAMP): pyproject.toml setup.py
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $@

## Set up, write 30 days of demo data if the demo pipeline has none, start the UI + sensors
## on 127.0.0.1:3000 (another port: `make run PORT=3001`).
PORT ?= 3000
run: $(STAMP)
	$(BIN)/ml-assets dev --port $(PORT) --demo-days 30

## The same graph once, without the UI (scripts, CI): prints where the tables are.
headless: $(STAMP)
	$(BIN)/ml-assets run

## The whole test suite (includes a live `dagster dev` test and concurrent writers).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

## A local stand-in for the Databricks REST API, to try the dev deployment by hand
## (docs/databricks.md). Prints the exports that point at it; Ctrl-C stops it.
STANDIN_PORT ?= 8765
standin: $(STAMP)
	$(BIN)/python -m ml_assets_tests.databricks.standin --port $(STANDIN_PORT)

## Delete local state: lake, landing files, MLflow store, Dagster history.
clean:
	rm -rf .ml_assets
