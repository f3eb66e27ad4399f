"""Running the project's DAGs: `make run` runs survey_waves for every wave year through Airflow itself
(`dag.test`, metadata in SQLite under var/airflow), all in one process, so Airflow, dbt and Great Expectations
start once; then survey_marts_exports when the published marts have not been exported yet. A year whose inputs
have not changed since the published marts were built is reported as such without a DAG run (the DAG's own first
task makes the same check when a scheduler runs it). Tests and tools start the same in a fresh process
(`run_wave`, `run_years`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.operations import faults
from survey_warehouse.orchestration.runtime import output_to, runtime_env
from survey_warehouse.settings import Paths

DAG_ID = "survey_waves"


EXPORTS_DAG_ID = "survey_marts_exports"


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
    _runs_made.clear()
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
        _each_wave_on_its_own(paths, builder, todo, outcomes)
    order = [run_id for _started, run_id in sorted(_runs_made)]
    for outcome in outcomes.values():  # every run this command made, in the order they ran (the summary's)
        outcome["runs_of_command"] = order
    return outcomes


# (start time, run id) of every DAG run `run_waves` made in this process, the build from the current loads included
_runs_made: list[tuple[float, str]] = []


def _each_wave_on_its_own(paths: Paths, builder: int, todo: list[int], outcomes: dict[int, dict[str, Any]]) -> None:
    """The catch-up's build did not publish: each waiting wave runs again and builds alone (the other waves' waiting
    loads held out). Before the first of those builds, once a build has failed, the marts are built from the current
    loads alone: when that fails too, no wave's data is the cause, and the waves left are not run again."""
    deferred = [y for y in todo if y != builder and outcomes[y]["exit_code"] == 0]
    again = deferred + ([builder] if outcomes[builder]["failed_build"] else [])
    checked = False
    if outcomes[builder]["failed_build"]:
        checked = True
        if _build_fails_without_new_waves(paths, builder, again, todo, outcomes):
            return
    if again:
        print(f"The {builder} run did not publish; each wave on its own: {', '.join(map(str, again))}", flush=True)
    for i, year in enumerate(again):  # each built alone: the other waves' waiting loads are held out of its build
        if plan_years(paths, [year])[year] is not None:  # (an earlier one may have published it)
            continue
        earlier = outcomes[year]
        outcomes[year] = _dag_run(paths, year, None, alone=True)
        outcomes[year]["earlier_run_ids"] = [earlier.get("run_id"), *earlier.get("earlier_run_ids", [])]
        left = again[i + 1 :]
        if outcomes[year]["failed_build"] and not checked and left:
            checked = True
            if _build_fails_without_new_waves(paths, year, left, todo, outcomes):
                return


def _build_fails_without_new_waves(
    paths: Paths, failed: int, left: list[int], todo: list[int], outcomes: dict[int, dict[str, Any]]
) -> bool:
    """After a build failed (of the run for `failed`): the marts built once more from the current loads alone (no
    new wave in the build). When that build fails too, no wave's data is the cause (the dbt project, a seed, a suite
    or the environment is): the waves `left` are not run again one by one, each is reported with why. True then;
    False when the build from the current loads went through (or there is none to build from), and each wave runs
    on its own to find the one that breaks the build. The build is a run of its own (its own logical date and log:
    the failed run's record and log stay), and no owner is told of it."""
    base = _wave_with_current_load(paths, prefer_outside=todo)
    if base is None:
        return False
    print(
        f"The {failed} run's build failed; building the marts from the current loads alone (no new wave) to tell "
        "whether a wave's data is the cause:",
        flush=True,
    )
    check = _dag_run(paths, base, "the current loads alone", current_loads_only=True)
    outcomes[failed].setdefault("later_run_ids", []).append(check.get("run_id"))
    if check["exit_code"] == 0 or not check["failed_build"]:
        return False
    steps = ", ".join(check.get("failed_tasks") or []) or "the build"
    why = (
        f"not run again: the build fails without any new wave's data too (at {steps}), so the cause is the dbt "
        "project, a seed or a suite, not a wave; mend it and run again"
    )
    print(f"The build from the current loads alone failed too (at {steps}): no wave's data is the cause.", flush=True)
    print(f"  Not run again one by one: {', '.join(map(str, left))}; see {check.get('log')}", flush=True)
    for year in left:
        outcomes[year] = {
            **outcomes[year],
            "exit_code": 1,
            "state": why,
            "failed_tasks": outcomes[year].get("failed_tasks") or [],
            "build_not_caused_by_data": True,
        }
    return True


