"""Command line: set up the embedded stack, run the survey_waves DAG for every wave year, print a summary.

    python -m survey_warehouse.cli run [YEAR ...]   # what `make run` does (all configured years by default)
    python -m survey_warehouse.cli summary          # the summary of what is in the warehouse now
    python -m survey_warehouse.cli airflow          # what `make airflow` does: Airflow until Ctrl-C
    python -m survey_warehouse.cli airflow-cli ARGS # any airflow command with the project's environment
    python -m survey_warehouse.cli wave check YEAR  # `make wave-check YEAR=...`: a new wave checked, nothing kept
    python -m survey_warehouse.cli wave draft FILE --year YEAR  # a new wave's spec and codebook rows, proposed

`run` runs the DAG through Airflow itself (`dag.test`, metadata in SQLite under var/airflow) for each year that
has something to do, all in one process, so Airflow, dbt and Great Expectations start once. A year whose inputs
have not changed since the published marts were built is reported as such without a DAG run (the DAG's own first
task makes the same check when a scheduler runs it).

This module is the argument parser; what the commands do is in survey_warehouse.orchestration: `runtime` (the
environment, the dbt manifest, Airflow's metadata and pool), `runner` (running the DAGs) and `local_airflow`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.intake.waves import list_wave_years
from survey_warehouse.orchestration.runner import run_exports, run_waves
from survey_warehouse.orchestration.runtime import ensure_manifest, generate_docs, runtime_env, setup
from survey_warehouse.settings import get_paths


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
    _add_wave_commands(sub)
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
            "wave": partial(getattr(args, "wave_command_run", int), paths, args),
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


def _add_wave_commands(sub: argparse._SubParsersAction) -> None:
    """The `wave` group: each of its commands sets `wave_command_run(paths, args) -> exit code`."""
    from survey_warehouse.drafting import check as wave_check
    from survey_warehouse.drafting import command as wave_draft

    wave_p = sub.add_parser("wave", help="a new wave, before a run loads it: draft its spec, check it")
    wave_commands = wave_p.add_subparsers(dest="wave_command", required=True)
    wave_draft.add_draft_command(wave_commands)  # wave draft FILE --year YEAR
    wave_check.add_command(wave_commands)  # wave check YEAR


if __name__ == "__main__":
    sys.exit(main())
