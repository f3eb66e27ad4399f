"""A run that fails or is killed after its raw gate passed (in dbt) changes nothing; the next run goes through.

One scenario, its steps shared by the tests of this module: `make run` catches up two corrected waves and the build
fails (a broken seed); the seed is mended and a run of one of them is killed during dbt; the next run publishes it."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import yaml
from conftest import ROOT, PipelineRun, copy_state, current_loads, file_sha256_of, latest_load, lines_2019, task_states

from survey_warehouse.orchestration import runner, runtime
from survey_warehouse.settings import Paths


@dataclass
class Scenario:
    """A failed build while two corrected waves are caught up, then a run killed during dbt, then a run that goes
    through: what each step left."""

    paths: Paths
    published_sha: str
    current_before: dict[int, str]
    lines_2016: list[str]
    lines_2019: list[str]
    # after the failed catch-up
    outcomes: dict[int, tuple[int, float, Path]]
    run_log: str
    states: dict[int, dict[str, str]]
    published_sha_after_failure: str
    current_after_failure: dict[int, str]
    caught_up: list[tuple[str, str]]
    latest_after_failure: dict[int, tuple[str, str]]
    # after the killed run
    published_sha_after_kill: str
    # after the run that goes through
    code: int
    log: Path


def _project_with_a_broken_seed(paths: Paths) -> tuple[Paths, Path, str]:
    """A copy of the project whose responsibilities seed repeats a code: dbt's unique test on it fails the build."""
    root = paths.var / "project"
    shutil.copytree(
        ROOT,
        root,
        ignore=shutil.ignore_patterns(".git", ".venv", ".tools", "var", "target", "logs", "__pycache__", "bi", "tests"),
    )
    shutil.copytree(ROOT / "dbt_project" / "target", root / "dbt_project" / "target")  # as setup left it
    paths = dataclasses.replace(
        paths, root=root, waves_config=root / "config" / "waves", dbt_project=root / "dbt_project"
    )
    seed = root / "dbt_project" / "seeds" / "responsibilities.csv"
    original = seed.read_text(encoding="utf-8")
    seed.write_text(original + "it_management,Tietohallinto,IT management (again),true,6\n", encoding="utf-8")
    return paths, seed, original


@pytest.fixture(scope="module")
def scenario(pipeline_run: PipelineRun) -> Scenario:
    paths, seed, original = _project_with_a_broken_seed(copy_state(pipeline_run, "failed_build"))
    # a corrected 2019 file and a corrected 2016 file, each with one more respondent
    lines = lines_2019()
    corrected = paths.var / "city_survey_2019_export_v2.csv"
    corrected.write_text("\n".join([*lines, lines[1].replace("@", ".uusi@", 1)]) + "\n", encoding="utf-8-sig")
    (paths.waves_config / "2019.yml").write_text(
        (paths.waves_config / "2019.yml")
        .read_text(encoding="utf-8")
        .replace("file: data/waves/2019/city_survey_2019_export.csv", f"file: {corrected}"),
        encoding="utf-8",
    )
    spec_2016 = yaml.safe_load((paths.waves_config / "2016.yml").read_text(encoding="utf-8"))
    lines_2016 = (ROOT / spec_2016["file"]).read_text(encoding="cp1252").splitlines()
    more = paths.var / "kaupunkikysely_2016_v2.csv"
    more.write_text("\n".join([*lines_2016, lines_2016[1].replace("@", ".toinen@", 1)]) + "\n", encoding="cp1252")
    spec_2016["file"] = str(more)
    (paths.waves_config / "2016.yml").write_text(yaml.safe_dump(spec_2016, allow_unicode=True), encoding="utf-8")
    runtime.setup(paths)
    published_sha, current_before = file_sha256_of(paths.published), current_loads(paths)

    # `make run` catching up both corrected waves, with the broken seed
    outcomes = runner.run_years(paths, [2016, 2019], force_dag=False)
    states = {year: task_states(paths, year) for year in (2016, 2019)}  # each wave's own run, the last one
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        caught_up = con.execute(
            "select status, status_message from raw.load_registry where wave_year = 2016 and build_deferred "
            "and not is_current"
        ).fetchall()
    after_failure = {
        "published_sha_after_failure": file_sha256_of(paths.published),
        "current_after_failure": current_loads(paths),
        "latest_after_failure": {year: latest_load(paths, year) for year in (2016, 2019)},
    }

    # the seed is mended; the 2016 run is killed during dbt
    seed.write_text(original, encoding="utf-8")
    runtime.setup(paths)
    process, log = runner.start_wave(paths, 2016)
    deadline = time.monotonic() + 300
    while "dbt_build." not in log.read_text(errors="replace"):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before dbt started"
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGKILL)  # the whole run, dbt included, mid-build
    process.wait()
    published_sha_after_kill = file_sha256_of(paths.published)

    # and run again
    code, _seconds, log = runner.run_wave(paths, 2016)
    return Scenario(
        paths,
        published_sha,
        current_before,
        lines_2016,
        lines,
        outcomes,
        (paths.var / "logs" / "run.log").read_text(),
        states,
        caught_up=caught_up,
        published_sha_after_kill=published_sha_after_kill,
        code=code,
        log=log,
        **after_failure,
    )


