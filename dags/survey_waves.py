"""
### survey_waves

Loads one wave of the survey of digitalisation leadership in Finland's 20 largest cities per run, and publishes
the marts when every gate passes.

find the wave's file -> load it into raw -> GX gate on the raw wave -> dbt build (Cosmos) -> GX gate on the
marts -> publish the marts file. One run per wave year (the year of the logical date, or the `wave_year` param).
A year without a wave spec in config/waves/ (2017) ends skipped. A failed gate stops the run; the published
marts stay as they were.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import LoadMode, TestBehavior, TestIndirectSelection
from great_expectations_provider.operators.validate_checkpoint import GXValidateCheckpointOperator

from survey_warehouse import pipeline

DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
DBT_TARGET = os.environ.get("SURVEY_DBT_TARGET", "duckdb")  # duckdb (embedded) or postgres (scale-out)
# DuckDB allows one writer: every task that opens it takes the single slot of this pool. PostgreSQL takes many.
WAREHOUSE_POOL = os.environ.get("SURVEY_WAREHOUSE_POOL",
                                "duckdb_warehouse" if DBT_TARGET == "duckdb" else "default_pool")


@dag(
    dag_id="survey_waves",
    schedule="0 6 1 6 *",  # 1 June: the spring field period of a wave has closed
    start_date=pendulum.datetime(2016, 1, 1, tz="Europe/Helsinki"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": int(os.environ.get("SURVEY_TASK_RETRIES", "2")),
                  "retry_delay": pendulum.duration(minutes=5)},
    params={"wave_year": Param(None, type=["null", "integer"], description="Load this wave instead of the "
                                                                            "logical date's year")},
    doc_md=__doc__,
    tags=["survey", "warehouse"],
)
def survey_waves():
    @task(doc_md="Find the wave spec and file for the run's wave year; skip the run when there is no wave.")
    def find_wave_file(**context) -> dict:
        return pipeline.find_wave_file(pipeline.wave_year_of_run(context))

    @task(task_id=pipeline.LOAD_TASK_ID, pool=WAREHOUSE_POOL,
          doc_md="Load the file as delivered into raw (a no-op when it is unchanged).")
    def load_raw_wave(wave: dict) -> dict:
        return pipeline.load_raw_wave(wave["wave_year"])

    validate_raw_wave = GXValidateCheckpointOperator(
        task_id="validate_raw_wave",
        configure_checkpoint=pipeline.raw_wave_checkpoint_for_run,
        context_type="file",
        configure_file_data_context=pipeline.gx_file_context,
        pool=WAREHOUSE_POOL,
        retries=0,
        doc_md="Great Expectations gate on exactly this load (expectations/raw_wave.json).",
    )

    @task(pool=WAREHOUSE_POOL, doc_md="Make the validated load its wave's current load.")
    def promote_raw_wave(loaded: dict) -> str:
        return pipeline.promote_raw_wave(loaded["load_id"])

    @task(pool=WAREHOUSE_POOL, trigger_rule="one_failed", retries=0,
          doc_md="Record why the raw gate rejected the load.")
    def reject_raw_wave(loaded: dict) -> str:
        return pipeline.reject_raw_wave(loaded["load_id"])

    dbt_build = DbtTaskGroup(
        group_id="dbt_build",
        project_config=ProjectConfig(dbt_project_path=DBT_PROJECT,
                                     manifest_path=DBT_PROJECT / "target" / "manifest.json",
                                     install_dbt_deps=False),
        profile_config=ProfileConfig(profile_name="survey_warehouse", target_name=DBT_TARGET,
                                     profiles_yml_filepath=DBT_PROJECT / "profiles.yml"),
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST, test_behavior=TestBehavior.BUILD),
        execution_config=ExecutionConfig(test_indirect_selection=TestIndirectSelection.BUILDABLE),
        operator_args={"pool": WAREHOUSE_POOL},
    )

    validate_marts = GXValidateCheckpointOperator(
        task_id="validate_marts",
        configure_checkpoint=pipeline.marts_checkpoint_for_run,
        context_type="file",
        configure_file_data_context=pipeline.gx_file_context,
        pool=WAREHOUSE_POOL,
        retries=0,
        doc_md="Great Expectations gate on the marts as just built (expectations/marts/).",
    )

    @task(pool=WAREHOUSE_POOL, doc_md="Publish the marts as a new file, atomically replacing the old one.")
    def publish_marts(**context) -> dict:
        return pipeline.publish_marts(context["run_id"])

    loaded = load_raw_wave(find_wave_file())
    loaded >> validate_raw_wave
    validate_raw_wave >> promote_raw_wave(loaded) >> dbt_build >> validate_marts >> publish_marts()
    validate_raw_wave >> reject_raw_wave(loaded)


survey_waves()
