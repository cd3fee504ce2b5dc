# ivrpay — the commands a newcomer needs. Every target installs what it needs first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint fmt bench sounds clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The whole service on embedded defaults: embedded PostgreSQL, sandbox gateway, FastAGI + HTTP.
run: install
	$(BIN)/ivrpay demo

test: install lint
	$(BIN)/pytest -q tests

lint: install
	$(BIN)/ruff check ivrpay tests benchmarks
	$(BIN)/ruff format --check ivrpay tests benchmarks

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
	rm -rf $(VENV) var .pytest_cache .ruff_cache
