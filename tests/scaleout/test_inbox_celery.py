"""The survey_waves DAG on Airflow's Celery executor, with event-driven loads: api-server, scheduler, dag-processor,
triggerer and a Celery worker as real local processes, PostgreSQL for the metadata and the warehouse, Redis as the
broker (see celery_stack.py). One stack for the whole module:

1. a good 2019 file dropped into the inbox starts its run by itself (the triggerer runs the inbox's AssetWatcher);
   every task of the run goes through this stack's Celery queue and runs on its worker, the marts are published
   in PostgreSQL for the read-only role, and the file ends up archived at the wave spec's `file:`;
2. a run triggered through the REST API with nothing new since that publication does nothing and publishes
   nothing;
3. a damaged copy of the file: the run fails, the file stays in the inbox with <file>.rejected.txt giving the
   reason the run recorded, and the published marts are the ones of the first run.

Needs PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379: skipped without them, failed without them in CI.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from celery_stack import CeleryAirflow, services_unreachable
from conftest import ROOT, make_paths, with_waves_dir

from survey_warehouse.settings import Paths
from survey_warehouse.warehouse import Session, Warehouse

WAVE_FILE = ROOT / "data" / "waves" / "2019" / "city_survey_2019_export.csv"
RUN_TIMEOUT_SECONDS = 900
START_TIMEOUT_SECONDS = 240  # the dag-processor registers the watcher once the DAG is unpaused, then the file settles
BROKER_DB = 7


@dataclass
class InboxStack:
    stack: CeleryAirflow
    paths: Paths
    database: str
    reader: str
    archive: Path  # the wave spec's `file:`

    @property
    def delivery(self) -> Path:
        return self.paths.inbox_dir / "2019" / WAVE_FILE.name

    def drop(self, data: bytes) -> None:
        """As docs/operating.md says: write <file>.part, then rename it (a partial file is never taken)."""
        self.delivery.parent.mkdir(parents=True, exist_ok=True)
        part = self.delivery.with_name(self.delivery.name + ".part")
        part.write_bytes(data)
        part.rename(self.delivery)

    def publications(self) -> list[tuple[str, int]]:
        warehouse = Warehouse(backend="postgres", dbname=self.database)
        with Session(warehouse, read_only=True) as s:
            runs = [r[0] for r in s.execute("select run_id from marts.publication").fetchall()]
            rows = s.execute("select count(*) from marts.fct_city_responsibility where wave_year = 2019").fetchone()
        return [(run, rows[0]) for run in runs]


def _admin(sql: str, params: list | None = None) -> list:
    with closing(psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")) as con:
        con.autocommit = True
        cur = con.cursor()
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def inbox_stack() -> Iterator[InboxStack]:
    reason = services_unreachable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the inbox test needs PostgreSQL and Redis, and CI must provide them: {reason}")
        pytest.skip(f"the inbox test needs PostgreSQL and Redis: {reason}")
    tag = f"{os.getpid()}_{secrets.token_hex(3)}"
    database, reader = f"survey_test_inbox_{tag}", f"survey_reader_inbox_{tag}"
    paths = make_paths("celery_inbox")
    # the test's own wave spec for 2019, its `file:` in the test's folder: archiving never touches data/waves/
    archive = paths.var / "archive" / "2019" / WAVE_FILE.name
    waves = paths.var / "waves"
    waves.mkdir()
    spec = (ROOT / "config" / "waves" / "2019.yml").read_text(encoding="utf-8")
    assert f"file: data/waves/2019/{WAVE_FILE.name}" in spec
    (waves / "2019.yml").write_text(spec.replace(f"data/waves/2019/{WAVE_FILE.name}", str(archive)), encoding="utf-8")
    paths = with_waves_dir(paths, waves)
    env = {
        "SURVEY_DBT_TARGET": "postgres",
        "AIRFLOW_CONN_SURVEY_WAREHOUSE": f"postgresql://postgres:unused@127.0.0.1:5432/{database}",
        "SURVEY_READER_ROLE": reader,
        "SURVEY_INBOX_POLL_SECONDS": "1",
        "SURVEY_INBOX_SETTLE_SECONDS": "2",
    }
    _admin(f'create database "{database}"')
    try:
        with CeleryAirflow(paths, pools={}, extra_env=env, broker_db=BROKER_DB, schedule_runs=True) as stack:
            stack.unpause()
            yield InboxStack(stack, paths, database, reader, archive)
    finally:
        _admin("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", [database])
        _admin(f'drop database if exists "{database}"')
        if _admin("select 1 from pg_roles where rolname = %s", [reader]):
            _admin(f'drop role "{reader}"')


def test_a_dropped_wave_file_starts_its_run_which_publishes_and_archives_it(inbox_stack: InboxStack) -> None:
    s = inbox_stack
    started = time.monotonic()
    known = {r["dag_run_id"] for r in s.stack.dag_runs() if r["run_type"] == "asset_triggered"}

    s.drop(WAVE_FILE.read_bytes())
    run_id = s.stack.wait_for_new_run("asset_triggered", known, timeout=START_TIMEOUT_SECONDS)
    run_started = time.monotonic()
    state = s.stack.wait(run_id, timeout=RUN_TIMEOUT_SECONDS)
    print(
        f"\ninbox run {run_id}: started {run_started - started:.0f} s after the drop, {state} after another "
        f"{time.monotonic() - run_started:.0f} s",
        flush=True,
    )

    states = s.stack.task_states(run_id)
    assert state == "success", f"run {run_id} ended {state}; tasks: {states}; {s.stack.where_the_logs_are()}"
    assert states["publish_marts"] == "success"
    assert states["record_failure"] == "skipped"
    plan = s.stack.xcom(run_id, "plan_wave")
    assert plan["wave_year"] == 2019, plan
    assert plan["delivered_as"] == str(s.delivery), plan
    assert s.stack.xcom(run_id, "publish_marts")["archived"] == str(s.archive)

    assert not s.delivery.exists(), "the accepted file is still in the inbox"
    assert s.archive.read_bytes() == WAVE_FILE.read_bytes(), "the accepted file is not at the wave spec's file:"
    assert not list(s.delivery.parent.glob("*.rejected.txt"))
    assert s.publications() == [(run_id, 20)]

    # every task went through this stack's Celery queue and ran on its worker (the scheduler itself marks an
    # empty task, such as the watcher's "producer done" gate, successful)
    not_done = {task: state for task, state in states.items() if state not in ("success", "skipped")}
    assert not not_done, f"tasks neither succeeded nor skipped: {not_done}; {s.stack.where_the_logs_are()}"
    assert set(states) >= {
        "plan_wave",
        "load_raw_wave",
        "validate_raw_wave",
        "accept_raw_wave",
        "dbt_build.dbt_producer_watcher",
        "validate_marts",
        "publish_marts",
    }, states
    instances = s.stack.task_instances(run_id)
    ran = [ti for ti in instances if ti["state"] == "success" and ti["operator"] != "EmptyOperator"]
    assert ran and all(ti["queue"] == s.stack.queue for ti in ran), [(ti["task_id"], ti["queue"]) for ti in ran]
    assert all(ti["hostname"] for ti in ran), [(ti["task_id"], ti["hostname"]) for ti in ran]
    worker_log = s.stack.log_path("celery-worker")
    worker_output = worker_log.read_text(errors="replace")
    assert "publish_marts" in worker_output and run_id in worker_output, (
        f"the Celery worker did not log the run's tasks; see {worker_log}"
    )

    # the marts were swapped into `marts` in PostgreSQL, readable by the read-only role; nothing went to DuckDB
    with Session(Warehouse(backend="postgres", dbname=s.database), read_only=True) as session:
        schemas = {r[0] for r in session.execute("select schema_name from information_schema.schemata").fetchall()}
    assert "marts_next" not in schemas
    assert not s.paths.warehouse.exists(), "something was written to the embedded DuckDB warehouse"
    with closing(psycopg2.connect(host="127.0.0.1", port=5432, user=s.reader, dbname=s.database)) as con:
        cur = con.cursor()
        cur.execute("select count(*) from marts.fct_responsibility_shares")
        assert cur.fetchone()[0] > 0


def test_a_triggered_run_with_nothing_new_does_nothing(inbox_stack: InboxStack) -> None:
    s = inbox_stack
    published_before = s.publications()
    assert published_before, "the first test published nothing"

    run_id = s.stack.trigger(2019)
    state = s.stack.wait(run_id, timeout=RUN_TIMEOUT_SECONDS)

    states = s.stack.task_states(run_id)
    assert state == "success", f"run {run_id} ended {state}; tasks: {states}; {s.stack.where_the_logs_are()}"
    # the plan finds the wave unchanged since its publication and ends the run there: every task skipped (but the
    # empty "producer done" gate, which the scheduler marks itself)
    assert states["plan_wave"] == "skipped", states
    worked = {ti["task_id"]: ti["state"] for ti in s.stack.task_instances(run_id) if ti["operator"] != "EmptyOperator"}
    assert set(worked.values()) == {"skipped"}, worked
    assert s.publications() == published_before


def test_a_damaged_file_is_rejected_with_the_reason_beside_it(inbox_stack: InboxStack) -> None:
    s = inbox_stack
    published_before = s.publications()
    archived_before = hashlib.sha256(s.archive.read_bytes()).hexdigest() if s.archive.exists() else None
    known = {r["dag_run_id"] for r in s.stack.dag_runs() if r["run_type"] == "asset_triggered"}

    good = WAVE_FILE.read_bytes()
    # cut off in transfer: the file ends after the second cell of a row in the middle of the file
    row = good.index(b"\n", len(good) // 2) + 1
    damaged = good[: good.index(b",", good.index(b",", row) + 1)]
    s.drop(damaged)
    run_id = s.stack.wait_for_new_run("asset_triggered", known, timeout=START_TIMEOUT_SECONDS)
    state = s.stack.wait(run_id, timeout=RUN_TIMEOUT_SECONDS)

    states = s.stack.task_states(run_id)
    assert state == "failed", f"run {run_id} ended {state}; tasks: {states}"
    assert states["load_raw_wave"] == "failed", states
    assert states["record_failure"] == "success", states
    recorded = s.stack.xcom(run_id, "record_failure")

    note = s.delivery.with_name(s.delivery.name + ".rejected.txt")
    assert s.delivery.read_bytes() == damaged, "the rejected file was not left in place"
    assert note.is_file(), f"no {note.name} beside the rejected file"
    text = note.read_text(encoding="utf-8")
    assert text.startswith(recorded.rstrip() + "\n"), f"note:\n{text}\nrecorded:\n{recorded}"
    assert "load_raw_wave" in text
    assert WAVE_FILE.name in text
    assert "cut off" in text, text
    assert run_id in text

    assert s.publications() == published_before, "a rejected delivery changed the published marts"
    after = hashlib.sha256(s.archive.read_bytes()).hexdigest() if s.archive.exists() else None
    assert after == archived_before, "a rejected delivery changed the archived file"
