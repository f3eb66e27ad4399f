"""Shared fixtures: every test works in its own folder under var/tests (git-ignored), never in the user's var/."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_FIGURES = ROOT / "dbt_project" / "seeds" / "published_figures.csv"
# where the tests work (SURVEY_TEST_VAR moves it, e.g. for two test sessions side by side)
TEST_VAR = Path(os.environ.get("SURVEY_TEST_VAR", ROOT / "var" / "tests"))

# Airflow reads its home when first imported: keep it inside the clone, away from ~/airflow.
os.environ["AIRFLOW_HOME"] = str(TEST_VAR / "airflow_parse")
for key, value in {
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "DO_NOT_TRACK": "1",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "GX_ANALYTICS_ENABLED": "False",
    "SCARF_ANALYTICS": "false",
}.items():
    os.environ[key] = value


def _refuse_reads_beside_the_clone() -> None:
    """A user's machine has only the clone: a test that opens a file beside it (../something) fails the run."""
    import sys
    import tempfile

    beside = ROOT.parent
    allowed = [ROOT, Path(tempfile.gettempdir()), Path(sys.prefix), Path(sys.base_prefix)]

    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], (str, Path)):
            path = Path(os.path.abspath(args[0]))
            if (
                path.is_relative_to(beside)
                and path != beside
                and not path.relative_to(beside).parts[0].startswith(".")
                and not any(path.is_relative_to(a) for a in allowed)
            ):
                raise PermissionError(f"tests may read only what the repository holds, not {path}")

    sys.addaudithook(hook)


_refuse_reads_beside_the_clone()

from survey_warehouse.orchestration import runner, runtime  # noqa: E402
from survey_warehouse.settings import Paths  # noqa: E402

WAVE_YEARS = (2016, 2017, 2018, 2019)


AIRFLOW_TEMPLATE = TEST_VAR / "airflow_template"


def make_paths(name: str, fresh: bool = True) -> Paths:
    var = TEST_VAR / name
    if fresh and var.exists():
        shutil.rmtree(var)
    var.mkdir(parents=True, exist_ok=True)
    if (AIRFLOW_TEMPLATE / "airflow" / "pool.stamp").exists() and not (var / "airflow").exists():
        # an empty, migrated Airflow metadata database (not its airflow.cfg, which names its own folder): setup
        # need not migrate one for every test
        (var / "airflow").mkdir()
        for file in ("airflow.db", "migrated.stamp", "pool.stamp"):
            shutil.copy2(AIRFLOW_TEMPLATE / "airflow" / file, var / "airflow" / file)
    return Paths(
        root=ROOT,
        var=var,
        waves_config=ROOT / "config" / "waves",
        warehouse=var / "warehouse" / "survey.duckdb",
        published=var / "published" / "survey_marts.duckdb",
        data_docs=var / "data_docs",
        dbt_project=ROOT / "dbt_project",
    )


