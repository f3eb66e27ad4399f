"""The summary `make run` and `make summary` print: which warehouse it read, each wave's loads, the headline."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt

import pytest
from conftest import make_paths

from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.operations import summary
from survey_warehouse.raw.load import load_wave
from survey_warehouse.raw.registry import mark_load
from survey_warehouse.warehouse import Warehouse


def _headline(cities: int, responded: int, surveyed: int, statement: str | None, low: float | None, high: float | None):
    share = cities / responded
    return (2020, cities, responded, surveyed, share, cities / surveyed, (cities + surveyed - responded) / surveyed,
            share - 0.1, share + 0.1, statement, low, high)  # fmt: skip


def test_the_headline_shows_shares_bounds_and_the_published_statement(capsys: pytest.CaptureFixture[str]) -> None:
    summary._print_headline(
        [_headline(16, 19, 20, "over 75 percent", 0.75, 1.0), _headline(7, 20, 20, "half", 0.45, 0.55)]
    )
    first, second = [line.split() for line in capsys.readouterr().out.strip().splitlines()[2:4]]
    assert first[1:4] == ["16/19", "84.2%", "80%"]  # 16 of 19 answered; of all 20: 16/20 ...
    assert first[5] == "85%"  # ... to 17/20 whatever the city that did not answer would have said
    assert first[-1] == "yes"
    assert second[1:3] == ["7/20", "35.0%"]
    assert "(all answered)" in " ".join(second)
    assert second[-1] == "NO"  # 35 % is not "half"


def test_a_line_that_is_too_long_is_cut_and_blank_lines_dropped() -> None:
    text = "first\n\n   second   \n" + "x" * 200 + "\nfourth"
    lines = summary._first_lines(text, n=3, width=20)
    assert lines == ["first", "second", "x" * 19 + "…"]
    assert summary._first_lines(None) == []


def test_it_names_the_warehouse_it_read() -> None:
    paths = make_paths("summary_names", fresh=False)
    pg = Warehouse.from_connection({"host": "db.example.fi", "port": 5433, "schema": "survey"})
    assert summary.describe_warehouse(pg, paths) == "PostgreSQL db.example.fi:5433/survey (schema marts)"
    assert summary.describe_warehouse(Warehouse.duckdb(paths.warehouse), paths).startswith(
        f"DuckDB {paths.shown(paths.warehouse)}"
    )


def test_a_path_inside_the_project_is_shown_from_it_and_one_outside_as_it_is(tmp_path) -> None:
    paths = make_paths("summary_names", fresh=False)
    inside = paths.root / "var" / "published" / "survey_marts.duckdb"
    assert paths.shown(inside) == "var/published/survey_marts.duckdb"
    outside = tmp_path / "elsewhere" / "survey.duckdb"  # e.g. SURVEY_WAREHOUSE_PATH on another disk
    assert not outside.is_relative_to(paths.root)
    assert summary.describe_warehouse(Warehouse.duckdb(outside), paths).startswith(f"DuckDB {outside} ")


def test_an_empty_warehouse_says_to_run_first(capsys: pytest.CaptureFixture[str]) -> None:
    paths = make_paths("summary_empty")
    summary.print_summary(paths, {}, Warehouse.duckdb(paths.warehouse))
    out = capsys.readouterr().out
    assert "No warehouse there yet: run `make run`." in out
    assert "Published marts" not in out


def test_loads_without_a_publication_are_listed_and_nothing_is_claimed_published(
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = make_paths("summary_unpublished")
    spec = find_wave_spec(2019, paths)
    assert spec is not None
    loaded = load_wave(spec, paths.warehouse, paths=paths)
    mark_load(paths.warehouse, loaded.load_id, False, "the raw gate failed: 3 unknown answers")
    summary.print_summary(
        paths, {2018: {"exit_code": 1, "log": "var/logs/survey_waves_2018.log", "failed_tasks": ["plan_wave"]}}
    )
    out = capsys.readouterr().out
    assert f"latest attempt {loaded.load_id} ({spec.file.name}" in out
    assert "FAILED" in out
    assert "the raw gate failed: 3 unknown answers" in out
    assert "2018" in out and "run FAILED (below)" in out and "run skipped" not in out
    assert "the run failed before loading, at plan_wave; see var/logs/survey_waves_2018.log" in out
    assert "Nothing published yet: no run got as far as publishing" in out, "no gate ran: none is blamed"
    assert "have not passed their gate" not in out
    assert "Who leads digitalisation" not in out


def test_a_loads_warnings_are_counted_and_the_first_shown(capsys: pytest.CaptureFixture[str]) -> None:
    paths = make_paths("summary_warnings")
    for year in (2016, 2019):
        spec = find_wave_spec(year, paths)
        assert spec is not None
        if year == 2016:  # a field period that ends before the last answers came in: each late one is a warning
            spec = dataclasses.replace(spec, field_period_end=dt.date(2016, 3, 31))
        loaded = load_wave(spec, paths.warehouse, paths=paths)
        mark_load(paths.warehouse, loaded.load_id, True, "passed")
    summary.print_summary(paths, {})
    lines = capsys.readouterr().out.splitlines()
    after = {
        year: lines[next(i for i, line in enumerate(lines) if line.startswith(f"  {year} ")) + 1]
        for year in (2016, 2019)
    }
    at = lines.index(after[2016])
    assert after[2016].strip() == f"{len(loaded_warnings(paths, 2016))} warning (raw.load_registry.warnings):"
    spec = dataclasses.replace(find_wave_spec(2016, paths), field_period_end=dt.date(2016, 3, 31))
    with open(spec.file, encoding=spec.encoding, newline="") as f:
        dates = [r["Vastauspäivä"].split()[0] for r in csv.DictReader(f, delimiter=spec.delimiter)]
    late = sum(dt.date(*map(int, reversed(d.split(".")))) > spec.field_period_end for d in dates)
    assert late and f"Vastauspäivä': {late} answers submitted outside the field period" in lines[at + 1]
    assert "warning" not in after[2019]


def loaded_warnings(paths, year: int) -> list[str]:
    import duckdb

    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        (text,) = con.execute(
            "select warnings from raw.load_registry where wave_year = ? and is_current", [year]
        ).fetchone()
    return text.splitlines()


def _gate_report(paths, batch: str, success: bool) -> None:
    from survey_warehouse.quality.reports import GateReport, report_path

    path = report_path(paths, "marts", batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    GateReport("marts", batch, success, 25, []).write(path)


def test_the_marts_gate_line_is_about_this_run_never_an_earlier_report() -> None:
    paths = make_paths("summary_gate_line")
    _gate_report(paths, "2019_manual__2019-06-01T06_00_00", success=True)  # an earlier run's report
    failed_build = {
        2019: {
            "exit_code": 1,
            "run_id": "manual__2026-01-01T00:00:00",
            "failed_tasks": ["dbt_build.dbt_producer_watcher"],
        }
    }
    assert summary._marts_gate_line(paths, failed_build) == (
        "Marts gate (this run): not run (the run failed before it, at dbt_build.dbt_producer_watcher)"
    )
    _gate_report(paths, "2019_manual__2026-01-01T00_00_00", success=False)
    assert summary._marts_gate_line(paths, failed_build).startswith("Marts gate (this run): FAILED")
    assert summary._marts_gate_line(paths, {}).startswith("Marts gate (latest, ")
    nothing_to_do = {2019: {"exit_code": 0, "seconds": 0.0, "log": None, "skipped": "unchanged"}}
    assert summary._marts_gate_line(paths, nothing_to_do).startswith("Marts gate (latest, ")


def test_the_marts_gate_line_is_the_last_gate_this_command_ran_in_the_order_its_runs_ran() -> None:
    """A catch-up's build failed its gate, the build from the current loads passed, then 2019 alone failed again: the
    line is 2019's last failure, though the build from the current loads is recorded with 2019's outcome."""
    from survey_warehouse.orchestration.pipeline import marts_batch

    paths = make_paths("summary_gate_order")
    ran = ["manual__2026-01-01T00:00:00", "manual__2026-01-01T00:01:00", "manual__2026-01-01T00:02:00"]
    for run_id, success in zip(ran, (False, True, False), strict=True):
        _gate_report(paths, marts_batch(2019, run_id), success=success)
    outcomes = {
        2019: {
            "exit_code": 1,
            "run_id": ran[2],
            "earlier_run_ids": [ran[0]],
            "later_run_ids": [ran[1]],
            "runs_of_command": ran,
        }
    }
    assert summary._marts_gate_line(paths, outcomes).startswith("Marts gate (this run): FAILED")
    outcomes[2019]["runs_of_command"] = ran[:2]  # had 2019 not run again, the passing build is the last
    assert summary._marts_gate_line(paths, outcomes).startswith("Marts gate (this run): passed")


def test_a_failed_marts_gate_is_told_by_this_runs_report_never_an_earlier_one() -> None:
    from survey_warehouse.orchestration.pipeline import failure_message, marts_batch

    paths = make_paths("failure_marts_gate")
    run_id = "manual__2026-01-01T00:00:00"
    _gate_report(paths, marts_batch(2019, "manual__2019-06-01T06:00:00"), success=True)  # an earlier run's
    message = failure_message(
        paths, Warehouse.duckdb(paths.warehouse), ["validate_marts"], None, None, marts_batch(2019, run_id)
    )
    assert "passed" not in message and "the marts gate did not complete" in message
    _gate_report(paths, marts_batch(2019, run_id), success=False)
    message = failure_message(
        paths, Warehouse.duckdb(paths.warehouse), ["validate_marts"], None, None, marts_batch(2019, run_id)
    )
    assert "FAILED" in message and marts_batch(2019, run_id) in message
