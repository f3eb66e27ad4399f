# Two commands on a fresh clone (only Python 3.11 and make needed):
#   make run    build the environment if missing, run the pipeline for every wave, print the summary
#   make test   build the environment if missing, run the whole test suite
PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV := .tools/bin/uv
PY := .venv/bin/python
ENV_STAMP := .venv/.synced

.PHONY: run test setup summary docs clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

$(ENV_STAMP): pyproject.toml uv.lock | $(UV)
	UV_PYTHON=$(PYTHON) $(UV) sync --frozen --quiet
	@touch $@

run: $(ENV_STAMP)
	$(PY) -m survey_warehouse.cli run

test: $(ENV_STAMP)
	$(PY) -m pytest

setup: $(ENV_STAMP)
	$(PY) -m survey_warehouse.cli setup

summary: $(ENV_STAMP)
	$(PY) -m survey_warehouse.cli summary

# dbt docs (lineage and the mart catalogue) into var/dbt_docs, from the warehouse `make run` built
docs: $(ENV_STAMP)
	$(PY) -m survey_warehouse.cli docs

clean:
	rm -rf var dbt_project/target dbt_project/logs
