"""Airflow on the embedded default in one command: `make airflow` (python -m survey_warehouse.cli airflow).

It sets up what `make setup` sets up, unpauses the project's DAGs (unless asked not to), starts the api-server (the
UI), the scheduler (LocalExecutor), the dag-processor and the triggerer (which runs the inbox's watcher), all with
the project's environment (`runtime.runtime_env`), prints where the UI, the login and the inbox are, and keeps them
running until it is stopped. Ctrl-C, SIGTERM or SIGHUP stops every process it started: each component runs in a
session of its own (Airflow puts a task's process in a group of its own, but not in a session of its own), every
process group of those sessions gets SIGTERM, and what is left after the grace period gets SIGKILL.

One instance per var folder: `var/airflow/running.lock` is held (flock) while it runs and names its process, its UI
and its components' sessions. A second start refuses, naming the one that runs; a lock whose process is gone is
taken over, after the processes its components left behind (if any) have been stopped.

One idea in about 600 lines: starting the components of one Airflow and stopping exactly them, with the lock that
records which they are.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.settings import Paths

# the project's DAGs (dags/): unpaused at start, unless the start asks to keep them paused
PROJECT_DAGS = ("survey_waves", "survey_marts_exports", "survey_wave_overdue")
# started in this order, stopped together
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_KEYS = ("metadatabase", "scheduler", "dag_processor", "triggerer")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
LOCK_NAME = "running.lock"
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, kill, the terminal closed


class AlreadyRunningError(SurveyWarehouseError):
    pass


class Stop(Exception):
    """A signal asked the command to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def lock_path(paths: Paths) -> Path:
    return paths.var / "airflow" / LOCK_NAME


def log_dir(paths: Paths) -> Path:
    return paths.var / "logs" / "airflow"


# ---------------------------------------------------------------------------------------------- the lock


@dataclass
class Lock:
    """The held lock file of a running instance (flock on an open file: the kernel releases it when the holder
    dies, however it dies, so a lock is never stale while it is held)."""

    path: Path
    file: IO[str]
    taken_over: dict[str, Any] | None = None

    def write(self, **info: Any) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.file.write(json.dumps(info, indent=1) + "\n")
        self.file.flush()

    def keep(self) -> None:
        """Unlocked with its record as it was (what it names still runs)."""
        import fcntl

        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()

    def release(self) -> None:
        """Emptied, then unlocked; the file stays (removing it would let a start that opened it just before lock
        a file no longer at the path while another locks a new one)."""
        import fcntl

        with contextlib.suppress(OSError):
            self.file.seek(0)
            self.file.truncate()
            self.file.flush()
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def read_lock(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def acquire_lock(paths: Paths) -> Lock:
    """The lock of this var folder, or AlreadyRunningError naming the instance that holds it."""
    import fcntl

    path = lock_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        file = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open while the instance runs)
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise AlreadyRunningError(_held_by(paths, read_lock(path), path)) from None
        try:
            same = os.fstat(file.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        file.close()  # the file was replaced between open and lock (removed by hand): lock the one at the path
    file.seek(0)
    previous = read_lock(path)
    return Lock(path, file, taken_over=previous or None)


def _held_by(paths: Paths, holder: dict[str, Any], path: Path) -> str:
    """What holds this var folder, in words: `make airflow`, or a run of the waves (`make run`)."""
    pid = holder.get("pid", "<pid>")
    if holder.get("command") == "run":
        return (
            f"another run of the waves is going on for {paths.var} ({holder.get('what', 'make run')}, pid {pid}, "
            f"started {holder.get('started', '?')}): it holds the warehouse; wait for it to finish, or stop it "
            f"(Ctrl-C in its terminal, or kill {pid}), and run again; lock file {path}"
        )
    where = f" (pid {holder['pid']}, UI at {holder.get('url', '?')})" if holder.get("pid") else ""
    return (
        f"Airflow is already running for {paths.var}{where}: it runs the waves itself (drop a file into the "
        f"inbox, or trigger survey_waves in its UI); use that one, or stop it first (Ctrl-C in its terminal, or "
        f"kill {pid}); lock file {path}"
    )


@contextlib.contextmanager
def holding_var_folder(paths: Paths, what: str) -> Iterator[Lock]:
    """A run of the waves (`make run`) holds the var folder's lock while it runs: a second run, or `make airflow`,
    refuses naming it, and it refuses while either holds it."""
    import datetime as dt

    lock = acquire_lock(paths)
    if lock.taken_over and (left := _leftovers(lock.taken_over, paths)):
        lock.keep()  # the record of those processes stays for `make airflow`, which stops them
        raise AlreadyRunningError(
            f"Airflow processes of a `make airflow` that was killed (pid {lock.taken_over.get('pid')}) still run "
            f"for {paths.var} (sessions {', '.join(map(str, sorted(left)))}): they run the waves themselves; start "
            "`make airflow` again (it stops them first) and stop it with Ctrl-C, or stop them, then run again"
        )
    try:
        lock.write(
            command="run",
            pid=os.getpid(),
            what=what,
            started=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        )
        yield lock
    finally:
        lock.release()


# ---------------------------------------------------------------------------------------------- processes


def session_processes(sids: set[int]) -> dict[int, int]:
    """{pid: process group} of the live (not zombie) processes in these sessions."""
    import psutil

    found: dict[int, int] = {}
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) in sids and proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = os.getpgid(proc.pid)
        except (OSError, psutil.Error):
            continue
    return found


