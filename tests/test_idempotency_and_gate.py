"""Nothing new, nothing done; a broken or partial delivery is stopped at the gate; a failed run changes nothing,
whichever step failed, and another wave's run then goes through."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest
from conftest import (
    PipelineRun,
    copy_state,
    current_loads,
    file_sha256_of,
    latest_load,
    lines_2019,
    task_states,
    use_paths,
    waves_with_file,
    with_waves_dir,
)

from survey_warehouse import cli, quality

RAW_TABLES = ("raw.load_registry", "raw.survey_columns", "raw.survey_cells", "raw.wave_cities_surveyed")
LEAD = "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?"


def _marts(path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where "
                "table_schema = 'marts' and table_name <> 'publication'"
            ).fetchall()
        ]
        return {t: sorted(con.execute(f"select * from marts.{t}").fetchall(), key=repr) for t in tables}


def _raw_counts(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in RAW_TABLES}


def test_running_an_unchanged_wave_again_does_nothing(pipeline_run: PipelineRun) -> None:
    paths = copy_state(pipeline_run, "idempotency")
    cli.setup(paths)
    raw_before, marts_before = _raw_counts(paths.warehouse), _marts(paths.warehouse)
    published_stat = paths.published.stat()

    code, _seconds, log = cli.run_wave(paths, 2018)

    assert code == 0, log.read_text()[-3000:]
    assert "wave 2018: unchanged since publication" in log.read_text()
    ran = {t for t, state in task_states(paths, 2018).items() if state != "skipped"}
    assert ran == {"dbt_build.dbt_producer_watcher_done"}, "nothing but the watcher's empty gate ran"
    assert _raw_counts(paths.warehouse) == raw_before
    assert _marts(paths.warehouse) == marts_before
    after = paths.published.stat()
    assert (after.st_mtime_ns, after.st_ino) == (published_stat.st_mtime_ns, published_stat.st_ino), (
        "the published file is not even rewritten"
    )


def _broken_wave(tmp: Path) -> Path:
    """A copy of the 2019 wave with unknown cities and answer labels missing from the codebook in 6 rows (more
    than the 5 % of quarantined rows a load may have)."""
    lines = lines_2019()
    header = lines[0].split(",")
    city, lead = header.index("Organisaatio"), header.index(LEAD)
    for line in (2, 3, 6, 7):  # file rows 3, 4, 7, 8
        row = lines[line].split(",")
        row[city] = "Atlantis"
        lines[line] = ",".join(row)
    for line in (4, 5):  # file rows 5, 6
        row = lines[line].split(",")
        row[lead] = "Pormestari"
        lines[line] = ",".join(row)
    broken = tmp / "city_survey_2019_export_broken.csv"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return waves_with_file(tmp, 2019, broken)


def test_a_broken_wave_fails_the_gate_and_the_published_marts_stay(pipeline_run: PipelineRun) -> None:
    paths = copy_state(pipeline_run, "gate")
    paths = with_waves_dir(paths, _broken_wave(paths.var))
    cli.setup(paths)
    published_sha = file_sha256_of(paths.published)
    marts_before = _marts(paths.published)
    current_before = current_loads(paths)

    code, _seconds, log = cli.run_wave(paths, 2019)

    assert code != 0, "the run must fail when the raw gate fails"
    states = task_states(paths, 2019)
    assert states["validate_raw_wave"] == "failed"
    assert states["record_failure"] == "success"
    dbt_states = {s for t, s in states.items() if t.startswith("dbt_build.")}
    assert dbt_states == {"upstream_failed"}, "dbt must not run on a rejected wave"
    assert states["publish_marts"] == "upstream_failed"
    assert file_sha256_of(paths.published) == published_sha, "the published marts must stay as they were"
    assert _marts(paths.published) == marts_before
    assert current_loads(paths) == current_before
    status, message = latest_load(paths, 2019)
    assert status == "failed"
    # the message says which expectation failed on which data, with the file's rows and columns
    assert "raw_load: expect_column_values_to_be_between on column 'quarantined_share'" in message
    rows = len(lines_2019()) - 1
    assert f"6 of {rows} rows ({6 / rows:.1%}) quarantined" in message
    assert "row 3, column 'Organisaatio': unknown city 'Atlantis'" in message
    assert (
        "row 5, column 'Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?': answer 'Pormestari' "
        "is not in the 2019 codebook"
    ) in message
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        quarantined = con.execute(
            "select source_row_number, reason_code from raw.quarantine q join "
            "raw.load_registry r using (load_id) where r.status = 'failed' "
            "order by 1"
        ).fetchall()
    assert quarantined == [
        (3, "unknown_city"),
        (4, "unknown_city"),
        (5, "unknown_answer"),
        (6, "unknown_answer"),
        (7, "unknown_city"),
        (8, "unknown_city"),
    ]
    assert "Wave 2019" in log.read_text()


def test_marts_gate_names_the_failed_expectation(pipeline_run: PipelineRun, monkeypatch) -> None:
    paths = copy_state(pipeline_run, "marts_gate")
    use_paths(monkeypatch, paths)
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("delete from marts.fct_city_responsibility where city_wave_id = '2018-091'")
        con.execute(
            "update marts.fct_responsibility_shares set share = 1.5 where wave_year = 2019 "
            "and responsibility_code = 'it_management'"
        )
    with pytest.raises(quality.QualityGateFailed) as failed:
        quality.run_gate(quality.marts_checkpoint(quality.file_context(paths), "broken", paths), paths)
    message = str(failed.value)
    assert "fct_city_responsibility: expect_table_row_count_to_equal" in message
    assert "fct_responsibility_shares: expect_column_values_to_be_between on column 'share'" in message
    assert "responsibility_share_totals" in message
    assert os.environ["SURVEY_WAREHOUSE_PATH"] == str(paths.warehouse)
