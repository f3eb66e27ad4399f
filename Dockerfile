# Images of the scale-out stack (docker-compose.yml): the survey pipeline on Airflow, and Superset for the marts.
#
#   docker build -t survey-warehouse-airflow .                    # the Airflow image (the last stage, the default)
#   docker build --target superset -t survey-warehouse-superset .
#
# Both live in this one file so the stack needs no other build files. Airflow is the last stage, so a plain
# `docker build .` gives the Airflow image; BuildKit then skips the Superset stage (the legacy builder builds every
# stage before the target, which costs one pull of the Superset image).

# Superset's images ship no database drivers (not even for its own metadata database); this one speaks PostgreSQL.
# 2.9.9 is the psycopg2-binary that apache-superset 6.1.0 pins for its `postgres` extra (bi/pyproject.toml has the
# same). The dashboard kept as code and its provisioning (bi/run_superset.py: schema upgrade, roles, admin user, the
# bundle imported against the marts SURVEY_MARTS_URI names, then the web server) are copied in, as `make dashboard`
# runs them; docker-compose's superset service runs that script.
FROM apache/superset:6.1.0 AS superset
USER root
RUN uv pip install --no-cache --python /app/.venv/bin/python "psycopg2-binary==2.9.9" \
    && mkdir -p /app/survey_bi/var && chown -R superset /app/survey_bi
ENV SURVEY_VAR_DIR=/app/survey_bi/var
COPY --chown=superset bi/run_superset.py bi/build_bundle.py bi/superset_config.py /app/survey_bi/bi/
COPY --chown=superset bi/dashboards/ /app/survey_bi/bi/dashboards/
# The project's secrets check (standard library only), where superset_config.py and run_superset.py load it from: the
# same place relative to bi/ as in the repository.
COPY --chown=superset src/survey_warehouse/secrets.py /app/survey_bi/src/survey_warehouse/secrets.py
USER superset


# The Airflow tag must equal the apache-airflow pin in pyproject.toml (tests/test_compose.py checks it), and its
# Python must satisfy requires-python (3.11).
FROM apache/airflow:3.3.2-python3.11 AS airflow

# The same uv that wrote uv.lock (Makefile: UV_VERSION), so the lock is read exactly as it was written.
ARG UV_VERSION=0.13.9

# The package is installed, not run from a checkout: settings.py finds the project's files through this variable.
ENV SURVEY_PROJECT_ROOT=/opt/survey \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/survey/dags \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False \
    DO_NOT_TRACK=1

USER root
# var/ and inbox/ exist in the image so that the named volumes mounted there start out owned by airflow and writable
# by group 0: docker-compose runs the containers as the host's user (AIRFLOW_UID) with group 0, as the Airflow image
# supports.
RUN mkdir -p /opt/survey/var /opt/survey/inbox && chown -R airflow:0 /opt/survey \
    && chmod -R g=u /opt/survey/var /opt/survey/inbox
USER airflow

# Dependencies first, so that code and data changes do not reinstall them. README.md is the package's readme:
# building the wheel fails without it.
COPY --chown=airflow:0 pyproject.toml uv.lock README.md /opt/survey/
COPY --chown=airflow:0 src/ /opt/survey/src/

# Plain `pip install /opt/survey` cannot work: airflow-provider-great-expectations 1.0.0 declares structlog<25.5 while
# Airflow 3.3 needs structlog>=26.1, and pip has no overrides (pyproject.toml overrides it for uv, see STACK.md).
# So: the versions uv.lock pinned become constraints, the same structlog override is applied, and the scale-out
# extras resolve inside them:
#   dbt-postgres 1.11.*        dbt-core stays on 1.11 (1.12 cannot be installed here, STACK.md)
#   psycopg2-binary            driver of dbt-postgres, Airflow's metadata database and the Celery result backend
#   providers-celery           the Celery executor
#   celery[redis]<5.7          celery 5.7.0 breaks the Celery provider (ImportError: cannot import name 'retry')
#   providers-fab 3.10.2       the FAB auth manager: users and roles (docker-compose.yml); resolves within the lock
# Naming apache-airflow==${AIRFLOW_VERSION} (the image's own version) makes the build fail loudly, instead of
# silently swapping Airflow, if this tag and the pin in pyproject.toml ever disagree.
RUN python -m pip install --no-cache-dir --quiet --target /tmp/uv-pinned "uv==${UV_VERSION}" \
    && /tmp/uv-pinned/bin/uv export --project /opt/survey --frozen --no-dev --no-emit-project --no-hashes \
         --quiet --output-file /tmp/survey-lock.txt \
    && printf 'structlog>=26.1.0\n' > /tmp/survey-overrides.txt \
    && /tmp/uv-pinned/bin/uv pip install --no-cache --python "$(command -v python)" \
         --constraint /tmp/survey-lock.txt --override /tmp/survey-overrides.txt \
         "apache-airflow==${AIRFLOW_VERSION}" /opt/survey \
         "dbt-postgres==1.11.*" psycopg2-binary apache-airflow-providers-celery "celery[redis]<5.7" \
         "apache-airflow-providers-fab==3.10.2" \
    && rm -rf /tmp/uv-pinned /tmp/survey-lock.txt /tmp/survey-overrides.txt

COPY --chown=airflow:0 dags/ /opt/survey/dags/
COPY --chown=airflow:0 dbt_project/ /opt/survey/dbt_project/
COPY --chown=airflow:0 expectations/ /opt/survey/expectations/
COPY --chown=airflow:0 config/ /opt/survey/config/
# No data/waves/: docker-compose mounts the checkout's data/waves/ there, where runs archive the deliveries
# (respondents' data, which no image should carry; .dockerignore leaves it out of the build context).
COPY --chown=airflow:0 scripts/ /opt/survey/scripts/
COPY --chown=airflow:0 docker/ /opt/survey/docker/

# Every container checks its secrets before the image's own entrypoint runs (docker/entrypoint.sh); dumb-init stays
# the first process, as in the Airflow image, so signals reach Airflow and Celery.
ENTRYPOINT ["/usr/bin/dumb-init", "--", "bash", "/opt/survey/docker/entrypoint.sh"]

# Cosmos renders the DAG from dbt's manifest (LoadMode.DBT_MANIFEST), so the manifest is built into the image and the
# dag-processor never runs dbt. A target/ copied from a working tree is stale: it is removed first. Parsing opens no
# database; the warehouse path only satisfies profiles.yml.
RUN cd /opt/survey/dbt_project \
    && rm -rf target logs \
    && SURVEY_WAREHOUSE_PATH=/tmp/dbt-parse.duckdb dbt parse --profiles-dir . --no-partial-parse --quiet \
    && rm -rf logs