def _signal_sessions(sids: set[int], sig: signal.Signals) -> None:
    for pgid in set(session_processes(sids).values()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def stop_sessions(sids: set[int], grace_seconds: float, reap: list[subprocess.Popen] | None = None) -> bool:
    """SIGTERM to every process group of these sessions, SIGKILL to what is left after the grace period; True when
    SIGKILL was needed. `reap`: this process's own children among them, waited for so none is left a zombie."""
    reap = reap or []
    _signal_sessions(sids, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        for proc in reap:
            proc.poll()
        if not session_processes(sids):
            break
        time.sleep(0.3)
    left = bool(session_processes(sids))
    if left:
        _signal_sessions(sids, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while session_processes(sids) and time.monotonic() < deadline:
            time.sleep(0.2)
    for proc in reap:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    return left


def _created(pid: int) -> float | None:
    """A process's start time (what tells it from a later process given the same pid)."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _leftovers(previous: dict[str, Any], paths: Paths) -> set[int]:
    """The sessions of a previous instance that still hold its Airflow processes (it was killed without stopping
    them): a recorded component's session whose leader is the process recorded (same start time), running Airflow
    for this var folder (its AIRFLOW_HOME); never this process's own session. A recorded pid reused by another
    program, or another folder's Airflow, is not touched."""
    import psutil

    home = str(paths.var / "airflow")
    started = previous.get("created", {})
    own = os.getsid(0)
    alive = set()
    for name, pid in previous.get("components", {}).items():
        with contextlib.suppress(psutil.Error, OSError, ValueError, TypeError):
            leader = psutil.Process(int(pid))
            if int(pid) == own or os.getsid(int(pid)) != int(pid):
                continue
            if name not in started or abs(leader.create_time() - float(started[name])) > 1:
                continue
            if "airflow" not in " ".join(leader.cmdline()) or leader.environ().get("AIRFLOW_HOME") != home:
                continue
            alive.add(int(pid))
    return alive


# ---------------------------------------------------------------------------------------------- the instance


@dataclass
class LocalAirflow:
    paths: Paths
    port: int = 8080
    host: str = "127.0.0.1"
    paused: bool = False
    grace_seconds: float = 30
    startup_timeout: float = 300
    lock: Lock | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    started_at: float = field(default_factory=time.time)

    @property
    def url(self) -> str:
        return f"http://{'127.0.0.1' if self.host in ('0.0.0.0', '::') else self.host}:{self.port}"  # noqa: S104

    @property
    def home(self) -> Path:
        return self.paths.var / "airflow"

    def env(self) -> dict[str, str]:
        from survey_warehouse.orchestration.runtime import runtime_env

        env = runtime_env(self.paths)
        env.update(
            {
                # what `airflow standalone` sets: tasks run on this machine, the simple auth manager's login
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
                "AIRFLOW__API__HOST": self.host,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": f"{self.url}/",
                # the task processes report to this api-server
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                # a DAG the dag-processor sees for the first time: unpaused at once, its inbox watcher registered
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(self.paused),
            }
        )
        return env

    # ---- what the command prints

    def say(self, text: str) -> None:
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            print(text, file=self.out, flush=True)

    def password_file(self) -> Path:
        configured = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
        return Path(configured) if configured else self.home / "simple_auth_manager_passwords.json.generated"

    def login(self) -> str:
        if os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "").lower() == "true":
            return "none needed (every visitor is an admin: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS)"
        users = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
        names = ", ".join(user.split(":")[0].strip() for user in users.split(",") if user.strip())
        return f"{names}; the password is in {self.paths.shown(self.password_file())} (generated on the first start)"

    def inbox_example(self) -> str:
        from survey_warehouse.intake.waves import find_wave_spec, list_wave_years

        inbox = self.paths.shown(self.paths.inbox_dir)
        with contextlib.suppress(SurveyWarehouseError):
            years = list_wave_years(self.paths)
            spec = find_wave_spec(years[-1], self.paths) if years else None
            if spec is not None:
                example = f"{inbox}/{years[-1]}/{spec.file.name}"
                return f"{inbox}/<wave year>/<the file name in its wave spec>, e.g. {example}"
        return f"{inbox}/<wave year>/<the file name in its wave spec>"

    def banner(self) -> str:
        dags = ", ".join(PROJECT_DAGS)
        state = (
            "paused (started with --paused / PAUSED=1): unpause them in the UI"
            if self.paused
            else "unpaused: the inbox and the schedules start runs"
        )
        return "\n".join(
            [
                f"Airflow is running (api-server, scheduler, dag-processor, triggerer; metadata in "
                f"{self.paths.shown(self.home / 'airflow.db')})",
                f"  UI:     {self.url}",
                f"  Login:  {self.login()}",
                f"  DAGs:   {dags} {state}",
                f"  Inbox:  {self.inbox_example()}",
                f"  Logs:   {self.paths.shown(log_dir(self.paths))}/<process>.log; task logs under "
                f"{self.paths.shown(self.home / 'logs')}/",
                f"  Stop:   Ctrl-C (or kill {os.getpid()}): stops every process it started",
            ]
        )

    # ---- start

    def check_port(self) -> None:
        with socket.socket() as s:
            # as the api-server binds: a connection of the previous instance waiting to close does not hold it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.host, self.port))
            except OSError as exc:
                raise SurveyWarehouseError(
                    f"cannot serve the UI on {self.host}:{self.port} ({exc.strerror}): another program listens "
                    "there; choose another port (make airflow PORT=8081, or --port 8081)"
                ) from None

    def prepare(self) -> None:
        """Setup (dbt manifest, metadata database, pool), then one `airflow` command before the components start:
        the first one writes var/airflow/airflow.cfg (with the keys every process must share), and it unpauses the
        project's DAGs that are already known (a `make run` registers them, paused)."""
        from survey_warehouse.orchestration.runtime import setup

        os.environ.update(self.env())  # setup's Airflow steps in this process
        setup(self.paths)
        if self.paused:
            command = ["config", "get-value", "core", "executor"]
        else:
            command = ["dags", "unpause", "--treat-dag-id-as-regex", "--yes", f"^({'|'.join(PROJECT_DAGS)})$"]
        log = log_dir(self.paths) / "prepare.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w", encoding="utf-8") as out:
            code = subprocess.run(
                [_bin("airflow"), *command], env=self.env(), stdout=out, stderr=subprocess.STDOUT, check=False
            ).returncode
        if code != 0:
            raise SurveyWarehouseError(f"`airflow {' '.join(command)}` failed (exit code {code}); see {log}")

    def start(self) -> None:
        """The api-server first, and the others once it answers: a task the scheduler starts reports to it (a task
        started before it listens fails at once)."""
        env = self.env()
        Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
        log_dir(self.paths).mkdir(parents=True, exist_ok=True)
        self._spawn("api-server", env)
        deadline = time.monotonic() + self.startup_timeout
        while not self.health().get("metadatabase"):
            if (gone := self.exited()) is not None:
                raise self.died(*gone)
            if time.monotonic() > deadline:
                raise SurveyWarehouseError(
                    f"the api-server did not answer at {self.url} within {self.startup_timeout:.0f} s; see "
                    f"{log_dir(self.paths) / 'api-server.log'}"
                )
            time.sleep(0.5)
        for name in COMPONENTS[1:]:
            self._spawn(name, env)

    def _spawn(self, name: str, env: dict[str, str]) -> None:
        args = ["api-server", "--host", self.host, "--port", str(self.port)] if name == "api-server" else [name]
        # a signal while the process starts is acted on once it is in self.processes (which stop() stops)
        received: list[int] = []
        saved = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum)) for sig in _SIGNALS}
        try:
            with open(log_dir(self.paths) / f"{name}.log", "w", encoding="utf-8") as out:
                self.processes[name] = subprocess.Popen(
                    [_bin("airflow"), *args],
                    env=env,
                    cwd=self.paths.root,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own session: Ctrl-C reaches this command only, which stops it
                )
            self.record()
        finally:
            for sig, old in saved.items():
                signal.signal(sig, old)
        if received:
            raise Stop(received[0])

    def record(self) -> None:
        """What a second start names, and what a start that takes over the lock of a killed one stops."""
        if self.lock is not None:
            self.lock.write(
                pid=os.getpid(),
                url=self.url,
                started=self.started_at,
                var=str(self.paths.var),
                components={name: proc.pid for name, proc in self.processes.items()},
                created={name: _created(proc.pid) for name, proc in self.processes.items()},
            )

    def sessions(self) -> set[int]:
        return {proc.pid for proc in self.processes.values()}

    def exited(self) -> tuple[str, int] | None:
        for name, proc in self.processes.items():
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def died(self, name: str, code: int) -> SurveyWarehouseError:
        log = log_dir(self.paths) / f"{name}.log"
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:] if log.exists() else []
        return SurveyWarehouseError(
            f"airflow {name} exited with code {code}; its log ({log}) ends:\n  " + "\n  ".join(tail)
        )

    def health(self) -> dict[str, Any]:
        import httpx

        try:
            return dict(httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).json())
        except (httpx.HTTPError, ValueError):
            return {}

    def wait_ready(self) -> float:
        """Until the UI answers and the scheduler, dag-processor and triggerer heartbeat, and the admin's password is
        written; the seconds it took."""
        started = time.monotonic()
        deadline = started + self.startup_timeout
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if (gone := self.exited()) is not None:
                raise self.died(*gone)
            health = self.health()
            healthy = all(health.get(key, {}).get("status") == "healthy" for key in HEALTH_KEYS)
            if healthy and (self.password_file().exists() or "none needed" in self.login()):
                return time.monotonic() - started
            time.sleep(1)
        raise SurveyWarehouseError(
            f"Airflow was not up within {self.startup_timeout:.0f} s (health: {health or f'no answer from {self.url}'}"
            f"); see the logs in {log_dir(self.paths)}"
        )

    def supervise(self) -> None:
        """Until a component exits (an error: the others are then stopped) or a signal raises Stop."""
        while True:
            if (gone := self.exited()) is not None:
                raise self.died(*gone)
            time.sleep(1)

    def stop(self) -> bool:
        if not self.processes:
            return False
        return stop_sessions(self.sessions(), self.grace_seconds, reap=list(self.processes.values()))


