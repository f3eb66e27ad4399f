"""`make airflow`'s lock and process handling, without Airflow (tests/test_airflow_command.py runs the real thing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import make_paths

from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.orchestration import local_airflow, runtime


def _sleeper(*argv: str, airflow_home: Path | None = None) -> subprocess.Popen:
    """A process in a session of its own, with a child in the same session, both sleeping; argv marks it, and
    `airflow_home` stands for the var folder whose Airflow it runs."""
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
    code += "time.sleep(120)"
    env = {**os.environ, **({"AIRFLOW_HOME": str(airflow_home)} if airflow_home else {})}
    return subprocess.Popen([sys.executable, "-c", code, *argv], start_new_session=True, env=env)


def _created(proc: subprocess.Popen) -> float:
    return psutil.Process(proc.pid).create_time()


def _wait_for_children(proc: subprocess.Popen, count: int) -> None:
    import time

    deadline = time.monotonic() + 30
    while len(local_airflow.session_processes({proc.pid})) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(local_airflow.session_processes({proc.pid})) == count


def test_a_second_start_is_refused_while_the_lock_is_held_and_names_the_holder() -> None:
    paths = make_paths("local_airflow_lock")
    first = local_airflow.acquire_lock(paths)
    first.write(pid=os.getpid(), url="http://127.0.0.1:8080", components={})
    try:
        with pytest.raises(local_airflow.AlreadyRunningError) as refused:
            local_airflow.acquire_lock(paths)
        assert f"pid {os.getpid()}" in str(refused.value)
        assert "http://127.0.0.1:8080" in str(refused.value)
        assert str(paths.var) in str(refused.value)
    finally:
        first.release()
    assert local_airflow.read_lock(local_airflow.lock_path(paths)) == {}, "released: emptied"
    again = local_airflow.acquire_lock(paths)
    assert again.taken_over is None  # released cleanly: nothing to take over
    again.release()


def test_a_stale_lock_is_taken_over_and_what_its_holder_left_running_is_stopped() -> None:
    paths = make_paths("local_airflow_stale")
    home = paths.var / "airflow"
    left = _sleeper("airflow", "scheduler", airflow_home=home)  # what a killed start left: a component, its child
    other = _sleeper("not-ours", airflow_home=home)  # a session the lock names, but no Airflow process
    elsewhere = _sleeper("airflow", "scheduler", airflow_home=paths.var / "another")  # another folder's Airflow
    reused = _sleeper("airflow", "triggerer", airflow_home=home)  # a recorded pid now another process's
    sleepers = [left, other, elsewhere, reused]
    try:
        for proc in sleepers:
            _wait_for_children(proc, 2)
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
        )
        stale = {
            "pid": int(dead.stdout),
            "url": "http://127.0.0.1:8080",
            "components": {"a": left.pid, "b": other.pid, "c": elsewhere.pid, "d": reused.pid},
            "created": {
                "a": _created(left),
                "b": _created(other),
                "c": _created(elsewhere),
                "d": _created(reused) - 60,
            },
        }
        local_airflow.lock_path(paths).parent.mkdir(parents=True, exist_ok=True)
        local_airflow.lock_path(paths).write_text(json.dumps(stale))

        lock = local_airflow.acquire_lock(paths)  # the holder is gone: no refusal
        try:
            assert lock.taken_over == stale
            assert local_airflow._leftovers(lock.taken_over, paths) == {left.pid}
            killed = local_airflow.stop_sessions({left.pid}, grace_seconds=10, reap=[left])
        finally:
            lock.release()
        assert not killed, "a sleeping Python process ends on SIGTERM: no SIGKILL needed"
        assert local_airflow.session_processes({left.pid}) == {}
        assert left.returncode == -15
        for untouched in (other, elsewhere, reused):
            assert len(local_airflow.session_processes({untouched.pid})) == 2
    finally:
        local_airflow.stop_sessions({p.pid for p in sleepers}, grace_seconds=5, reap=sleepers)


def test_a_run_refuses_while_a_killed_make_airflows_processes_still_run_and_keeps_their_record() -> None:
    paths = make_paths("local_airflow_killed_then_run")
    left = _sleeper("airflow", "scheduler", airflow_home=paths.var / "airflow")
    try:
        _wait_for_children(left, 2)
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
        )
        record = {
            "pid": int(dead.stdout),
            "components": {"scheduler": left.pid},
            "created": {"scheduler": _created(left)},
        }
        local_airflow.lock_path(paths).parent.mkdir(parents=True, exist_ok=True)
        local_airflow.lock_path(paths).write_text(json.dumps(record))
        with (
            pytest.raises(local_airflow.AlreadyRunningError, match=r"of a `make airflow` that was killed .* still run"),
            local_airflow.holding_var_folder(paths, "make run for 2019"),
        ):
            pass
        assert local_airflow.read_lock(local_airflow.lock_path(paths)) == record, "kept for make airflow to stop"
        assert len(local_airflow.session_processes({left.pid})) == 2, "nothing stopped by a run"
    finally:
        local_airflow.stop_sessions({left.pid}, grace_seconds=5, reap=[left])


def test_the_lock_is_never_held_twice_when_its_file_is_replaced_between_open_and_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A start that opened the lock file just before it was replaced locks the file at the path, not the old one."""
    import fcntl

    paths = make_paths("local_airflow_lock_race")
    path = local_airflow.lock_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    real_flock, calls = fcntl.flock, []

    def replaced_first(file: object, operation: int) -> None:
        if not calls and operation & fcntl.LOCK_EX:
            path.unlink()
            path.write_text("")  # the old inode is now off the path
        calls.append(operation)
        real_flock(file, operation)

    monkeypatch.setattr(fcntl, "flock", replaced_first)
    lock = local_airflow.acquire_lock(paths)
    monkeypatch.setattr(fcntl, "flock", real_flock)
    try:
        assert os.fstat(lock.file.fileno()).st_ino == os.stat(path).st_ino
        with pytest.raises(local_airflow.AlreadyRunningError):
            local_airflow.acquire_lock(paths)
    finally:
        lock.release()


