"""Batch -> ValidationDefinition -> Checkpoint for each gate, on either warehouse, and running them.

Each validation runs on an explicit batch: exactly one load of one wave for the raw gate, the marts as dbt just
built them for the marts gate; never "the latest".
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from survey_warehouse.errors import QualityGateFailed, SuiteError
from survey_warehouse.intake.codebook import Codebook
from survey_warehouse.intake.waves import WaveSpec
from survey_warehouse.quality import batches
from survey_warehouse.quality.reports import GateReport, record_action, report_path
from survey_warehouse.quality.suites import load_suite
from survey_warehouse.settings import Paths, get_paths
from survey_warehouse.warehouse import Warehouse

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
    connection_string = warehouse.gx_connection_string()  # a ${VAR} reference: GX never writes the password
    try:
        source = gx_context.data_sources.get(name)
        if str(source.connection_string) == connection_string:
            return source
    except (KeyError, ValueError, LookupError):
        pass
    return gx_context.data_sources.add_or_update_postgres(name=name, connection_string=connection_string)


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
) -> tuple[Any, list[str]]:
    """The batch of a query (or a mart table) on whichever warehouse is configured, and its columns."""
    sql = query if query is not None else f'select * from "{warehouse.marts_build_schema}"."{table}"'
    if warehouse.backend == "postgres":
        definition = _sql_batch(_postgres_source(gx_context, warehouse), warehouse, dataset, batch, query, table)
        return definition, batches.query_columns(warehouse, sql)
    frame = batches.duckdb_frame(paths.warehouse, sql)
    snapshot = batches.write_snapshot(frame, paths, dataset, batch)
    return _parquet_batch(gx_context, gate, dataset, snapshot, batch), [str(c) for c in frame.columns]


def _data_docs_action_class() -> type:
    from great_expectations.checkpoint.actions import DataDocsAction
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    class UpdateDataDocsOnce(DataDocsAction):
        """Data Docs for every validation of a checkpoint run, built once. (Great Expectations'
        UpdateDataDocsAction builds the site again for each validation, which took five times as long for the
        marts' dozen suites.)"""

        type: Literal["survey_update_data_docs"] = "survey_update_data_docs"
        site_names: list[str]

        def run(self, checkpoint_result: Any, action_context: Any = None) -> dict:
            identifiers: list[Any] = []
            for identifier, result in checkpoint_result.run_results.items():
                identifiers += [identifier, ExpectationSuiteIdentifier(name=result.suite_name)]
            self._build_data_docs(site_names=self.site_names, resource_identifiers=identifiers)
            return {}

    return UpdateDataDocsOnce


@functools.cache
def _data_docs_action_type() -> type:
    """The action class, made once (GX registers action types by name)."""
    return _data_docs_action_class()


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
    expected = {}
    for dataset, batch_definition, suite in validations:
        expected[suite.name] = len(suite.expectations)
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
                _data_docs_action_type()(name="update_data_docs", site_names=[DATA_DOCS_SITE]),
                record_action(
                    name="record_gate_report",
                    gate=gate,
                    batch=batch,
                    report_file=str(report_path(paths, gate, batch)),
                    expected=expected,
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
    load_batch, load_columns = _batch(
        gx_context, warehouse, paths, "raw_wave", "raw_load", load_id, query=batches.raw_load_query(load_id)
    )
    wave_batch, wave_columns = _batch(
        gx_context,
        warehouse,
        paths,
        "raw_wave",
        "raw_wave",
        load_id,
        query=batches.raw_wave_query(spec, codebook, load_id),
    )
    validations = [
        ("raw_load", load_batch, load_suite(suites / "raw_load.json", parameters, columns=load_columns)),
        ("raw_wave", wave_batch, load_suite(suites / "raw_wave.json", parameters, questions, columns=wave_columns)),
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
    parameters = batches.marts_parameters(warehouse, paths.dbt_project)
    tables = batches.mart_tables(warehouse, dbt_project=paths.dbt_project)
    queries = batches.marts_queries(warehouse, tables)
    suite_files = sorted((paths.root / "expectations" / "marts").glob("*.json"))
    without = sorted(set(tables) - {f.stem for f in suite_files})
    if without:
        raise SuiteError(
            f"the marts {', '.join(without)} have no suite in expectations/marts/ (<mart>.json): every mart is "
            "gated, at least by its row count"
        )
    validations = []
    for suite_file in suite_files:
        dataset = suite_file.stem
        query = queries.get(dataset)
        batch_definition, columns = _batch(
            gx_context,
            warehouse,
            paths,
            "marts",
            dataset,
            batch,
            query=query,
            table=None if query is not None else dataset,
        )
        validations.append((dataset, batch_definition, load_suite(suite_file, parameters, columns=columns)))
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
