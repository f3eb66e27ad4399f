"""The DAG folder parses cleanly, quickly, without touching the warehouse, and wires the steps in order."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT

DAGS = ROOT / "dags"


@pytest.fixture(scope="module")
def dagbag(manifest: Path, monkeypatch_module):
    from airflow.dag_processing.dagbag import DagBag

    def refuse(*args, **kwargs):
        raise AssertionError("parsing the DAG file must not open a database")

    monkeypatch_module.setattr(duckdb, "connect", refuse)
    monkeypatch_module.setenv("SURVEY_WAREHOUSE_PATH", str(ROOT / "var" / "tests" / "parse" / "absent.duckdb"))
    started = time.perf_counter()
    bag = DagBag(dag_folder=str(DAGS))
    bag.parse_seconds = time.perf_counter() - started
    return bag


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_dag_folder_imports_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"survey_waves", "survey_marts_exports", "survey_wave_overdue"}
    assert not (ROOT / "var" / "tests" / "parse" / "absent.duckdb").exists()


def test_parse_time_is_within_airflows_import_timeout(dagbag) -> None:
    from airflow.configuration import conf

    timeout = conf.getfloat("core", "dagbag_import_timeout")
    stats = {Path(s.file).name: s.duration for s in dagbag.dagbag_stats}
    for name in ("survey_waves.py", "survey_marts_exports.py"):
        duration = stats[name]
        seconds = duration.total_seconds() if hasattr(duration, "total_seconds") else float(duration)
        print(
            f"\n{name} parsed in {seconds:.2f} s (whole folder {dagbag.parse_seconds:.2f} s); "
            f"Airflow's import timeout is {timeout:.0f} s"
        )
        assert seconds < timeout


STEPS = (
    "plan_wave",
    "load_raw_wave",
    "validate_raw_wave",
    "accept_raw_wave",
    "build_in_this_run",
    "validate_marts",
    "publish_marts",
    "record_failure",
)


def test_dag_has_the_pipeline_steps_in_order(dagbag) -> None:
    dag = dagbag.dags["survey_waves"]
    ids = set(dag.task_ids)
    for task_id in (*STEPS, "dbt_build.dbt_producer_watcher"):
        assert task_id in ids
    dbt_tasks = {t for t in ids if t.startswith("dbt_build.")}
    for model in (
        "stg_survey__answers",
        "int_city_responsibilities_rolled_up",
        "fct_city_responsibility",
        "fct_responsibility_shares",
        "dim_year",
        "dim_question",
    ):
        assert f"dbt_build.{model}.run" in dbt_tasks and f"dbt_build.{model}.test" in dbt_tasks, model

    def downstream(task_id: str) -> set[str]:
        return dag.get_task(task_id).get_flat_relative_ids(upstream=False)

    producer = "dbt_build.dbt_producer_watcher"
    assert "load_raw_wave" in downstream("plan_wave")
    assert "validate_raw_wave" in downstream("load_raw_wave")
    assert "accept_raw_wave" in downstream("validate_raw_wave")
    assert "build_in_this_run" in downstream("accept_raw_wave")
    assert dbt_tasks | {"validate_marts", "publish_marts", "record_failure"} <= downstream("build_in_this_run"), (
        "a run that leaves its build to a later run skips every step after build_in_this_run"
    )
    assert dag.get_task("build_in_this_run").ignore_downstream_trigger_rules
    assert dag.params["defer_build"] is False
    assert dbt_tasks - {producer} <= downstream(producer), "every node's sensor waits for the one dbt build"
    assert dag.get_task(producer).retries == 0, "a retried producer would skip itself and hide a failed build"
    assert "validate_marts" in downstream(producer)
    assert "publish_marts" in downstream("validate_marts")
    assert dag.get_task("record_failure").trigger_rule == "one_failed"
    assert "publish_marts" not in downstream("record_failure") and not downstream("publish_marts"), (
        "publish_marts stays a leaf, so a failed run ends failed"
    )
    for task_id in (*STEPS, *dbt_tasks):
        assert dag.get_task(task_id).pool == "duckdb_warehouse", task_id


def test_yearly_schedule_and_documentation(dagbag) -> None:
    dag = dagbag.dags["survey_waves"]
    assert dag.doc_md and "2017" in dag.doc_md
    assert dag.max_active_runs == 1 and not dag.catchup
    assert all(dag.get_task(t).doc_md for t in ("plan_wave", "load_raw_wave", "validate_raw_wave", "publish_marts"))


def test_failures_and_publications_notify_the_owner_and_a_daily_check_watches_for_a_late_wave(dagbag) -> None:
    from survey_warehouse.orchestration import notify

    dag = dagbag.dags["survey_waves"]
    record, publish = dag.get_task("record_failure"), dag.get_task("publish_marts")
    assert notify.on_run_failed in record.on_success_callback and notify.on_run_failed in record.on_failure_callback
    assert notify.on_published in publish.on_success_callback
    assert notify.on_run_failed in publish.on_failure_callback
    overdue = dagbag.dags["survey_wave_overdue"]
    assert overdue.max_active_runs == 1 and not overdue.catchup and overdue.doc_md
    assert [t.pool for t in overdue.tasks] == ["duckdb_warehouse"], "it reads the warehouse: one-writer pool"


def test_the_dbt_builds_error_is_kept_for_the_runs_message(dagbag) -> None:
    """The producer (the one `dbt build`) is Cosmos's operator: its failure callback keeps its exception where
    `record_failure` reads every step's error, beside Cosmos's own callback."""
    from survey_warehouse.orchestration.pipeline import PRODUCER_TASK_ID, keep_the_error_of

    producer = dagbag.dags["survey_waves"].get_task(PRODUCER_TASK_ID)
    callbacks = producer.on_failure_callback
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    assert keep_the_error_of in callbacks and len(callbacks) >= 2, callbacks


def test_the_published_marts_are_an_asset_the_exports_dag_is_scheduled_on(dagbag) -> None:
    from survey_warehouse.publishing.assets import SURVEY_MARTS

    producers = {
        (dag.dag_id, t.task_id) for dag in dagbag.dags.values() for t in dag.tasks if SURVEY_MARTS in t.outlets
    }
    assert producers == {("survey_waves", "publish_marts")}, "only publishing updates the published marts"
    exports = dagbag.dags["survey_marts_exports"]
    condition = exports.timetable.asset_condition
    assert list(condition.objects) == [SURVEY_MARTS], "scheduled on the published marts, and on nothing else"
    assert (SURVEY_MARTS.name, SURVEY_MARTS.uri) == ("survey_marts", "x-survey-warehouse://published/marts")
    assert exports.max_active_runs == 1 and not exports.catchup
    assert exports.doc_md and all(exports.get_task(t).doc_md for t in exports.task_ids)
