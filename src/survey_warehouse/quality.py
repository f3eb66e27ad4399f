"""Quality gates with Great Expectations: the raw wave before dbt uses it, the marts before they are published.

Suites live as reviewable JSON in expectations/ and are the same on both warehouses. Each validation runs on an
explicit batch, exactly the data being gated (one load of one wave, or the marts as dbt just built them):
- on DuckDB, a Parquet snapshot written under var/quality/batches (GX's SQL path does not work on DuckDB), so that
  a failed gate can be inspected afterwards;
- on PostgreSQL, a query or table asset of GX's SQL datasource, so the checks run inside the database.
Batches hold no personal data: e-mail addresses become opaque references and names are left out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from survey_warehouse.codebook import Codebook, normalise
from survey_warehouse.settings import Paths, get_paths
from survey_warehouse.warehouse import Session, Warehouse, as_warehouse, connect_readonly
from survey_warehouse.waves import WaveSpec

RAW_QUESTION_FIELDS = ("respondent_role", "lead", "cooperation", "it_involvement_stage", "business_digital_skills")
DEV_PSEUDONYM_KEY = "development-only-pseudonym-key"
MART_TABLES = ("dim_city", "dim_year", "dim_responsibility", "fct_city_responsibility", "fct_survey_answers",
               "fct_responsibility_shares", "fct_answer_corrections")


class QualityGateFailed(RuntimeError):
    """A checkpoint failed: the message lists each failed expectation, its column and examples with rows."""


def pseudonym_key() -> str:
    key = os.environ.get("SURVEY_PSEUDONYM_KEY", DEV_PSEUDONYM_KEY)
    if key == DEV_PSEUDONYM_KEY and os.environ.get("SURVEY_ENV", "development") == "production":
        raise RuntimeError("SURVEY_PSEUDONYM_KEY must be set in production (SURVEY_ENV=production)")
    return key


def _normalise(value: Any) -> str | None:
    return None if isinstance(value, float) and pd.isna(value) else normalise(value)


# ---------------------------------------------------------------------------------------------- batches


def raw_wave_frame(warehouse: Path, load_id: str) -> pd.DataFrame:
    """One row per respondent of a load, mapped fields only, labels lower-cased; e-mail as a keyed hash."""
    with connect_readonly(warehouse) as con:
        cells = con.execute(
            "select source_row_number, field_id, cell_value from raw.survey_cells c "
            "where load_id = ? and field_id is not null and not exists (select 1 from raw.quarantine q "
            "where q.load_id = c.load_id and q.source_row_number = c.source_row_number)", [load_id]).df()
    wide = cells.pivot_table(index="source_row_number", columns="field_id", values="cell_value",
                             aggfunc="first", dropna=False)
    rows = sorted(cells["source_row_number"].unique()) if len(cells) else []
    wide = wide.reindex(rows)
    key = pseudonym_key().encode()
    frame = pd.DataFrame({"source_row_number": [int(r) for r in rows]})
    emails = wide["respondent_email"] if "respondent_email" in wide else pd.Series([None] * len(rows), index=rows)
    frame["respondent_ref"] = [
        hmac.new(key, e.encode(), hashlib.sha256).hexdigest() if (e := _normalise(v)) else None for v in emails]
    for column in ("city", *RAW_QUESTION_FIELDS):
        values = wide[column] if column in wide else [None] * len(rows)
        frame[column] = pd.Series([_normalise(v) for v in values], dtype="object")
    return frame


LOAD_ACCOUNTING_SQL = """
select r.load_id, r.wave_year, r.row_count,
    coalesce(a.rows, 0) as accepted_rows,
    coalesce(q.rows, 0) as quarantined_rows,
    cast(coalesce(q.rows, 0) as double precision) / nullif(r.row_count, 0) as quarantined_share,
    coalesce(a.rows, 0) + coalesce(q.rows, 0) as accounted_rows
from raw.load_registry r
left join (select load_id, count(distinct source_row_number) as rows from raw.quarantine group by load_id) q
    on q.load_id = r.load_id
left join ({accepted}) a
    on a.load_id = r.load_id
