"""Command line: set up the embedded stack, run the survey_waves DAG for every wave year, print a summary.

    python -m survey_warehouse.cli run [YEAR ...]   # what `make run` does (all configured years by default)
    python -m survey_warehouse.cli summary          # the summary of what is in the warehouse now
    python -m survey_warehouse.cli airflow          # what `make airflow` does: Airflow until Ctrl-C
    python -m survey_warehouse.cli airflow-cli ARGS # any airflow command with the project's environment

`run` runs the DAG through Airflow itself (`dag.test`, metadata in SQLite under var/airflow) for each year that
has something to do, all in one process, so Airflow, dbt and Great Expectations start once. A year whose inputs
have not changed since the published marts were built is reported as such without a DAG run (the DAG's own first
task makes the same check when a scheduler runs it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.intake.waves import find_wave_spec, list_wave_years
from survey_warehouse.operations import faults
from survey_warehouse.settings import DBT_PROFILE, Paths, get_paths

DAG_ID = "survey_waves"
EXPORTS_DAG_ID = "survey_marts_exports"
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
            with _output_to(log):
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
def _output_to(log: Path) -> Iterator[None]:
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


def _release_warehouse() -> None:
    """dbt-duckdb keeps the warehouse open read-write in the process after an in-process dbt run: close it, so
    this process does not hold DuckDB's one-writer lock between runs."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    DuckDBConnectionManager.close_all_connections()


def plan_years(paths: Paths, years: list[int]) -> dict[int, str | None]:
    """Per year: None when the DAG must run, else why not (no wave that year, or nothing changed)."""
    from survey_warehouse.orchestration.pipeline import plan_wave, published_without_spec

    out: dict[int, str | None] = {}
    for year in years:
        try:
            if find_wave_spec(year, paths) is None:
                if published_without_spec(year, paths) is None:
                    out[year] = f"wave {year}: no survey wave that year (no {paths.waves_config / f'{year}.yml'})"
                else:
                    out[year] = None  # its run fails, saying the wave is still published and how to withdraw it
                continue
            plan = plan_wave(year, paths)
            out[year] = plan.reason if plan.action == "nothing" else None
        except SurveyWarehouseError:
            out[year] = None  # the DAG run reports it, with the reason kept where the summary finds it
    return out


