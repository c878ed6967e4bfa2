# Two entry points a newcomer needs (see README Quickstart): `make demo` and `make test`.
# Both create .venv and install the project into it first, so a fresh machine needs only Python 3.11+.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install demo test lint typecheck validate-plans pytest format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: install
	$(BIN)/warmup demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

validate-plans: install
	$(BIN)/warmup plan validate plans/*.yaml

pytest: install
	$(BIN)/pytest

test: lint typecheck validate-plans pytest

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
