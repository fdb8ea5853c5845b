# `make run` and `make test` each install what a fresh clone lacks, then do their job.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# checkov's own pins clash with the app's: it gets its own venv (tests/infra/test_checkov.py runs it).
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

.PHONY: setup test run demo lint clean bench

$(PY_STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

# checkov 3.3.30 pins pycep-parser 0.5.1, whose grammar predates Bicep's `extension` statement
# (graph-app-roles.bicep); 0.7.1, the one .venv has, parses it and checkov runs unchanged on it.
$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --no-deps pycep-parser==0.7.1
	touch $@

setup: $(PY_STAMP) $(NODE_STAMP) $(CHECKOV_STAMP)

# Most of the suite's time is spent waiting (stacks starting, timers, polls), so it runs on
# TEST_WORKERS pytest-xdist workers (0: in this process). --dist loadfile keeps each test file on
# one worker (its module-scoped stack starts once); --no-loadscope-reorder keeps the collection
# order, so the long e2e files start first and the many short unit files fill in at the end. The
# 20 slowest steps are listed before the summary: where CI's time goes.
TEST_WORKERS ?= 2

test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20

# `make run V=1`: the host's and the tenant's logs on the console instead of in .devstack/logs/.
run: setup
	$(PY) -m devstack up --demo --managed-identity$(if $(filter-out 0,$(V)), --verbose)

demo: setup
	$(PY) -m devstack demo

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) node_modules .devstack
