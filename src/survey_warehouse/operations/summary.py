"""The summary printed after a run: per wave what was loaded and gated, the headline beside the published one.

It reads the warehouse that is configured (the DuckDB file, or PostgreSQL) and says which one, so its figures
always come from the marts the run wrote.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import duckdb

from survey_warehouse import quality
from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.operations import faults
from survey_warehouse.publishing.exports import exports_dir, latest_export
from survey_warehouse.publishing.publish import read_publication
from survey_warehouse.settings import Paths
from survey_warehouse.warehouse import Session, Warehouse

EXAMPLE_QUERY = """\
select y.wave_year, r.responsibility_label_en, s.cities, s.cities_responded, s.cities_surveyed,
       round(100 * s.share, 1) as share_pct,
       round(100 * s.share_of_surveyed_min, 1) as of_all_min_pct,
       round(100 * s.share_of_surveyed_max, 1) as of_all_max_pct
from marts.fct_responsibility_shares s
join marts.dim_responsibility r using (responsibility_code)
join marts.dim_year y using (wave_year)
where s.cities > 0
order by y.wave_year, s.share desc;"""

HEADLINE_QUERY = """
select y.wave_year, s.cities, s.cities_responded, s.cities_surveyed, s.share, s.share_of_surveyed_min,
       s.share_of_surveyed_max, s.share_ci_lower_95, s.share_ci_upper_95, y.published_it_led_statement_en,
       y.published_it_led_share_min_exclusive, y.published_it_led_share_max_inclusive
