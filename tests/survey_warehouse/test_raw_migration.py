"""A warehouse made before raw.survey_columns: `ensure_raw_schema` moves each column's header and field out of
raw.survey_cells into raw.survey_columns, in one transaction, and loses nothing."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import closing

import psycopg2
import pytest
from conftest import make_paths, require_services

from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.raw import schema
from survey_warehouse.raw.load import load_wave
from survey_warehouse.raw.schema import ensure_raw_schema
from survey_warehouse.warehouse import Session, Warehouse

PG = ("127.0.0.1", 5432)

# raw.survey_cells as the loader wrote it before raw.survey_columns existed
OLD_LAYOUT = """
create schema if not exists raw;
create table raw.survey_cells (
    load_id varchar not null,
    wave_year integer not null,
    source_row_number integer not null,
    column_position integer not null,
    source_column varchar not null,
    field_id varchar,
    cell_value varchar
);
create schema if not exists staging;
create view staging.stg_old_cells as select load_id, field_id, cell_value from raw.survey_cells
"""
OLD_CELLS = [
    ("L19", 2019, 2, 1, "Nimi", None, "Eero Korhonen"),
    ("L19", 2019, 2, 2, "Email", "respondent_email", "a@x.fi"),
    ("L19", 2019, 2, 3, "Q1 Kuka vastaa?", "lead", None),
    ("L19", 2019, 3, 1, "Nimi", None, None),
    ("L19", 2019, 3, 2, "Email", "respondent_email", "b@x.fi"),
    ("L19", 2019, 3, 3, "Q1 Kuka vastaa?", "lead", "Tietohallinto"),
    ("L19", 2019, 3, 4, "", None, "a cell right of the header"),
    ("L16", 2016, 5, 1, "Sähköposti", "respondent_email", "a@x.fi"),
    ("L16", 2016, 5, 2, "Q1 Kuka vastaa?", "lead", ' "quoted", with a\nline break '),
    ("L16", 2016, 6, 1, "Sähköposti", "respondent_email", "c@x.fi"),
    ("L16", 2016, 6, 2, "Q1 Kuka vastaa?", "lead", ""),
]
CELLS_WITH_COLUMNS = (
    "select load_id, wave_year, source_row_number, column_position, source_column, field_id, cell_value "
    "from raw.survey_cells join raw.survey_columns using (column_id)"
)


@pytest.fixture(params=["duckdb", "postgres"])
def old_warehouse(request) -> Iterator[Warehouse]:
    """A warehouse whose raw.survey_cells has the old layout, with a view on it (as dbt's staging has)."""
    if request.param == "duckdb":
        warehouse = Warehouse.duckdb(make_paths("raw_migration").warehouse)
        yield _with_old_cells(warehouse)
        return
    require_services(PG)
    database = f"survey_test_migration_{os.getpid()}_{int(time.time())}"
    with closing(psycopg2.connect(host=PG[0], port=PG[1], user="postgres", dbname="postgres")) as admin:
        admin.autocommit = True
        admin.cursor().execute(f'create database "{database}"')
        try:
            yield _with_old_cells(
                Warehouse(backend="postgres", host=PG[0], port=PG[1], user="postgres", dbname=database)
            )
        finally:
            admin.cursor().execute(f'drop database if exists "{database}" with (force)')


def _with_old_cells(warehouse: Warehouse) -> Warehouse:
    with Session(warehouse) as session:
        for statement in OLD_LAYOUT.split(";"):
            session.execute(statement)
        session.executemany("insert into raw.survey_cells values (?, ?, ?, ?, ?, ?, ?)", OLD_CELLS)
    return warehouse


def _cell_columns(session: Session) -> list[str]:
    return [
        r[0]
        for r in session.execute(
            "select column_name from information_schema.columns where table_schema = 'raw' "
            "and table_name = 'survey_cells' order by ordinal_position"
        ).fetchall()
    ]


def _sorted(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=repr)


def test_the_old_layout_is_migrated_and_nothing_is_lost(old_warehouse: Warehouse) -> None:
    with Session(old_warehouse) as session:
        ensure_raw_schema(session)
        assert _cell_columns(session) == ["column_id", "source_row_number", "cell_value"]
        assert _sorted(session.execute(CELLS_WITH_COLUMNS).fetchall()) == _sorted(OLD_CELLS)
        columns = session.execute(
            "select load_id, wave_year, column_position, source_column, field_id, column_id from raw.survey_columns"
        ).fetchall()
        assert _sorted([c[:5] for c in columns]) == _sorted({c[:2] + c[3:6] for c in OLD_CELLS})
        assert len({c[5] for c in columns}) == len(columns), "one column_id per load and column"

        ensure_raw_schema(session)  # migrated once: running it again changes nothing
        assert session.execute("select count(*) from raw.survey_columns").fetchone() == (len(columns),)
        assert _sorted(session.execute(CELLS_WITH_COLUMNS).fetchall()) == _sorted(OLD_CELLS)


def test_a_load_after_the_migration_gets_columns_of_its_own(old_warehouse: Warehouse) -> None:
    with Session(old_warehouse) as session:
        ensure_raw_schema(session)
        migrated = {r[0] for r in session.execute("select column_id from raw.survey_columns").fetchall()}
    paths = make_paths("raw_migration_load")
    result = load_wave(find_wave_spec(2019, paths), old_warehouse, paths=paths)
    with Session(old_warehouse, read_only=True) as session:
        new = {
            r[0]
            for r in session.execute(
                "select column_id from raw.survey_columns where load_id = ?", [result.load_id]
            ).fetchall()
        }
        rows = session.execute(
            "select count(distinct source_row_number) from raw.survey_cells c join raw.survey_columns k "
            "using (column_id) where k.load_id = ?",
            [result.load_id],
        ).fetchone()
        old = session.execute(CELLS_WITH_COLUMNS + " where load_id in ('L16', 'L19')").fetchall()
    assert new and not new & migrated
    assert rows == (result.row_count,)
    assert _sorted(old) == _sorted(OLD_CELLS)


def test_a_migration_that_fails_changes_nothing(old_warehouse: Warehouse, monkeypatch) -> None:
    execute = Session.execute

    def failing(self: Session, sql: str, params=()) -> Session:
        if sql.startswith("alter table raw.survey_cells_split"):
            raise RuntimeError("stopped before the last step")
        return execute(self, sql, params)

    monkeypatch.setattr(Session, "execute", failing)
    with Session(old_warehouse) as session, pytest.raises(RuntimeError, match="last step"):
        schema.ensure_raw_schema(session)
    monkeypatch.undo()
    with Session(old_warehouse) as session:
        assert _cell_columns(session)[:2] == ["load_id", "wave_year"]
        assert _sorted(session.execute("select * from raw.survey_cells").fetchall()) == _sorted(OLD_CELLS)
        assert session.execute("select count(*) from raw.survey_columns").fetchone() == (0,)
        assert not session.execute(
            "select table_name from information_schema.tables where table_name = 'survey_cells_split'"
        ).fetchall()
