"""Readers of the PostgreSQL marts while a publication swaps them in: a reader left idle in its transaction, one
that reads a second mart, a long query, an export and a repeatable-read snapshot, each against the real swap.

Each test has a throwaway database on the local PostgreSQL with the project's marts (one column each) published and
a new build of them waiting, so the swap is the only thing measured.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace

import psycopg2
import pytest
from conftest import ROOT, require_services

from survey_warehouse.publishing import exports, publish
from survey_warehouse.quality.batches import project_marts
from survey_warehouse.raw import builds
from survey_warehouse.raw.schema import ensure_raw_schema
from survey_warehouse.warehouse import Session, Warehouse

PG = ("127.0.0.1", 5432)
MARTS = project_marts(ROOT / "dbt_project")


def _admin():
    con = psycopg2.connect(host=PG[0], port=PG[1], user="postgres", dbname="postgres")
    con.autocommit = True
    return con


@pytest.fixture
def warehouse(monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    require_services(PG)
    suffix = uuid.uuid4().hex[:10]
    name, reader = f"survey_swap_{suffix}", f"survey_reader_swap_{suffix}"
    with closing(_admin()) as admin:
        admin.cursor().execute(f'create database "{name}"')
    wh = replace(
        Warehouse(backend="postgres", host=PG[0], port=PG[1], user="postgres", dbname=name),
        marts_schema="marts",
        marts_build_schema="marts_next",
        reader_role=reader,
    )
    with Session(wh) as s:
        ensure_raw_schema(s)
        publish.ensure_reader_role(wh)
    _build(wh, "old")
    publish.swap_marts(wh, builds.begin_build(wh, "first", 2019, None, "a" * 64), "first")
    _build(wh, "new")
    monkeypatch.setenv("SURVEY_SWAP_WAIT_SECONDS", "20")
    try:
        yield wh
    finally:
        with closing(_admin()) as admin:
            cur = admin.cursor()
            cur.execute(f"select pg_terminate_backend(pid) from pg_stat_activity where datname = '{name}'")
            cur.execute(f'drop database "{name}"')
            cur.execute(f'drop role if exists "{reader}"')


def _build(wh: Warehouse, value: str) -> None:
    """What dbt leaves in the build schema: every mart (here one column saying which build made it)."""
    with Session(wh) as s:
        s.execute("create schema if not exists marts_next")
        for mart in MARTS:
            s.execute(f"create table marts_next.{mart} as select '{value}'::text as made_by")


def _reader(wh: Warehouse):
    con = psycopg2.connect(host=wh.host, port=wh.port, user=wh.reader_role, dbname=wh.dbname)
    con.autocommit = False
    return con


def _made_by(wh: Warehouse, mart: str = "dim_city") -> str:
    with closing(_reader(wh)) as con:
        cur = con.cursor()
        cur.execute(f"select made_by from marts.{mart}")
        return cur.fetchone()[0]


def _swap_in_thread(wh: Warehouse) -> tuple[threading.Thread, dict]:
    result: dict = {}
    build = builds.begin_build(wh, "second", 2019, None, "b" * 64)

    def swap() -> None:
        try:
            result["publication"] = publish.swap_marts(wh, build, "second")
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=swap)
    thread.start()
    return thread, result


def _timed_read(wh: Warehouse, mart: str) -> tuple[str, float]:
    started = time.monotonic()
    value = _made_by(wh, mart)
    return value, time.monotonic() - started


def test_a_reader_idle_in_its_transaction_delays_the_swap_but_no_other_reader(warehouse: Warehouse) -> None:
    idle = _reader(warehouse)
    idle.cursor().execute("select count(*) from marts.fct_survey_answers")  # then idle, in its transaction
    thread, result = _swap_in_thread(warehouse)
    time.sleep(1.0)
    assert thread.is_alive(), "the swap waits for the reader's transaction"

    value, seconds = _timed_read(warehouse, "dim_city")  # another reader, while the swap is waiting

    assert (value, seconds < 1.0) == ("old", True), f"a reader of another mart waited {seconds:.1f} s"
    idle.commit()
    idle.close()
    thread.join(timeout=10)
    assert not thread.is_alive() and "error" not in result, result
    assert _made_by(warehouse) == "new"


def test_a_reader_reading_one_mart_after_another_during_a_swap_never_deadlocks(warehouse: Warehouse) -> None:
    reader = _reader(warehouse)
    cur = reader.cursor()
    cur.execute("select made_by from marts.fct_survey_answers")
    thread, result = _swap_in_thread(warehouse)
    time.sleep(0.8)
    started = time.monotonic()
    for mart in MARTS:  # every other mart, in the same transaction
        cur.execute(f"select made_by from marts.{mart}")
        assert cur.fetchone()[0] == "old"
    assert time.monotonic() - started < 1.0
    reader.commit()
    reader.close()
    thread.join(timeout=10)
    assert "error" not in result, result
    assert _made_by(warehouse, "fct_survey_answers") == "new"


def test_a_long_query_finishes_on_the_old_marts_and_the_swap_follows(warehouse: Warehouse) -> None:
    out: dict = {}

    def long_query() -> None:
        with closing(_reader(warehouse)) as con:
            cur = con.cursor()
            cur.execute("select made_by, pg_sleep(2) from marts.dim_city")
            out["value"] = cur.fetchone()[0]

    query = threading.Thread(target=long_query)
    query.start()
    time.sleep(0.5)
    thread, result = _swap_in_thread(warehouse)
    query.join(timeout=10)
    thread.join(timeout=10)
    assert out["value"] == "old" and "error" not in result, (out, result)
    assert _made_by(warehouse) == "new"


def test_a_swap_held_off_too_long_fails_naming_the_session_and_changes_nothing(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SURVEY_SWAP_WAIT_SECONDS", "1.5")
    idle = _reader(warehouse)
    idle.cursor().execute("select count(*) from marts.dim_year")
    pid = idle.get_backend_pid()
    thread, result = _swap_in_thread(warehouse)
    thread.join(timeout=15)
    idle.rollback()
    idle.close()

    error = result.get("error")
    assert isinstance(error, publish.SwapBlocked), result
    assert f"pid {pid}" in str(error) and warehouse.reader_role in str(error) and "dim_year" in str(error)
    assert _made_by(warehouse) == "old"
    with Session(warehouse) as s:
        status = s.execute("select status from raw.builds where run_id = 'second'").fetchone()[0]
    assert status == "building", "nothing of the publication happened (the run then fails the build)"


def test_an_export_started_during_a_swap_reads_the_new_publication_whole(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The swap holds the marts (here made to take 2 s inside its transaction); an export that starts then waits
    for it and reads the publication it made, never a half or an empty one."""
    recorded = publish._record

    def slow_record(*args, **kwargs) -> None:
        recorded(*args, **kwargs)
        time.sleep(2)

    monkeypatch.setattr(publish, "_record", slow_record)
    thread, result = _swap_in_thread(warehouse)
    time.sleep(1.0)
    snapshot = exports._open_postgres(warehouse)
    thread.join(timeout=10)
    assert "error" not in result, result
    try:
        assert snapshot.run_id == "second"
        assert {snapshot.con.execute(f"select made_by from marts.{m}").fetchone()[0] for m in MARTS} == {"new"}
    finally:
        snapshot.con.close()