def _wave_with_current_load(paths: Paths, prefer_outside: list[int]) -> int | None:
    """A wave with a current load and a spec that is not withdrawn (a run of it can build from the current loads),
    one outside `prefer_outside` first (the waves being caught up: their file or spec changed, and the current load
    is gated again against the spec as it is now); None when no wave has one (nothing was ever published)."""
    from survey_warehouse.raw import schema
    from survey_warehouse.warehouse import Session, Warehouse

    warehouse = Warehouse.from_env(paths.warehouse)
    if warehouse.backend == "duckdb" and not warehouse.file.exists():
        return None
    with Session(warehouse) as session:
        schema.ensure_raw_schema(session)
        rows = session.execute("select distinct wave_year from raw.load_registry where is_current").fetchall()
    current = {int(row[0]) for row in rows}
    for year in sorted(current, key=lambda y: (y in prefer_outside, -y)):
        if year in current:
            try:
                spec = find_wave_spec(year, paths)
            except SurveyWarehouseError:
                continue
            if spec is not None and not spec.withdrawn:
                return year
    return None


def _recover_publication(paths: Paths) -> None:
    """Before planning: a publication that a killed run left half done is finished or undone, so the plans compare
    with the marts readers actually see."""
    from survey_warehouse.publishing.publish import recover_publication
    from survey_warehouse.warehouse import Warehouse

    warehouse = Warehouse.from_env(paths.warehouse)
    if warehouse.backend == "duckdb" and warehouse.file.exists():
        recover_publication(warehouse, paths.published)


def _dag_run(
    paths: Paths, year: int, defer: str | None, alone: bool = False, current_loads_only: bool = False
) -> dict[str, Any]:
    """One `dag.test` run of the DAG for a wave year; with `defer` (why), a run that leaves its build to a later
    run; `alone`, a run whose build leaves out the other waves' loads waiting for a build; `current_loads_only`, a
    run that loads nothing and builds from every wave's current load (`defer` then only says so)."""
    import pendulum

    from survey_warehouse.orchestration.pipeline import (
        BUILD_STEPS,
        CURRENT_LOADS_ONLY_PARAM,
        DEFER_BUILD_PARAM,
        HOLD_OUT_WAITING_PARAM,
    )

    dag = _waves_dag(paths)
    log = (
        paths.var
        / "logs"
        / (f"survey_waves_{year}.log" if not current_loads_only else "survey_waves_current_loads.log")
    )
    started = time.monotonic()
    started_at = time.time()
    print(f"Running DAG {DAG_ID} for {year}{f' ({defer})' if defer else ''} ...", end=" ", flush=True)
    os.environ["SURVEY_RUN_LOG"] = str(log)  # where a failure notification says the log is
    failed: list[str] = []
    run_id = None
    with output_to(log):
        try:
            run = dag.test(
                # a build from the current loads is a run of its own: the wave year's run (same logical date) stays
                logical_date=pendulum.now("UTC") if current_loads_only else pendulum.datetime(year, 6, 1, tz="UTC"),
                run_conf={
                    DEFER_BUILD_PARAM: bool(defer) and not current_loads_only,
                    HOLD_OUT_WAITING_PARAM: alone,
                    CURRENT_LOADS_ONLY_PARAM: current_loads_only,
                    **({"wave_year": year} if current_loads_only else {}),
                },
            )
            state, run_id = str(run.state), run.run_id
            _runs_made.append((started_at, run_id))
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
        with output_to(paths.var / "logs" / "survey_waves_parse.log"):
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
    with output_to(log):
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