def test_a_port_left_waiting_to_close_by_the_previous_instance_is_free() -> None:
    """After Ctrl-C a browser's connection may keep the port in TIME-WAIT: the api-server binds it (SO_REUSEADDR),
    so the start's check must not refuse it; a port another program listens on is refused."""
    import socket

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.listen()
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end waits (TIME-WAIT / FIN-WAIT)
    server.close()
    stack = local_airflow.LocalAirflow(make_paths("local_airflow_port"), port=port)
    stack.check_port()
    client.close()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    try:
        with pytest.raises(SurveyWarehouseError, match="another program listens there"):
            local_airflow.LocalAirflow(make_paths("local_airflow_port"), port=listening.getsockname()[1]).check_port()
    finally:
        listening.close()


def test_sigkill_after_the_grace_period_for_a_process_that_ignores_sigterm() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
    code += "time.sleep(120)"
    stubborn = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
    assert local_airflow.stop_sessions({stubborn.pid}, grace_seconds=1, reap=[stubborn])
    assert stubborn.returncode == -9
    assert local_airflow.session_processes({stubborn.pid}) == {}


def test_the_environment_runs_the_environments_own_airflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow starts its parts as `airflow ...` from PATH: the environment's bin folder comes first."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = runtime.runtime_env(make_paths("local_airflow_env"))
    first = env["PATH"].split(os.pathsep)[0]
    assert os.access(os.path.join(first, "airflow"), os.X_OK), env["PATH"]
    assert os.path.samefile(os.path.join(first, "python"), sys.executable)
    assert env["PATH"].endswith("/usr/bin:/bin")


def test_one_run_at_a_time_per_var_folder_and_the_second_names_the_first() -> None:
    """Two runs of the waves on one project, or a run beside `make airflow`: the second refuses at once, before it
    touches anything, naming the first (what it runs, its process, when it started); nothing of the first breaks."""
    paths = make_paths("one_run_at_a_time")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SURVEY_", "AIRFLOW"))},
        "SURVEY_VAR_DIR": str(paths.var),
    }
    with local_airflow.holding_var_folder(paths, "make run for 2016, 2017, 2018, 2019") as held:
        holder = json.loads(held.path.read_text(encoding="utf-8"))
        second = subprocess.run(
            [sys.executable, "-m", "survey_warehouse.cli", "run", "2019"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert second.returncode == 2, second.stdout + second.stderr
        said = second.stderr
        assert "another run of the waves is going on" in said, said
        assert f"make run for 2016, 2017, 2018, 2019, pid {os.getpid()}, started {holder['started']}" in said, said
        assert "wait for it to finish" in said
        assert not paths.warehouse.exists(), "the second run touched nothing"
        assert not list(paths.var.glob("logs/survey_waves_*.log"))
        with pytest.raises(local_airflow.AlreadyRunningError, match="another run of the waves is going on"):
            local_airflow.acquire_lock(paths)  # make airflow refuses too
        assert json.loads(held.path.read_text(encoding="utf-8")) == holder, "the first run's lock is as it was"

    first = local_airflow.acquire_lock(paths)  # make airflow holds it: a run refuses, naming Airflow
    first.write(pid=os.getpid(), url="http://127.0.0.1:8080", components={})
    try:
        with (
            pytest.raises(local_airflow.AlreadyRunningError, match=r"Airflow is already running .* it runs the waves"),
            local_airflow.holding_var_folder(paths, "make run for 2019"),
        ):
            pass
    finally:
        first.release()