def test_a_repeatable_read_snapshot_older_than_the_swap_sees_the_new_tables_without_rows(
    warehouse: Warehouse,
) -> None:
    """As docs/scale-out.md says: a repeatable-read transaction whose snapshot was taken before the swap, and that
    reads the marts only after it, sees the new publication's tables without their rows; a new transaction sees
    them."""
    reader = _reader(warehouse)
    reader.set_session(isolation_level="REPEATABLE READ")
    cur = reader.cursor()
    cur.execute("select 1")  # the snapshot is taken
    thread, result = _swap_in_thread(warehouse)
    thread.join(timeout=10)
    assert "error" not in result, result
    cur.execute("select count(*) from marts.publication")
    assert cur.fetchone()[0] == 0
    reader.rollback()
    cur.execute("select run_id from marts.publication")
    assert cur.fetchone()[0] == "second"
    reader.close()


def test_the_reader_role_ends_sessions_left_idle_in_a_transaction(warehouse: Warehouse) -> None:
    with closing(_admin()) as admin:
        cur = admin.cursor()
        cur.execute(
            "select setconfig from pg_db_role_setting s join pg_roles r on r.oid = s.setrole where r.rolname = %s",
            [warehouse.reader_role],
        )
        settings = [c for row in cur.fetchall() for c in row[0]]
    assert f"idle_in_transaction_session_timeout={publish.reader_idle_timeout()}" in settings


def test_exports_of_an_empty_publication_record_say_so(warehouse: Warehouse) -> None:
    with Session(warehouse) as s:
        s.execute("delete from marts.publication")
    with pytest.raises(Exception, match="publication is empty"):
        exports._open_postgres(warehouse)
