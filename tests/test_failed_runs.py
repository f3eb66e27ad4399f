"""A run that fails or is killed after its raw gate passed (in dbt) changes nothing; the next runs go through."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import duckdb
import yaml
from conftest import ROOT, PipelineRun, copy_state, current_loads, file_sha256_of, latest_load, lines_2019, task_states

from survey_warehouse import cli


def test_a_failed_build_changes_nothing_and_another_wave_then_goes_through(
    pipeline_run: PipelineRun, tmp_path: Path
) -> None:
    """dbt fails after the raw gates passed (a seed change breaks a data test) while `make run` catches up two
    corrected waves with one build: both candidate loads are failed, each wave runs again on its own (and fails
    again), the current loads and the published file stay. Once the seed is mended, a run of one wave goes through."""
    paths = copy_state(pipeline_run, "failed_build")
    root = paths.var / "project"
    import shutil

    shutil.copytree(
        ROOT,
        root,
        ignore=shutil.ignore_patterns(".git", ".venv", ".tools", "var", "target", "logs", "__pycache__", "bi", "tests"),
    )
    from dataclasses import replace

    paths = replace(paths, root=root, waves_config=root / "config" / "waves", dbt_project=root / "dbt_project")
    responsibilities = root / "dbt_project" / "seeds" / "responsibilities.csv"
    original = responsibilities.read_text(encoding="utf-8")
    # a duplicated responsibility code: dbt's unique test on the seed fails during the build
    responsibilities.write_text(
        original + "it_management,Tietohallinto,IT management (again),true,6\n", encoding="utf-8"
    )
    lines = lines_2019()
    corrected = paths.var / "city_survey_2019_export_v2.csv"
    corrected.write_text("\n".join([*lines, lines[1].replace("@", ".uusi@", 1)]) + "\n", encoding="utf-8-sig")
    (paths.waves_config / "2019.yml").write_text(
        (paths.waves_config / "2019.yml")
        .read_text(encoding="utf-8")
        .replace("file: data/waves/2019/city_survey_2019_export.csv", f"file: {corrected}"),
        encoding="utf-8",
    )
    # and a corrected 2016 file (one more respondent)
    spec_2016 = yaml.safe_load((paths.waves_config / "2016.yml").read_text(encoding="utf-8"))
    lines_2016 = (ROOT / spec_2016["file"]).read_text(encoding="cp1252").splitlines()
    more = paths.var / "kaupunkikysely_2016_v2.csv"
    more.write_text("\n".join([*lines_2016, lines_2016[1].replace("@", ".toinen@", 1)]) + "\n", encoding="cp1252")
    spec_2016["file"] = str(more)
    (paths.waves_config / "2016.yml").write_text(yaml.safe_dump(spec_2016, allow_unicode=True), encoding="utf-8")
    cli.setup(paths)
    published_sha, current_before = file_sha256_of(paths.published), current_loads(paths)

    outcomes = cli.run_years(paths, [2016, 2019], force_dag=False)

    assert outcomes[2016][0] != 0 and outcomes[2019][0] != 0
    run_log = (paths.var / "logs" / "run.log").read_text()
    assert "2016 (build left to the 2019 run)" in run_log, run_log
    assert "each wave on its own: 2016, 2019" in run_log, run_log
    for year in (2016, 2019):  # the states of each wave's own run, the last one
        states = task_states(paths, year)
        assert states["validate_raw_wave"] == "success" and states["record_failure"] == "success"
        assert "failed" in {s for t, s in states.items() if t.startswith("dbt_build.")}
    assert file_sha256_of(paths.published) == published_sha and current_loads(paths) == current_before
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        caught_up = con.execute(
            "select status, status_message from raw.load_registry where wave_year = 2016 and build_deferred "
            "and not is_current"
        ).fetchall()
    assert len(caught_up) == 1 and caught_up[0][0] == "failed", caught_up
    assert caught_up[0][1].startswith("built with the run of wave 2019, which failed: the run failed at dbt_build.")
    for year in (2016, 2019):
        status, message = latest_load(paths, year)
        assert status == "failed" and "the run failed at dbt_build." in message

    # the seed is mended: the corrected 2016 wave goes through on its own
    responsibilities.write_text(original, encoding="utf-8")
    cli.setup(paths)
    code, _seconds, log = cli.run_wave(paths, 2016)
    assert code == 0, log.read_text()[-3000:]
    current = current_loads(paths)
    assert current[2019] == current_before[2019], "the failed 2019 load did not become current"
    assert current[2016] != current_before[2016]
    with duckdb.connect(str(paths.published), read_only=True) as con:
        respondents = dict(con.execute("select wave_year, respondents from marts.dim_year").fetchall())
    assert respondents[2019] == len(lines) - 1, "the published 2019 marts are built from the current load"
    assert respondents[2016] == len(lines_2016), "the 2016 correction is published"


def test_a_run_killed_during_dbt_leaves_the_published_marts_and_recovers(pipeline_run: PipelineRun) -> None:
    import yaml

    paths = copy_state(pipeline_run, "killed_dbt")
    spec = yaml.safe_load((ROOT / "config" / "waves" / "2019.yml").read_text(encoding="utf-8"))
    lines = (ROOT / spec["file"]).read_text(encoding="utf-8-sig").splitlines()
    corrected = paths.var / "city_survey_2019_export_v2.csv"
    corrected.write_text("\n".join([*lines, lines[1].replace("@", ".uusi@", 1)]) + "\n", encoding="utf-8-sig")
    waves = paths.var / "waves"
    waves.mkdir()
    for year in (2016, 2018, 2019):
        data = yaml.safe_load((ROOT / "config" / "waves" / f"{year}.yml").read_text(encoding="utf-8"))
        data["file"] = str(corrected if year == 2019 else ROOT / data["file"])
        (waves / f"{year}.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    paths = dataclasses.replace(paths, waves_config=waves)
    cli.setup(paths)
    published = file_sha256_of(paths.published)
    process, log = cli.start_wave(paths, 2019)
    deadline = time.monotonic() + 300
    while "dbt_build." not in log.read_text(errors="replace"):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before dbt started"
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGKILL)  # the whole run, dbt included, mid-build
    process.wait()
    assert file_sha256_of(paths.published) == published, "a killed run publishes nothing"

    code, _seconds, log = cli.run_wave(paths, 2019)
    assert code == 0, log.read_text()[-3000:]
    with duckdb.connect(str(paths.published), read_only=True) as con:
        rows = con.execute("select count(*) from marts.fct_city_responsibility").fetchone()[0]
        respondents = con.execute("select respondents from marts.dim_year where wave_year = 2019").fetchone()[0]
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        statuses = con.execute("select status, count(*) from raw.load_registry group by 1").fetchall()
    assert rows == 60 and respondents == len(lines)
    assert dict(statuses) == {"passed": 3, "superseded": 1, "failed": 1}, "the killed run's load is failed"
