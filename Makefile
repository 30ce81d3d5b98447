# One entry point. Every target bootstraps .venv on a fresh machine (Python 3.11 and make).
#   make serve   run the service with the demo handlers on an embedded SQLite file (ARGS=...)
#   make test    ruff, mypy (strict), import-linter, then the whole test suite (TEST_ARGS=...)
#   make bench   the benchmark suite (bench/README.md)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
TEST_ARGS ?=

.PHONY: serve worker test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

serve: $(VENV)/.runtime
	$(BIN)/taskstatus serve --demo $(ARGS)

worker: $(VENV)/.runtime
	$(BIN)/taskstatus worker $(ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest $(TEST_ARGS)

bench: $(VENV)/.dev
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