from {schema}.fct_responsibility_shares s join {schema}.dim_year y using (wave_year)
where s.is_it_management order by 1"""


def _first_lines(text: str | None, n: int = 3, width: int = 110) -> list[str]:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return [line if len(line) <= width else line[: width - 1] + "…" for line in lines[:n]]


def describe_warehouse(warehouse: Warehouse, paths: Paths) -> str:
    if warehouse.backend == "postgres":
        return f"PostgreSQL {warehouse.host}:{warehouse.port}/{warehouse.dbname} (schema {warehouse.marts_schema})"
    return f"DuckDB {paths.shown(warehouse.file)} (published file {paths.shown(paths.published)})"


def _warehouse_exists(warehouse: Warehouse) -> bool:
    if warehouse.backend == "duckdb":
        return warehouse.path is not None and warehouse.path.exists()
    try:
        with Session(warehouse, read_only=True) as session:
            return (
                session.execute(
                    "select 1 from information_schema.tables where table_schema = 'raw' and "
                    "table_name = 'load_registry'"
                ).fetchone()
                is not None
            )
    except Exception:
        return False


def _loads(warehouse: Warehouse) -> list[tuple]:
    with Session(warehouse, read_only=True) as session:
        return session.execute(
            "select wave_year, load_id, file_name, row_count, status, accepted_count, quarantined_count, is_current, "
            "warnings, status_message, loaded_at from raw.load_registry order by wave_year, loaded_at"
        ).fetchall()


def _headline(warehouse: Warehouse, paths: Paths) -> list[tuple]:
    if warehouse.backend == "postgres":
        with Session(warehouse, read_only=True) as session:
            return session.execute(HEADLINE_QUERY.format(schema=warehouse.marts_schema)).fetchall()
    with duckdb.connect(str(paths.published), read_only=True) as pub:
        return pub.execute(HEADLINE_QUERY.format(schema="marts")).fetchall()


def print_summary(paths: Paths, outcomes: dict[int, dict[str, Any]], warehouse: Warehouse | None = None) -> None:
    warehouse = warehouse or Warehouse.from_env(paths.warehouse)
    print("\n=== Survey warehouse: summary ===")
    print(f"Warehouse: {describe_warehouse(warehouse, paths)}")
    try:
        _print_summary(paths, outcomes, warehouse)
    except Exception as exc:  # a warehouse another process holds, a server that refuses: said, not a traceback
        cause = faults.cause(exc)
        if cause is None:
            raise
        print(f"\nThe summary cannot read the warehouse: {cause}")


def _print_summary(paths: Paths, outcomes: dict[int, dict[str, Any]], warehouse: Warehouse) -> None:
    if not _warehouse_exists(warehouse):
        print("No warehouse there yet: run `make run`.")
        return
    _print_waves(paths, warehouse, outcomes)
    gate_line = _marts_gate_line(paths, outcomes)
    print(f"\n{gate_line}")
    publication = read_publication(warehouse, paths.published)
    if publication is None:
        if "FAILED" in gate_line:
            print("\nNothing published yet: the marts have not passed their gate.")
        else:  # never a downstream symptom: no gate failed
            print("\nNothing published yet: no run got as far as publishing (each wave's line above says why).")
        return
    _print_headline(_headline(warehouse, paths))
    _print_where(paths, warehouse, publication)


def _run_ids(outcomes: dict[int, dict[str, Any]]) -> list[str]:
    """The DAG runs this command made, earliest first."""
    for outcome in outcomes.values():  # `run` records them in the order they ran
        if outcome.get("runs_of_command") is not None:
            return list(outcome["runs_of_command"])
    ids = []
    for outcome in outcomes.values():
        earlier, later = outcome.get("earlier_run_ids") or [], outcome.get("later_run_ids") or []
        ids += [*reversed(earlier), outcome.get("run_id"), *later]
    return [i for i in ids if i]


def _marts_gate_line(paths: Paths, outcomes: dict[int, dict[str, Any]]) -> str:
    """The marts gate as this command's runs left it: the report of the last of its runs that ran the gate, or why
    none did. Without runs (`make summary`, or nothing to do), the latest report, with its time."""
    directory = paths.var / "quality" / "reports" / "marts"
    ran = [o for o in outcomes.values() if o.get("run_id") or o.get("exit_code")]
    if not ran:
        found = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime) if directory.exists() else []
        if not found:
            return "Marts gate: not run yet"
        when = dt.datetime.fromtimestamp(found[-1].stat().st_mtime, dt.UTC)
        return f"Marts gate (latest, {when:%Y-%m-%d %H:%M} UTC): {_verdict_of(found[-1])}"
    reports = []
    for run_id in _run_ids(outcomes):
        suffix = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
        reports += sorted(directory.glob(f"*_{suffix}.json"), key=lambda p: p.stat().st_mtime)
    if reports:
        return f"Marts gate (this run): {_verdict_of(reports[-1])}"
    failed = sorted({t for o in ran for t in o.get("failed_tasks") or [] if not t.startswith("validate_marts")})
    if failed:
        return f"Marts gate (this run): not run (the run failed before it, at {', '.join(failed)})"
    return "Marts gate (this run): not run (no run built the marts)"


def _verdict_of(report_file: Path) -> str:
    try:
        report = quality.GateReport.read(report_file)
    except quality.UnreadableReport as exc:
        return f"unknown: {exc}"
    return report.message().splitlines()[0].split(": ", 1)[1]


def _print_waves(paths: Paths, warehouse: Warehouse, outcomes: dict[int, dict[str, Any]]) -> None:
    """Per wave its current load and gate, and a later attempt that failed, with the first lines of why."""
    by_wave: dict[int, list[tuple]] = {}
    for row in _loads(warehouse):
        by_wave.setdefault(row[0], []).append(row)
    print("\nWaves")
    print(f"  {'wave':<6}{'raw rows':>9}{'accepted':>10}{'quarantined':>13}  {'raw gate':<30}{'file'}")
    for year in sorted(set(outcomes) | set(by_wave)):
        loads = by_wave.get(year, [])
        current = next((r for r in loads if r[7]), None)
        if current is None:
            why = _why_nothing_current(paths, year, loads, outcomes.get(year))
            print(f"  {year:<6}{'-':>9}{'-':>10}{'-':>13}  {why:<30}")
        else:
            _year, load_id, file_name, rows, _status, accepted, quarantined, _current, warnings, *_ = current
            report_file = quality.report_path(paths, "raw_wave", load_id)
            try:
                gate = quality.GateReport.read(report_file) if report_file.exists() else None
            except quality.UnreadableReport:
                gate = None
            gate_text = (
                (
                    f"{'passed' if gate.success else 'FAILED'} ({gate.evaluated - len(gate.failures)}"
                    f"/{gate.evaluated} expectations)"
                )
                if gate
                else "passed (its report cannot be read)"
                if report_file.exists()
                else "passed"
            )
            print(f"  {year:<6}{rows:>9}{accepted:>10}{quarantined:>13}  {gate_text:<30}{file_name}")
            said = (warnings or "").splitlines()
            if said:
                print(f"        {len(said)} warning{'s' if len(said) > 1 else ''} (raw.load_registry.warnings):")
                for line in _first_lines(warnings, n=2):
                    print(f"          {line}")
        latest = loads[-1] if loads else None
        if (
            latest is not None
            and latest is not current
            and latest[4] in ("failed", "pending", "candidate", "withdrawn")
        ):
            _y, load_id, file_name, _rows, status, *_rest, message, loaded_at = latest
            keeps = f"; the current load {current[1]} stays" if current else ""
            print(
                f"        latest attempt {load_id} ({file_name}, {loaded_at:%Y-%m-%d %H:%M} UTC): "
                f"{status.upper()}{keeps}"
            )
            for line in _first_lines(message):
                print(f"          {line}")
        outcome = outcomes.get(year)
        if (
            outcome
            and outcome.get("exit_code") not in (0, None)
            and (latest is None or latest is current or outcome.get("build_not_caused_by_data"))
        ):
            print(f"        {_failed_run(outcome)}; see {outcome.get('log')}")


def _failed_run(outcome: dict[str, Any]) -> str:
    """How this command's run of a wave failed, by its failed steps."""
    steps = outcome.get("failed_tasks") or []
    if outcome.get("build_not_caused_by_data"):
        return str(outcome.get("state"))
    if not steps:
        return f"the run failed ({outcome.get('state') or 'see its log'})"
    loading = {"plan_wave", "load_raw_wave"}
    return ("the run failed before loading, at " if set(steps) <= loading else "the run failed at ") + ", ".join(steps)


