"""The runtime on the embedded default: the environment Airflow and dbt run with (everything under var/), the dbt
manifest the DAG is rendered from, Airflow's metadata database and the warehouse's one-writer pool (`setup`), and
dbt docs. Each step runs again only when what it is made from changed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.settings import DBT_PROFILE, Paths

POOL = "duckdb_warehouse"


POOL_DESCRIPTION = "DuckDB warehouse: one writer"


def runtime_env(paths: Paths) -> dict[str, str]:
    """Environment for Airflow and dbt on the embedded default: everything under var/, no telemetry."""
    env = dict(os.environ)
    env.update(
        {
            "SURVEY_PROJECT_ROOT": str(paths.root),
            "SURVEY_VAR_DIR": str(paths.var),
            "SURVEY_WAVES_DIR": str(paths.waves_config),
            "SURVEY_WAREHOUSE_PATH": str(paths.warehouse),
            "SURVEY_PUBLISHED_PATH": str(paths.published),
            "SURVEY_DATA_DOCS_DIR": str(paths.data_docs),
            "SURVEY_INBOX_DIR": str(paths.inbox_dir),
            "AIRFLOW_HOME": str(paths.var / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(paths.root / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            # the watcher's producer is never retried, so the backup of its state (rewritten on every event) is waste
            "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY": "False",
            "SCARF_ANALYTICS": "false",
            "DO_NOT_TRACK": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "GX_ANALYTICS_ENABLED": "False",
            "PYTHONWARNINGS": "ignore",
            # Cosmos and dbt write scratch copies of the project: keep them inside the clone too.
            "TMPDIR": str(paths.var / "tmp"),
            "AIRFLOW__COSMOS__CACHE_DIR": str(paths.var / "cosmos_cache"),
        }
    )
    # the environment's own commands (airflow, dbt) first: Airflow starts its parts as `airflow ...`
    bin_dir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        env["PATH"] = os.pathsep.join([bin_dir, *filter(None, [env.get("PATH")])])
    env.setdefault("SURVEY_TASK_RETRIES", "0")
    if env.get("SURVEY_DBT_TARGET", "duckdb") == "postgres" and env.get("AIRFLOW_CONN_SURVEY_WAREHOUSE"):
        from survey_warehouse.warehouse import Warehouse, parse_connection

        env.update(Warehouse.from_connection(parse_connection(env["AIRFLOW_CONN_SURVEY_WAREHOUSE"])).dbt_env())
    return env


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _run(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.run(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def _dbt_sources(paths: Paths) -> list[Path]:
    project = paths.dbt_project
    files = [project / "dbt_project.yml", project / "profiles.yml"]
    for folder in ("models", "macros", "seeds", "tests"):
        if (project / folder).is_dir():
            files += [p for p in (project / folder).rglob("*") if p.is_file()]
    return files


def _step(
    paths: Paths,
    step: str,
    cmd: list[str] | Callable[[], object],
    cwd: Path | None,
    stamp: Path,
    inputs: str,
    product: Path,
) -> None:
    """Run a setup step unless what it produced is there and what it was made from has not changed: a command in a
    subprocess, or a function in this process (its output to the same log)."""
    if product.exists() and stamp.exists() and stamp.read_text() == inputs:
        return
    log = paths.var / "logs" / f"setup_{step.replace(' ', '_')}.log"
    if callable(cmd):
        try:
            with output_to(log):
                cmd()
        except Exception as exc:
            raise SurveyWarehouseError(f"setup failed at '{step}' ({exc}); see {log}") from exc
    elif _run(cmd, runtime_env(paths), log, cwd) != 0:
        raise SurveyWarehouseError(f"setup failed at '{step}'; see {log}")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(inputs)


def manifest_inputs(paths: Paths) -> str:
    """What the manifest is parsed from: the dbt project's files, but of a seed's CSV only its name and header. A new
    row in a seed (a wave's codebook rows, an alias) changes no node, column or dependency the DAG is rendered from,
    so it needs no `dbt parse`; the build reads the seeds themselves, and the plan's fingerprint covers their rows.
    Paths are the project's own, so a copied project keeps its manifest."""
    env = runtime_env(paths)
    digest = hashlib.sha256(f"{env.get('SURVEY_MARTS_BUILD_SCHEMA', '')}|{' '.join(_parse_command(paths))}".encode())
    for path in sorted(_dbt_sources(paths)):
        seed_rows = path.suffix == ".csv" and (paths.dbt_project / "seeds") in path.parents
        with open(path, "rb") as f:
            content = f.readline() if seed_rows else f.read()
        digest.update(str(path.relative_to(paths.dbt_project)).encode() + b"\0" + content + b"\0")
    return digest.hexdigest()


def _parse_command(paths: Paths) -> list[str]:
    """`dbt parse` with the profile and target named as Cosmos names them when it runs the build. The manifest it
    writes is what the DAG renders from; the builds themselves parse the project afresh (the DAG turns Cosmos'
    partial parse off: a parse cached in a temporary copy of the project named files of a folder since deleted)."""
    target = runtime_env(paths).get("SURVEY_DBT_TARGET", "duckdb")
    return ["parse", "--quiet", "--profile", DBT_PROFILE, "--target", target]


def ensure_manifest(paths: Paths, in_process: bool = False) -> Path:
    """The dbt manifest Cosmos renders the DAG from, parsed again when the dbt project (or its target) changed."""
    target = paths.dbt_project / "target"
    inputs = manifest_inputs(paths)
    project = str(paths.dbt_project)
    command = [*_parse_command(paths), "--project-dir", project, "--profiles-dir", project]
    _step(
        paths,
        "dbt parse",
        partial(_dbt_in_process, command) if in_process else [_bin("dbt"), *command],
        paths.dbt_project,
        target / "manifest.inputs",
        inputs,
        target / "manifest.json",
    )
    return target / "manifest.json"


def _dbt_in_process(command: list[str]) -> None:
    """dbt in this process (the process that runs the DAG imports dbt anyway, for Cosmos)."""
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(command)
    if not result.success:
        raise SurveyWarehouseError(f"dbt {command[0]} failed: {result.exception or 'see the log'}")


def setup(paths: Paths) -> None:
    """Idempotent and quick when nothing changed: the dbt manifest, Airflow's SQLite metadata and the warehouse's
    one-writer pool.

    dbt's and Airflow's steps run in this process when it is the one that will run the DAG (Airflow configured for this
    var/ folder, saving an interpreter and an Airflow import per step), else as `airflow` commands."""
    env = runtime_env(paths)
    home = Path(env["AIRFLOW_HOME"])
    database = home / "airflow.db"
    in_process = os.environ.get("AIRFLOW_HOME") == env["AIRFLOW_HOME"] and _airflow_configured_here(database)
    ensure_manifest(paths, in_process=in_process)
    migrate: list[str] | Callable[[], object] = [_bin("airflow"), "db", "migrate"]
    pool: list[str] | Callable[[], object] = [_bin("airflow"), "pools", "set", POOL, "1", POOL_DESCRIPTION]
    if in_process:  # Airflow is imported only when a step has to run
        migrate, pool = _migrate_metadata, _create_pool
    _step(paths, "airflow db migrate", migrate, None, home / "migrated.stamp", _airflow_version(), database)
    if env.get("SURVEY_DBT_TARGET", "duckdb") == "duckdb":
        _step(paths, "airflow pools set", pool, None, home / "pool.stamp", POOL, database)


def _migrate_metadata() -> None:
    from airflow.utils.db import upgradedb

    upgradedb()


def _create_pool() -> None:
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(POOL, 1, POOL_DESCRIPTION, include_deferred=False)


def _airflow_configured_here(database: Path) -> bool:
    """True when Airflow in this process uses `database` (or is not imported yet and will, from the environment)."""
    if "airflow" not in sys.modules:
        return True
    from airflow import settings

    return str(settings.SQL_ALCHEMY_CONN or "").endswith(str(database))


def _airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow")


@contextmanager
def output_to(log: Path) -> Iterator[None]:
    """Everything written to stdout and stderr (print, logging, dbt) goes to `log` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def generate_docs(paths: Paths) -> int:
    target = paths.var / "dbt_docs"
    log = paths.var / "logs" / "dbt_docs_generate.log"
    code = _run(
        [_bin("dbt"), "docs", "generate", "--profiles-dir", ".", "--target-path", str(target)],
        runtime_env(paths),
        log,
        paths.dbt_project,
    )
    print(
        f"dbt docs in {target}/index.html (serve: cd {target} && python -m http.server)"
        if code == 0
        else f"dbt docs generate failed; see {log}"
    )
    return code
