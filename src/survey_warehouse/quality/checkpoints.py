"""Batch -> ValidationDefinition -> Checkpoint for each gate, on either warehouse, and running them.

Each validation runs on an explicit batch: exactly one load of one wave for the raw gate, the marts as dbt just
built them for the marts gate; never "the latest".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from survey_warehouse.codebook import Codebook
from survey_warehouse.errors import QualityGateFailed
from survey_warehouse.quality import batches
from survey_warehouse.quality.reports import GateReport, record_action, report_path
from survey_warehouse.quality.suites import load_suite
from survey_warehouse.settings import Paths, get_paths
from survey_warehouse.warehouse import Warehouse
from survey_warehouse.waves import WaveSpec

DATA_DOCS_SITE = "survey_data_docs"


def file_context(paths: Paths | None = None) -> Any:
    """A GX file context under var/gx: validation results accumulate, so Data Docs show every gate run."""
    import great_expectations as gx

    paths = paths or get_paths()
    root = paths.var / "gx"
    root.mkdir(parents=True, exist_ok=True)
    return gx.get_context(mode="file", project_root_dir=str(root))


def _parquet_batch(gx_context: Any, gate: str, dataset: str, snapshot: Path, batch: str) -> Any:
    source = gx_context.data_sources.add_or_update_pandas_filesystem(
        name=f"{gate}_{dataset}", base_directory=snapshot.parent
    )
    asset = source.add_parquet_asset(name=dataset)
    return asset.add_batch_definition_path(name=batch, path=snapshot.name)


def _postgres_source(gx_context: Any, warehouse: Warehouse) -> Any:
    """The warehouse as GX's SQL datasource; kept (with its assets) while it points at the same database."""
    name = "survey_warehouse_postgres"
    try:
        source = gx_context.data_sources.get(name)
        if str(source.connection_string) == warehouse.sqlalchemy_url:
            return source
    except (KeyError, ValueError, LookupError):
        pass
    return gx_context.data_sources.add_or_update_postgres(name=name, connection_string=warehouse.sqlalchemy_url)


def _sql_batch(
    source: Any, warehouse: Warehouse, dataset: str, batch: str, query: str | None = None, table: str | None = None
) -> Any:
    if dataset in source.get_asset_names():
        source.delete_asset(dataset)
    asset = (
        source.add_query_asset(name=dataset, query=batches.as_select(query))
        if query is not None
        else source.add_table_asset(name=dataset, table_name=table, schema_name=warehouse.marts_build_schema)
    )
    return asset.add_batch_definition_whole_table(name=batch)


def _batch(
    gx_context: Any,
    warehouse: Warehouse,
    paths: Paths,
    gate: str,
    dataset: str,
    batch: str,
    query: str | None = None,
    table: str | None = None,
) -> Any:
    """The batch of a query (or a mart table) on whichever warehouse is configured."""
    if warehouse.backend == "postgres":
        return _sql_batch(_postgres_source(gx_context, warehouse), warehouse, dataset, batch, query, table)
    sql = query if query is not None else f'select * from "{warehouse.marts_build_schema}"."{table}"'
    snapshot = batches.write_snapshot(batches.duckdb_frame(paths.warehouse, sql), paths, dataset, batch)
    return _parquet_batch(gx_context, gate, dataset, snapshot, batch)


def build_checkpoint(
    gx_context: Any,
    gate: str,
    batch: str,
    validations: list[tuple[str, Any, Any]],
    paths: Paths,
    result_format: dict[str, Any],
) -> Any:
    """Batch -> ValidationDefinition -> Checkpoint, with Data Docs and the gate report as actions."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx_context.variables.progress_bars = ProgressBarsConfig(globally=False)
    paths.data_docs.mkdir(parents=True, exist_ok=True)
    if DATA_DOCS_SITE not in (gx_context.get_config().data_docs_sites or {}):
        gx_context.add_data_docs_site(
            site_name=DATA_DOCS_SITE,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(paths.data_docs)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    definitions = []
    for dataset, batch_definition, suite in validations:
        stored = gx_context.suites.add_or_update(suite)
        definitions.append(
            gx_context.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=f"{gate}_{dataset}_{batch}", data=batch_definition, suite=stored)
            )
        )
    return gx_context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"{gate}_{batch}",
            validation_definitions=definitions,
            actions=[
                UpdateDataDocsAction(name="update_data_docs", site_names=[DATA_DOCS_SITE]),
                record_action(
                    name="record_gate_report", gate=gate, batch=batch, report_file=str(report_path(paths, gate, batch))
                ),
            ],
            result_format=result_format,
        )
    )


def raw_wave_checkpoint(
    gx_context: Any,
    spec: WaveSpec,
    load_id: str,
    paths: Paths | None = None,
    warehouse: Warehouse | None = None,
    codebook: Codebook | None = None,
) -> Any:
    """The checkpoint for one load of one wave, its suites filled in from the wave spec and the codebook."""
    paths = paths or get_paths()
    warehouse = warehouse or Warehouse.from_env(paths.warehouse)
    codebook = codebook or Codebook.from_seeds(paths.dbt_project / "seeds")
    parameters = batches.raw_wave_parameters(spec, codebook)
    questions = batches.question_parameters(spec, codebook)
    suites = paths.root / "expectations"
    validations = [
        (
            "raw_load",
            _batch(
                gx_context, warehouse, paths, "raw_wave", "raw_load", load_id, query=batches.raw_load_query(load_id)
            ),
            load_suite(suites / "raw_load.json", parameters),
        ),
        (
            "raw_wave",
            _batch(
                gx_context,
                warehouse,
                paths,
                "raw_wave",
                "raw_wave",
                load_id,
                query=batches.raw_wave_query(spec, codebook, load_id),
            ),
            load_suite(suites / "raw_wave.json", parameters, questions),
        ),
    ]
    return build_checkpoint(
        gx_context,
        "raw_wave",
        load_id,
        validations,
        paths,
        {
            "result_format": "COMPLETE",
            "unexpected_index_column_names": ["source_row_number"],
            "partial_unexpected_count": 10,
        },
    )


def marts_checkpoint(
    gx_context: Any, batch: str, paths: Paths | None = None, warehouse: Warehouse | None = None
) -> Any:
    """The checkpoint for the marts as just built: one validation per mart suite in expectations/marts/."""
    paths = paths or get_paths()
    warehouse = warehouse or Warehouse.from_env(paths.warehouse)
    parameters = batches.marts_parameters(warehouse)
    queries = batches.marts_queries(warehouse, batches.mart_tables(warehouse))
    validations = []
    for suite_file in sorted((paths.root / "expectations" / "marts").glob("*.json")):
        dataset = suite_file.stem
        query = queries.get(dataset)
        batch_definition = _batch(
            gx_context,
            warehouse,
            paths,
            "marts",
            dataset,
            batch,
            query=query,
            table=None if query is not None else dataset,
        )
        validations.append((dataset, batch_definition, load_suite(suite_file, parameters)))
    return build_checkpoint(
        gx_context, "marts", batch, validations, paths, {"result_format": "SUMMARY", "partial_unexpected_count": 10}
    )


def run_gate(checkpoint: Any, paths: Paths | None = None) -> GateReport:
    """Run a checkpoint outside Airflow and return its report; raise QualityGateFailed when it fails."""
    checkpoint.run()
    action = next(a for a in checkpoint.actions if a.name == "record_gate_report")
    report = GateReport.read(Path(action.report_file))
    if not report.success:
        raise QualityGateFailed(report.message())
    return report
