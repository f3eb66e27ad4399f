"""The marts on PostgreSQL for the BI tests: a throwaway database of its own on the local PostgreSQL (127.0.0.1:5432,
trust auth), the schema `marts` copied from the published DuckDB file, readable by the read-only role survey_reader.

Used by test_dataset_sql.py (the datasets' SQL on both engines) and test_dashboard.py (Superset on the PostgreSQL
marts). A test that needs PostgreSQL fails when it is not there: it never skips.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

PG_HOST, PG_PORT, PG_ADMIN = "127.0.0.1", 5432, "postgres"
READER = "survey_reader"
PG_TYPES = {
    "VARCHAR": "text",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "HUGEINT": "numeric",
    "SMALLINT": "smallint",
    "JSON": "jsonb",
}


def pg_type(duckdb_type: str) -> str | None:
    if duckdb_type.endswith("[]"):
        element = pg_type(duckdb_type.removesuffix("[]"))
        return f"{element}[]" if element else None
    return PG_TYPES.get(duckdb_type, "numeric" if duckdb_type.startswith("DECIMAL") else None)


def require_postgres() -> None:
    try:
        socket.create_connection((PG_HOST, PG_PORT), timeout=2).close()
    except OSError as exc:
        pytest.fail(
            f"PostgreSQL is needed at {PG_HOST}:{PG_PORT} ({exc}): start it (trust auth for local connections); "
            "these tests do not skip"
        )


def _connect(dbname: str, user: str = PG_ADMIN):  # a psycopg2 connection
    import psycopg2

    return psycopg2.connect(host=PG_HOST, port=PG_PORT, user=user, dbname=dbname)


def ensure_reader_role() -> None:
    """The role survey_reader as docker-compose's airflow-init makes it: login, read-only transactions. It is shared
    by every database of the cluster (each test grants it on its own database only), so it is created if missing
    and never dropped; two test sessions creating it at once is not an error."""
    import psycopg2

    with closing(_connect("postgres")) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("select 1 from pg_roles where rolname = %s", [READER])
            if cur.fetchone() is None:
                # another session may create it in the meantime
                with suppress(psycopg2.errors.DuplicateObject, psycopg2.errors.UniqueViolation):
                    cur.execute(f'create role "{READER}" login')
            cur.execute(f'alter role "{READER}" set default_transaction_read_only = on')


@contextmanager
def postgres_marts(published: Path, tables: list[str] | None = None, tag: str = "bi") -> Iterator[str]:
    """A database of its own (a unique name: other sessions run PostgreSQL tests at the same time) holding the
    schema marts copied from the published DuckDB file (every mart, or `tables`), with CONNECT, USAGE and SELECT
    granted to survey_reader. Yields the database's name; drops it afterwards."""
    require_postgres()
    from psycopg2.extras import execute_values

    ensure_reader_role()
    database = f"survey_{tag}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with closing(_connect("postgres")) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'create database "{database}"')
            cur.execute(f'revoke all on database "{database}" from public')
            cur.execute(f'grant connect on database "{database}" to "{READER}"')
        try:
            with (
                closing(_connect(database)) as conn,
                duckdb.connect(str(published), read_only=True) as source,
                conn.cursor() as cur,
            ):
                cur.execute("create schema marts")
                names = tables or [
                    name
                    for (name,) in source.execute(
                        "select table_name from information_schema.tables where table_schema = 'marts' "
                        "order by table_name"
                    ).fetchall()
                ]
                for table in names:
                    columns = source.execute(
                        "select column_name, data_type from information_schema.columns "
                        "where table_schema = 'marts' and table_name = ? order by ordinal_position",
                        [table],
                    ).fetchall()
                    types = [pg_type(t) for _, t in columns]
                    assert None not in types, f"no PostgreSQL type for a column of {table}: {columns}"
                    cur.execute(
                        f"create table marts.{table} ("
                        + ", ".join(f'"{c}" {t}' for (c, _), t in zip(columns, types, strict=True))
                        + ")"
                    )
                    rows = source.execute(f"select * from marts.{table}").fetchall()
                    if rows:
                        execute_values(cur, f"insert into marts.{table} values %s", rows, page_size=1000)
                cur.execute(f'grant usage on schema marts to "{READER}"')
                cur.execute(f'grant select on all tables in schema marts to "{READER}"')
                conn.commit()
            yield database
        finally:
            with admin.cursor() as cur:
                cur.execute(f'drop database if exists "{database}" with (force)')


class PostgresMarts:
    """SQL on the PostgreSQL marts as the reader, with the DuckDB tests' `?` placeholders; numerics come back as
    floats, as DuckDB gives them."""

    def __init__(self, database: str, user: str = READER) -> None:
        self.database, self.user = database, user

    def query(self, sql: str, params: list | None = None) -> list[dict]:
        with closing(_connect(self.database, self.user)) as conn, conn.cursor() as cur:
            cur.execute(sql.replace("%", "%%").replace("?", "%s"), params or [])
            names = [d[0] for d in cur.description]
            return [
                {n: float(v) if isinstance(v, Decimal) else v for n, v in zip(names, row, strict=True)}
                for row in cur.fetchall()
            ]
