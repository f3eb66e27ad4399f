"""The warehouse database: DuckDB (embedded default) or PostgreSQL (scale-out), chosen by SURVEY_DBT_TARGET; the
PostgreSQL warehouse is Airflow's connection `survey_warehouse`, read by the loader, the gates and dbt alike.

Code that touches raw tables goes through a Session, which speaks the same SQL (with ? placeholders) to both."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from survey_warehouse.errors import WarehouseBusy

if TYPE_CHECKING:  # pandas takes about a second to import: the loader never needs it
    import pandas as pd


def connect_readonly(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection, so that reading never takes the writer's lock.

    When dbt ran in this same process (Cosmos' in-process dbt runner under `airflow dags test`), DuckDB still
    holds the file open read-write and refuses a second, read-only configuration; then the existing
    in-process database is reused, which is safe because nothing else writes while this task runs."""
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.ConnectionException:
        return duckdb.connect(str(path))


@dataclass(frozen=True)
class Warehouse:
    backend: str  # duckdb | postgres
    path: Path | None = None  # DuckDB file
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    dbname: str = "survey_warehouse"
    marts_schema: str = "marts"
    marts_build_schema: str = "marts"
    reader_role: str = "survey_reader"

    @classmethod
    def duckdb(cls, path: Path) -> Warehouse:
        return cls(backend="duckdb", path=path)

    @classmethod
    def from_env(cls, duckdb_path: Path) -> Warehouse:
        """The configured warehouse: the DuckDB file, or (SURVEY_DBT_TARGET=postgres) the PostgreSQL database of
        Airflow's connection `survey_warehouse`."""
        if os.environ.get("SURVEY_DBT_TARGET", "duckdb") != "postgres":
            return cls.duckdb(duckdb_path)
        return cls.from_connection(warehouse_connection())

    @classmethod
    def from_connection(cls, connection: dict[str, Any]) -> Warehouse:
        return cls(
            backend="postgres",
            host=connection.get("host") or "127.0.0.1",
            port=int(connection.get("port") or 5432),
            user=connection.get("login") or "postgres",
            password=connection.get("password") or "",
            dbname=connection.get("schema") or "survey_warehouse",
            marts_build_schema=os.environ.get("SURVEY_MARTS_BUILD_SCHEMA", "marts_next"),
            reader_role=os.environ.get("SURVEY_READER_ROLE", "survey_reader"),
        )

    def dbt_env(self) -> dict[str, str]:
        """What dbt's profile (dbt_project/profiles.yml, target postgres) reads when dbt is run outside Airflow,
        derived from the connection: the credentials are configured in one place only."""
        if self.backend != "postgres":
            return {}
        return {
            "DBT_PG_HOST": self.host,
            "DBT_PG_PORT": str(self.port),
            "DBT_PG_USER": self.user,
            "DBT_PG_PASSWORD": self.password,
            "DBT_PG_DBNAME": self.dbname,
        }

    @property
    def file(self) -> Path:
        """The DuckDB file (a DuckDB warehouse always has one)."""
        if self.path is None:
            raise TypeError(f"a {self.backend} warehouse has no file")
        return self.path

    @property
    def sqlalchemy_url(self) -> str:
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg2",
            username=self.user,
            password=self.password or None,
            host=self.host,
            port=self.port,
            database=self.dbname,
        ).render_as_string(hide_password=False)

    def gx_connection_string(self) -> str:
        """The connection string for Great Expectations' SQL datasource: a reference, `${SURVEY_GX_WAREHOUSE_URL_...}`,
        that GX resolves from this process's environment (set here to `sqlalchemy_url`) whenever it connects. GX
        writes its datasources into great_expectations.yml under var/; the reference keeps the password out of it.
        The variable's name is made from the user, host, port and database (never the password), so a datasource
        made for one warehouse never connects to another."""
        where = f"{self.user}@{self.host}:{self.port}/{self.dbname}"
        variable = f"{GX_URL_VARIABLE}_{hashlib.sha256(where.encode()).hexdigest()[:12].upper()}"
        os.environ[variable] = self.sqlalchemy_url
        return "${" + variable + "}"

    def pg_connect(self, **kwargs: Any) -> Any:
        import psycopg2

        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.dbname, **kwargs
        )


CONNECTION_ID = "survey_warehouse"
# the prefix of the environment variables Great Expectations reads a warehouse's connection string from, see
# Warehouse.gx_connection_string
GX_URL_VARIABLE = "SURVEY_GX_WAREHOUSE_URL"


