"""Benchmark: the yearly run beside the cost of its own work, in one run on this machine.

    .venv/bin/python benchmarks/pipeline.py [--skip-loader]

Each figure is measured here, in a scratch folder under var/benchmarks/ (the user's var/ is not touched):
- `make run` for every wave from an empty warehouse (what a new user runs: one build for all the waves), again
  with nothing changed, and from empty with a build after every wave (`--build-each-wave`);
- the same work without orchestration: the loader, the raw gate of each wave, one `dbt build`, the marts gate;
- one new wave added to a warehouse that has the others (the 2020 example, scripts/example_wave_2020.py);
- the gates alone, once Great Expectations is imported; parsing the DAG file;
- the loader on a million-row wave beside DuckDB alone and pandas, a 100,000-row workbook read with calamine beside
  openpyxl, and a 100,000-row SPSS .sav beside the same answers as CSV (benchmarks/large_wave_load.py).
Then it prints the figures with their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
WORK = ROOT / "var" / "benchmarks" / "pipeline"


def _env(var: Path, root: Path = ROOT) -> dict[str, str]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("SURVEY_"):
            del env[key]
    env.update({"SURVEY_PROJECT_ROOT": str(root), "SURVEY_VAR_DIR": str(var), "PYTHONWARNINGS": "ignore"})
    return env


def _timed(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> float:
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        code = subprocess.run(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {code}); see {log}")
    return seconds


def user_setup(var: Path, root: Path = ROOT, keep: bool = False) -> None:
    """A user's checkout before `make run`: the environment installed and `make setup` run for this var/ folder.
    Its dbt parse is made for this folder's warehouse, as dbt keeps a parse only for the same connection (the stamp
    is removed so that setup parses again). Unless `keep`, the folder is then removed: what `make run` sets up in it
    (Airflow's metadata) is part of what is measured."""
    _setup_parsing_again(_env(var, root), root, var.parent / f"{var.name}_setup.log")
    if not keep:
        shutil.rmtree(var)


def _setup_parsing_again(env: dict[str, str], root: Path, log: Path) -> None:
    """`make setup` for the var/ folder `env` names, its dbt parse made again (the stamp removed) for its warehouse."""
    (root / "dbt_project" / "target" / "manifest.inputs").unlink(missing_ok=True)
    _timed([PY, "-m", "survey_warehouse.cli", "setup"], env, log)


def make_run(var: Path, root: Path = ROOT, years: list[int] | None = None, *flags: str) -> float:
    """What `make run` does once the environment is installed: the CLI's run, summary included."""
    return _timed(
        [PY, "-m", "survey_warehouse.cli", "run", *flags, *map(str, years or [])],
        _env(var, root),
        var.parent / f"{var.name}_make_run_{time.time_ns()}.log",
    )


WORK_WITHOUT_ORCHESTRATION = """
import json, os, subprocess, sys, time
from pathlib import Path
from survey_warehouse.raw import load, registry
from survey_warehouse import quality
from survey_warehouse.settings import get_paths
from survey_warehouse.warehouse import Warehouse
from survey_warehouse.intake.waves import find_wave_spec
paths = get_paths()
warehouse = Warehouse.duckdb(paths.warehouse)
figures = {"loader": 0.0, "raw gates": 0.0}
started = time.perf_counter()
import great_expectations  # imported once, as in one process running every wave
figures["GX import"] = time.perf_counter() - started
context = quality.file_context(paths)
for year in (2016, 2018, 2019):
    spec = find_wave_spec(year, paths)
    t = time.perf_counter()
    loaded = load.load_wave(spec, warehouse, paths=paths)
    figures["loader"] += time.perf_counter() - t
    t = time.perf_counter()
    report = quality.run_gate(quality.raw_wave_checkpoint(context, spec, loaded.load_id, paths, warehouse), paths)
    figures["raw gates"] += time.perf_counter() - t
    registry.accept_load(warehouse, loaded.load_id, report.message())
t = time.perf_counter()
from survey_warehouse.orchestration.runtime import runtime_env
subprocess.run([str(Path(sys.executable).with_name("dbt")), "build", "--profiles-dir", ".", "--quiet",
                "--target-path", str(paths.var / "target")], cwd=paths.dbt_project, env=runtime_env(paths), check=True)
figures["dbt build"] = time.perf_counter() - t
t = time.perf_counter()
quality.run_gate(quality.marts_checkpoint(context, "benchmark", paths, warehouse), paths)
figures["marts gate"] = time.perf_counter() - t
t = time.perf_counter()
quality.run_gate(quality.marts_checkpoint(context, "benchmark_again", paths, warehouse), paths)
figures["marts gate again"] = time.perf_counter() - t
print(json.dumps(figures))
"""

PARSE = """
import json, time
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
imported = time.perf_counter()
bag = DagBag(dag_folder={dags!r})
assert not bag.import_errors, bag.import_errors
durations = [s.duration for s in bag.dagbag_stats]  # the one file
seconds = sum(d.total_seconds() if hasattr(d, "total_seconds") else float(d) for d in durations)
print(json.dumps({{"file": seconds, "airflow import": imported - started}}))
"""


def _child_json(code: str, env: dict[str, str], log: Path) -> dict:
    log.parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [PY, "-c", textwrap.dedent(code)], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    log.write_text(out.stdout + out.stderr, encoding="utf-8")
    if out.returncode != 0:
        raise SystemExit(f"benchmark step failed; see {log}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _copy_project(target: Path) -> Path:
    shutil.copytree(
        ROOT,
        target,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".tools", "var", "target", "logs", "__pycache__", "bi", "tests", "benchmarks"
        ),
    )
    # the manifest as set-up left it, as in a user's checkout where a new wave is added
    shutil.copytree(ROOT / "dbt_project" / "target", target / "dbt_project" / "target")
    return target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-loader", action="store_true", help="leave out the million-row loader benchmark")
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    user_setup(WORK / "run")
    cold = make_run(WORK / "run")
    again = make_run(WORK / "run")
    user_setup(WORK / "run_each")
    each = make_run(WORK / "run_each", ROOT, None, "--build-each-wave")
    work = _child_json(WORK_WITHOUT_ORCHESTRATION, _env(WORK / "work"), WORK / "work.log")
    floor = work["loader"] + work["raw gates"] + work["dbt build"] + work["marts gate"]

    # one new wave on top of the three: a copy of the project with the 2020 example added
    project = _copy_project(WORK / "project_2020")
    subprocess.run(
        [PY, str(ROOT / "scripts" / "example_wave_2020.py"), str(project)], check=True, stdout=subprocess.DEVNULL
    )
    var_2020 = WORK / "run_2020"
    shutil.copytree(WORK / "run", var_2020, ignore=shutil.ignore_patterns("logs", "quality", "gx", "data_docs"))
    shutil.rmtree(var_2020 / "setup", ignore_errors=True)
    user_setup(var_2020, project, keep=True)
    full_2020_setup = make_run(var_2020, project, [2020])

    parse = _child_json(
        PARSE.format(dags=str(ROOT / "dags" / "survey_waves.py")),
        _env(WORK / "parse") | {"AIRFLOW_HOME": str(WORK / "parse" / "airflow")},
        WORK / "parse.log",
    )

    rows = [
        ("make run, every wave, empty warehouse", cold, f"x{cold / floor:.1f} the work"),
        ("make run again, nothing changed", again, f"{again / cold:.0%} of the first run"),
        ("the same, a build after every wave", each, f"x{each / floor:.1f} the work (--build-each-wave)"),
        ("the work: loader (3 waves)", work["loader"], ""),
        ("the work: raw gates (3)", work["raw gates"], ""),
        ("the work: one dbt build", work["dbt build"], ""),
        ("the work: marts gate", work["marts gate"], ""),
        ("the work in all (floor)", floor, ""),
        ("Great Expectations import (once per process)", work["GX import"], ""),
        ("one new wave (2020) on top of the three", full_2020_setup, f"{full_2020_setup / cold:.0%} of a full run"),
        ("marts gate, a second time in one process", work["marts gate again"], ""),
        ("DAG file parse (DagBag)", parse["file"], f"Airflow import {parse['airflow import']:.1f} s"),
    ]
    print(f"\n{'what':<48}{'seconds':>9}   ratio")
    for name, seconds, ratio in rows:
        print(f"{name:<48}{seconds:>9.1f}   {ratio}")
    # the user's own checkout as it was: its parse made for its own warehouse again
    user_env = {k: v for k, v in os.environ.items() if k != "SURVEY_VAR_DIR"}
    _setup_parsing_again(user_env, ROOT, WORK / "user_setup.log")
    if not args.skip_loader:
        print()
        loader = [PY, str(ROOT / "benchmarks" / "large_wave_load.py"), "--xlsx-rows", "100000", "--sav-rows", "100000"]
        subprocess.run([*loader, "--postgres"], check=True)


if __name__ == "__main__":
    main()
