# Developer entry points.  Everything runs from the project virtualenv in .venv;
# `make test` is what CI runs (see .ci/run).

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
LINT_PATHS := src tests examples bench

# Debian packages the test-suite shells out to, as command:package pairs.
# A package is installed only when its command is missing from PATH.
SYSTEM_DEPS := curl:curl nghttp:nghttp2-client node:nodejs npm:npm gtlsclient:ngtcp2-client chromium:chromium nginx:nginx haproxy:haproxy

.PHONY: venv certs demo system-deps node-deps test lint conformance bench bench-quick clean distclean

venv: $(STAMP)

# The stamp makes `make venv` a no-op until pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip || echo "warning: could not upgrade pip; continuing" >&2
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

certs: certs/cert.pem

certs/cert.pem: | venv
	$(BIN)/python -m asgiri.devcert certs --force

demo: venv certs
	./scripts/demo.sh

system-deps:
	@missing=""; \
	for pair in $(SYSTEM_DEPS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; \
	else echo "error: missing system packages:$$missing (run as root to install them)" >&2; exit 1; fi; \
	echo "installing system packages:$$missing"; \
	$$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends $$missing

# npm packages the tests drive (tests/node/package.json, pinned by its lock file).
NODE_STAMP := tests/node/node_modules/.installed

node-deps: $(NODE_STAMP)

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json | system-deps
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: venv system-deps node-deps
	$(BIN)/python -m pytest -q tests $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# The Autobahn|Testsuite (kosoku, installed into .venv-autobahn on first use)
# against WebSocket over HTTP/1.1 and, through tests/autobahn_h2_bridge.py, over
# HTTP/2.  `make test` runs 337 of the 517 cases on each (see DEFAULT_CASES in
# tests/test_autobahn.py); this target runs all of them on both and rewrites
# docs/autobahn-results.md.
# AUTOBAHN_CASES=1.*,12.2.* selects cases.
conformance: venv
	AUTOBAHN_FULL=1 AUTOBAHN_WRITE_SUMMARY=1 $(BIN)/python -m pytest -q -m autobahn tests/test_autobahn.py tests/test_ws_h2.py $(PYTEST_ARGS)

# Benchmarks against uvicorn, granian and hypercorn (see bench/README.md); BENCH_ARGS passes options to bench/run.sh.
# `bench` takes ~40 minutes and rewrites bench/RESULTS.md and bench/results.png; `bench-quick`
# (about a minute) only checks the harness and writes under bench/out/
BENCH_ARGS ?=

bench: venv certs
	bash bench/run.sh $(BENCH_ARGS)

bench-quick: venv
	bash bench/run.sh --quick $(BENCH_ARGS)

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache bench/out
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +

# Also drop the virtualenv and the generated development certificates.
distclean: clean
	rm -rf $(VENV) .venv-autobahn certs tests/node/node_modules
