# Two commands matter: `make run` and `make test`. Everything they need is installed
# by the targets below; nothing has to be set up by hand.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")

.PHONY: help setup browser containers images run stop status test test-unit lint format schemas bench docs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup:  ## install uv if missing and the locked Python environment
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	@$(UV) sync --frozen --quiet

# The browser tests drive Debian's chromium (Playwright's own browser downloads are not
# used). Installed only when missing; needs root, as CI has. Without root it says how.
CHROMIUM ?= /usr/bin/chromium
browser:  ## install Debian's chromium for the browser tests when it is missing
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing chromium (apt-get) for the browser tests"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
			|| { apt-get update -qq >/dev/null && \
			     apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; \
		else \
			echo "no $(CHROMIUM): the browser tests skip; install it with 'apt-get install chromium'"; \
		fi; \
	fi

# The container tests (tests/containers, marker `containers`) build and run the images
# with podman where no Docker engine answers, render the manifests with kustomize and run
# the compose file with podman-compose (a dev dependency). Debian's packages, installed
# only when missing; needs root, as CI has. Without root it says how. kubectl comes with
# the machine; where its kustomize is missing or too old (Debian's kubectl 1.20 cannot
# read `labels:`), kustomize is built from the Go module proxy into .cache/bin.
CONTAINER_PACKAGES := podman buildah runc catatonit iptables debootstrap slirp4netns netavark \
	aardvark-dns uidmap
KUSTOMIZE_MODULE := sigs.k8s.io/kustomize/kustomize/v5@v5.7.1
containers:  ## install podman, buildah, debootstrap... for the container tests when missing
	@installed=$$(dpkg-query -W -f='$${Status}\n' $(CONTAINER_PACKAGES) 2>/dev/null \
		| grep -c '^install ok installed$$'); \
	if [ "$$installed" = "$(words $(CONTAINER_PACKAGES))" ] || docker info >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing $(CONTAINER_PACKAGES) (apt-get) for the container tests"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq --no-install-recommends $(CONTAINER_PACKAGES) >/dev/null 2>&1 \
		|| { apt-get update -qq >/dev/null && \
		     apt-get install -y -qq --no-install-recommends $(CONTAINER_PACKAGES) >/dev/null; }; \
	else \
		echo "no Docker engine and no podman: the container tests skip; as root run" \
		     "'apt-get install $(CONTAINER_PACKAGES)'"; \
	fi
	@if ! kubectl kustomize deploy/k8s/base >/dev/null 2>&1 && [ ! -x .cache/bin/kustomize ]; then \
		if command -v go >/dev/null; then \
			echo "building kustomize ($(KUSTOMIZE_MODULE)) into .cache/bin"; \
			GOBIN=$(CURDIR)/.cache/bin GOFLAGS=-mod=mod go install $(KUSTOMIZE_MODULE) >/dev/null; \
		else \
			echo "no kubectl with kustomize and no go: the manifest rendering tests skip"; \
		fi; \
	fi

images: setup containers  ## build the five images (Docker where an engine runs, podman otherwise)
	@$(UV) run --frozen python -m deploy.images build

run: setup  ## start Kafka, S3, PostgreSQL, the edge, the services and the reference analyzer
	@$(UV) run --frozen python -m devstack up

stop:  ## stop everything `make run` started
	@$(UV) run --frozen python -m devstack down

status:  ## what is running
	@$(UV) run --frozen python -m devstack status

test: setup browser containers  ## run every test; the stack the tests need is started and stopped by them
	@$(UV) run --frozen python -m deploy.images build --unless-no-engine
	@$(UV) run --frozen pytest

test-unit: setup  ## only the in-memory tests
	@$(UV) run --frozen pytest -m unit

# Each service's tests import their helpers as top-level modules and repeat module names
# (conftest, test_handlers), so mypy checks each of these folders in a run of its own,
# with the tests' relaxed settings of pyproject.toml as flags (there, module patterns
# cannot name top-level test modules). Everything else is the one run of `mypy`.
MYPY_ALONE := services/gateway/tests services/uploader/tests services/analyzer-bridge/tests \
	services/notifier/tests reference-analyzer/tests
MYPY_TESTS := --no-explicit-package-bases --allow-untyped-defs --allow-incomplete-defs \
	--allow-untyped-calls

lint: setup  ## ruff and mypy
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy
	@for dir in $(MYPY_ALONE); do \
		$(UV) run --frozen mypy $(MYPY_TESTS) --cache-dir .mypy_cache/$$(echo $$dir | tr / _) $$dir \
		|| exit 1; \
	done

format: setup
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

schemas: setup  ## regenerate contracts/schemas from the models
	@$(UV) run --frozen python -m contracts.schemas

docs: setup  ## regenerate the AsyncAPI and OpenAPI documents in docs/
	@$(UV) run --frozen python -m docs.generate

bench: setup  ## run the benchmarks (results in bench/results)
	@$(UV) run --frozen python -m bench.upload
	@$(UV) run --frozen python -m bench.sse
	@$(UV) run --frozen python -m bench.decode
	@$(UV) run --frozen python -m bench.kafka_outage
	@$(UV) run --frozen python -m bench.resumable
	@$(UV) run --frozen python -m bench.open_uploads
	@$(UV) run --frozen python -m bench.fair_use
	@$(UV) run --frozen python -m bench.time_to_result
	@$(UV) run --frozen python -m bench.kafka_hop
