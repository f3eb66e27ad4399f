"""Command line: set up the embedded stack, run the survey_waves DAG for every wave year, print a summary.

    python -m survey_warehouse.cli run        # what `make run` does
    python -m survey_warehouse.cli summary    # the summary of what is in the warehouse now
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from survey_warehouse.settings import Paths, get_paths
from survey_warehouse.waves import list_wave_years

DAG_ID = "survey_waves"
POOL = "duckdb_warehouse"


def runtime_env(paths: Paths) -> dict[str, str]:
    """Environment for Airflow and dbt on the embedded default: everything under var/, no telemetry."""
    env = dict(os.environ)
    env.update({
        "SURVEY_PROJECT_ROOT": str(paths.root),
        "SURVEY_VAR_DIR": str(paths.var),
        "SURVEY_WAVES_DIR": str(paths.waves_config),
        "SURVEY_WAREHOUSE_PATH": str(paths.warehouse),
        "SURVEY_PUBLISHED_PATH": str(paths.published),
        "SURVEY_DATA_DOCS_DIR": str(paths.data_docs),
        "AIRFLOW_HOME": str(paths.var / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(paths.root / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "SCARF_ANALYTICS": "false",
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "GX_ANALYTICS_ENABLED": "False",
        "PYTHONWARNINGS": "ignore",
        # Cosmos and dbt write scratch copies of the project: keep them inside the clone too.
        "TMPDIR": str(paths.var / "tmp"),
        "AIRFLOW__COSMOS__CACHE_DIR": str(paths.var / "cosmos_cache"),
    })
    env.setdefault("SURVEY_TASK_RETRIES", "0")
    return env


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _run(cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.run(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode


def setup(paths: Paths) -> None:
    """Idempotent: the dbt manifest Cosmos renders from, Airflow's SQLite metadata, the warehouse pool."""
    env = runtime_env(paths)
    logs = paths.var / "logs"
    steps = [
        ("dbt parse", [_bin("dbt"), "parse", "--profiles-dir", ".", "--quiet"], paths.dbt_project),
        ("airflow db migrate", [_bin("airflow"), "db", "migrate"], None),
    ]
    if env.get("SURVEY_DBT_TARGET", "duckdb") == "duckdb":
        steps.append(("airflow pools set", [_bin("airflow"), "pools", "set", POOL, "1",
                                            "DuckDB warehouse: one writer"], None))
    for step, cmd, cwd in steps:
        log = logs / f"setup_{step.replace(' ', '_')}.log"
        if _run(cmd, env, log, cwd) != 0:
            raise SystemExit(f"setup failed at '{step}'; see {log}")


def start_wave(paths: Paths, year: int) -> tuple[subprocess.Popen, Path]:
    """Start `airflow dags test` for one wave year, in a session of its own; its output goes to a log file."""
    log = paths.var / "logs" / f"survey_waves_{year}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = runtime_env(paths)
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [_bin("airflow"), "dags", "test", "-f", str(paths.root / "dags" / "survey_waves.py"), DAG_ID,
             f"{year}-06-01"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


def run_wave(paths: Paths, year: int) -> tuple[int, float, Path]:
    """`airflow dags test` for one wave year: the DAG runs through Airflow itself, in this process tree."""
    started = time.monotonic()
    process, log = start_wave(paths, year)
    return process.wait(), time.monotonic() - started, log


def generate_docs(paths: Paths) -> int:
    target = paths.var / "dbt_docs"
    log = paths.var / "logs" / "dbt_docs_generate.log"
    code = _run([_bin("dbt"), "docs", "generate", "--profiles-dir", ".", "--target-path", str(target)],
                runtime_env(paths), log, paths.dbt_project)
    print(f"dbt docs in {target}/index.html (serve: cd {target} && python -m http.server)" if code == 0
          else f"dbt docs generate failed; see {log}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="survey-warehouse")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the survey_waves DAG for each wave year, then print the summary")
    run_p.add_argument("years", nargs="*", type=int, help="wave years (default: first to last configured)")
    sub.add_parser("setup", help="dbt manifest, Airflow metadata database and pool")
    sub.add_parser("summary", help="print what the warehouse and the published marts hold")
    sub.add_parser("docs", help="dbt docs (lineage, mart catalogue) into var/dbt_docs")
    args = parser.parse_args(argv)
    paths = get_paths()

    if args.command == "setup":
        setup(paths)
        return 0
    if args.command == "docs":
        return generate_docs(paths)
    if args.command == "summary":
        from survey_warehouse.summary import print_summary

        print_summary(paths, {})
        return 0

    configured = list_wave_years(paths)
    years = args.years or list(range(min(configured), max(configured) + 1))
    print(f"Setting up (dbt manifest, Airflow metadata in {paths.var / 'airflow'}) ...", flush=True)
    setup(paths)
    outcomes: dict[int, dict[str, object]] = {}
    for year in years:
        print(f"Running DAG {DAG_ID} for {year} ...", end=" ", flush=True)
        code, seconds, log = run_wave(paths, year)
        outcomes[year] = {"exit_code": code, "seconds": seconds, "log": log}
        print(("ok" if code == 0 else f"FAILED (exit {code})") + f" in {seconds:.0f} s; log: {log}", flush=True)
    from survey_warehouse.summary import print_summary

    print_summary(paths, outcomes)
    return 0 if all(o["exit_code"] == 0 for o in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
