"""Running a wave again changes nothing; a broken wave is stopped at the gate and the published marts stay."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest
import yaml

from conftest import ROOT, PipelineRun, copy_state, task_states, use_paths, with_waves_dir
from survey_warehouse import cli, quality

RAW_TABLES = ("raw.load_registry", "raw.survey_cells", "raw.wave_cities_surveyed")


def _marts(path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: sorted(con.execute(f"select * from marts.{t}").fetchall(), key=repr)
                for t in quality.MART_TABLES}


def _raw_counts(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in RAW_TABLES}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_running_a_loaded_wave_again_changes_nothing(pipeline_run: PipelineRun) -> None:
    paths = copy_state(pipeline_run, "idempotency")
    cli.setup(paths)
    raw_before, marts_before = _raw_counts(paths.warehouse), _marts(paths.warehouse)
    published_before = _marts(paths.published)

    code, _seconds, log = cli.run_wave(paths, 2018)

    assert code == 0, log.read_text()[-3000:]
    assert "is unchanged since load" in log.read_text()
    assert _raw_counts(paths.warehouse) == raw_before
    assert _marts(paths.warehouse) == marts_before
    assert _marts(paths.published) == published_before


def _broken_wave(paths, tmp: Path) -> Path:
    """A copy of the 2019 wave with unknown cities and answer labels missing from the codebook in 6 rows (more
    than the 5 % of quarantined rows a load may have)."""
    spec = yaml.safe_load((ROOT / "config/waves/2019.yml").read_text(encoding="utf-8"))
    lines = (ROOT / spec["file"]).read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split(",")
    city, lead = header.index("Organisaatio"), header.index(
        "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?")
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
    waves = tmp / "waves"
    waves.mkdir()
    for year in (2016, 2018, 2019):
        data = yaml.safe_load((ROOT / f"config/waves/{year}.yml").read_text(encoding="utf-8"))
        data["file"] = str(broken if year == 2019 else ROOT / data["file"])
        (waves / f"{year}.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return waves


def test_a_broken_wave_fails_the_gate_and_the_published_marts_stay(pipeline_run: PipelineRun) -> None:
    paths = copy_state(pipeline_run, "gate")
    paths = with_waves_dir(paths, _broken_wave(paths, paths.var))
    cli.setup(paths)
    published_sha = _sha(paths.published)
    marts_before = _marts(paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        current_before = con.execute("select load_id from raw.load_registry where wave_year = 2019 "
                                     "and is_current").fetchone()[0]

    code, _seconds, log = cli.run_wave(paths, 2019)

    text = log.read_text()
    assert code != 0, "the run must fail when the raw gate fails"
    states = task_states(paths, 2019)
    assert states["validate_raw_wave"] == "failed"
    assert states["reject_raw_wave"] == "success"
    dbt_states = {s for t, s in states.items() if t.startswith("dbt_build.")}
    assert dbt_states == {"upstream_failed"}, "dbt must not run on a rejected wave"
    assert states["publish_marts"] == "upstream_failed"
    assert _sha(paths.published) == published_sha, "the published marts must stay as they were"
    assert _marts(paths.warehouse) == marts_before
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        rejected = con.execute("select status, status_message from raw.load_registry where wave_year = 2019 "
                               "and status = 'failed'").fetchall()
        current_after = con.execute("select load_id from raw.load_registry where wave_year = 2019 "
                                    "and is_current").fetchone()[0]
    assert current_after == current_before
    assert len(rejected) == 1 and rejected[0][0] == "failed"
    message = rejected[0][1]
    # the message says which expectation failed on which data, with the file's rows and columns
    assert "raw_load: expect_column_values_to_be_between on column 'quarantined_share'" in message
    rows = len((ROOT / "data/waves/2019/city_survey_2019_export.csv").read_text(encoding="utf-8-sig").splitlines()) - 1
    assert f"6 of {rows} rows ({6 / rows:.1%}) quarantined" in message
    assert "row 3, column 'Organisaatio': unknown city 'Atlantis'" in message
    assert ("row 5, column 'Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?': answer 'Pormestari' "
            "is not in the 2019 codebook") in message
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        quarantined = con.execute("select source_row_number, reason_code from raw.quarantine q join "
                                  "raw.load_registry r using (load_id) where r.status = 'failed' "
                                  "order by 1").fetchall()
    assert quarantined == [(3, "unknown_city"), (4, "unknown_city"), (5, "unknown_answer"), (6, "unknown_answer"),
                           (7, "unknown_city"), (8, "unknown_city")]
    assert "Wave load" in text and "rejected" in text


def test_marts_gate_names_the_failed_expectation(pipeline_run: PipelineRun, monkeypatch) -> None:
    paths = copy_state(pipeline_run, "marts_gate")
    use_paths(monkeypatch, paths)
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("delete from marts.fct_city_responsibility where city_wave_id = '2018-091'")
        con.execute("update marts.fct_responsibility_shares set share = 1.5 where wave_year = 2019 "
                    "and responsibility_code = 'it_management'")
    with pytest.raises(quality.QualityGateFailed) as failed:
        quality.run_gate(quality.marts_checkpoint(quality.file_context(paths), "broken", paths), paths)
    message = str(failed.value)
    assert "fct_city_responsibility: expect_table_row_count_to_equal" in message
    assert "fct_responsibility_shares: expect_column_values_to_be_between on column 'share'" in message
    assert "responsibility_share_totals" in message