def _raise_stop(signum: int, _frame: object) -> None:
    raise Stop(signum)


def serve(paths: Paths, *, port: int, host: str, paused: bool, grace_seconds: float, startup_timeout: float) -> int:
    """`make airflow`: start, print where everything is, run until a signal, stop everything. The exit code."""
    lock = acquire_lock(paths)  # before anything else: a second start must not touch the first one's processes
    stack = LocalAirflow(paths, port, host, paused, grace_seconds, startup_timeout, lock)
    code = 1
    saved = {sig: signal.signal(sig, _raise_stop) for sig in _SIGNALS}
    try:
        if lock.taken_over and (left := _leftovers(lock.taken_over, paths)):
            stack.say(
                f"A previous start (pid {lock.taken_over.get('pid')}) ended without stopping its processes: "
                "stopping them ..."
            )
            stop_sessions(left, grace_seconds)
        stack.record()
        stack.check_port()
        stack.say(f"Setting up ({paths.shown(paths.var)}) and starting Airflow on {stack.url} ...")
        started = time.monotonic()
        stack.prepare()
        stack.start()
        stack.wait_ready()
        stack.say(stack.banner())
        stack.say(f"(up in {time.monotonic() - started:.0f} s)")
        stack.supervise()
    except Stop as stop:
        stack.say(f"\n{stop} received: stopping Airflow (up to {grace_seconds:.0f} s, then SIGKILL) ...")
        code = 0
    except SurveyWarehouseError as exc:
        stack.say(f"survey-warehouse: {exc}")
        code = 1
    finally:
        for sig in _SIGNALS:  # a second Ctrl-C must not leave processes behind half-stopped
            signal.signal(sig, signal.SIG_IGN)
        try:
            stopping = time.monotonic()
            killed = stack.stop()
            if stack.processes:
                stack.say(
                    f"Stopped every process in {time.monotonic() - stopping:.1f} s"
                    + (" (some needed SIGKILL after the grace period)" if killed else "")
                )
        finally:
            lock.release()
            for sig, old in saved.items():
                signal.signal(sig, old)
    return code


