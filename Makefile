# omnistock: every target bootstraps its own virtual environment from requirements.lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-all test-soak test-faults bench bench-routing bench-batch bench-peer bench-projector bench-all load lint lock clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

CHROMIUM := /usr/bin/chromium

# tests/browser drives Debian's Chromium; Playwright never downloads a browser.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium

run: $(STAMP)  ## start the service on the embedded default, with the demo retailer on first start
	$(BIN)/omnistock serve --demo

test: $(STAMP) $(CHROMIUM)  ## the full default test suite (under 15 minutes on 2 cores)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP) $(CHROMIUM)  ## everything, including the long profiles
	$(BIN)/python -m pytest -q

test-faults: $(STAMP)  ## the full fault and hostile-input profiles: 25 Valkey kills per durability, long outages, PostgreSQL, failovers (about 10 minutes)
	OMNISTOCK_FAULTS_PROFILE=full $(BIN)/python -m pytest -q -m "" tests/faults tests/hostile

test-soak: $(STAMP)  ## the ledger state machines with ten times the programs (about 6 minutes)
	OMNISTOCK_PROPERTY_SCALE=10 $(BIN)/python -m pytest -q tests/property/test_ledger_state_machine.py

bench: $(STAMP)  ## ledger benchmark: prints a table and writes benchmarks/results/
	$(BIN)/python -m benchmarks.ledger_bench

bench-routing: $(STAMP)  ## routing decision time, optimality gap and savings per network size
	$(BIN)/python -m benchmarks.routing_bench

bench-peer: $(STAMP)  ## omnistock against a PostgreSQL row-lock ledger, both fsyncing every write (about 90 s)
	$(BIN)/python -m benchmarks.peer_bench

bench-projector: $(STAMP)  ## the projector's CPU per journaled event under load, with and without its linger (about a minute)
	$(BIN)/python -m benchmarks.projector_bench

bench-all: $(STAMP)  ## every benchmark one after another, then benchmarks/results/SUITE.md and plots (about 10 minutes)
	$(BIN)/python -m benchmarks.suite

bench-batch: $(STAMP)  ## 10,000 orders planned together against one by one (about a minute)
	$(BIN)/python -m benchmarks.batch_bench

# SRE load test (load/README.md): make load [URL=...] [DURATION=60s] [USERS=50] [SHAPE=flash]
URL        ?=
DURATION   ?= 60s
USERS      ?= 50
SPAWN_RATE ?= 10
SHAPE      ?= steady
LOAD_ARGS  ?=

load: $(STAMP)  ## seed, run locust headless, print the SLO verdict, check nothing was oversold
	$(BIN)/python -m load.run --duration $(DURATION) --users $(USERS) \
		--spawn-rate $(SPAWN_RATE) --shape $(SHAPE) $(if $(URL),--url $(URL)) $(LOAD_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks load
	$(BIN)/ruff format --check src tests benchmarks load

lock:  ## re-pin every dependency (needs uv on PATH)
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis tests/browser/artifacts