def warehouse_connection() -> dict[str, Any]:
    """Airflow's connection `survey_warehouse`: AIRFLOW_CONN_SURVEY_WAREHOUSE (a URI such as
    postgresql://user:password@host:5432/database, or Airflow's JSON form), else Airflow's secrets backend."""
    value = os.environ.get(f"AIRFLOW_CONN_{CONNECTION_ID.upper()}")
    if value:
        return parse_connection(value)
    try:
        from airflow.sdk import Connection

        conn = Connection.get(CONNECTION_ID)
    except Exception as exc:
        from survey_warehouse.errors import SurveyWarehouseError

        raise SurveyWarehouseError(
            f"the PostgreSQL warehouse needs Airflow's connection {CONNECTION_ID!r}: set "
            f"AIRFLOW_CONN_{CONNECTION_ID.upper()}=postgresql://user:password@host:5432/database ({exc})"
        ) from exc
    return {"host": conn.host, "port": conn.port, "login": conn.login, "password": conn.password, "schema": conn.schema}


def parse_connection(value: str) -> dict[str, Any]:
    """An Airflow connection given as a URI or as JSON, as the fields Airflow names them."""
    import json
    from urllib.parse import unquote, urlsplit

    if value.lstrip().startswith("{"):
        data = json.loads(value)
        return {k: data.get(k) for k in ("host", "port", "login", "password", "schema")}
    parts = urlsplit(value)
    return {
        "host": parts.hostname,
        "port": parts.port,
        "login": unquote(parts.username or "") or None,
        "password": unquote(parts.password or "") or None,
        "schema": unquote(parts.path.lstrip("/")) or None,
    }


def as_warehouse(target: Warehouse | Path) -> Warehouse:
    return target if isinstance(target, Warehouse) else Warehouse.duckdb(Path(target))


class Session:
    """One connection to the warehouse, with ? placeholders on both backends and explicit transactions."""

    def __init__(self, warehouse: Warehouse, read_only: bool = False):
        self.warehouse = warehouse
        # a DuckDB connection, or a psycopg2 connection and its cursor
        self._con: Any
        self._cur: Any
        if warehouse.backend == "duckdb":
            if read_only:
                self._con = connect_readonly(warehouse.file)
            else:
                warehouse.file.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self._con = duckdb.connect(str(warehouse.file))
                except duckdb.IOException as exc:
                    if "lock" not in str(exc).lower():
                        raise
                    raise WarehouseBusy(
                        f"the warehouse {warehouse.path} is being written by another process, and DuckDB allows "
                        f"one writer: wait until that load has finished, then run this one again ({exc})"
                    ) from exc
            self._cur = None
        else:
            self._con = warehouse.pg_connect()
            self._con.set_session(readonly=read_only, autocommit=True)
            self._cur = self._con.cursor()

    @property
    def duckdb_connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection itself (DuckDB warehouses only)."""
        if self.is_postgres:
            raise TypeError("a PostgreSQL session has no DuckDB connection")
        return self._con

    def copy_from_duckdb(
        self, table: str, columns: str, con: duckdb.DuckDBPyConnection, query: str, scratch: Path
    ) -> None:
        """PostgreSQL: the rows of a DuckDB query into a table through COPY (CSV in a scratch file)."""
        scratch.mkdir(parents=True, exist_ok=True)
        path = scratch / f"{table}.csv"
        con.execute(f"copy ({query}) to '{path}' (format csv, header false)")
        with open(path, encoding="utf-8", newline="") as f:  # line breaks inside cells are data: keep them
            self._cur.copy_expert(f"copy {table} ({columns}) from stdin with (format csv)", f)
        path.unlink()

    @property
    def is_postgres(self) -> bool:
        return self.warehouse.backend == "postgres"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Session:
        if self.is_postgres:
            self._cur.execute(sql.replace("?", "%s"), tuple(params))
        else:
            self._con.execute(sql, list(params))
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.is_postgres:
            self._cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])
        else:
            self._con.executemany(sql, [list(r) for r in rows])

    def fetchone(self) -> tuple | None:
        return (self._cur if self.is_postgres else self._con).fetchone()

    def fetchall(self) -> list[tuple]:
        return (self._cur if self.is_postgres else self._con).fetchall()

    def df(self) -> pd.DataFrame:
        if self.is_postgres:
            import pandas as pd

            columns = [d[0] for d in self._cur.description]
            return pd.DataFrame.from_records(self._cur.fetchall(), columns=columns)
        return self._con.df()

    def insert_frame(self, table: str, frame: pd.DataFrame) -> None:
        """Bulk insert: DuckDB scans the DataFrame, PostgreSQL takes it through COPY."""
        if self.is_postgres:
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False, header=False, na_rep="\\N")
            buffer.seek(0)
            columns = ", ".join(frame.columns)
            self._cur.copy_expert(f"copy {table} ({columns}) from stdin with (format csv, null '\\N')", buffer)
        else:
            self._con.register("_incoming_frame", frame)
            try:
                self._con.execute(f"insert into {table} select * from _incoming_frame")
            finally:
                self._con.unregister("_incoming_frame")

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        if self.is_postgres:
            self._con.autocommit = False
            try:
                yield self
                self._con.commit()
            except BaseException:
                self._con.rollback()
                raise
            finally:
                self._con.autocommit = True
        else:
            self._con.execute("begin transaction")
            try:
                yield self
                self._con.execute("commit")
            except BaseException:
                self._con.execute("rollback")
                raise

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
