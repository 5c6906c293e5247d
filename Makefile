# The one entry point: CI calls the same targets.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "$(CURDIR)/.venv-tools/bin/uv")
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: help install run test test-fast lint typecheck format bench chaos audit clean demo-fakes

help:
	@echo "make install    install the locked dependencies into .venv (uv)"
	@echo "make run        receiver + worker in one process (SQLite, dry run without BREVO_API_KEY)"
	@echo "make test       the whole suite (needs Postgres and Redis; see README)"
	@echo "make lint typecheck bench chaos audit"

$(UV):
	python3 -m venv .venv-tools
	.venv-tools/bin/pip install --quiet --disable-pip-version-check "uv>=0.5"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

run: install
	$(BIN)/calendly-brevo run

test: install
	$(BIN)/pytest --cov --cov-report=term

test-fast: install
	$(BIN)/pytest -m "not integration and not e2e and not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python -m benchmarks

chaos: install
	$(BIN)/pytest tests/chaos -m chaos -p no:randomly -s

audit: install
	$(UV) export --frozen --no-dev --no-emit-project -o .audit-requirements.txt
	$(BIN)/pip-audit --strict -r .audit-requirements.txt --disable-pip
	@rm -f .audit-requirements.txt

demo-fakes: install
	$(BIN)/python -m tests.fakes.brevo --port 8081 & $(BIN)/python -m tests.fakes.calendly --port 8082

clean:
	rm -rf $(VENV) .venv-tools .pytest_cache .mypy_cache .ruff_cache data
