# Two commands matter: `make run` and `make test`. Everything they need is installed
# by the targets below; nothing has to be set up by hand.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")

.PHONY: help setup run stop status test test-unit lint format schemas

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup:  ## install uv if missing and the locked Python environment
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	@$(UV) sync --frozen --quiet

run: setup  ## start Kafka, S3, PostgreSQL, the edge, the services and the reference analyzer
	@$(UV) run --frozen python -m devstack up

stop:  ## stop everything `make run` started
	@$(UV) run --frozen python -m devstack down

status:  ## what is running
	@$(UV) run --frozen python -m devstack status

test: setup  ## run every test; the stack the tests need is started and stopped by them
	@$(UV) run --frozen pytest

test-unit: setup  ## only the in-memory tests
	@$(UV) run --frozen pytest -m unit

lint: setup  ## ruff and mypy
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy

format: setup
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

schemas: setup  ## regenerate contracts/schemas from the models
	@$(UV) run --frozen python -m contracts.schemas
