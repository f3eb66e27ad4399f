"""The published marts as an Airflow asset: a run that publishes records an asset event, and the DAG scheduled on it
(survey_marts_exports, run by `make run` after such a run) exports exactly the published marts. (An unchanged rerun
and a failed run record no event and export nothing new: test_idempotency_and_gate.py.)"""

from __future__ import annotations

import json

import duckdb
import pytest
from conftest import PipelineRun, asset_events, dag_runs, task_states

from survey_warehouse.publishing import exports

pytestmark = pytest.mark.slow


def test_each_run_that_publishes_records_one_asset_event(pipeline_run: PipelineRun) -> None:
    paths = pipeline_run.paths
    publishing = {year: run_id for run_id, state, year in dag_runs(paths, "survey_waves") if state == "success"}
    events = asset_events(paths)
    assert [(dag, task) for dag, task, _run, _extra in events] == [("survey_waves", "publish_marts")]
    assert [run for _dag, _task, run, _extra in events] == [publishing["2019"]], (
        "one event for the one publication: the 2019 run built and published the waves caught up with it"
    )
    for year in (2016, 2017, 2018):
        assert task_states(paths, year)["publish_marts"] == "skipped"
    with duckdb.connect(str(paths.published), read_only=True) as con:
        published_at, load_ids = con.execute("select published_at, load_ids from marts.publication").fetchall()[0]
    extra = events[-1][3]
    assert extra["published_at"] == published_at.isoformat() and extra["load_ids"] == load_ids
    assert extra["tables"]["fct_city_responsibility"] == 60
    assert extra["waves"] == [2016, 2018, 2019]


def test_make_run_exports_what_it_published(pipeline_run: PipelineRun) -> None:
    """The exports DAG ran once, after the waves, and its export equals the published file: every mart, its rows
    and values (Parquet exactly, CSV as text read back), the IT-led shares, and the manifest."""
    paths = pipeline_run.paths
    assert [state for _run, state, _year in dag_runs(paths, "survey_marts_exports")] == ["success"]
    latest = exports.exports_dir(paths) / "latest"
    manifest = json.loads((latest / "manifest.json").read_text(encoding="utf-8"))
    with duckdb.connect(str(paths.published), read_only=True) as con:
        published_at, run_id, tables = con.execute(
            "select published_at, run_id, tables from marts.publication"
        ).fetchall()[0]
        tables = json.loads(tables)
        loads = con.execute("select load_id, wave_year, file_name from marts.source_loads order by 2").fetchall()
        assert manifest["publication"]["published_at"] == published_at.isoformat()
        assert manifest["publication"]["run_id"] == run_id
        assert [(x["load_id"], x["wave_year"], x["file_name"]) for x in manifest["loads"]] == loads
        assert {t["table"]: t["rows"] for t in manifest["tables"]} == tables
        assert len(tables) >= 9
        files = {p.name for p in latest.iterdir()}
        assert files == {"manifest.json"} | {f"{t}.{ext}" for t in tables for ext in ("parquet", "csv")}
        for entry in manifest["tables"]:
            table = entry["table"]
            parquet = f"read_parquet('{latest / f'{table}.parquet'}')"
            described = con.execute(f"describe select * from {parquet}").fetchall()
            assert entry["columns"] == [{"name": c[0], "type": c[1]} for c in described], table
            assert con.execute(f"describe marts.{table}").fetchall() == described, f"{table}: the published types"
            for a, b in ((f"marts.{table}", parquet), (parquet, f"marts.{table}")):
                assert con.execute(
                    f"select count(*) from (select * from {a} except all select * from {b})"
                ).fetchall() == [(0,)], f"{table}: rows of {a} missing from {b}"
            csv = f"read_csv('{latest / f'{table}.csv'}', header = true, all_varchar = true)"
            text = ", ".join(f'cast("{c[0]}" as varchar) as "{c[0]}"' for c in described)
            for a, b in ((f"(select {text} from marts.{table})", csv), (csv, f"(select {text} from marts.{table})")):
                assert con.execute(
                    f"select count(*) from (select * from {a} except all select * from {b})"
                ).fetchall() == [(0,)], f"{table}: the CSV differs from the published mart"
            assert con.execute(f"select count(*) from {csv}").fetchall() == [(tables[table],)]
        published_shares = dict(
            con.execute(
                "select wave_year, share from marts.fct_responsibility_shares where is_it_management"
            ).fetchall()
        )
    with duckdb.connect() as con:
        exported_shares = dict(
            con.execute(
                f"select wave_year, share from read_csv('{latest / 'fct_responsibility_shares.csv'}') "
                "where is_it_management"
            ).fetchall()
        )
    assert exported_shares == published_shares and sorted(published_shares) == [2016, 2018, 2019]
