"""The steps of the survey_waves DAG as plain functions; dags/survey_waves.py only wires them together."""

from __future__ import annotations

import logging
import re
from typing import Any

from survey_warehouse import load, quality
from survey_warehouse.settings import get_paths
from survey_warehouse.warehouse import Warehouse
from survey_warehouse.waves import find_wave_spec

log = logging.getLogger(__name__)

LOAD_TASK_ID = "load_raw_wave"


def wave_year_of_run(context: Any) -> int:
    """The wave a run is for: the `wave_year` param when given, else the year of the run's logical date."""
    year = (context.get("params") or {}).get("wave_year")
    return int(year) if year else int(context["logical_date"].year)


def find_wave_file(wave_year: int) -> dict[str, Any]:
    """The wave's spec and file; a year without a wave spec was not surveyed and ends skipped."""
    from airflow.sdk.exceptions import AirflowSkipException

    paths = get_paths()
    spec = find_wave_spec(wave_year, paths)
    if spec is None:
        raise AirflowSkipException(
            f"No survey wave in {wave_year}: there is no {paths.waves_config / f'{wave_year}.yml'}")
    if not spec.file.exists():
        raise FileNotFoundError(f"Wave {wave_year} is configured but its file has not arrived: {spec.file}")
    return {"wave_year": wave_year, "file": str(spec.file), "format": spec.format}


def load_raw_wave(wave_year: int) -> dict[str, Any]:
    paths = get_paths()
    result = load.load_wave(find_wave_spec(wave_year, paths), Warehouse.from_env(paths.warehouse))
    log.info(result.describe())
    return {"load_id": result.load_id, "rows": result.row_count, "unchanged": result.unchanged,
            "message": result.describe()}


def _current_load_id(context: Any) -> str:
    return context["ti"].xcom_pull(task_ids=LOAD_TASK_ID)["load_id"]


def raw_wave_checkpoint_for_run(gx_context: Any):
    """configure_checkpoint for the GX operator: the checkpoint of exactly the load this run made."""
    from airflow.sdk import get_current_context

    context = get_current_context()
    paths = get_paths()
    spec = find_wave_spec(wave_year_of_run(context), paths)
    return quality.raw_wave_checkpoint(gx_context, spec, _current_load_id(context), paths)


def marts_checkpoint_for_run(gx_context: Any):
    """configure_checkpoint for the GX operator: the marts as this run built them."""
    from airflow.sdk import get_current_context

    context = get_current_context()
    batch = f"{wave_year_of_run(context)}_{re.sub(r'[^A-Za-z0-9_.-]', '_', context['run_id'])}"
    return quality.marts_checkpoint(gx_context, batch, get_paths())


def promote_raw_wave(load_id: str) -> str:
    """The load passed its gate: it becomes its wave's current load (the previous one is superseded)."""
    paths = get_paths()
    warehouse = Warehouse.from_env(paths.warehouse)
    report = quality.GateReport.read(quality.report_path(paths, "raw_wave", load_id))
    message = f"{report.message()}\n{quality.quarantine_summary(warehouse, load_id)}"
    load.mark_load(warehouse, load_id, passed=True, message=message)
    return message


def reject_raw_wave(load_id: str) -> str:
    """The load failed its gate: record why. dbt does not run, the published marts stay as they were."""
    paths = get_paths()
    warehouse = Warehouse.from_env(paths.warehouse)
    path = quality.report_path(paths, "raw_wave", load_id)
    message = (quality.GateReport.read(path).message() if path.exists()
               else "validation did not complete; see the validate_raw_wave task log")
    message = f"{message}\n{quality.quarantine_summary(warehouse, load_id)}"
    load.mark_load(warehouse, load_id, passed=False, message=message)
    log.error("Wave load %s rejected:\n%s", load_id, message)
    return message


def gx_file_context():
    """configure_file_data_context for the GX operators: results kept under var/gx, Data Docs in var/data_docs."""
    return quality.file_context(get_paths())


def publish_marts(run_id: str) -> dict[str, Any]:
    from survey_warehouse.publish import publish

    paths = get_paths()
    publication = publish(Warehouse.from_env(paths.warehouse), paths.published, run_id)
    log.info("Published %s to %s", publication.tables, publication.path)
    return {"path": str(publication.path), "tables": publication.tables, "load_ids": publication.load_ids,
            "published_at": publication.published_at.isoformat()}
