# Two commands on a fresh clone (only Python 3.11 and make needed):
#   make run    build the environment if missing, run the pipeline for every wave, print the summary
#   make test   build the environment if missing, run the whole test suite
PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV := .tools/bin/uv
PY := .venv/bin/python
ENV_STAMP := .venv/.synced

.PHONY: run test test-fast lint lint-sql benchmark setup summary docs dashboard catalogue clean secrets airflow \
	airflow-cli wave-draft wave-check

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# --compile-bytecode: the packages' .pyc files are written once here. Without them a Python that may not write its
# own (PYTHONDONTWRITEBYTECODE, read-only installs) compiles Airflow, dbt and Great Expectations again in every
# process: about 6 s more per process
$(ENV_STAMP): pyproject.toml uv.lock Makefile | $(UV)
	UV_PYTHON=$(PYTHON) $(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

# Superset has its own environment (it needs SQLAlchemy<2, Airflow needs 2)
BI_STAMP := bi/.venv/.synced
$(BI_STAMP): bi/pyproject.toml bi/uv.lock Makefile | $(UV)
	UV_PYTHON=$(PYTHON) $(UV) sync --frozen --quiet --compile-bytecode --project bi
	@touch $@

run: $(ENV_STAMP)
	$(PY) -m survey_warehouse.cli run $(YEARS)

# everything, two test files at a time (pytest-xdist; a file stays on one process), the longest first (tests/conftest.py)
test: $(ENV_STAMP)
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# the edit loop: the loader, codebook, matching, gates' suites, DAG parse; no pipeline run, Superset or Celery
test-fast: $(ENV_STAMP)
	$(PY) -m pytest -m "not slow"

# ruff (lint, format), mypy, sqlfluff on the dbt models (dbt templater) and the example queries, primary-key tests
SQLFLUFF := $(UV) tool run --quiet --from sqlfluff==4.4.0 --with sqlfluff-templater-dbt==4.4.0 \
	--with "dbt-core==1.11.*" --with "dbt-duckdb==1.11.*" sqlfluff
lint: $(ENV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(MAKE) lint-sql

lint-sql: $(ENV_STAMP)
	mkdir -p var/lint
	SURVEY_WAREHOUSE_PATH=$(CURDIR)/var/lint/survey.duckdb $(SQLFLUFF) lint dbt_project/models
	cd analysis && ../$(UV) tool run --quiet --from sqlfluff==4.4.0 sqlfluff lint queries
	$(PY) -m survey_warehouse.cli manifest
	$(PY) scripts/check_primary_keys.py

# figures and ratios: the yearly run beside its own work, gates, DAG parse, the loader on a million rows
benchmark: $(ENV_STAMP)
	$(PY) benchmarks/pipeline.py

# a new wave's spec and codebook rows proposed from its file and the earlier waves (docs/adding-a-wave.md):
#   make wave-draft FILE=data/waves/2020/export.csv YEAR=2020   (JSON=1: the open decisions as JSON)
# exit code 3 while decisions are left to a person
wave-draft: $(ENV_STAMP)
	$(PY) -m survey_warehouse.cli wave draft $(FILE) --year $(YEAR) $(if $(JSON),--json)

setup: $(ENV_STAMP)
	$(PY) -m survey_warehouse.cli setup

summary: $(ENV_STAMP)
	$(PY) -m survey_warehouse.cli summary

# a new wave checked before a run loads it: make wave-check YEAR=2020 (JSON=1 for JSON); the command's exit code
# says how it went (make's own is 2 for any failure; docs/adding-a-wave.md#checking-a-wave-before-it-runs)
wave-check: $(ENV_STAMP)
	@test -n "$(YEAR)" || { echo "usage: make wave-check YEAR=<wave year>"; exit 2; }
	$(PY) -m survey_warehouse.cli wave check $(YEAR) $(if $(JSON),--json)

# dbt docs (lineage and the mart catalogue) into var/dbt_docs, from the warehouse `make run` built
docs: $(ENV_STAMP)
	$(PY) -m survey_warehouse.cli docs

# Airflow until Ctrl-C: UI (prints its URL and where the login is), scheduler, dag-processor, triggerer (the inbox),
# the project's DAGs unpaused. PORT=8081 for another port; PAUSED=1 leaves the DAGs paused
airflow: $(ENV_STAMP)
	$(PY) -m survey_warehouse.cli airflow $(if $(PORT),--port $(PORT)) $(if $(PAUSED),--paused)

# any airflow command with the project's environment: make airflow-cli ARGS='dags list'
airflow-cli: $(ENV_STAMP)
	$(PY) -m survey_warehouse.cli airflow-cli $(ARGS)

# The dashboard on the published marts (after `make run`): prints the URL and the login; Ctrl-C stops it
dashboard: $(BI_STAMP)
	bi/.venv/bin/python bi/run_superset.py

# docs/mart_catalogue.md from the dbt manifest: every mart, its grain and its columns
catalogue: $(ENV_STAMP)
	$(PY) -m survey_warehouse.cli setup
	$(PY) scripts/mart_catalogue.py > docs/mart_catalogue.md

# .env for docker-compose.yml: fresh random secrets (never overwrites an existing .env; any Python 3 will do)
secrets:
	python3 scripts/make_secrets.py

clean:
	rm -rf var dbt_project/target dbt_project/logs
