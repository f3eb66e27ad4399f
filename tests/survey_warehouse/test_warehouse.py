"""The warehouse connection and sessions: the same SQL (? placeholders, transactions, bulk inserts) on DuckDB and
on PostgreSQL, and the PostgreSQL warehouse read from Airflow's connection `survey_warehouse`.

The PostgreSQL cases need the local server (127.0.0.1:5432, trust authentication): without it they fail."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg2
import pytest

from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.warehouse import Session, Warehouse, parse_connection, warehouse_connection

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    name = f"survey_test_session_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    admin.cursor().execute(f"create database {name}")
    try:
        yield name
    finally:
        admin.cursor().execute(f"drop database {name} with (force)")
        admin.close()


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        return Warehouse.duckdb(tmp_path / "warehouse.duckdb")
    database = request.getfixturevalue("pg_database")
    return Warehouse.from_connection({"host": PG["host"], "port": PG["port"], "login": PG["user"], "schema": database})


@pytest.fixture
def table(warehouse: Warehouse) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:8]}"
    with Session(warehouse) as session:
        session.execute(f"create table {name} (id integer, label varchar)")
    yield name
    with Session(warehouse) as session:
        session.execute(f"drop table {name}")


def test_placeholders_and_fetches_are_the_same_on_both_engines(warehouse: Warehouse, table: str) -> None:
    with Session(warehouse) as session:
        session.executemany(f"insert into {table} values (?, ?)", [(1, "Jyväskylä"), (2, None), (3, "a?b")])
        assert session.execute(f"select label from {table} where id = ?", [1]).fetchone() == ("Jyväskylä",)
        assert session.execute(f"select count(*) from {table} where label is null").fetchone() == (1,)
        assert session.execute(f"select id from {table} where label = ?", ["a?b"]).fetchall() == [(3,)]
        frame = session.execute(f"select id, label from {table} order by id").df()
    assert list(frame.columns) == ["id", "label"]
    assert frame["id"].tolist() == [1, 2, 3]


def test_a_failed_transaction_leaves_nothing_behind(warehouse: Warehouse, table: str) -> None:
    with Session(warehouse) as session:
        session.execute(f"insert into {table} values (?, ?)", [1, "kept"])

        def fails_half_way() -> None:
            with session.transaction():
                session.execute(f"insert into {table} values (?, ?)", [2, "rolled back"])
                raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            fails_half_way()
        with session.transaction():
            session.execute(f"insert into {table} values (?, ?)", [3, "committed"])
    with Session(warehouse, read_only=True) as reader:
        assert reader.execute(f"select id from {table} order by id").fetchall() == [(1,), (3,)]


def test_bulk_insert_keeps_missing_values_and_line_breaks(warehouse: Warehouse, table: str) -> None:
    frame = pd.DataFrame({"id": [1, 2, 3], "label": ["two\nlines", None, 'quote " and, comma']})
    with Session(warehouse) as session:
        session.insert_frame(table, frame)
        rows = session.execute(f"select id, label from {table} order by id").fetchall()
    assert rows == [(1, "two\nlines"), (2, None), (3, 'quote " and, comma')]


def test_a_connection_uri_or_json_gives_the_same_fields() -> None:
    uri = parse_connection("postgresql://warehouse%40svc:p%3Ass%2Fword@db.example.fi:6543/survey_2020")
    assert uri == {
        "host": "db.example.fi",
        "port": 6543,
        "login": "warehouse@svc",
        "password": "p:ss/word",
        "schema": "survey_2020",
    }
    as_json = json.dumps({"conn_type": "postgres", **uri})
    assert parse_connection(as_json) == uri
    assert parse_connection("postgresql://db.example.fi") == {
        "host": "db.example.fi",
        "port": None,
        "login": None,
        "password": None,
        "schema": None,
    }


def test_the_connection_configures_the_loader_and_dbt_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURVEY_DBT_TARGET", "postgres")
    monkeypatch.setenv("AIRFLOW_CONN_SURVEY_WAREHOUSE", "postgresql://loader:secret@10.0.0.5:5433/marts_db")
    warehouse = Warehouse.from_env(Path("unused.duckdb"))
    assert (warehouse.backend, warehouse.host, warehouse.port, warehouse.user, warehouse.dbname) == (
        "postgres",
        "10.0.0.5",
        5433,
        "loader",
        "marts_db",
    )
    assert warehouse.dbt_env() == {
        "DBT_PG_HOST": "10.0.0.5",
        "DBT_PG_PORT": "5433",
        "DBT_PG_USER": "loader",
        "DBT_PG_PASSWORD": "secret",
        "DBT_PG_DBNAME": "marts_db",
    }
    assert "secret" in warehouse.sqlalchemy_url
    monkeypatch.setenv("SURVEY_DBT_TARGET", "duckdb")
    embedded = Warehouse.from_env(Path("var/warehouse/survey.duckdb"))
    assert (embedded.backend, embedded.file, embedded.dbt_env()) == ("duckdb", Path("var/warehouse/survey.duckdb"), {})


def test_no_connection_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SURVEY_WAREHOUSE", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))  # an Airflow with no connections
    with pytest.raises(SurveyWarehouseError, match="AIRFLOW_CONN_SURVEY_WAREHOUSE=postgresql://"):
        warehouse_connection()


def test_a_duckdb_warehouse_has_a_file_and_a_postgres_one_does_not() -> None:
    assert Warehouse.duckdb(Path("w.duckdb")).file == Path("w.duckdb")
    with pytest.raises(TypeError, match="postgres warehouse has no file"):
        _ = Warehouse.from_connection({}).file
