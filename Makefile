# ivrpay — the commands a newcomer needs. Every target installs what it needs first.
# Python 3.11 or newer: python3.11 when it is there, else python3.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test soak lint fmt bench sounds clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "ivrpay needs Python 3.11 or newer (found: $$($(PYTHON) --version 2>&1))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
	  { echo "could not create .venv: on Debian/Ubuntu, apt-get install python3-venv"; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The whole service on embedded defaults: embedded PostgreSQL, sandbox gateway, FastAGI + HTTP.
run: install
	$(BIN)/ivrpay demo

test: install lint
	$(BIN)/pytest -q tests

# Calls under random faults for IVRPAY_SOAK_S seconds (10 minutes), then a table of the counts.
soak: install
	IVRPAY_SOAK_S=$${IVRPAY_SOAK_S:-600} $(BIN)/pytest -q --timeout=0 \
	  tests/e2e/test_fault_suite.py::test_soak

lint: install
	$(BIN)/ruff check ivrpay tests benchmarks
	$(BIN)/ruff format --check ivrpay tests benchmarks
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format ivrpay tests benchmarks
	$(BIN)/ruff check --fix ivrpay tests benchmarks

bench: install
	$(BIN)/python -m benchmarks

# (Re)make missing prompt audio: Japanese with Open JTalk, English with espeak-ng.
sounds: install
	command -v espeak-ng >/dev/null && command -v sox >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq espeak-ng sox)
	$(BIN)/pip install -q -c constraints.txt -e '.[sounds]'
	$(BIN)/python -m ivrpay.sounds.make

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