def _why_nothing_current(paths: Paths, year: int, loads: list[tuple], outcome: dict[str, Any] | None = None) -> str:
    if outcome and outcome.get("exit_code") not in (0, None) and not loads:
        return "run FAILED (below)"
    if loads and loads[-1][4] == "withdrawn":
        return "withdrawn (wave spec)"
    if loads:
        return "nothing current"
    try:
        return "run skipped: " + ("no wave spec" if find_wave_spec(year, paths) is None else "not loaded")
    except SurveyWarehouseError as exc:
        return f"wave spec error: {exc}"


def _print_headline(headline: list[tuple]) -> None:
    print("\nWho leads digitalisation: share of cities where IT management leads (published marts)")
    print(
        f"  {'wave':<6}{'IT-led':>8}{'share':>8}   {'of all surveyed':<20}{'95 % (year to year)':<21}"
        f"{'published statement':<22}{'in range'}"
    )
    for year, cities, responded, surveyed, share, low_all, high_all, lo, hi, statement, lo_pub, hi_pub in headline:
        in_range = "-" if lo_pub is None else ("yes" if lo_pub < share <= hi_pub else "NO")
        bounds = f"{low_all:.0%} - {high_all:.0%}" if responded < surveyed else f"{low_all:.0%} (all answered)"
        print(
            f"  {year:<6}{f'{cities}/{responded}':>8}{share:>8.1%}   {bounds:<20}{f'{lo:.0%} - {hi:.0%}':<21}"
            f"{statement or '-':<22}{in_range}"
        )
    print(
        "  'of all surveyed': the share of all surveyed cities, whatever the cities that did not answer would "
        "have said;\n  '95 %': the Wilson interval, reading the year as one draw of a process that goes on year "
        "to year."
    )


def _print_where(paths: Paths, warehouse: Warehouse, publication: Any) -> None:
    print("\nWhere to look")
    where = (
        f"{paths.shown(paths.published)}"
        if warehouse.backend == "duckdb"
        else f"schema {warehouse.marts_schema} in {warehouse.host}:{warehouse.port}/{warehouse.dbname} "
        f"(log in as {warehouse.reader_role})"
    )
    print(f"  Published marts (what BI and analysts read): {where}")
    print(
        f"      published {publication.published_at:%Y-%m-%d %H:%M:%S} UTC from loads {', '.join(publication.load_ids)}"
    )
    if warehouse.backend == "duckdb":
        print(f"  Warehouse (raw, staging, intermediate, marts): {paths.shown(paths.warehouse)}")
    latest = latest_export(paths)
    if latest is None:
        print("  Exports (every mart as Parquet and CSV): none yet; `make run` writes them")
    else:
        newest = latest["publication"]["published_at"] == publication.published_at.isoformat()
        print(
            f"  Exports (every mart as Parquet and CSV, with manifest.json): {paths.shown(exports_dir(paths))}/latest/ "
            f"-> {Path(latest['folder']).name}"
            + ("" if newest else " (of an earlier publication: `make run` exports the current one)")
        )
    print(f"  Data Docs (Great Expectations results): {paths.shown(paths.data_docs / 'index.html')}")
    print(f"  Logs: {paths.shown(paths.var / 'logs')}/   dbt docs: make docs")
    print("  Quarantined rows, with the reason and the file's row and column: table raw.quarantine in the warehouse")
    if warehouse.backend == "duckdb":
        with duckdb.connect(str(paths.published), read_only=True) as pub:
            example = pub.execute(EXAMPLE_QUERY).fetchall()
        print("\nAn example query on the published marts (python: duckdb.connect(path, read_only=True)):")
        print("  " + EXAMPLE_QUERY.replace("\n", "\n  "))
        print(f"  -> {len(example)} rows, first: {example[0] if example else '-'}")