where {where}
"""


def load_accounting_sql(where: str, accepted: str) -> str:
    """Per load: rows in the file, rows quarantined, and accepted + quarantined (which must equal the rows).

    `accepted` counts the rows the next layer actually holds: distinct rows in raw for the raw gate, respondents
    in staging for the marts gate."""
    return LOAD_ACCOUNTING_SQL.format(where=where, accepted=accepted)


RAW_ACCEPTED_SQL = ("select c.load_id, count(distinct c.source_row_number) as rows from raw.survey_cells c "
                    "where not exists (select 1 from raw.quarantine q where q.load_id = c.load_id "
                    "and q.source_row_number = c.source_row_number) group by c.load_id")
STAGING_ACCEPTED_SQL = "select load_id, count(*) as rows from staging.stg_survey__respondents group by load_id"


def max_quarantined_share() -> float:
    """Above this share of quarantined rows the raw gate fails the load (SURVEY_MAX_QUARANTINED_SHARE)."""
    return float(os.environ.get("SURVEY_MAX_QUARANTINED_SHARE", "0.05"))


def quarantine_summary(target: Warehouse | Path, load_id: str, limit: int = 10) -> str:
    """The quarantined rows of a load, by reason, with the first messages: for the rejection message."""
    with Session(as_warehouse(target), read_only=True) as session:
        rows, quarantined = session.execute("select row_count, quarantined_count from raw.load_registry "
                                            "where load_id = ?", [load_id]).fetchone()
        reasons = session.execute("select reason_code, count(distinct source_row_number) from raw.quarantine "
                                  "where load_id = ? group by reason_code order by 2 desc", [load_id]).fetchall()
        messages = [r[0] for r in session.execute(
            "select message from raw.quarantine where load_id = ? order by source_row_number limit ?",
            [load_id, limit]).fetchall()]
    if not reasons:
        return f"all {rows} rows accepted, none quarantined"
    share = quarantined / rows if rows else 0
    lines = [f"{quarantined} of {rows} rows ({share:.1%}) quarantined (at most {max_quarantined_share():.0%} "
             "may be): " + ", ".join(f"{reason} {n}" for reason, n in reasons)]
    lines += [f"  {m}" for m in messages]
    return "\n".join(lines)


def raw_wave_parameters(spec: WaveSpec, paths: Paths) -> dict[str, Any]:
    codebook = Codebook.from_seeds(paths.dbt_project / "seeds")
    surveyed = len(spec.cities_surveyed)
    return {
        "max_quarantined_share": max_quarantined_share(),
        "min_rows": surveyed // 2,
        "max_rows": surveyed * 10,
        "known_city_names": sorted(codebook.city_aliases),
        **{f"{q}_labels": sorted(codebook.labels_for(spec.wave_year, q) or ()) for q in RAW_QUESTION_FIELDS},
    }


def marts_frames(warehouse: Path) -> dict[str, pd.DataFrame]:
    """The marts as dbt built them, plus the two derived batches the marts suites need."""
    with connect_readonly(warehouse) as con:
        frames = {t: con.execute(f'select * from marts."{t}"').df() for t in MART_TABLES}
    shares = frames["fct_responsibility_shares"]
    frames["responsibility_share_totals"] = (
        shares.groupby("wave_year", as_index=False)["share"].sum().rename(columns={"share": "total_share"}))
    text_values = []
    for table, frame in frames.items():
        for column in frame.columns:
            if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
                values = frame[column].dropna().astype(str).unique()
                text_values.append(pd.DataFrame({"table_name": table, "column_name": column, "value": values}))
            else:
                text_values.append(pd.DataFrame({"table_name": [table], "column_name": [column], "value": [""]}))
    frames["marts_text_values"] = pd.concat(text_values, ignore_index=True)
    with connect_readonly(warehouse) as con:
        frames["load_reconciliation"] = con.execute(
            load_accounting_sql("r.is_current", STAGING_ACCEPTED_SQL)).df()
    return frames


def marts_parameters(target: Warehouse | Path) -> dict[str, Any]:
    with Session(as_warehouse(target), read_only=True) as session:
        surveyed, waves = session.execute(
            "select count(*), count(distinct c.wave_year) from raw.wave_cities_surveyed c "
            "join raw.load_registry r on r.load_id = c.load_id where r.is_current").fetchone()
    return {"surveyed_city_waves": int(surveyed), "waves": int(waves)}


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def raw_wave_query(load_id: str) -> str:
    """The raw wave as one row per respondent, computed inside PostgreSQL (same columns as raw_wave_frame)."""
    def field(name: str) -> str:
        return f"lower(trim(max(case when field_id = {_sql_literal(name)} then cell_value end)))"

    email = field("respondent_email")
    columns = ",\n    ".join(f"{field(f)} as {f}" for f in ("city", *RAW_QUESTION_FIELDS))
    # an opaque reference: equal for equal addresses, and it reveals nothing about them
    return (f"select source_row_number,\n"
            f"    case when {email} is not null then dense_rank() over (order by {email}) end as respondent_ref,\n"
            f"    {columns}\n"
            f"from raw.survey_cells c\nwhere load_id = {_sql_literal(load_id)} and field_id is not null\n"
            f"and not exists (select 1 from raw.quarantine q where q.load_id = c.load_id\n"
            f"    and q.source_row_number = c.source_row_number)\n"
            f"group by source_row_number")


def marts_queries(warehouse: Warehouse) -> dict[str, str]:
    """The two derived mart batches as SQL over the schema the marts were just built in."""
    schema = warehouse.marts_build_schema
    with Session(warehouse, read_only=True) as session:
        columns = session.execute(
            "select table_name, column_name, data_type from information_schema.columns where table_schema = ? "
            "order by table_name, ordinal_position", [schema]).fetchall()
    parts = []
    for table, column, data_type in columns:
        if table not in MART_TABLES:
            continue
        value = f'cast("{column}" as varchar)' if data_type in ("character varying", "text") else "''"
        parts.append(f"select distinct {_sql_literal(table)} as table_name, {_sql_literal(column)} as column_name, "
                     f'{value} as value from "{schema}"."{table}"')
    return {
        "load_reconciliation": load_accounting_sql("r.is_current", STAGING_ACCEPTED_SQL),
        "responsibility_share_totals": f'select wave_year, sum(share) as total_share from "{schema}".'
                                       '"fct_responsibility_shares" group by wave_year',
        "marts_text_values": "\nunion all\n".join(parts),
    }


def write_snapshot(frame: pd.DataFrame, paths: Paths, dataset: str, batch_name: str) -> Path:
    path = paths.var / "quality" / "batches" / dataset / f"{batch_name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


# ---------------------------------------------------------------------------------------------- suites


def _resolve(node: Any, parameters: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"$PARAMETER"}:
            name = node["$PARAMETER"]
            if name not in parameters:
                raise KeyError(f"suite parameter {name!r} has no value")
            return parameters[name]
        return {k: _resolve(v, parameters) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, parameters) for v in node]
    return node


def load_suite(path: Path, parameters: dict[str, Any] | None = None):
    import great_expectations as gx

    data = json.loads(path.read_text(encoding="utf-8"))
    return gx.ExpectationSuite(**_resolve(data, parameters or {}))


# ---------------------------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class Failure:
    suite: str
    expectation: str
    column: str | None
    unexpected_count: int | None
    examples: list[Any]
    rows: list[Any]

    def describe(self) -> str:
        text = f"{self.suite}: {self.expectation}" + (f" on column {self.column!r}" if self.column else "")
        if self.unexpected_count:
            text += f": {self.unexpected_count} unexpected value(s)"
        if self.examples:
            shown = ", ".join(
                f"{v!r} (row {r})" if r is not None else repr(v)
                for v, r in zip(self.examples[:5], (self.rows + [None] * 5)[:5], strict=False))
            text += f", e.g. {shown}"
        return text


def _failures(checkpoint_result: Any) -> tuple[bool, int, list[Failure]]:
    failures: list[Failure] = []
    evaluated = 0
    for validation in checkpoint_result.run_results.values():
        suite = validation.suite_name
        for r in validation.results:
            evaluated += 1
            if r.success:
                continue
            cfg = r.expectation_config
            result = r.result or {}
            rows = [i.get("source_row_number") if isinstance(i, dict) else i
                    for i in (result.get("partial_unexpected_index_list") or [])]
            examples = result.get("partial_unexpected_list") or []
            if not examples and "observed_value" in result:
                examples = [result["observed_value"]]
            error = (r.exception_info or {}).get("exception_message") if isinstance(r.exception_info, dict) else None
            if error:
                examples = [f"could not be evaluated: {error}"]
            failures.append(Failure(suite, cfg.type, cfg.kwargs.get("column"), result.get("unexpected_count"),
                                    list(examples)[:10], rows[:10]))
    return bool(checkpoint_result.success), evaluated, failures


@dataclass(frozen=True)
class GateReport:
    gate: str
    batch: str
    success: bool
    evaluated: int
    failures: list[Failure]

    def message(self) -> str:
        head = f"{self.gate} gate on {self.batch}: " + (
            f"passed ({self.evaluated} expectations)" if self.success
            else f"FAILED ({len(self.failures)} of {self.evaluated} expectations)")
        return "\n".join([head, *(f"  - {f.describe()}" for f in self.failures)])

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"gate": self.gate, "batch": self.batch, "success": self.success, "evaluated": self.evaluated,
                "failures": [f.__dict__ for f in self.failures], "message": self.message()}
        path.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> GateReport:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["gate"], data["batch"], data["success"], data["evaluated"],
                   [Failure(**f) for f in data["failures"]])


def report_path(paths: Paths, gate: str, batch: str) -> Path:
    return paths.var / "quality" / "reports" / gate / f"{batch}.json"


def _record_action_class():
    """A checkpoint action that writes the gate report (a readable list of failures) next to the snapshots."""
    from great_expectations.checkpoint.actions import ValidationAction

    class RecordGateReport(ValidationAction):
        type: Literal["survey_record_gate_report"] = "survey_record_gate_report"
        gate: str
        batch: str
        report_file: str

        def run(self, checkpoint_result, action_context=None) -> dict:
            success, evaluated, failures = _failures(checkpoint_result)
            GateReport(self.gate, self.batch, success, evaluated, failures).write(Path(self.report_file))
            return {"report_file": self.report_file}

    return RecordGateReport


_RECORD_ACTION = None


def record_action(**kwargs: Any):
    global _RECORD_ACTION
    if _RECORD_ACTION is None:
        _RECORD_ACTION = _record_action_class()
    return _RECORD_ACTION(**kwargs)


# ---------------------------------------------------------------------------------------------- checkpoints


def _parquet_batch(gx_context: Any, gate: str, dataset: str, snapshot: Path, batch: str):
    source = gx_context.data_sources.add_or_update_pandas_filesystem(
        name=f"{gate}_{dataset}", base_directory=snapshot.parent)
    asset = source.add_parquet_asset(name=dataset)
    return asset.add_batch_definition_path(name=batch, path=snapshot.name)


def _postgres_source(gx_context: Any, warehouse: Warehouse):
    return gx_context.data_sources.add_or_update_postgres(
        name="survey_warehouse_postgres", connection_string=warehouse.sqlalchemy_url)


def _sql_batch(source: Any, warehouse: Warehouse, dataset: str, batch: str, query: str | None = None,
               table: str | None = None):
    if dataset in source.get_asset_names():
        source.delete_asset(dataset)
    asset = (source.add_query_asset(name=dataset, query=query) if query is not None
             else source.add_table_asset(name=dataset, table_name=table, schema_name=warehouse.marts_build_schema))
    return asset.add_batch_definition_whole_table(name=batch)


def build_checkpoint(gx_context: Any, gate: str, batch: str, batches: list[tuple[str, Any, Any]],
                     paths: Paths, result_format: dict[str, Any]):
    """Batch -> ValidationDefinition -> Checkpoint, with Data Docs and the gate report as actions."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx_context.variables.progress_bars = ProgressBarsConfig(globally=False)
    paths.data_docs.mkdir(parents=True, exist_ok=True)
    site = "survey_data_docs"
    if site not in (gx_context.get_config().data_docs_sites or {}):
        gx_context.add_data_docs_site(site_name=site, site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(paths.data_docs)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    definitions = []
    for dataset, batch_definition, suite in batches:
        suite = gx_context.suites.add_or_update(suite)
        definitions.append(gx_context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{gate}_{dataset}_{batch}", data=batch_definition, suite=suite)))
    return gx_context.checkpoints.add_or_update(gx.Checkpoint(
        name=f"{gate}_{batch}",
        validation_definitions=definitions,
        actions=[
            UpdateDataDocsAction(name="update_data_docs", site_names=[site]),
            record_action(name="record_gate_report", gate=gate, batch=batch,
                          report_file=str(report_path(paths, gate, batch))),
        ],
        result_format=result_format,
    ))


def raw_wave_checkpoint(gx_context: Any, spec: WaveSpec, load_id: str, paths: Paths | None = None,
                        warehouse: Warehouse | None = None):
    """The checkpoint for one load of one wave, with the suite's parameters filled in for that wave."""
    paths = paths or get_paths()
    warehouse = warehouse or Warehouse.from_env(paths.warehouse)
    accounting = load_accounting_sql(f"r.load_id = {_sql_literal(load_id)}", RAW_ACCEPTED_SQL)
    if warehouse.backend == "postgres":
        source = _postgres_source(gx_context, warehouse)
        wave_batch = _sql_batch(source, warehouse, "raw_wave", load_id, query=raw_wave_query(load_id))
        load_batch = _sql_batch(source, warehouse, "raw_load", load_id, query=accounting)
    else:
        snapshot = write_snapshot(raw_wave_frame(paths.warehouse, load_id), paths, "raw_wave", load_id)
        wave_batch = _parquet_batch(gx_context, "raw_wave", "raw_wave", snapshot, load_id)
        with connect_readonly(paths.warehouse) as con:
            snapshot = write_snapshot(con.execute(accounting).df(), paths, "raw_load", load_id)
        load_batch = _parquet_batch(gx_context, "raw_wave", "raw_load", snapshot, load_id)
    parameters = raw_wave_parameters(spec, paths)
    suites = [("raw_load", load_batch, load_suite(paths.root / "expectations" / "raw_load.json", parameters)),
              ("raw_wave", wave_batch, load_suite(paths.root / "expectations" / "raw_wave.json", parameters))]
    return build_checkpoint(gx_context, "raw_wave", load_id, suites, paths,
                            # rows are named by the quarantine; the batches share no index column to name them by
                            {"result_format": "COMPLETE", "partial_unexpected_count": 10})


def marts_checkpoint(gx_context: Any, batch: str, paths: Paths | None = None, warehouse: Warehouse | None = None):
    """The checkpoint for the marts as just built: one validation per mart suite in expectations/marts/."""
    paths = paths or get_paths()
    warehouse = warehouse or Warehouse.from_env(paths.warehouse)
    parameters = marts_parameters(warehouse)
    if warehouse.backend == "postgres":
        queries = marts_queries(warehouse)
        source = _postgres_source(gx_context, warehouse)
    else:
        frames = marts_frames(paths.warehouse)
    batches = []
    for suite_file in sorted((paths.root / "expectations" / "marts").glob("*.json")):
        dataset = suite_file.stem
        if warehouse.backend == "postgres":
            batch_definition = _sql_batch(source, warehouse, dataset, batch, query=queries.get(dataset),
                                          table=None if dataset in queries else dataset)
        else:
            snapshot = write_snapshot(frames[dataset], paths, dataset, batch)
            batch_definition = _parquet_batch(gx_context, "marts", dataset, snapshot, batch)
        batches.append((dataset, batch_definition, load_suite(suite_file, parameters)))
    return build_checkpoint(gx_context, "marts", batch, batches, paths,
                            {"result_format": "SUMMARY", "partial_unexpected_count": 10})


def run_gate(checkpoint: Any, paths: Paths | None = None) -> GateReport:
    """Run a checkpoint outside Airflow and return its report; raise QualityGateFailed when it fails."""
    checkpoint.run()
    action = next(a for a in checkpoint.actions if a.name == "record_gate_report")
    report = GateReport.read(Path(action.report_file))
    if not report.success:
        raise QualityGateFailed(report.message())
    return report


def file_context(paths: Paths | None = None):
    """A GX file context under var/gx: validation results accumulate, so Data Docs show every gate run."""
    import great_expectations as gx

    paths = paths or get_paths()
    root = paths.var / "gx"
    root.mkdir(parents=True, exist_ok=True)
    return gx.get_context(mode="file", project_root_dir=str(root))
