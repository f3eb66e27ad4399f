"""`make airflow` as docs/operating.md tells it: start it, log in at the URL it prints, drop a wave file into the inbox,
the run the inbox watcher starts publishes it (and the exports follow), Ctrl-C stops every process it started.

Also: a second start while one runs refuses and names the running one; `--paused` leaves the DAGs paused and SIGTERM
stops it too. Both tests share one var folder, the first one's DAGs left paused, as `make run` leaves them: the second
start has to unpause DAGs Airflow already knows.

Each start is a process in a session of its own (as a terminal runs it: Ctrl-C is SIGINT to its process group),
on a free port, with its own wave spec for 2019 whose `file:` is in the test's folder (archiving never touches
data/waves/). Every wait is bounded; a failure prints the command's output and the ends of Airflow's logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psutil
import pytest
import yaml
from conftest import ROOT, asset_events, current_loads, file_sha256_of, make_paths, with_waves_dir

from survey_warehouse.orchestration import local_airflow
from survey_warehouse.publishing import exports
from survey_warehouse.settings import Paths

pytestmark = pytest.mark.slow

SPEC_2019 = ROOT / "config" / "waves" / "2019.yml"
WAVE_FILE = ROOT / yaml.safe_load(SPEC_2019.read_text(encoding="utf-8"))["file"]
STARTUP_TIMEOUT = 300  # up, on a busy machine
RUN_TIMEOUT = 900  # the dropped file's run and the exports after it
STOP_TIMEOUT = 90  # the command's grace period (30 s) and SIGKILL, with room
REFUSAL_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Started:
    """A start of the command, in a session of its own; its output in a file."""

    paths: Paths
    process: subprocess.Popen
    output: Path
    seen: dict[int, float] = field(default_factory=dict)  # every process it started that was seen: pid -> created

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def lock(self) -> dict[str, Any]:
        return local_airflow.read_lock(local_airflow.lock_path(self.paths))

    def sessions(self) -> set[int]:
        return {int(pid) for pid in self.lock().get("components", {}).values()}

    def note_processes(self) -> set[int]:
        """Every process it started so far (its descendants, the components' sessions), remembered with their start
        times so that the check after the stop is not fooled by a reused pid."""
        found: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            found += psutil.Process(self.process.pid).children(recursive=True)
        for pid in local_airflow.session_processes(self.sessions()):
            try:
                found.append(psutil.Process(pid))
            except psutil.Error:
                continue
        for proc in found:
            try:
                self.seen.setdefault(proc.pid, proc.create_time())
            except psutil.Error:
                continue
        return {proc.pid for proc in found}

    def left(self) -> list[str]:
        """The processes it started that still run (not zombies), as `pid cmdline`."""
        alive = []
        for pid, created in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid} {' '.join(proc.cmdline())}")
            except psutil.Error:
                continue
        for pid in local_airflow.session_processes(self.sessions() | {self.process.pid}):
            if pid not in self.seen:
                alive.append(f"{pid} (in a session it started)")
        return alive

    def diagnostics(self) -> str:
        parts = [f"--- output of {' '.join(map(str, self.process.args))}:\n{self.text()}"]
        for log in sorted(local_airflow.log_dir(self.paths).glob("*.log")):
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
            parts.append(f"--- {log} (end):\n" + "\n".join(tail))
        return "\n".join(parts)

    def url(self) -> str | None:
        found = re.search(r"^\s*UI:\s+(http://\S+)", self.text(), re.MULTILINE)
        return found[1] if found else None

    def wait_up(self, timeout: float = STARTUP_TIMEOUT) -> tuple[str, float]:
        """The URL the command printed, once the UI answers there; and the seconds since the start."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                pytest.fail(f"the command exited ({self.process.returncode}) before it was up\n{self.diagnostics()}")
            url = self.url()
            if url:
                try:
                    if httpx.get(url, timeout=5, follow_redirects=True).status_code == 200:
                        self.note_processes()
                        return url, time.monotonic() - started
                except httpx.HTTPError:
                    pass
            time.sleep(1)
        pytest.fail(f"the UI did not answer within {timeout} s\n{self.diagnostics()}")

    def stop(self, sig: signal.Signals, timeout: float = STOP_TIMEOUT) -> float:
        """The signal to its process group, as Ctrl-C in a terminal sends SIGINT; the seconds until it exited."""
        self.note_processes()
        started = time.monotonic()
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {timeout} s after {sig.name}\n{self.diagnostics()}")
        return time.monotonic() - started

    def kill(self) -> None:
        """Whatever a failed test left: SIGKILL to every session the command and its components lead."""
        local_airflow.stop_sessions(self.sessions() | {self.process.pid}, 5, reap=[self.process])


@pytest.fixture(scope="module")
def paths() -> Paths:
    paths = make_paths("airflow_command")
    # the test's own wave spec for 2019, its `file:` in the test's folder: archiving never touches data/waves/
    waves = paths.var / "waves"
    waves.mkdir()
    spec = yaml.safe_load(SPEC_2019.read_text(encoding="utf-8"))
    spec["file"] = str(paths.var / "archive" / "2019" / WAVE_FILE.name)
    (waves / "2019.yml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return with_waves_dir(paths, waves)


def command_env(paths: Paths) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURVEY_", "AIRFLOW"))}
    env.update(
        {
            "SURVEY_VAR_DIR": str(paths.var),
            "SURVEY_WAVES_DIR": str(paths.waves_config),
            "SURVEY_INBOX_POLL_SECONDS": "1",
            "SURVEY_INBOX_SETTLE_SECONDS": "2",
            # the ports the scheduler and the triggerer serve their logs on: not another Airflow's on this machine
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
    )
    return env


def start(paths: Paths, command: list[str], name: str) -> Started:
    output = paths.var / f"{name}.out"
    with open(output, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=command_env(paths),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Started(paths, process, output)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "survey_warehouse.cli", *args]


@pytest.fixture
def running(paths: Paths) -> Iterator[list[Started]]:
    """The starts a test makes; whatever they leave running is killed afterwards."""
    starts: list[Started] = []
    yield starts
    for started in starts:
        started.kill()


def api(started: Started, url: str) -> httpx.Client:
    """A REST API client logged in as the command says: the user it names, the password from the file it names."""
    login = re.search(r"^\s*Login:\s+(\w+); the password is in (\S+)", started.text(), re.MULTILINE)
    assert login, f"the command did not say how to log in\n{started.diagnostics()}"
    user, password_file = login[1], ROOT / login[2]
    password = json.loads(password_file.read_text(encoding="utf-8"))[user]
    response = httpx.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)
    assert response.status_code == 201, response.text
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {response.json()['access_token']}"}, timeout=30
    )


def dags_paused(client: httpx.Client, started: Started, timeout: float = 120) -> dict[str, bool]:
    """is_paused of the project's DAGs, once the dag-processor has parsed them all."""
    deadline = time.monotonic() + timeout
    found: dict[str, bool] = {}
    while time.monotonic() < deadline:
        dags = client.get("/api/v2/dags", params={"dag_id_pattern": "survey_", "limit": 100}).json()["dags"]
        found = {d["dag_id"]: d["is_paused"] for d in dags}
        if set(found) >= set(local_airflow.PROJECT_DAGS):
            return found
        time.sleep(2)
    pytest.fail(f"the DAGs were not all parsed within {timeout} s: {found}\n{started.diagnostics()}")


def airflow_runs(paths: Paths, dag_id: str) -> list[tuple[str, str, str]]:
    """(run id, run type, state) of every run of a DAG, from Airflow's metadata (read while Airflow runs)."""
    with sqlite3.connect(paths.var / "airflow" / "airflow.db", timeout=30) as db:
        return db.execute(
            "select run_id, run_type, state from dag_run where dag_id = ? order by id", [dag_id]
        ).fetchall()


def wait_for_run(started: Started, dag_id: str, run_type: str, known: set[str], timeout: float) -> tuple[str, str]:
    """The first new run of this type and how it ended (success or failed)."""
    deadline = time.monotonic() + timeout
    runs: list[tuple[str, str, str]] = []
    while time.monotonic() < deadline:
        if started.process.poll() is not None:
            pytest.fail(f"the command exited ({started.process.returncode})\n{started.diagnostics()}")
        runs = [r for r in airflow_runs(started.paths, dag_id) if r[1] == run_type and r[0] not in known]
        if runs and runs[0][2] in ("success", "failed"):
            return runs[0][0], runs[0][2]
        time.sleep(2)
    pytest.fail(f"no {run_type} run of {dag_id} finished within {timeout} s: {runs}\n{started.diagnostics()}")


def assert_all_stopped(started: Started) -> None:
    left = started.left()
    assert not left, f"processes left running: {left}\n{started.diagnostics()}"
    lock = local_airflow.lock_path(started.paths)
    assert local_airflow.read_lock(lock) == {}, f"the lock still names a holder: {lock.read_text()}"
    local_airflow.acquire_lock(started.paths).release()  # and nobody holds it


def test_paused_start_leaves_the_dags_paused_refuses_a_second_start_and_stops_on_sigterm(
    paths: Paths, running: list[Started]
) -> None:
    first = start(paths, cli("airflow", "--paused", "--port", str(free_port())), "paused")
    running.append(first)
    url, up_seconds = first.wait_up()

    paused = dags_paused(api(first, url), first)
    assert all(paused[dag] for dag in local_airflow.PROJECT_DAGS), paused

    # a second start, on another port, while the first one runs
    # the running instance keeps appending to its logs; a second start would create or truncate (open "w") them
    logs_before = {log: log.stat().st_size for log in local_airflow.log_dir(paths).iterdir()}
    second = start(paths, cli("airflow", "--port", str(free_port())), "second")
    running.append(second)
    try:
        code = second.process.wait(timeout=REFUSAL_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a second start did not refuse within {REFUSAL_TIMEOUT} s\n{second.diagnostics()}")
    assert code != 0
    message = second.text()
    assert "already running" in message, message
    assert f"pid {first.process.pid}" in message and url in message, message
    logs_after = {log: log.stat().st_size for log in local_airflow.log_dir(paths).iterdir()}
    assert set(logs_after) == set(logs_before), "the second start set up or started something"
    assert all(logs_after[log] >= size for log, size in logs_before.items()), (
        "the second start truncated a log of the first",
        logs_before,
        logs_after,
    )
    assert first.process.poll() is None, f"the second start stopped the first\n{first.diagnostics()}"
    assert first.lock()["pid"] == first.process.pid

    seconds = first.stop(signal.SIGTERM)
    print(f"\n--paused: up in {up_seconds:.0f} s; stopped {seconds:.1f} s after SIGTERM", flush=True)
    assert first.process.returncode == 0, first.diagnostics()
    assert "Stopped every process" in first.text(), first.diagnostics()
    assert_all_stopped(first)


def test_make_airflow_publishes_a_file_dropped_into_the_inbox_and_ctrl_c_stops_everything(
    paths: Paths, running: list[Started]
) -> None:
    started = start(paths, ["make", "--no-print-directory", "airflow", f"PORT={free_port()}"], "make_airflow")
    running.append(started)
    url, up_seconds = started.wait_up()
    text = started.text()
    inbox = re.search(r"^\s*Inbox:\s+(\S+)/<wave year>/", text, re.MULTILINE)
    assert inbox, text
    assert ROOT / inbox[1] == paths.inbox_dir
    assert "Ctrl-C" in text

    paused = dags_paused(api(started, url), started)
    assert not any(paused[dag] for dag in local_airflow.PROJECT_DAGS), paused

    # the drop docs/operating.md describes: written as <name>.part, renamed when complete
    known = {run for run, _type, _state in airflow_runs(paths, "survey_waves")}
    delivery = paths.inbox_dir / "2019" / WAVE_FILE.name
    delivery.parent.mkdir(parents=True, exist_ok=True)
    part = delivery.with_name(delivery.name + ".part")
    part.write_bytes(WAVE_FILE.read_bytes())
    dropped = time.monotonic()
    part.rename(delivery)
    known_exports = {run for run, _type, _state in airflow_runs(paths, "survey_marts_exports")}
    run_id, state = wait_for_run(started, "survey_waves", "asset_triggered", known, RUN_TIMEOUT)
    published_seconds = time.monotonic() - dropped
    assert state == "success", f"the inbox's run {run_id} ended {state}\n{started.diagnostics()}"
    export_run, export_state = wait_for_run(started, "survey_marts_exports", "asset_triggered", known_exports, 300)
    assert export_state == "success", f"the exports' run {export_run} ended {export_state}\n{started.diagnostics()}"
    started.note_processes()

    stop_seconds = started.stop(signal.SIGINT)
    print(
        f"\nmake airflow: UI up {up_seconds:.0f} s after the start; the dropped file published "
        f"{published_seconds:.0f} s after the drop; stopped {stop_seconds:.1f} s after Ctrl-C",
        flush=True,
    )
    assert "SIGINT received" in started.text() and "Stopped every process" in started.text(), started.diagnostics()
    assert_all_stopped(started)
    # the runs the unpaused schedules started at once (the latest year's, which has no wave) did not fail either: no
    # task ran before the api-server it reports to was listening
    runs = [(dag, run, st) for dag in local_airflow.PROJECT_DAGS for run, _t, st in airflow_runs(paths, dag)]
    assert all(st == "success" for _dag, _run, st in runs), runs

    # published by that run: the file it loaded is the wave's current load, archived at the spec's file:
    archive = paths.var / "archive" / "2019" / WAVE_FILE.name
    assert not delivery.exists(), "the published file is still in the inbox"
    assert archive.read_bytes() == WAVE_FILE.read_bytes()
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        sha = con.execute(
            "select file_sha256 from raw.load_registry where load_id = ?", [current_loads(paths)[2019]]
        ).fetchone()[0]
    assert sha == file_sha256_of(WAVE_FILE)
    with duckdb.connect(str(paths.published), read_only=True) as con:
        publication_run, tables = con.execute("select run_id, tables from marts.publication").fetchone()
    assert publication_run == run_id
    assert [(dag, task, run) for dag, task, run, _extra in asset_events(paths)] == [
        ("survey_waves", "publish_marts", run_id)
    ]
    manifest = json.loads((exports.exports_dir(paths) / exports.LATEST / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["publication"]["run_id"] == run_id
    assert {t["table"]: t["rows"] for t in manifest["tables"]} == json.loads(tables)
