"""
### survey_wave_overdue

Once a day: when this year's survey wave has not been published by its due date (`SURVEY_WAVE_DUE`, 1 July by
default), the wave's owner is told, once (the Variable `survey_wave_overdue_told` remembers it). Published means a
load of the wave is current in the warehouse's load registry, which only a publication makes it. Only a year with a
wave spec (config/waves/<year>.yml) expects a wave: a year without one (2017) is not reminded.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

from survey_warehouse.orchestration import notify
from survey_warehouse.settings import warehouse_pool


@dag(
    dag_id="survey_wave_overdue",
    schedule="0 8 * * *",
    start_date=pendulum.datetime(2016, 1, 1, tz="Europe/Helsinki"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": pendulum.duration(hours=1)},
    doc_md=__doc__,
    tags=["survey", "warehouse"],
)
def survey_wave_overdue() -> None:
    @task(
        pool=warehouse_pool(),
        doc_md="Is this year's wave published? If not, and it is past its due date, tell its owner once.",
    )
    def check_wave_published(**context: Any) -> str:
        return notify.check_overdue(context)

    check_wave_published()


survey_wave_overdue()
