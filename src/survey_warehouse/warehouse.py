"""Opening the DuckDB warehouse file for reading or writing."""

from __future__ import annotations

from pathlib import Path

import duckdb


def connect_readonly(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection, so that reading never takes the writer's lock.

    When dbt ran in this same process (Cosmos' in-process dbt runner under `airflow dags test`), DuckDB still
    holds the file open read-write and refuses a second, read-only configuration; then the existing
    in-process database is reused, which is safe because nothing else writes while this task runs."""
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.ConnectionException:
        return duckdb.connect(str(path))
