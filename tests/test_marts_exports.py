"""The published marts as an Airflow asset: a run that publishes records an asset event, and the DAG scheduled on it
(survey_marts_exports, run by `make run` after such a run) exports exactly the published marts; an unchanged rerun
and a failed run record no event and export nothing new."""

from __future__ import annotations

import json
import shutil
import sqlite3

import duckdb
import pytest
from conftest import PipelineRun, copy_state, lines_2019, task_states, waves_with_file, with_waves_dir

from survey_warehouse import cli, exports
from survey_warehouse.settings import Paths

pytestmark = pytest.mark.slow


def _asset_events(paths: Paths) -> list[tuple[str, str, str, dict]]:
    """(source DAG, task, run id, extra) of every event of the asset survey_marts in Airflow's metadata."""
    with sqlite3.connect(paths.var / "airflow" / "airflow.db") as db:
        rows = db.execute(
            "select e.source_dag_id, e.source_task_id, e.source_run_id, e.extra from asset_event e "
            "join asset a on a.id = e.asset_id where a.name = 'survey_marts' order by e.id"
        ).fetchall()
    return [(dag, task, run, json.loads(extra or "{}")) for dag, task, run, extra in rows]


def _runs(paths: Paths, dag_id: str) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(paths.var / "airflow" / "airflow.db") as db:
        return db.execute(
            "select run_id, state, strftime('%Y', logical_date) from dag_run where dag_id = ? order by id", [dag_id]
        ).fetchall()


def _listing(paths: Paths) -> dict[str, int]:
    root = exports.exports_dir(paths)
    return {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in root.rglob("*")} if root.exists() else {}


def _copy_with_exports(run: PipelineRun, name: str) -> Paths:
    paths = copy_state(run, name)
    shutil.copytree(exports.exports_dir(run.paths), exports.exports_dir(paths), symlinks=True)
    return paths


def test_each_run_that_publishes_records_one_asset_event(pipeline_run: PipelineRun) -> None:
    paths = pipeline_run.paths
    publishing = {year: run_id for run_id, state, year in _runs(paths, "survey_waves") if state == "success"}
    events = _asset_events(paths)
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
    assert [state for _run, state, _year in _runs(paths, "survey_marts_exports")] == ["success"]
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


def test_an_unchanged_rerun_records_no_event_and_exports_nothing(pipeline_run: PipelineRun) -> None:
    paths = _copy_with_exports(pipeline_run, "asset_rerun")
    cli.setup(paths)
    before = _listing(paths)

    code, _seconds, log = cli.run_wave(paths, 2018)  # the DAG runs, and its plan finds nothing to do

    assert code == 0, log.read_text()[-3000:]
    assert task_states(paths, 2018)["publish_marts"] == "skipped"
    assert _asset_events(paths) == []
    assert _runs(paths, "survey_marts_exports") == []
    assert _listing(paths) == before


def test_a_failed_run_records_no_event_and_exports_nothing_new(pipeline_run: PipelineRun) -> None:
    paths = _copy_with_exports(pipeline_run, "asset_failed")
    lines = lines_2019()
    city = lines[0].split(",").index("Organisaatio")
    for i in range(2, 10):  # 8 rows with an unknown city: more than the 5 % a load may quarantine
        row = lines[i].split(",")
        row[city] = "Atlantis"
        lines[i] = ",".join(row)
    broken = paths.var / "city_survey_2019_export_broken.csv"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    paths = with_waves_dir(paths, waves_with_file(paths.var, 2019, broken))
    cli.setup(paths)
    before = _listing(paths)

    code, _seconds, _log = cli.run_wave(paths, 2019)

    assert code != 0
    states = task_states(paths, 2019)
    assert states["validate_raw_wave"] == "failed" and states["publish_marts"] == "upstream_failed"
    assert _asset_events(paths) == []
    assert _runs(paths, "survey_marts_exports") == []
    assert _listing(paths) == before, "no new export folder, and latest still points at the last publication"
    with duckdb.connect(str(paths.published), read_only=True) as con:
        published_at = con.execute("select published_at from marts.publication").fetchall()[0][0]
    assert exports.is_exported(paths, published_at), "the published marts stay, and so does their export"
