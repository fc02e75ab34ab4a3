# omnistock: every target bootstraps its own virtual environment from requirements.lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-all test-soak bench bench-routing bench-batch lint lock clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

run: $(STAMP)  ## start the service on the embedded default
	$(BIN)/omnistock serve

test: $(STAMP)  ## the full default test suite (under 15 minutes on 2 cores)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)  ## everything, including the long profiles
	$(BIN)/python -m pytest -q

test-soak: $(STAMP)  ## the ledger state machines with ten times the programs (about half an hour)
	OMNISTOCK_PROPERTY_SCALE=10 $(BIN)/python -m pytest -q tests/property/test_ledger_state_machine.py

bench: $(STAMP)  ## ledger benchmark: prints a table and writes benchmarks/results/
	$(BIN)/python -m benchmarks.ledger_bench

bench-routing: $(STAMP)  ## routing decision time, optimality gap and savings per network size
	$(BIN)/python -m benchmarks.routing_bench

bench-batch: $(STAMP)  ## 10,000 orders planned together against one by one (about a minute)
	$(BIN)/python -m benchmarks.batch_bench

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

lock:  ## re-pin every dependency (needs uv on PATH)
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
