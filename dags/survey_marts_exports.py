"""
### survey_marts_exports

Runs after every publication of the survey marts (scheduled on the asset `survey_marts`, which `survey_waves`
updates when its `publish_marts` step publishes), not on a clock: exports every published mart as Parquet and CSV
into `var/exports/<publication time>/`, with a `manifest.json` (tables, rows, columns, publication time, loads),
and points `var/exports/latest` at it, for people without a SQL client. It reads only the published marts (the
DuckDB file read-only, or the PostgreSQL schema `marts`). A publication that is exported already is not exported
again; a failed export leaves no folder behind; an export is on disk before `latest` points at it. The exports of the
last `SURVEY_EXPORTS_KEEP` publications (10) are kept, older ones removed, and temporaries left by a killed export are
removed by the next one.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import dag, task

from survey_warehouse.publishing.assets import SURVEY_MARTS


@dag(
    dag_id="survey_marts_exports",
    schedule=[SURVEY_MARTS],
    start_date=pendulum.datetime(2016, 1, 1, tz="Europe/Helsinki"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": int(os.environ.get("SURVEY_TASK_RETRIES", "2")),
        "retry_delay": pendulum.duration(minutes=1),
    },
    doc_md=__doc__,
    tags=["survey", "exports"],
)
def survey_marts_exports() -> None:
    @task(doc_md="Every published mart as Parquet and CSV, with a manifest, into var/exports/<publication time>/.")
    def export_marts(**context: Any) -> dict[str, Any]:
        from survey_warehouse.publishing.exports import export_for_run

        return export_for_run(context)

    export_marts()


survey_marts_exports()
