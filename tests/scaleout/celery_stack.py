"""Airflow on the Celery executor as real local processes, for end-to-end tests.

    with CeleryAirflow(paths, pools={"duckdb_warehouse": 1}) as stack:
        run_id = stack.trigger(2019)
        assert stack.wait(run_id, timeout=900) == "success"

What it sets up, all of it its own and all of it removed on exit:
- an Airflow metadata database in PostgreSQL (survey_test_airflow_<pid>), also the Celery result backend;
- a Redis broker (db `broker_db`) with a queue of its own, so that no other worker takes these tasks;
- `airflow api-server`, `airflow scheduler`, `airflow dag-processor`, `airflow triggerer` (runs the inbox's
  AssetWatcher) and `airflow celery worker`, each in a session
  of its own (stopped together with every task process it started), logging to
  paths.var / "logs" / "celery_stack" / <name>.log.

The REST API (/api/v2) is called with a JWT from POST /auth/token, for a SimpleAuthManager user whose password
this class writes into the passwords file before the api-server starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg2

from survey_warehouse.orchestration import runner, runtime
from survey_warehouse.settings import Paths

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
ADMIN_USER = "admin"
FINISHED = {"success", "failed"}


def services_unreachable() -> str | None:
    """Why the stack cannot start here (PostgreSQL or Redis not listening), or None when both are up."""
    for name, host, port in [("PostgreSQL", PG_HOST, PG_PORT), ("Redis", REDIS_HOST, REDIS_PORT)]:
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as exc:
            return f"{name} is not reachable at {host}:{port} ({exc})"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


class StackError(RuntimeError):
    pass


class CeleryAirflow:
    def __init__(
        self,
        paths: Paths,
        pools: dict[str, int],
        *,
        dag_id: str = runner.DAG_ID,
        broker_db: int = 5,
        worker_concurrency: int = 2,
        extra_env: dict[str, str] | None = None,
        startup_timeout: float = 180,
        grace_seconds: float = 20,
        schedule_runs: bool = False,
    ) -> None:
        self.paths, self.pools, self.dag_id = paths, pools, dag_id
        self.grace_seconds, self.startup_timeout = grace_seconds, startup_timeout
        tag = f"{os.getpid()}_{secrets.token_hex(3)}"
        self.database = f"survey_test_airflow_{tag}"
        self.queue = f"survey_test_{tag}"
        self.broker_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{broker_db}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs = paths.var / "logs" / "celery_stack"
        self.airflow_home = paths.var / "airflow"
        self.passwords_file = self.airflow_home / "simple_auth_manager_passwords.json"
        self._password = secrets.token_urlsafe(16)
        self.processes: dict[str, subprocess.Popen] = {}
        self._client: httpx.Client | None = None
        self._database_created = False

        # psycopg2 named explicitly: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg (3), not installed here
        pg = f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.database}"
        env = runtime.runtime_env(paths)
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg,
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{pg}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
                # every task goes to this queue, and only this stack's worker listens on it
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__BASE_URL": f"{self.url}/",
                # one set of secrets for every process: the scheduler signs task tokens the api-server checks
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                # by default only the runs this class triggers: no scheduled run appears when the DAG is unpaused.
                # schedule_runs=True lets the scheduler create runs from the DAG's schedule, which includes the runs
                # a delivery into the inbox starts (and, once, the latest yearly run)
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(schedule_runs),
                # as docker-compose.yml: a task's slot is free ~1 s after it ends, not 5 s (the supervisor's check)
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                # the worker serves its task logs on a port; the default 8793 may be taken by another worker
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            }
        )
        env.update(extra_env or {})
        self.env = env

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> CeleryAirflow:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        for folder in (self.logs, self.airflow_home, Path(self.env["TMPDIR"])):
            folder.mkdir(parents=True, exist_ok=True)
        self.passwords_file.write_text(json.dumps({ADMIN_USER: self._password}) + "\n")
        self._create_database()
        # the manifest Cosmos renders the dbt task group from (what runtime.setup does, without its SQLite metadata)
        self._run_step(
            "dbt_parse", [_bin("dbt"), "parse", "--profiles-dir", ".", "--quiet"], cwd=self.paths.dbt_project
        )
        self._run_step("airflow_db_migrate", [_bin("airflow"), "db", "migrate"])
        airflow = _bin("airflow")
        self._spawn(
            "api-server", [airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2"]
        )
        self._spawn("scheduler", [airflow, "scheduler"])
        self._spawn("dag-processor", [airflow, "dag-processor"])
        self._spawn("triggerer", [airflow, "triggerer"])
        self._spawn(
            "celery-worker",
            [
                airflow,
                "celery",
                "worker",
                "--queues",
                self.queue,
                "--concurrency",
                self.env["AIRFLOW__CELERY__WORKER_CONCURRENCY"],
                "--celery-hostname",
                f"{self.queue}@%h",
            ],
        )
        self._wait_healthy()
        for name, slots in self.pools.items():
            self._api(
                "POST",
                "/api/v2/pools",
                json={"name": name, "slots": slots, "description": "created by the Celery stack test"},
            )

    def stop(self) -> None:
        """Stop every process this stack started (SIGTERM to its session, SIGKILL after the grace period),
        then drop the metadata database and this stack's keys in the broker."""
        if self._client is not None:
            self._client.close()
            self._client = None
        try:
            for name in ["celery-worker", "triggerer", "scheduler", "dag-processor", "api-server"]:
                proc = self.processes.pop(name, None)
                if proc is not None:
                    _stop_session(proc, self.grace_seconds)
        finally:
            if self._database_created:
                self._drop_database()
            self._clean_broker()

    # ---- the DAG ---------------------------------------------------------------------------------------------

    def trigger(self, wave_year: int, timeout: float = 120) -> str:
        """Unpause the DAG and trigger a run with logical date <wave_year>-06-01T00:00:00Z; return its run_id."""
        self.unpause(timeout)
        run = self._api(
            "POST",
            f"/api/v2/dags/{self.dag_id}/dagRuns",
            json={"logical_date": f"{wave_year}-06-01T00:00:00Z", "conf": {}},
        )
        return run["dag_run_id"]

    def unpause(self, timeout: float = 120) -> None:
        """Once the DAG is serialized, unpause it (its scheduled runs start then) and have its file parsed again at
        once: the dag-processor registers an unpaused DAG's asset watchers (the inbox's) when it parses the file."""
        self.wait_for_dag(timeout)
        self._api("PATCH", f"/api/v2/dags/{self.dag_id}", json={"is_paused": False})
        token = self._api("GET", f"/api/v2/dags/{self.dag_id}/details")["file_token"]
        self._api("PUT", f"/api/v2/parseDagFile/{token}")

    def dag_runs(self) -> list[dict[str, Any]]:
        return self._api("GET", f"/api/v2/dags/{self.dag_id}/dagRuns", params={"limit": 100})["dag_runs"]

    def wait_for_new_run(self, run_type: str, known: set[str], timeout: float) -> str:
        """The run_id of the first run of this type that is not in `known`, once the scheduler has created it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            runs = [r for r in self.dag_runs() if r["run_type"] == run_type and r["dag_run_id"] not in known]
            if runs:
                return min(runs, key=lambda r: r["run_after"])["dag_run_id"]
            time.sleep(2)
        raise StackError(
            f"no new {run_type} run of {self.dag_id} within {timeout:.0f} s; runs: "
            f"{[(r['dag_run_id'], r['state']) for r in self.dag_runs()]}; see {self.log_path('triggerer')} and "
            f"{self.log_path('scheduler')}"
        )

    def xcom(self, run_id: str, task_id: str, key: str = "return_value") -> Any:
        return self._api(
            "GET", f"/api/v2/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        )["value"]

    def wait_for_dag(self, timeout: float) -> None:
        """Until the dag-processor has parsed and serialized the DAG (a trigger before that answers 404)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            response = self._client.get(f"/api/v2/dags/{self.dag_id}")
            if (
                response.status_code == 200
                and self._client.get(f"/api/v2/dags/{self.dag_id}/details").status_code == 200
            ):
                return
            time.sleep(2)
        errors = self._api("GET", "/api/v2/importErrors").get("import_errors", [])
        raise StackError(
            f"DAG {self.dag_id} was not serialized within {timeout:.0f} s; import errors: "
            f"{errors or 'none'}; see {self.log_path('dag-processor')} and the files under "
            f"{self.airflow_home / 'logs' / 'dag_processor'}"
        )

    def wait(self, run_id: str, timeout: float) -> str:
        """Poll the run until it succeeds or fails; return its state. Raise if it takes longer than timeout."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            self._check_alive()
            state = self._api("GET", f"/api/v2/dags/{self.dag_id}/dagRuns/{run_id}")["state"]
            if state in FINISHED:
                return state
            time.sleep(3)
        raise StackError(
            f"run {run_id} still '{state}' after {timeout:.0f} s; tasks: {self.task_states(run_id)}; "
            f"{self.where_the_logs_are()}"
        )

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self._api(
                "GET",
                f"/api/v2/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": 100, "offset": len(found)},
            )
            found += page["task_instances"]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def task_states(self, run_id: str) -> dict[str, str | None]:
        return {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else ""): ti["state"]
            for ti in self.task_instances(run_id)
        }

    # ---- diagnostics -----------------------------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def where_the_logs_are(self) -> str:
        return (
            f"process logs in {self.logs}/ (api-server, scheduler, dag-processor, triggerer, celery-worker), "
            f"task logs under {self.airflow_home / 'logs'}/dag_id={self.dag_id}/"
        )

    # ---- internals -------------------------------------------------------------------------------------------

    def _admin_sql(self, *statements: tuple[str, list[Any]]) -> None:
        # autocommit, and no `with conn:` (psycopg2 >= 2.9 opens a transaction there): CREATE/DROP DATABASE
        # cannot run inside a transaction block
        conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for sql, args in statements:
                    cur.execute(sql, args)
        finally:
            conn.close()

    def _create_database(self) -> None:
        self._admin_sql((f'create database "{self.database}"', []))
        self._database_created = True

    def _drop_database(self) -> None:
        self._admin_sql(
            (
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
                [self.database],
            ),
            (f'drop database if exists "{self.database}" with (force)', []),
        )
        self._database_created = False

    def _clean_broker(self) -> None:
        """The queue's list and binding in Redis (what Celery leaves behind); other keys belong to others."""
        try:
            import redis

            client = redis.Redis.from_url(self.broker_url, socket_timeout=5)
            client.delete(
                self.queue, f"_kombu.binding.{self.queue}", *client.keys(f"{self.queue}\x06\x16*")
            )  # priority sub-queues
            client.close()
        except Exception as exc:  # cleanup is best effort: never hide the test's own failure
            print(f"celery_stack: could not clean the broker queue {self.queue}: {exc}", file=sys.stderr)

    def _run_step(self, name: str, cmd: list[str], cwd: Path | None = None) -> None:
        log = self.log_path(name)
        with open(log, "w", encoding="utf-8") as out:
            code = subprocess.run(
                cmd, env=self.env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False
            ).returncode
        if code != 0:
            hint = ""
            if "No module named 'asyncpg'" in log.read_text(errors="replace"):
                # Airflow 3 also opens an async engine on the metadata database: for PostgreSQL, asyncpg
                hint = " (Airflow on PostgreSQL needs the asyncpg package in the environment)"
            raise StackError(f"'{' '.join(cmd[1:])}' failed with exit code {code}{hint}; see {log}")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        with open(self.log_path(name), "w", encoding="utf-8") as out:
            # a session of its own: the process and everything it forks can be found and stopped together
            self.processes[name] = subprocess.Popen(
                cmd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise StackError(f"airflow {name} exited with code {proc.returncode}; see {self.log_path(name)}")

    def _wait_healthy(self) -> None:
        """Until the API answers, the scheduler and the dag-processor heartbeat, and the worker is ready."""
        deadline = time.monotonic() + self.startup_timeout
        health: dict[str, Any] = {}
        worker_ready = False
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                health = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                health = {}
            worker_ready = worker_ready or " ready." in self.log_path("celery-worker").read_text(errors="replace")
            if worker_ready and all(
                health.get(c, {}).get("status") == "healthy"
                for c in ("metadatabase", "scheduler", "dag_processor", "triggerer")
            ):
                self._login()
                return
            time.sleep(2)
        answer = health or f"no answer from {self.url}"
        raise StackError(
            f"the stack was not healthy within {self.startup_timeout:.0f} s: health {answer}, "
            f"celery worker ready: {worker_ready}; {self.where_the_logs_are()}"
        )

    def _login(self) -> None:
        response = httpx.post(
            f"{self.url}/auth/token", json={"username": ADMIN_USER, "password": self._password}, timeout=10
        )
        if response.status_code != 201:
            raise StackError(
                f"POST /auth/token answered {response.status_code}: {response.text}; see {self.log_path('api-server')}"
            )
        token = response.json()["access_token"]
        self._client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def _api(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise StackError(
                f"{method} {path} answered {response.status_code}: {response.text}; see {self.log_path('api-server')}"
            )
        return response.json() if response.content else {}


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _session_processes(sid: int) -> dict[int, int]:
    """{pid: process group} of the live (not zombie) processes in a session.

    A session, not a process group: Airflow's task supervisor puts every task process in a group of its own,
    so signalling the worker's group alone would miss a running task. Zombies are left out: they wait for an
    init to reap them and cannot be signalled anyway."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp, session = stat.read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, ValueError):
            continue
        if int(session) == sid and state != "Z":
            found[int(stat.parent.name)] = int(pgrp)
    return found


def _signal_session(sid: int, sig: signal.Signals) -> None:
    for pgid in set(_session_processes(sid).values()):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)


def _stop_session(proc: subprocess.Popen, grace_seconds: float) -> None:
    """SIGTERM to every process group of the session the process leads; SIGKILL to what is left after grace."""
    sid = proc.pid  # start_new_session=True: the process leads a session (and a group) of its own
    _signal_session(sid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and (proc.poll() is None or _session_processes(sid)):
        time.sleep(0.5)
    _signal_session(sid, signal.SIGKILL)
    proc.wait(timeout=10)