def test_a_build_failure_no_waves_data_causes_changes_nothing_and_no_wave_is_run_again(scenario: Scenario) -> None:
    """dbt fails after the raw gates passed (a seed change breaks a data test) while `make run` catches up two
    corrected waves with one build. The marts are then built once from the current loads alone: that fails too, so
    no wave's data is the cause and the waves are not run again one by one (each would fail the same way). Both
    candidate loads are failed, the current loads and the published file stay, and the output says why."""
    s = scenario
    assert s.outcomes[2016][0] != 0 and s.outcomes[2019][0] != 0
    assert "2016 (build left to the 2019 run)" in s.run_log, s.run_log
    # made with the wave the catch-up did not change (its current load is gated against an unchanged spec), as a
    # run of its own: the 2019 run's record and log stay
    assert "Running DAG survey_waves for 2018 (the current loads alone)" in s.run_log, s.run_log
    assert "survey_waves_current_loads.log" in s.run_log
    assert "no wave's data is the cause" in s.run_log and "Not run again one by one: 2016, 2019" in s.run_log
    assert "each wave on its own" not in s.run_log, s.run_log
    assert s.states[2016]["validate_raw_wave"] == "success" and s.states[2016]["begin_build"] == "skipped"
    assert s.states[2019]["validate_raw_wave"] == "success" and s.states[2019]["record_failure"] == "success"
    assert "failed" in {state for t, state in s.states[2019].items() if t.startswith("dbt_build.")}
    assert s.published_sha_after_failure == s.published_sha and s.current_after_failure == s.current_before
    assert len(s.caught_up) == 1 and s.caught_up[0][0] == "failed", s.caught_up
    assert s.caught_up[0][1].startswith("built with the run of wave 2019, which failed: the run failed at dbt_build.")
    for status, message in s.latest_after_failure.values():
        assert status == "failed" and "the run failed at dbt_build." in message
        # the build's own error, kept by the producer's failure callback: the test that failed, not a pointer to a log
        assert "CosmosDbtRunError: dbt invocation completed with errors: " in message, message


def test_a_run_killed_during_dbt_publishes_nothing(scenario: Scenario) -> None:
    assert scenario.published_sha_after_kill == scenario.published_sha


def test_then_the_corrected_wave_goes_through_on_its_own(scenario: Scenario) -> None:
    """The seed mended, the next run of 2016 publishes its correction; the failed 2019 load stays out of the marts,
    and the loads of the failed build and of the killed run are failed."""
    s = scenario
    assert s.code == 0, s.log.read_text()[-3000:]
    current = current_loads(s.paths)
    assert current[2019] == s.current_before[2019], "the failed 2019 load did not become current"
    assert current[2016] != s.current_before[2016]
    with duckdb.connect(str(s.paths.published), read_only=True) as con:
        respondents = dict(con.execute("select wave_year, respondents from marts.dim_year").fetchall())
        rows = con.execute("select count(*) from marts.fct_city_responsibility").fetchone()[0]
    assert rows == 60
    assert respondents[2019] == len(s.lines_2019) - 1, "the published 2019 marts are built from the current load"
    assert respondents[2016] == len(s.lines_2016), "the 2016 correction is published"
    with duckdb.connect(str(s.paths.warehouse), read_only=True) as con:
        statuses = dict(con.execute("select status, count(*) from raw.load_registry group by 1").fetchall())
        killed = con.execute(
            "select status, status_message from raw.load_registry where wave_year = 2016 order by loaded_at"
        ).fetchall()[-2]
    # failed: 2016 and 2019 caught up with the failed build (not run again: the build from the current loads failed
    # too), and the killed run's load
    assert statuses == {"passed": 3, "superseded": 1, "failed": 3}, statuses
    assert killed == ("failed", "the run that made this load stopped before it finished")
