# Loopline — the two commands a new user needs are `make demo` and `make test`.
# Both bootstrap uv (into .loopline/bootstrap) when it is not on PATH and install the locked environment.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY_BOOT ?= python3
UV_VERSION ?= 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.loopline/bootstrap/bin/uv)
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
export UV_PYTHON ?= 3.11

.PHONY: help install demo up down stack stack-down test test-fast lint typecheck bench ui-shots clean

help:
	@echo "make demo   - replay 2013 through Airflow on the embedded default (SQLite, local folder, local MLflow)"
	@echo "make test   - lint, type-check and run every test (unit, integration, end to end)"
	@echo "make up     - start the same stack on the demo's data and leave the Airflow and MLflow UIs running"
	@echo "make down   - stop what make up started"
	@echo "make stack  - the production topology as local processes: PostgreSQL, CeleryExecutor on Redis (2 workers),"
	@echo "              api-server, scheduler, dag-processor, triggerer, MLflow on PostgreSQL; returns once healthy"
	@echo "make stack-down - stop exactly what make stack started"
	@echo "make bench  - run the benchmarks in benchmarks/ and print their figures"
	@echo "make ui-shots - run flights for a few months on the embedded stack and screenshot the Loopline page,"
	@echo "              a DAG page and a drift report with headless Chromium (plugins/loopline_airflow/ui/screenshots)"
	@echo "make clean  - remove the local state in .loopline/ but keep the environment"

$(CURDIR)/.loopline/bootstrap/bin/uv:
	$(PY_BOOT) -m venv $(CURDIR)/.loopline/bootstrap
	$(CURDIR)/.loopline/bootstrap/bin/pip install --quiet "uv==$(UV_VERSION)"

# Bytecode is compiled at install: uv does not by default, and where PYTHONDONTWRITEBYTECODE is set (this
# machine kind sets it) every process would compile every module it imports from source, every time (importing
# airflow.sdk, pandas, scikit-learn and MLflow took 19 s of CPU instead of 7). Our own sources are compiled too;
# an edited file is simply compiled again on import (the cache is checked against the file's mtime).
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --compile-bytecode
	$(VENV)/bin/python -m compileall -q -j 0 include plugins dags tests benchmarks
	@touch $@

install: $(VENV)/.synced

demo: install
	$(PY) -m loopline_dev.demo run

up: install
	$(PY) -m loopline_dev.demo up

down: install
	$(PY) -m loopline_dev.demo down

# STACK_HOME / STACK_ARGS (e.g. STACK_ARGS="--database loopline_dev --workers 3") override the defaults.
STACK_HOME ?= $(CURDIR)/.loopline/stack
stack: install
	$(PY) -m loopline_dev.stack up --home $(STACK_HOME) $(STACK_ARGS)

stack-down: install
	$(PY) -m loopline_dev.stack down --home $(STACK_HOME)

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

test: lint typecheck
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "unit"

bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

ui-shots: install
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	$(PY) -m loopline_dev.shots $(SHOTS_ARGS)

clean:
	rm -rf .loopline/demo .loopline/bench .loopline/demo-summary.json