def serve_command(paths: Paths, args: argparse.Namespace) -> int:
    return serve(
        paths,
        port=args.port,
        host=args.host,
        paused=args.paused,
        grace_seconds=args.grace,
        startup_timeout=args.startup_timeout,
    )


def add_commands(sub: Any) -> None:
    """The command line's `airflow` and `airflow-cli` (sub: its subparsers)."""
    serve_p = sub.add_parser(
        "airflow",
        help="Airflow on the embedded default until Ctrl-C: api-server (UI), scheduler, dag-processor, triggerer "
        "(the inbox), with the project's DAGs unpaused",
    )
    serve_p.add_argument("--port", type=int, default=8080, help="the UI's port (default 8080)")
    serve_p.add_argument("--host", default="127.0.0.1", help="the UI's address (default 127.0.0.1: this machine)")
    serve_p.add_argument("--paused", action="store_true", help="leave the DAGs paused (new ones start paused)")
    serve_p.add_argument(
        "--grace", type=float, default=30, help="seconds a stop waits for the processes before SIGKILL (default 30)"
    )
    serve_p.add_argument(
        "--startup-timeout", type=float, default=300, help="seconds to wait for Airflow to be up (default 300)"
    )
    cli_p = sub.add_parser("airflow-cli", help="any airflow command with the project's environment")
    cli_p.add_argument("airflow_args", nargs=argparse.REMAINDER, help="e.g. dags list")


def airflow_command(paths: Paths, args: list[str]) -> int:
    """Any `airflow` command with the project's environment (this process becomes it)."""
    from survey_warehouse.orchestration.runtime import runtime_env, setup

    env = runtime_env(paths)
    os.environ.update(env)
    setup(paths)
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(_bin("airflow"), ["airflow", *args], env)  # noqa: S606
    return 127  # not reached