def use_paths(monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    """Point the package (in this process) at a test folder."""
    for key, value in runtime.runtime_env(paths).items():
        if key.startswith("SURVEY_"):
            monkeypatch.setenv(key, value)


@dataclass
class PipelineRun:
    paths: Paths
    outcomes: dict[int, tuple[int, float, Path]]


@contextmanager
def _shared(name: str):
    """One test process at a time (pytest-xdist runs several): for work the processes share."""
    from filelock import FileLock

    TEST_VAR.mkdir(parents=True, exist_ok=True)
    with FileLock(str(TEST_VAR / f"{name}.lock")):
        yield


@pytest.fixture(scope="session")
def manifest() -> Path:
    """The dbt manifest the DAG renders from (what `make run` builds in setup)."""
    with _shared("manifest"):
        if not (AIRFLOW_TEMPLATE / "airflow" / "pool.stamp").exists():
            runtime.setup(make_paths("airflow_template"))
        return runtime.ensure_manifest(make_paths(f"manifest_{os.getpid()}"))


@pytest.fixture(scope="session")
def pipeline_run(manifest: Path, testrun_uid: str) -> PipelineRun:
    """The main job from an empty warehouse: the DAG through Airflow for 2016-2019, run once per test session
    and shared by its test processes (each test copies what it changes)."""
    with _shared("e2e"):
        paths = make_paths("e2e", fresh=False)
        done = paths.var / "pipeline_run.json"
        if done.exists() and json.loads(done.read_text())["session"] == testrun_uid:
            found = json.loads(done.read_text())["outcomes"]
            return PipelineRun(paths, {int(y): (c, s, Path(log)) for y, (c, s, log) in found.items()})
        paths = make_paths("e2e")
        runtime.setup(paths)
        outcomes = runner.run_years(paths, list(WAVE_YEARS))
        done.write_text(
            json.dumps(
                {"session": testrun_uid, "outcomes": {y: [c, s, str(log)] for y, (c, s, log) in outcomes.items()}}
            )
        )
        return PipelineRun(paths, outcomes)


def copy_state(run: PipelineRun, name: str) -> Paths:
    """A separate copy of a finished run's warehouse and published file (with its own Airflow home)."""
    paths = make_paths(name)
    for src, dst in [(run.paths.warehouse, paths.warehouse), (run.paths.published, paths.published)]:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return paths


def with_waves_dir(paths: Paths, waves_dir: Path) -> Paths:
    return replace(paths, waves_config=waves_dir)


def task_states(paths: Paths, year: int) -> dict[str, str]:
    """Final state of every task of the latest DAG run for a wave year, from Airflow's metadata database."""
    import sqlite3

    with sqlite3.connect(paths.var / "airflow" / "airflow.db") as db:
        run_id = db.execute(
            "select run_id from dag_run where dag_id = 'survey_waves' and "
            "strftime('%Y', logical_date) = ? order by id desc limit 1",
            [str(year)],
        ).fetchone()[0]
        return dict(
            db.execute(
                "select task_id, state from task_instance where dag_id = 'survey_waves' and run_id = ?", [run_id]
            ).fetchall()
        )


def published_ranges() -> dict[int, tuple[float, float]]:
    """The survey's published headline per wave as a range a computed share must fall in (the project's seed)."""
    import csv

    with open(PUBLISHED_FIGURES, encoding="utf-8") as f:
        return {
            int(r["wave_year"]): (float(r["share_min_exclusive"]), float(r["share_max_inclusive"]))
            for r in csv.DictReader(f)
        }


MATCHING_CORPUS = ROOT / "tests" / "fixtures" / "matching_corpus.csv"


_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\([tnr])")


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m[1], 16)) if m[1] else {"t": "\t", "n": "\n", "r": "\r"}[m[2]], text)


def matching_corpus() -> list[tuple[str, str, str | None]]:
    """(case, value, expected key); values are written with \\uXXXX, \\t, \\n escapes so the file shows what
    they hold."""
    with open(MATCHING_CORPUS, encoding="utf-8", newline="") as f:
        return [(r["case"], _unescape(r["value"]), r["expected_key"] or None) for r in csv.DictReader(f)]


# ------------------------------------------------------------------------------ helpers of the DAG-run tests


def file_sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def current_loads(paths: Paths) -> dict[int, str]:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return dict(con.execute("select wave_year, load_id from raw.load_registry where is_current").fetchall())


def latest_load(paths: Paths, year: int) -> tuple[str, str]:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return con.execute(
            "select status, status_message from raw.load_registry where wave_year = ? order by loaded_at desc limit 1",
            [year],
        ).fetchone()


