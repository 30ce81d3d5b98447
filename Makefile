# One entry point. Every target bootstraps .venv on a fresh machine (Python 3.11 and make).
#   make serve   run the service with the demo handlers on an embedded SQLite file (ARGS=...)
#   make test    ruff, mypy (strict), import-linter, then the whole test suite (TEST_ARGS=...)
#   make test-loaded  the suite RUNS times in a row (default 3) with stress-ng --cpu 2 beside it
#   make bench   the benchmark suite (bench/README.md)
#   make lock    regenerate requirements.lock and requirements-dev.lock from pyproject.toml,
#                keeping the locked versions (ARGS=--upgrade to move to the newest allowed)
#
# Installs take the exact versions the project tests from the lock files; pyproject.toml has
# the compatible ranges that other applications depending on taskstatus get.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
TEST_ARGS ?=

.PHONY: serve worker test test-loaded lint bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev: pyproject.toml requirements-dev.lock $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e '.[dev]'
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

RUNS ?= 3
test-loaded: lint
	scripts/test-loaded $(RUNS) $(BIN)/pytest $(TEST_ARGS)

bench: $(VENV)/.dev
	$(BIN)/python -m bench $(ARGS)

LOCK_FLAGS := --quiet --python-version 3.11.5 --python-platform x86_64-unknown-linux-gnu
lock: $(VENV)/.dev
	$(BIN)/uv pip compile $(LOCK_FLAGS) $(ARGS) pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile $(LOCK_FLAGS) $(ARGS) --extra dev pyproject.toml -o requirements-dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
