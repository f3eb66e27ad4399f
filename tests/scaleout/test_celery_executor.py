"""The survey_waves DAG on Airflow's Celery executor: api-server, scheduler, dag-processor and a Celery worker as
real local processes, PostgreSQL for the metadata and the warehouse, Redis as the broker (see celery_stack.py).

Needs PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379: skipped without them, failed without them in CI.
"""

from __future__ import annotations

import os
import secrets
import time
from contextlib import closing

import psycopg2
import pytest
from celery_stack import CeleryAirflow, services_unreachable
from conftest import make_paths

from survey_warehouse.warehouse import Session, Warehouse

RUN_TIMEOUT_SECONDS = 900


@pytest.fixture
def services() -> None:
    reason = services_unreachable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the Celery executor test needs PostgreSQL and Redis, and CI must provide them: {reason}")
    pytest.skip(f"the Celery executor test needs PostgreSQL and Redis: {reason}")


@pytest.fixture
def warehouse_database(services: None):
    """The test's own PostgreSQL warehouse database and read-only role, dropped afterwards."""
    tag = f"{os.getpid()}_{secrets.token_hex(3)}"
    database, reader = f"survey_test_wh_{tag}", f"survey_reader_test_{tag}"

    def admin(sql: str, params: list | None = None) -> list:
        with closing(psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")) as con:
            con.autocommit = True
            cur = con.cursor()
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    admin(f'create database "{database}"')
    try:
        yield database, reader
    finally:
        admin("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", [database])
        admin(f'drop database if exists "{database}"')
        if admin("select 1 from pg_roles where rolname = %s", [reader]):
            admin(f'drop role "{reader}"')


def test_survey_waves_2019_runs_on_the_celery_executor(warehouse_database: tuple[str, str]) -> None:
    database, reader = warehouse_database
    started = time.monotonic()
    paths = make_paths("celery")
    # the warehouse is Airflow's connection `survey_warehouse`, as under docker-compose
    warehouse_env = {
        "SURVEY_DBT_TARGET": "postgres",
        # Cosmos requires a password; the local PostgreSQL trusts local connections and ignores it
        "AIRFLOW_CONN_SURVEY_WAREHOUSE": f"postgresql://postgres:unused@127.0.0.1:5432/{database}",
        "SURVEY_READER_ROLE": reader,
    }
    try:
        # on PostgreSQL the DAG's tasks use default_pool: dbt tasks may run side by side
        with CeleryAirflow(paths, pools={}, extra_env=warehouse_env) as stack:
            stack_up = time.monotonic()
            run_id = stack.trigger(2019)
            state = stack.wait(run_id, timeout=RUN_TIMEOUT_SECONDS)
            run_done = time.monotonic()
            instances = stack.task_instances(run_id)
            states = stack.task_states(run_id)
            where = stack.where_the_logs_are()
            queue, worker_log = stack.queue, stack.log_path("celery-worker")

            assert state == "success", f"run {run_id} ended {state}; tasks: {states}; {where}"
            assert states["record_failure"] == "skipped", states
            not_done = {task: s for task, s in states.items() if s not in ("success", "skipped")}
            assert not not_done, f"tasks neither succeeded nor skipped: {not_done}; {where}"
            assert any(task.startswith("dbt_build.") for task in states), f"no dbt task in the run: {states}"
            assert set(states) >= {
                "plan_wave",
                "load_raw_wave",
                "validate_raw_wave",
                "accept_raw_wave",
                "dbt_build.dbt_producer_watcher",
                "validate_marts",
                "publish_marts",
            }, states

            # the tasks went through this stack's Celery queue and ran on its worker (the scheduler itself marks
            # an empty task, such as the watcher's "producer done" gate, successful)
            ran = [ti for ti in instances if ti["state"] == "success" and ti["operator"] != "EmptyOperator"]
            assert ran and all(ti["queue"] == queue for ti in ran), [(ti["task_id"], ti["queue"]) for ti in ran]
            assert all(ti["hostname"] for ti in ran), [(ti["task_id"], ti["hostname"]) for ti in ran]
            worker_output = worker_log.read_text(errors="replace")
            assert "publish_marts" in worker_output and run_id in worker_output, (
                f"the Celery worker did not log the run's tasks; see {worker_log}"
            )
    finally:
        total = time.monotonic() - started
        print(f"\nCelery executor test wall time: {total:.0f} s", end="")
        if "run_done" in locals():
            print(
                f" (stack start {stack_up - started:.0f} s, DAG run {run_done - stack_up:.0f} s, "
                f"stop {total - (run_done - started):.0f} s)",
                end="",
            )
        print(flush=True)

    # the marts were published in PostgreSQL: swapped into `marts`, readable by the read-only role
    warehouse = Warehouse(backend="postgres", dbname=database, reader_role=reader)
    with Session(warehouse, read_only=True) as s:
        rows = s.execute("select count(*) from marts.fct_city_responsibility where wave_year = 2019").fetchone()[0]
        run_ids = [r[0] for r in s.execute("select run_id from marts.publication").fetchall()]
        schemas = {r[0] for r in s.execute("select schema_name from information_schema.schemata").fetchall()}
    assert rows == 20
    assert run_ids == [run_id]
    assert "marts_next" not in schemas
    assert not paths.warehouse.exists(), "nothing was written to the embedded DuckDB warehouse"
    with closing(psycopg2.connect(host="127.0.0.1", port=5432, user=reader, dbname=database)) as con:
        cur = con.cursor()
        cur.execute("select count(*) from marts.fct_responsibility_shares")
        assert cur.fetchone()[0] > 0