def waves_with_file(tmp: Path, year: int, file: Path, **spec_changes) -> Path:
    """A waves folder where one wave's spec points at another file (and may change other keys)."""
    waves = tmp / "waves"
    waves.mkdir(exist_ok=True)
    for y in (2016, 2018, 2019):
        data = yaml.safe_load((ROOT / f"config/waves/{y}.yml").read_text(encoding="utf-8"))
        data["file"] = str(file if y == year else ROOT / data["file"])
        if y == year:
            data.update(spec_changes)
        (waves / f"{y}.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return waves


def copy_with_exports(run: PipelineRun, name: str) -> Paths:
    """copy_state, with the exports the run made (survey_marts_exports)."""
    from survey_warehouse.publishing import exports

    paths = copy_state(run, name)
    shutil.copytree(exports.exports_dir(run.paths), exports.exports_dir(paths), symlinks=True)
    return paths


def export_listing(paths: Paths) -> dict[str, int]:
    """Every file and link under the exports folder, with its modification time."""
    from survey_warehouse.publishing import exports

    root = exports.exports_dir(paths)
    return {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in root.rglob("*")} if root.exists() else {}


def asset_events(paths: Paths) -> list[tuple[str, str, str, dict]]:
    """(source DAG, task, run id, extra) of every event of the asset survey_marts in Airflow's metadata."""
    import sqlite3

    with sqlite3.connect(paths.var / "airflow" / "airflow.db") as db:
        rows = db.execute(
            "select e.source_dag_id, e.source_task_id, e.source_run_id, e.extra from asset_event e "
            "join asset a on a.id = e.asset_id where a.name = 'survey_marts' order by e.id"
        ).fetchall()
    return [(dag, task, run, json.loads(extra or "{}")) for dag, task, run, extra in rows]


def dag_runs(paths: Paths, dag_id: str) -> list[tuple[str, str, str | None]]:
    """(run id, state, logical year) of every run of a DAG in Airflow's metadata."""
    import sqlite3

    with sqlite3.connect(paths.var / "airflow" / "airflow.db") as db:
        return db.execute(
            "select run_id, state, strftime('%Y', logical_date) from dag_run where dag_id = ? order by id", [dag_id]
        ).fetchall()


def lines_2019() -> list[str]:
    spec = yaml.safe_load((ROOT / "config/waves/2019.yml").read_text(encoding="utf-8"))
    return (ROOT / spec["file"]).read_text(encoding="utf-8-sig").splitlines()


def require_services(*services: tuple[str, int]) -> None:
    """Tests that need PostgreSQL or Redis: skipped with a reason on a machine without them, failed in CI."""
    import socket

    for host, port in services:
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as exc:
            reason = f"needs a service at {host}:{port} ({exc})"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason}; CI must provide it")
            pytest.skip(reason)


# `make test` runs the test files two at a time, each file in one process (pytest-xdist, `--dist loadfile
# --no-loadscope-reorder`), in this order: the files that take longest first, the many short ones after them, so
# that neither process is left running a long file alone at the end. The main job's run (the `pipeline_run`
# fixture) is made by the first file that needs it, while the other process starts the Celery stack.
LONGEST_FIRST = (
    "scaleout/test_inbox_celery.py",
    "bi/test_dashboard.py",
    "test_airflow_command.py",
    "test_failed_runs.py",
    "scaleout/test_postgres_warehouse.py",
    "test_idempotency_and_gate.py",
    "test_new_wave.py",
    "test_corrected_redelivery.py",
    "test_removal_guard.py",
    "survey_warehouse/test_load_lifecycle.py",
    "test_gates_can_fail.py",
)


def _file_rank(item: pytest.Item) -> int:
    path = Path(str(item.path)).relative_to(ROOT / "tests").as_posix()
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest test files first (LONGEST_FIRST). Tests that need the main job's run, or start Airflow, Superset
    or Celery, are marked `slow`: `make test-fast` leaves them out (`make test` runs everything)."""
    items.sort(key=_file_rank)  # stable: the order within a file, and of the other files, stays
    for item in items:
        path = str(item.path)
        if "pipeline_run" in getattr(item, "fixturenames", ()) or any(
            part in path for part in ("/scaleout/", "/bi/", "test_large_wave_load")
        ):
            item.add_marker(pytest.mark.slow)


def en_us_database_options() -> str | None:
    """CREATE DATABASE options for a database whose default collation is en-US (ICU, else the C library's
    en_US.UTF-8), or None when the server has neither."""
    import psycopg2

    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with closing(admin), admin.cursor() as cur:
        cur.execute("select 1 from pg_collation where collname = 'en-US-x-icu'")
        if cur.fetchone():
            return "template template0 encoding 'UTF8' locale 'C' locale_provider icu icu_locale 'en-US'"
        cur.execute(
            "select collcollate from pg_collation where collprovider = 'c' and lower(collname) "
            "in ('en_us.utf8', 'en_us.utf-8') order by 1 limit 1"
        )
        row = cur.fetchone()
    return f"template template0 encoding 'UTF8' lc_collate '{row[0]}' lc_ctype '{row[0]}'" if row else None
