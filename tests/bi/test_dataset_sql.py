"""The dashboard's datasets are plain SQL that PostgreSQL runs as DuckDB does (docker-compose's Superset reads the
marts on PostgreSQL): every dataset's SQL, and every metric a chart asks of it grouped as the chart groups it, give
the same answers on both, on the marts of the published file copied into a throwaway PostgreSQL database and read
as survey_reader (tests/bi/pg_marts.py). Fails, never skips, without PostgreSQL."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml
from conftest import ROOT, PipelineRun
from pg_marts import PG_HOST, PG_PORT, READER
from pg_marts import postgres_marts as postgres_marts_database

BUNDLE = ROOT / "bi" / "dashboards"


def datasets() -> dict[str, dict]:
    return {d["uuid"]: d for d in (yaml.safe_load(p.read_text()) for p in (BUNDLE / "datasets").rglob("*.yaml"))}


def charts() -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted((BUNDLE / "charts").glob("*.yaml"))]


@pytest.fixture(scope="module")
def postgres_marts(pipeline_run: PipelineRun) -> Iterator[object]:
    """A database of its own holding the marts the datasets read, copied from the published DuckDB file; a
    connection to it as the read-only role survey_reader, which docker-compose's Superset reads the marts as."""
    import psycopg2

    tables = sorted({t for d in datasets().values() for t in re.findall(r"marts\.(\w+)", d["sql"])})
    with postgres_marts_database(pipeline_run.paths.published, tables, tag="bi_sql") as database:
        conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=READER, dbname=database)
        try:
            yield conn
        finally:
            conn.close()


def normalise(rows: list[tuple]) -> list[tuple]:
    def value(v: object) -> object:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        try:
            f = float(v)
        except (TypeError, ValueError):
            return str(v)
        return None if math.isnan(f) else round(f, 9)

    return sorted((tuple(value(v) for v in row) for row in rows), key=repr)


def both(published: Path, pg: object, sql: str) -> tuple[list[tuple], list[tuple]]:
    with duckdb.connect(str(published), read_only=True) as con:
        in_duckdb = con.execute(sql).fetchall()
    with pg.cursor() as cur:
        cur.execute(sql)
        in_postgres = cur.fetchall()
    pg.rollback()
    return normalise(in_duckdb), normalise(in_postgres)


def test_every_dataset_gives_the_same_rows_on_postgresql(postgres_marts: object, pipeline_run: PipelineRun) -> None:
    for dataset in datasets().values():
        in_duckdb, in_postgres = both(pipeline_run.paths.published, postgres_marts, dataset["sql"])
        assert in_duckdb, f"{dataset['table_name']}: no rows"
        assert in_postgres == in_duckdb, dataset["table_name"]


def test_every_metric_a_chart_uses_gives_the_same_answer_on_postgresql(
    postgres_marts: object, pipeline_run: PipelineRun
) -> None:
    by_uuid = datasets()
    checked = 0
    for chart in charts():
        params, dataset = chart["params"], by_uuid[chart["dataset_uuid"]]
        metrics = {m["metric_name"]: m["expression"] for m in dataset.get("metrics") or []}
        used = [m for m in [*(params.get("metrics") or []), params.get("timeseries_limit_metric")] if m]
        if not used:
            continue
        assert all(isinstance(m, str) and m in metrics for m in used), (
            f"{chart['slice_name']}: metrics are the datasets' saved metrics"
        )
        groupby = [c for c in [params.get("x_axis"), *(params.get("groupby") or [])] if c]
        where = (
            " and ".join(
                f"{f['subject']} = '{f['comparator']}'"
                for f in params.get("adhoc_filters") or []
                if f["operator"] == "=="
            )
            or "true"
        )
        sql = (
            f"select {', '.join(groupby)}, {', '.join(metrics[m] for m in used)} "
            f"from ({dataset['sql']}) as virtual_table where {where} group by {', '.join(groupby)}"
        )
        in_duckdb, in_postgres = both(pipeline_run.paths.published, postgres_marts, sql)
        assert in_duckdb, chart["slice_name"]
        assert in_postgres == in_duckdb, chart["slice_name"]
        checked += 1
    assert checked >= 1