def run_waves(
    paths: Paths, years: list[int], force_dag: bool = False, catch_up: bool = True
) -> dict[int, dict[str, Any]]:
    """The DAG for each year through `dag.test`, in this process: Airflow, dbt and GX are imported once.

    With several waves to do (`catch_up`), every run loads, gates and accepts its wave, but only the last one builds:
    it builds, gates and publishes them all, once. When that build or its gate fails, each of those waves runs
    again on its own, so a wave that breaks the build holds back only itself."""
    os.environ.update(runtime_env(paths))  # before Airflow is imported: it reads AIRFLOW_HOME at import
    Path(os.environ["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    _recover_publication(paths)
    skips = plan_years(paths, years)
    todo = [year for year in years if not skips.get(year)]
    builder = todo[-1] if catch_up and len(todo) > 1 else None
    outcomes: dict[int, dict[str, Any]] = {}
    for year in years:
        if skips.get(year) and not force_dag:
            print(f"{skips[year]}; no DAG run needed", flush=True)
            outcomes[year] = {"exit_code": 0, "seconds": 0.0, "log": None, "skipped": skips[year]}
            continue
        defer = builder is not None and year in todo and year != builder
        outcomes[year] = _dag_run(paths, year, f"build left to the {builder} run" if defer else None)
    if builder is not None and outcomes[builder]["exit_code"] != 0:
        deferred = [y for y in todo if y != builder and outcomes[y]["exit_code"] == 0]
        again = deferred + ([builder] if outcomes[builder]["failed_build"] else [])
        if again:
            print(f"The {builder} run did not publish; each wave on its own: {', '.join(map(str, again))}", flush=True)
        for year in again:  # each built alone: the other waves' waiting loads are held out of its build
            if plan_years(paths, [year])[year] is None:  # (an earlier one may have published it)
                earlier = outcomes[year]
                outcomes[year] = _dag_run(paths, year, None, alone=True)
                outcomes[year]["earlier_run_ids"] = [earlier.get("run_id"), *earlier.get("earlier_run_ids", [])]
    return outcomes


def _recover_publication(paths: Paths) -> None:
    """Before planning: a publication that a killed run left half done is finished or undone, so the plans compare
    with the marts readers actually see."""
    from survey_warehouse.publishing.publish import recover_publication
    from survey_warehouse.warehouse import Warehouse

    warehouse = Warehouse.from_env(paths.warehouse)
    if warehouse.backend == "duckdb" and warehouse.file.exists():
        recover_publication(warehouse, paths.published)


def _dag_run(paths: Paths, year: int, defer: str | None, alone: bool = False) -> dict[str, Any]:
    """One `dag.test` run of the DAG for a wave year; with `defer` (why), a run that leaves its build to a later
    run; `alone`, a run whose build leaves out the other waves' loads waiting for a build."""
    import pendulum

    from survey_warehouse.orchestration.pipeline import BUILD_STEPS, DEFER_BUILD_PARAM, HOLD_OUT_WAITING_PARAM

    dag = _waves_dag(paths)
    log = paths.var / "logs" / f"survey_waves_{year}.log"
    started = time.monotonic()
    print(f"Running DAG {DAG_ID} for {year}{f' ({defer})' if defer else ''} ...", end=" ", flush=True)
    os.environ["SURVEY_RUN_LOG"] = str(log)  # where a failure notification says the log is
    failed: list[str] = []
    run_id = None
    with _output_to(log):
        try:
            run = dag.test(
                logical_date=pendulum.datetime(year, 6, 1, tz="UTC"),
                run_conf={DEFER_BUILD_PARAM: bool(defer), HOLD_OUT_WAITING_PARAM: alone},
            )
            state, run_id = str(run.state), run.run_id
            if state != "success":
                failed = _failed_tasks(run.run_id)
        except Exception as exc:  # one broken run must not stop the other years
            traceback.print_exc()
            state = f"error: {faults.cause(exc) or exc}"
        finally:
            _release_warehouse()
    seconds = time.monotonic() - started
    code = 0 if state == "success" else 1
    print(("ok" if code == 0 else f"FAILED ({state})") + f" in {seconds:.0f} s; log: {log}", flush=True)
    return {
        "exit_code": code,
        "seconds": seconds,
        "log": log,
        "failed_build": any(task.startswith(BUILD_STEPS) for task in failed),
        "failed_tasks": sorted(t for t in failed if t != "record_failure"),
        "run_id": run_id,
        "state": state,
    }


_DAGS: dict[Path, Any] = {}


def _waves_dag(paths: Paths) -> Any:
    """The survey_waves DAG, parsed once per process."""
    dag_file = paths.root / "dags" / "survey_waves.py"
    if dag_file not in _DAGS:
        with _output_to(paths.var / "logs" / "survey_waves_parse.log"):
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(dag_file))
        if bag.import_errors:
            raise SurveyWarehouseError(f"the DAG does not import: {bag.import_errors}")
        _DAGS[dag_file] = bag.get_dag(DAG_ID)
    return _DAGS[dag_file]


def _failed_tasks(run_id: str) -> list[str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(
            session.scalars(
                select(TaskInstance.task_id).where(
                    TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id, TaskInstance.state == "failed"
                )
            )
        )


def run_exports(paths: Paths) -> dict[str, Any] | None:
    """The DAG scheduled on the published marts (survey_marts_exports), through `dag.test` in this process, when
    the marts published now have not been exported yet: after a run that published (it recorded an asset event,
    which a scheduler would act on), or when the newest export is of an older publication. None when there is
    nothing to do."""
    from survey_warehouse.publishing import exports
    from survey_warehouse.publishing.publish import read_publication
    from survey_warehouse.warehouse import Warehouse

    publication = read_publication(Warehouse.from_env(paths.warehouse), paths.published)
    if publication is None or exports.is_exported(paths, publication.published_at):
        return None
    log = paths.var / "logs" / f"{EXPORTS_DAG_ID}.log"
    started = time.monotonic()
    print(f"Running DAG {EXPORTS_DAG_ID} (the published marts as Parquet and CSV) ...", end=" ", flush=True)
    with _output_to(log):
        try:
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(paths.root / "dags" / f"{EXPORTS_DAG_ID}.py"))
            if bag.import_errors:
                raise SurveyWarehouseError(f"the DAG does not import: {bag.import_errors}")
            state = str(bag.get_dag(EXPORTS_DAG_ID).test(logical_date=None).state)
        except Exception as exc:
            traceback.print_exc()
            state = f"error: {faults.cause(exc) or exc}"
    seconds = time.monotonic() - started
    code = 0 if state == "success" and exports.is_exported(paths, publication.published_at) else 1
    folder = exports.exports_dir(paths) / exports.LATEST
    print(("ok" if code == 0 else f"FAILED ({state})") + f" in {seconds:.1f} s; {folder}/; log: {log}", flush=True)
    return {"exit_code": code, "seconds": seconds, "log": log}


def _command(paths: Paths, years: list[int], *flags: str) -> tuple[list[str], dict[str, str]]:
    return (
        [sys.executable, "-m", "survey_warehouse.cli", "run", "--no-summary", *flags, *map(str, years)],
        runtime_env(paths),
    )


def start_wave(paths: Paths, year: int, force_dag: bool = True) -> tuple[subprocess.Popen, Path]:
    """`run` for one wave year in a process (and session) of its own; its DAG run logs to var/logs."""
    log = paths.var / "logs" / f"survey_waves_{year}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    log.touch()
    cmd, env = _command(paths, [year], *(["--force-dag"] if force_dag else []))
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    with open(paths.var / "logs" / f"run_{year}.log", "w", encoding="utf-8") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


def run_years(paths: Paths, years: list[int], force_dag: bool = True) -> dict[int, tuple[int, float, Path]]:
    """`run` for several wave years in one fresh process; per year its outcome (exit code, seconds, DAG log)."""
    import json

    outcomes_file = paths.var / "logs" / "outcomes.json"
    outcomes_file.parent.mkdir(parents=True, exist_ok=True)
    outcomes_file.unlink(missing_ok=True)
    cmd, env = _command(paths, years, "--outcomes", str(outcomes_file), *(["--force-dag"] if force_dag else []))
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    with open(paths.var / "logs" / "run.log", "w", encoding="utf-8") as out:
        code = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if not outcomes_file.exists():
        raise SurveyWarehouseError(f"run ended with exit code {code} before any wave; see {paths.var / 'logs'}")
    found = json.loads(outcomes_file.read_text())
    return {
        int(year): (o["exit_code"], o["seconds"], Path(o["log"]) if o["log"] else paths.var / "logs")
        for year, o in found.items()
    }


def run_wave(paths: Paths, year: int, force_dag: bool = True) -> tuple[int, float, Path]:
    """`run` for one wave year in a fresh process: the DAG runs through Airflow itself."""
    started = time.monotonic()
    process, log = start_wave(paths, year, force_dag)
    return process.wait(), time.monotonic() - started, log


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="survey-warehouse")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the survey_waves DAG for each wave year, then print the summary")
    run_p.add_argument("years", nargs="*", type=int, help="wave years (default: first to last configured)")
    run_p.add_argument("--no-summary", action="store_true", help="do not print the summary")
    run_p.add_argument(
        "--force-dag",
        action="store_true",
        help="start a DAG run even for a wave with nothing to do (the DAG then skips it)",
    )
    run_p.add_argument(
        "--build-each-wave",
        action="store_true",
        help="build and publish after every wave (default: several waves to do are built and published once, by "
        "the last run)",
    )
    run_p.add_argument("--outcomes", type=Path, help="also write each year's outcome to this JSON file")
    sub.add_parser("setup", help="dbt manifest, Airflow metadata database and pool")
    sub.add_parser("manifest", help="the dbt manifest (parsed again when the dbt project changed)")
    sub.add_parser("summary", help="print what the warehouse and the published marts hold")
    sub.add_parser("docs", help="dbt docs (lineage, mart catalogue) into var/dbt_docs")
    from survey_warehouse.orchestration import local_airflow  # its commands: airflow, airflow-cli

    local_airflow.add_commands(sub)
    args = parser.parse_args(argv)
    paths = get_paths()
    try:
        if args.command == "setup":
            os.environ.update(runtime_env(paths))  # Airflow's steps in this process
            setup(paths)
            return 0
        if args.command == "manifest":
            print(ensure_manifest(paths))
            return 0
        commands: dict[str, Callable[[], int]] = {
            "docs": partial(generate_docs, paths),
            "airflow": partial(local_airflow.serve_command, paths, args),
            "airflow-cli": partial(local_airflow.airflow_command, paths, getattr(args, "airflow_args", [])),
        }
        if args.command in commands:
            return commands[args.command]()
        if args.command == "summary":
            from survey_warehouse.operations.summary import print_summary

            print_summary(paths, {})
            return 0
        configured = list_wave_years(paths)
        if not configured and not args.years:
            raise SurveyWarehouseError(f"no wave specs in {paths.waves_config}")
        years = args.years or list(range(min(configured), max(configured) + 1))
        if not args.no_summary:
            print(f"Setting up (dbt manifest, Airflow metadata in {paths.var / 'airflow'}) ...", flush=True)
        from survey_warehouse.orchestration.local_airflow import holding_var_folder

        with holding_var_folder(paths, f"make run for {', '.join(map(str, years))}"):
            os.environ.update(runtime_env(paths))  # before Airflow is imported: it reads AIRFLOW_HOME at import
            setup(paths)
            outcomes = run_waves(paths, years, force_dag=args.force_dag, catch_up=not args.build_each_wave)
            exported = run_exports(paths)
        if args.outcomes:
            import json

            args.outcomes.write_text(
                json.dumps({str(y): {**o, "log": str(o["log"]) if o["log"] else None} for y, o in outcomes.items()})
            )
        if not args.no_summary:
            from survey_warehouse.operations.summary import print_summary

            print_summary(paths, outcomes)
        ok = all(o["exit_code"] == 0 for o in [*outcomes.values(), *([exported] if exported else [])])
        return 0 if ok else 1
    except SurveyWarehouseError as exc:
        print(f"survey-warehouse: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
