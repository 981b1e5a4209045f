# Developer entry points.  Everything runs from the project virtualenv in .venv;
# `make test` is what CI runs (see .ci/run).

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
LINT_PATHS := src tests examples bench fuzz

# Debian packages the test-suite shells out to, as command:package pairs.
# A package is installed only when its command is missing from PATH (or, for
# a library, when the path it installs is missing).
# The Go packages build h2spec (third_party/h2spec), offline.
H2SPEC_DEPS := go:golang-go \
  /usr/share/gocode/src/github.com/spf13/cobra:golang-github-spf13-cobra-dev \
  /usr/share/gocode/src/github.com/fatih/color:golang-github-fatih-color-dev \
  /usr/share/gocode/src/golang.org/x/net/http2:golang-golang-x-net-dev
SYSTEM_DEPS := curl:curl nghttp:nghttp2-client node:nodejs npm:npm gtlsclient:ngtcp2-client chromium:chromium nginx:nginx haproxy:haproxy $(H2SPEC_DEPS)

.PHONY: venv certs demo system-deps node-deps h2spec test lint fuzz conformance bench bench-quick soak clean distclean

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
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || test -e "$${pair%%:*}" || missing="$$missing $${pair#*:}"; \
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

# h2spec, the HTTP/2 conformance tool (third_party/h2spec/VENDORED.md), built with
# Debian's Go and Go libraries in GOPATH mode: no module download, no network.
# tests/http2/conformance/test_h2spec.py runs it.
H2SPEC := .tools/bin/h2spec
H2SPEC_GOPATH := .tools/gopath
H2SPEC_SOURCES := $(shell find third_party/h2spec -name '*.go' -not -name '*_test.go')
# The upstream release and commit vendored (h2spec prints them with --version).
H2SPEC_VERSION := 2.6.0
H2SPEC_COMMIT := af83a65f0b6273ef38bf778d400d98892e7653d8

h2spec: $(H2SPEC)

$(H2SPEC): $(H2SPEC_SOURCES) | system-deps
	@mkdir -p $(H2SPEC_GOPATH)/src/github.com/summerwind $(dir $@)
	ln -sfn $(CURDIR)/third_party/h2spec $(H2SPEC_GOPATH)/src/github.com/summerwind/h2spec
	GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH=$(CURDIR)/$(H2SPEC_GOPATH):/usr/share/gocode \
	  GOCACHE=$(CURDIR)/.tools/gocache \
	  go build -ldflags "-X main.VERSION=$(H2SPEC_VERSION) -X main.COMMIT=$(H2SPEC_COMMIT)" -o $@ github.com/summerwind/h2spec/cmd/h2spec

test: venv system-deps node-deps h2spec
	$(BIN)/python -m pytest -q tests $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# Coverage-guided fuzzing of the protocol parsers (docs/fuzzing.md): each target
# for FUZZ_SECONDS, one after another; FUZZ_TARGETS=h1,h2 picks targets.  A
# finding is written to fuzz/findings/ and makes the target fail.
FUZZ_SECONDS ?= 180
FUZZ_TARGETS ?=
comma := ,

fuzz: venv
	$(BIN)/python -m fuzz run --seconds $(FUZZ_SECONDS) $(subst $(comma), ,$(FUZZ_TARGETS))

# The Autobahn|Testsuite (kosoku, installed into .venv-autobahn on first use)
# against WebSocket over HTTP/1.1 and, through tests/support/autobahn_h2_bridge.py, over
# HTTP/2.  `make test` runs 337 of the 517 cases on each (see DEFAULT_CASES in
# tests/websocket/test_autobahn.py); this target runs all of them on both and rewrites
# docs/autobahn-results.md.
# AUTOBAHN_CASES=1.*,12.2.* selects cases.
conformance: venv
	AUTOBAHN_FULL=1 AUTOBAHN_WRITE_SUMMARY=1 $(BIN)/python -m pytest -q -m autobahn tests/websocket/test_autobahn.py tests/websocket/test_ws_h2.py $(PYTEST_ARGS)

# Benchmarks against uvicorn, granian and hypercorn (see bench/README.md); BENCH_ARGS passes options to bench/run.sh.
# `bench` takes ~40 minutes and rewrites bench/RESULTS.md and bench/results.png; `bench-quick`
# (about a minute) only checks the harness and writes under bench/out/
BENCH_ARGS ?=

bench: venv certs
	bash bench/run.sh $(BENCH_ARGS)

bench-quick: venv
	bash bench/run.sh --quick $(BENCH_ARGS)

# One server with --workers 2 under a mixed load (HTTP/1.1, HTTP/2, HTTP/3,
# WebSocket, transfers, vanishing clients, slow readers) with a SIGHUP every
# 5 minutes, watched for memory and descriptor leaks; prints a Markdown report
# (see "Soak" in docs/operations.md).  SOAK_SECONDS sets the length (30 minutes
# by default); SOAK_ARGS passes other options to bench/soak.py.
SOAK_SECONDS ?= 1800
SOAK_ARGS ?=

soak: venv
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache bench/out
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +

# Also drop the virtualenv, the built tools and the generated development certificates.
distclean: clean
	rm -rf $(VENV) .venv-autobahn .tools certs tests/node/node_modules
