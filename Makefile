# atcr-verifier — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
STAMPS := .make
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install deps python-deps system-deps devnet-deps test lint unit integration demo bench clean

# Pinned Go tools (OPA, helm, kubeconform, Ratify, and the e2e control plane) built from the Go
# module proxy into ~/.cache: see mk/versions.mk and e2e/versions.env.
.DEFAULT_GOAL := install
include mk/k8s.mk
include mk/ratify.mk

install: deps

deps: python-deps system-deps devnet-deps tools ratify-tool

python-deps: $(STAMPS)/python-deps
$(STAMPS)/python-deps: pyproject.toml
	@mkdir -p $(STAMPS)
	$(PIP) install --quiet -e '.[provider,dev]'
	@touch $@

# Debian's docker-registry (distribution 2.8) is the real registry the tests push to.
system-deps: $(STAMPS)/system-deps
$(STAMPS)/system-deps:
	@mkdir -p $(STAMPS)
	@if ! command -v docker-registry >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null; \
	fi
	@command -v docker-registry >/dev/null
	@touch $@

# The real ATProto PLC + PDS from npm, pinned by devnet/package-lock.json.
# better-sqlite3 builds from source: npm_config_nodedir=/usr stops node-gyp downloading headers.
devnet-deps: $(STAMPS)/devnet-deps
$(STAMPS)/devnet-deps: devnet/package-lock.json
	@mkdir -p $(STAMPS)
	cd devnet && npm_config_nodedir=/usr npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: python-deps
	ruff check .
	mypy
	lint-imports

unit: python-deps
	$(PYTHON) -m pytest tests/unit -q

integration: deps
	$(PYTHON) -m pytest tests/integration -q

test: deps lint
	$(PYTHON) -m pytest tests -q

demo: deps
	$(PYTHON) -m atcr_devnet run -- bash demo/verify-demo.sh

bench: deps
	$(PYTHON) bench/bench_core.py
	$(PYTHON) bench/bench_ratify.py

clean:
	rm -rf $(STAMPS) devnet/node_modules .pytest_cache .mypy_cache .ruff_cache bench/results
