"""The backfill docs/operating.md gives, under a real scheduler: `make airflow` running, the documented
`make airflow-cli ARGS='backfill create ... --max-active-runs 1'` for 2016-2019 runs one wave at a time (no run
starts before the one before it ended), the year without a wave ends skipped, and every wave is published from its
own current load.

The command is read from docs/operating.md itself, so the test fails when the documentation's command would not do
this. It runs against the bundled wave specs and files in its own var folder.
"""

from __future__ import annotations

import itertools
import shlex
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator

import duckdb
import pytest
from conftest import ROOT, current_loads, make_paths
from test_airflow_command import (
    Started,
    airflow_runs,
    api,
    assert_all_stopped,
    command_env,
    dags_paused,
    free_port,
    start,
)

from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.settings import Paths

pytestmark = pytest.mark.slow

BACKFILL_TIMEOUT = 1800  # four runs, one at a time, on a busy machine
OPERATING = ROOT / "docs" / "operating.md"


def documented_backfill() -> str:
    """The docs' backfill of 2016-2019 (the one without --dry-run or --reprocess-behavior), as one shell line."""
    text = OPERATING.read_text(encoding="utf-8").replace("\\\n", " ")
    commands = [
        " ".join(line.split())
        for line in text.splitlines()
        if line.startswith("make airflow-cli ARGS='backfill create")
        and "--dry-run" not in line
        and "--reprocess-behavior" not in line
    ]
    assert len(commands) == 1, f"docs/operating.md should give one plain backfill command, found {commands}"
    return commands[0]


@pytest.fixture(scope="module")
def paths() -> Paths:
    return make_paths("airflow_backfill")


@pytest.fixture
def running(paths: Paths) -> Iterator[list[Started]]:
    starts: list[Started] = []
    yield starts
    for started in starts:
        started.kill()


def runs_with_times(paths: Paths) -> list[tuple[str, str, str, str | None, str | None]]:
    """(run id, run type, state, start, end) of every survey_waves run."""
    with sqlite3.connect(paths.var / "airflow" / "airflow.db", timeout=30) as db:
        return db.execute(
            "select run_id, run_type, state, start_date, end_date from dag_run where dag_id = 'survey_waves' "
            "order by start_date"
        ).fetchall()


def wait_until_idle(started: Started, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if started.process.poll() is not None:
            pytest.fail(f"make airflow exited ({started.process.returncode})\n{started.diagnostics()}")
        runs = airflow_runs(started.paths, "survey_waves")
        if runs and all(state in ("success", "failed") for _run, _type, state in runs):
            return
        time.sleep(2)
    pytest.fail(f"survey_waves runs still going after {timeout} s\n{started.diagnostics()}")


def test_the_documented_backfill_runs_one_wave_at_a_time_and_publishes_every_wave(
    paths: Paths, running: list[Started]
) -> None:
    command = documented_backfill()
    assert "--max-active-runs 1" in command, command

    started = start(paths, ["make", "--no-print-directory", "airflow", f"PORT={free_port()}"], "make_airflow")
    running.append(started)
    url, _up = started.wait_up()
    dags_paused(api(started, url), started)
    wait_until_idle(started, 600)  # the schedule's own run of the latest year (no wave: skipped)
    before = {run for run, _type, _state in airflow_runs(paths, "survey_waves")}

    created = subprocess.run(
        shlex.split(command), cwd=ROOT, env=command_env(paths), capture_output=True, text=True, timeout=300, check=False
    )
    assert created.returncode == 0, f"{command}\n{created.stdout}\n{created.stderr}"
    kicked_off = time.monotonic()

    deadline = kicked_off + BACKFILL_TIMEOUT
    backfill: list[tuple[str, str, str, str | None, str | None]] = []
    while time.monotonic() < deadline:
        backfill = [r for r in runs_with_times(paths) if r[0] not in before]
        if len(backfill) == 4 and all(r[2] in ("success", "failed") for r in backfill):
            break
        if started.process.poll() is not None:
            pytest.fail(f"make airflow exited\n{started.diagnostics()}")
        time.sleep(3)
    else:
        pytest.fail(f"the backfill did not end within {BACKFILL_TIMEOUT} s: {backfill}\n{started.diagnostics()}")
    seconds = time.monotonic() - kicked_off

    assert all(run_type == "backfill" for _id, run_type, *_ in backfill), backfill
    assert [state for _id, _type, state, *_ in backfill] == ["success"] * 4, f"{backfill}\n{started.diagnostics()}"
    for earlier, later in itertools.pairwise(backfill):
        assert later[3] >= earlier[4], f"run {later[0]} started before {earlier[0]} ended: {backfill}"

    waves = [year for year in range(2016, 2020) if find_wave_spec(year, paths) is not None]
    loads = current_loads(paths)
    assert sorted(loads) == waves, loads
    with duckdb.connect(str(paths.published), read_only=True) as con:
        published = {row[0] for row in con.execute("select unnest(load_ids) from marts.publication").fetchall()}
        years = {r[0] for r in con.execute("select distinct wave_year from marts.fct_city_responsibility").fetchall()}
    assert published == set(loads.values()), "the marts are not published from every wave's current load"
    assert years == set(waves)

    started.stop(signal.SIGINT)
    assert_all_stopped(started)
    print(f"\nbackfill 2016-2019 under the scheduler: {seconds:.0f} s, one run at a time", flush=True)
