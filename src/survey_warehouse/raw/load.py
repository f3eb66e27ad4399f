"""Load a survey wave file, as delivered, into the raw layer of the warehouse (every cell kept as text).

A load has the file judged and read into DuckDB (`intake.verdict`, `intake.grid`), resolves every distinct value of
a mapped column through the codebook with the one matching rule (`intake.matching`) and every submission and
response time through their one reading (`intake.values`), decides which rows cannot be used and why, and writes raw
in one transaction: the cells, what each value resolved to, the quarantined rows with their reasons, and the load's
row in the load registry with its warnings (`registry`: a new load is `pending`; its lifecycle from
there on is the registry's). A killed load leaves nothing behind. A delivery whose bytes and reading are unchanged
since the wave's current load is not loaded again (`registry.is_unchanged`).

One idea in about 850 lines: the checks of one delivery's rows (structure, cities, respondents, answers, scales,
times) and writing their outcome share the grid, the resolved values and one transaction, so they stay together.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from survey_warehouse.errors import WaveFileError
from survey_warehouse.intake import values
from survey_warehouse.intake.codebook import LABELLED_STRUCTURAL_FIELDS, Codebook
from survey_warehouse.intake.grid import Grid, arrow_into, arrow_view, drop_temp, read_grid
from survey_warehouse.intake.matching import match_keys, shown
from survey_warehouse.intake.waves import WaveSpec
from survey_warehouse.raw.registry import (
    abandon_unfinished,
    current_load,
    file_sha256,
    is_unchanged,
    read_fingerprint,
    register_load,
    utc_now,
)
from survey_warehouse.raw.schema import ensure_raw_schema
from survey_warehouse.settings import Paths, get_paths, pseudonym_key
from survey_warehouse.warehouse import Session, Warehouse, as_warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    load_id: str
    wave_year: int
    file_name: str
    row_count: int
    unchanged: bool
    quarantined: int = 0
    warnings: tuple[str, ...] = ()
    reader: str = ""
    seconds: float = 0.0

    def describe(self) -> str:
        if self.unchanged:
            return (
                f"wave {self.wave_year}: {self.file_name} is unchanged since load {self.load_id}; "
                f"nothing to load ({self.row_count} rows already in raw)"
            )
        return (
            f"wave {self.wave_year}: loaded {self.row_count} rows from {self.file_name} as load {self.load_id}"
            f" ({self.row_count - self.quarantined} accepted, {self.quarantined} quarantined; read by "
            f"{self.reader} in {self.seconds:.1f} s)"
        )


def load_memory_limit() -> str:
    """DuckDB's memory limit while a file is read and checked (SURVEY_LOAD_MEMORY_LIMIT); beyond it DuckDB spills
    to var/tmp, so a file of any size loads in bounded memory."""
    return os.environ.get("SURVEY_LOAD_MEMORY_LIMIT", "512MB")


@contextmanager
def _work_connection(warehouse: Warehouse, session: Session, scratch: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Where a file is read and checked: the DuckDB warehouse itself (temporary tables), or an in-memory DuckDB
    before the results are copied into PostgreSQL."""
    if warehouse.backend == "duckdb":
        con = session.duckdb_connection  # spills next to the warehouse file (<file>.tmp)
    else:
        spill = scratch / "spill"
        spill.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(config={"temp_directory": str(spill)})
    limit = con.execute("select current_setting('memory_limit')").fetchall()[0][0]
    con.execute(f"set memory_limit = '{load_memory_limit()}'")
    try:
        yield con
    finally:
        con.execute(f"set memory_limit = '{limit}'")
        if warehouse.backend != "duckdb":
            con.close()


@contextmanager
def _within_the_loads_memory(spec: WaveSpec) -> Iterator[None]:
    """DuckDB running out of the load's memory (it spills what it can) as a verdict on the file, not a traceback."""
    try:
        yield
    except duckdb.OutOfMemoryException as exc:
        raise WaveFileError(
            spec.file,
            f"reading and checking it took more than the load's memory ({load_memory_limit()}, "
            "SURVEY_LOAD_MEMORY_LIMIT): a sheet far wider or longer than its answers (cells typed, filled or "
            "formatted far from them) does this; clear them and save the file again, ask for the file again, or "
            "raise the limit",
        ) from exc


def load_wave(
    spec: WaveSpec,
    target: Warehouse | Path,
    codebook: Codebook | None = None,
    paths: Paths | None = None,
    reload: bool = False,
) -> LoadResult:
    """Load one wave file into raw as a new pending load, or do nothing when it and its reading are unchanged
    (`reload`: load it all the same, as `wave check` does on its scratch copy of the warehouse).

    Rows that cannot be used are kept and quarantined with a reason. A whole-file problem (unreadable, wrong
    columns, no data, another year's file) raises WaveFileError; raw keeps only a failed entry in the registry
    saying why."""
    started = time.perf_counter()
    paths = paths or get_paths()
    codebook = codebook or Codebook.from_seeds(paths.dbt_project / "seeds")
    spec.check(codebook)
    warehouse = as_warehouse(target)
    sha = file_sha256(spec.file) if spec.file.is_file() else None
    fingerprint = read_fingerprint(spec, codebook)
    with Session(warehouse) as session:
        ensure_raw_schema(session)
        current = current_load(session, spec.wave_year)
        if not reload and current is not None and is_unchanged(current, sha, spec, fingerprint):
            return LoadResult(current.load_id, spec.wave_year, spec.file.name, current.row_count, unchanged=True)
        loaded_at = utc_now()
        load_id = f"{spec.wave_year}-{loaded_at:%Y%m%dT%H%M%S%f}-{(sha or '0' * 8)[:8]}"
        registry = {
            "load_id": load_id,
            "wave_year": spec.wave_year,
            "file_name": spec.file.name,
            "file_sha256": sha,
            "loaded_at": loaded_at,
            "questionnaire_version": spec.questionnaire_version,
            "field_period_start": spec.field_period_start,
            "field_period_end": spec.field_period_end,
            "wave_spec": spec.as_json(),
            "spec_sha256": spec.fingerprint(),
            "codebook_sha256": fingerprint,
            "accepted_removals": ",".join(spec.accept_removals) or None,
        }
        scratch = paths.var / "tmp" / f"load_{load_id}"
        try:
            with _work_connection(warehouse, session, scratch) as con, _within_the_loads_memory(spec):
                grid = _read(spec, con, scratch)
                with session.transaction():
                    # The cells first, while the grid is all the work connection holds: written after the checks,
                    # beside the resolved values, they made DuckDB spill within its memory limit.
                    _write_cells(session, con, spec, load_id, grid, scratch)
                    checked = _check(spec, con, codebook, grid)
                    registry.update(
                        warnings="\n".join(checked.warnings) or None,
                        row_count=grid.rows,
                        accepted_count=grid.rows - checked.quarantined,
                        quarantined_count=checked.quarantined,
                        reader=grid.reader,
                    )
                    abandon_unfinished(session, spec.wave_year, load_id)
                    register_load(session, registry, "pending", "loaded; waiting for the raw gate")
                    _write_raw(session, con, spec, load_id, checked, scratch)
        except WaveFileError as exc:
            with session.transaction():
                register_load(session, {**registry, "row_count": 0}, "failed", f"rejected: {exc}")
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            if warehouse.backend == "duckdb":
                drop_temp(
                    session.duckdb_connection,
                    "mapped",
                    "grid",
                    "grid_wide",
                    "grid_extra",
                    "resolved",
                    "problems",
                    "field_map",
                    "keyed",
                    "answers",
                    "aliases",
                    "header",
                    "readings",
                )
    result = LoadResult(
        load_id,
        spec.wave_year,
        spec.file.name,
        checked.grid.rows,
        unchanged=False,
        quarantined=checked.quarantined,
        warnings=tuple(checked.warnings),
        reader=checked.grid.reader,
        seconds=time.perf_counter() - started,
    )
    log.info(result.describe())
    for warning in result.warnings:
        log.warning(warning)
    return result


# ------------------------------------------------------------------------------------------ reading and checks


@dataclass
class _Checked:
    grid: Grid
    quarantined: int
    problems: list[tuple]  # (row, column, reason, message)
    warnings: list[str] = field(default_factory=list)


def _field_kinds(spec: WaveSpec, codebook: Codebook) -> dict[str, str]:
    questions = codebook.questions_for(spec.wave_year)
    kinds = {
        "respondent_email": "email",
        "city": "city",
        "submitted_at": "timestamp",
        "response_minutes": "minutes",
        "respondent_name": "text",
    }
    return {
        f: kinds.get(f, "labelled" if f in questions or f in LABELLED_STRUCTURAL_FIELDS else "text")
        for f in spec.columns.values()
    }


def _read(spec: WaveSpec, con: duckdb.DuckDBPyConnection, scratch: Path) -> Grid:
    """The file as `grid`, after the whole-file checks of its bytes and shape."""
    grid = read_grid(spec, con, scratch)
    if grid.rows == 0:
        raise WaveFileError(
            spec.file, "the file has a header but no data rows; ask for the full export", row=grid.header_row
        )
    return grid


def _check(spec: WaveSpec, con: duckdb.DuckDBPyConnection, codebook: Codebook, grid: Grid) -> _Checked:
    """Every mapped value resolved (`resolved`), the rows that cannot be used (`problems`), and the warnings."""
    import pyarrow as pa

    header_keys = match_keys(pa.array(grid.header, pa.string())).to_pylist()
    kinds = _field_kinds(spec, codebook)
    questions = codebook.questions_for(spec.wave_year)
    required = {
        "respondent_email",
        "city",
        "respondent_role",
        *(q for q, question in questions.items() if question.is_required),
    }
    field_rows = []
    for column, field_id in spec.columns.items():
        if kinds[field_id] == "text":
            continue  # kept in raw as delivered, never matched (names, free text)
        position = header_keys.index(match_keys(pa.array([column], pa.string()))[0].as_py()) + 1
        question = questions.get(field_id)
        scale = (question.scale_min, question.scale_max) if question and question.is_scale else (None, None)
        field_rows.append((position, field_id, kinds[field_id], field_id in required, *scale))
    arrow_into(
        con,
        "field_map",
        pa.table(
            {
                "p": pa.array([r[0] for r in field_rows], pa.int32()),
                "field_id": [r[1] for r in field_rows],
                "kind": [r[2] for r in field_rows],
                "is_required": [r[3] for r in field_rows],
                "scale_min": pa.array([r[4] for r in field_rows], pa.float64()),
                "scale_max": pa.array([r[5] for r in field_rows], pa.float64()),
            }
        ),
        replace=True,
    )

    # Mapped cells in long form, and every distinct value's match key (the one rule, in Arrow)
    positions = [r[0] for r in field_rows]
    con.execute(
        "create or replace temp view mapped as "
        + " union all ".join(f"select source_row_number, cell_count, {p} as p, c{p} as v from grid" for p in positions)
    )
    distinct = con.sql("select distinct p, v from mapped where v is not null").to_arrow_table()
    keyed = distinct.append_column("k", match_keys(distinct.column("v")))  # read in place: a copy would add to spills
    arrow_into(con, "answers", codebook.answer_table(spec.wave_year), replace=True)
    arrow_into(con, "aliases", codebook.alias_table(), replace=True)
    with arrow_view(con, "keyed", keyed):
        _read_values(con, spec, keyed)
        _resolve(con, spec)
    del distinct, keyed  # a million distinct e-mail addresses' worth of memory

    problems = _row_problems(spec, con, grid, header_keys)
    _check_wave_year(spec, con)
    quarantined = len({p[0] for p in problems})
    if problems:
        arrow_into(
            con,
            "problems",
            pa.table(
                {
                    "source_row_number": pa.array([p[0] for p in problems], pa.int32()),
                    "source_column": pa.array([p[1] for p in problems], pa.string()),
                    "reason_code": [p[2] for p in problems],
                    "message": [p[3] for p in problems],
                }
            ),
            replace=True,
        )
    else:
        con.execute(
            "create or replace temp table problems (source_row_number integer, source_column varchar, "
            "reason_code varchar, message varchar)"
        )
    field_positions = {r[1]: r[0] for r in field_rows}
    warnings = [
        *grid.notes,
        *_value_warnings(spec, con, grid),
        *_key_respondent_warnings(spec, con, codebook, field_positions),
    ]
    return _Checked(grid, quarantined, problems, warnings)


VALUE_KINDS = {"timestamp": values.TIMESTAMPS, "minutes": values.DURATIONS}
VALUE_SLICE = 50_000  # values read at a time: a column of a million distinct times is never all Python objects


def _read_values(con: duckdb.DuckDBPyConnection, spec: WaveSpec, keyed: Any) -> None:
    """Every distinct value of a submission-time or response-time column (`keyed`: p, v, k) read by
    `survey_warehouse.intake.values` into the temporary table `readings`: what the column decides (its date orders,
    its decimal separator) from all its values first, then its values a slice at a time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rules = spec.value_rules()
    con.execute(
        "create or replace temp table readings (p integer, v varchar, resolved_value varchar, "
        "resolved_number double, problem varchar, detail varchar, note varchar)"
    )
    for p, kind, field_id in con.execute(
        "select p, kind, field_id from field_map where kind in ('timestamp', 'minutes') order by 1"
    ).fetchall():
        reader = VALUE_KINDS[kind]
        column = keyed.filter(pc.equal(keyed.column("p"), p)).column("v")
        decided = reader.decide(
            (v for start in range(0, len(column), VALUE_SLICE) for v in column.slice(start, VALUE_SLICE).to_pylist()),
            rules,
        )
        for start in range(0, len(column), VALUE_SLICE):
            delivered = column.slice(start, VALUE_SLICE).to_pylist()
            readings = [reader.read(v, rules, decided) for v in delivered]
            if field_id in spec.keep_unreadable:
                readings = [
                    values.Reading(detail=r.detail, note=values.KEPT_UNREADABLE) if r.problem else r for r in readings
                ]
            arrow_into(
                con,
                "readings",
                pa.table(
                    {
                        "p": pa.array([p] * len(delivered), pa.int32()),
                        "v": pa.array(delivered, pa.string()),
                        "resolved_value": pa.array([r.value for r in readings], pa.string()),
                        "resolved_number": pa.array([r.number for r in readings], pa.float64()),
                        "problem": pa.array([r.problem for r in readings], pa.string()),
                        "detail": pa.array([r.detail for r in readings], pa.string()),
                        "note": pa.array([r.note for r in readings], pa.string()),
                    }
                ),
            )


def _resolve(con: duckdb.DuckDBPyConnection, spec: WaveSpec) -> None:
    """Every distinct value of a mapped column (`keyed`: p, v and its match key k) resolved through the codebook
    into the temporary table `resolved`, with the problem of a value that does not resolve (and, for a time, what
    is wrong with it: `readings`).

    A number is a decimal number, with the wave spec's decimal_separator, or without one a decimal point or comma
    (and an exponent, as spreadsheets write); on a scale question a number is an answer when it is one of the
    scale's points, the whole numbers from its scale_min to its scale_max (`score_N`), or a label the codebook
    declares for the question. A number with the other separator, or without decimal_separator a number whose
    separator could be a thousands separator (`1,000`, `1.000`), is not read (`unreadable_number`)."""
    # the key is lower case
    number_like = r"[+-]?([0-9]+([.,][0-9]*)?|[.,][0-9]+)(e[+-]?[0-9]+)?"
    number = (
        f"case when regexp_full_match(k.k, {_sql_text(_decimal_number(spec.decimal_separator))}) "
        "then try_cast(replace(k.k, ',', '.') as double) end"
    )
    unreadable_number = f"regexp_full_match(k.k, {_sql_text(number_like)}) and n is null"
    surveyed = ", ".join(_sql_text(code) for code in spec.cities_surveyed) or "null"
    spreadsheet_errors = ", ".join(_sql_text(error) for error in sorted(values.EXCEL_ERRORS))  # lower case, as keys
    con.execute(
        f"""
        create or replace temp table resolved as
        with keyed_values as (
            select k.p, k.v, k.k, f.field_id, f.kind, f.scale_min, f.scale_max,
                   case when f.kind = 'labelled' then {number} end as n
            from keyed k join field_map f using (p)
        ),
        checked as (
            select *, {unreadable_number} as unreadable_number from keyed_values k
        ),
        placed as (
            select *, n between scale_min and scale_max as in_range,
                   n between scale_min and scale_max and n = floor(n) as on_scale
            from checked
        )
        select kv.p, kv.v, kv.k, kv.field_id,
            case kv.kind
                when 'city' then al.municipality_code
                when 'labelled' then coalesce(an.answer_code, case when kv.on_scale
                    then 'score_' || cast(cast(kv.n as bigint) as varchar) end)
                when 'email' then sha256(? || '|' || kv.k)
                when 'timestamp' then rd.resolved_value
                when 'minutes' then rd.resolved_value
            end as resolved_value,
            case kv.kind
                when 'labelled' then coalesce(an.answer_value, case when an.answer_code is null and kv.on_scale
                    then cast(cast(kv.n as bigint) as double) end)
                when 'minutes' then rd.resolved_number
            end as resolved_number,
            case
                when kv.k is null then null
                when kv.kind in ('timestamp', 'minutes') then rd.problem
                when kv.kind = 'city' and al.municipality_code is null then 'unknown_city'
                when kv.kind = 'city' and al.municipality_code not in ({surveyed}) then 'city_not_surveyed'
                when kv.kind = 'labelled' and an.answer_code is null and kv.k in ({spreadsheet_errors})
                    then '{values.SPREADSHEET_ERROR}'
                when kv.kind = 'labelled' and an.answer_code is null and kv.scale_min is not null
                    and kv.unreadable_number then 'unreadable_number'
                when kv.kind = 'labelled' and an.answer_code is null and kv.scale_min is not null
                    and kv.n is not null and not kv.in_range then 'out_of_scale'
                when kv.kind = 'labelled' and an.answer_code is null and kv.in_range and not kv.on_scale
                    then 'not_on_scale'
                when kv.kind = 'labelled' and an.answer_code is null and not coalesce(kv.on_scale, false)
                    then 'unknown_answer'
            end as problem,
            rd.detail
        from placed kv
        left join aliases al on kv.kind = 'city' and al.alias_key = kv.k
        left join answers an on kv.kind = 'labelled' and an.field_id = kv.field_id and an.label_key = kv.k
        left join readings rd on rd.p = kv.p and rd.v = kv.v
    """,
        [pseudonym_key()],
    )


def _row_problems(
    spec: WaveSpec, con: duckdb.DuckDBPyConnection, grid: Grid, header_keys: list[str | None]
) -> list[tuple[int, str | None, str, str]]:
    """Each row that cannot be used, with the column at fault, a reason code and a message."""

    from survey_warehouse.intake.matching import shown_value

    file, year, width, header = spec.file.name, spec.wave_year, grid.width, grid.header
    problems: list[tuple[int, str | None, str, str]] = []

    def where(row: int, position: int | None) -> str:
        return f"{file}, row {row}" + (f", column {shown(header[position - 1])}" if position else "")

    # Structure first: a row of another width, or the header again (files joined together), is only that.
    structural = {}
    for row, cells in con.execute(
        f"select source_row_number, cell_count from grid where cell_count <> {width} order by 1"
    ).fetchall():
        structural[row] = (
            None,
            "ragged_row",
            f"{where(row, None)}: the row has {cells} cells but the header has "
            f"{width}: a truncated or misaligned row; re-export the file",
        )
    keys = ", ".join(f"({p}, {_sql_text(k)})" for p, k in enumerate(header_keys, start=1) if k)
    if keys:
        for (row,) in con.execute(
            f"select m.source_row_number from mapped m join resolved r using (p, v) "
            f"join (values {keys}) h(p, k) on h.p = m.p and h.k = r.k group by 1 "
            f"having count(*) * 2 >= (select count(*) from field_map) order by 1"
        ).fetchall():
            structural.setdefault(
                row,
                (
                    None,
                    "repeated_header",
                    f"{where(row, None)}: the row repeats the header (files joined together, "
                    "or a header line copied into the data); it is not an answer",
                ),
            )
    problems += [
        (row, None if p is None else header[p - 1], reason, message)
        for row, (p, reason, message) in sorted(structural.items())
    ]
    skip = ", ".join(str(r) for r in structural) or "-1"
    email = next((p for p, kind in con.execute("select p, kind from field_map").fetchall() if kind == "email"), None)
    # Only cells that can have a problem are looked at: values that did not resolve, empty required cells, and
    # e-mail values that occur more than once or share their key with another value. Of one respondent's rows
    # only the usable ones compete: the first of them is kept, the later ones are duplicates; a row that cannot be
    # used (an unknown city, say) is quarantined for its own reason only.
    respondents = duplicates = ""
    if email is not None and _may_repeat(con, email):
        respondents = f""",
        repeated as (
            select g.source_row_number as row, {email} as p, g.c{email} as v, r.k,
                   g.source_row_number in (select row from field_problems) as unusable
            from grid g join resolved r on r.p = {email} and r.v = g.c{email}
            where r.k is not null and g.source_row_number not in ({skip}) and (
                g.c{email} in (select c{email} from grid where source_row_number not in ({skip})
                               group by 1 having count(*) > 1)
                or r.k in (select k from resolved where p = {email} and k is not null
                           group by 1 having count(*) > 1))
        ),
        kept as (select k, min(row) as kept from repeated where not unusable group by k),
        unusable as (select k, list(row order by row) as rows from repeated where unusable group by k)"""
        duplicates = """
        union all
        select d.row, d.p, d.v, null, null, 'duplicate_respondent', kept.kept, unusable.rows, null
        from repeated d join kept using (k) left join unusable using (k)
        where not d.unusable and d.row > kept.kept"""
    fields = con.execute(
        f"""
        with flagged as (select p, v, k, problem, detail from resolved where problem is not null or k is null),
        cells as (
            select m.source_row_number as row, m.p, m.v, f.scale_min, f.scale_max,
                case when (m.v is null or fl.k is null) and f.is_required then 'missing_required'
                     else fl.problem end as reason, fl.detail
            from mapped m join field_map f using (p)
            left join flagged fl on fl.p = m.p and fl.v = m.v
            where ((m.v is null and f.is_required) or fl.p is not null)
                and m.source_row_number not in ({skip})
        ),
        field_problems as (select * from cells where reason is not null){respondents}
        select row, p, v, scale_min, scale_max, reason, cast(null as integer) as kept,
               cast(null as integer[]) as unusable, detail
        from field_problems{duplicates}
        order by 1, 2
        """
    ).fetchall()

    def duplicate(kept: int, unusable: list[int] | None) -> str:
        earlier = [r for r in unusable or [] if r < kept]
        if not earlier:
            return f"the same respondent already answered in row {kept}; the first answer is kept"
        rows = ", ".join(map(str, earlier))
        return (
            f"the same respondent already answered in row {kept}, which is kept: the first of their rows that can "
            f"be used (row{'s' if len(earlier) > 1 else ''} {rows} of theirs cannot be used, see "
            f"{'their' if len(earlier) > 1 else 'its'} own entr{'ies' if len(earlier) > 1 else 'y'})"
        )

    # what a value of each column was meant as: its city names, or its question's labels (match keys)
    cities = [r[0] for r in con.execute("select alias_key from aliases").fetchall()]
    labels: dict[int, list[str]] = {}
    for position, key in con.execute(
        "select f.p, a.label_key from field_map f join answers a using (field_id)"
    ).fetchall():
        labels.setdefault(position, []).append(key)

    def quoted(p: int, value: object) -> str:
        return shown_value(value, cities if kinds.get(p) == "city" else labels.get(p, []))

    kinds = dict(con.execute("select p, kind from field_map").fetchall())
    for row, p, value, low, high, reason, kept, unusable, detail in fields:
        # values of the city and answer columns are shown (an alias or a label is added for them); nothing of a
        # respondent's name, e-mail address or free text ever is
        match reason:
            case "missing_required":
                text = "empty, but every respondent needs it; ask for a corrected file"
            case "unknown_city":
                text = (
                    f"unknown city {quoted(p, value)}; if it is a way of writing a surveyed city, add it to "
                    "dbt_project/seeds/city_aliases.csv"
                )
            case "city_not_surveyed":
                text = (
                    f"city {quoted(p, value)} was not surveyed in {year} (cities_surveyed in {spec.name}): an "
                    "answer from outside the survey, or a city missing from the list"
                )
            case "unknown_answer" | values.SPREADSHEET_ERROR if detail is None:  # an answer's (a time's has detail)
                text = (
                    f"{shown(value)} is a spreadsheet error, not an answer{FORMULA_FAILED}"  # no one's data: quoted
                    if reason == values.SPREADSHEET_ERROR
                    else f"answer {quoted(p, value)} is not in the {year} codebook; add it to "
                    "dbt_project/seeds/codebook_answers.csv or correct the file"
                )
            case "out_of_scale":
                text = (
                    f"{quoted(p, value)} is outside the question's scale {_number(low)}-{_number(high)} in "
                    f"{year}; correct the file"
                )
            case "not_on_scale":
                text = (
                    f"{quoted(p, value)} is not a point of the question's scale {_number(low)}-{_number(high)} "
                    f"in {year} (its points are {_points(low, high)}); correct the file, or if the survey offered "
                    "this answer, add it as a label to dbt_project/seeds/codebook_answers.csv"
                )
            case "unreadable_number":
                text = _unreadable_number(spec, quoted(p, value))
            case _ if detail is not None:  # a time that cannot be read
                text = _value_problem(spec, reason, detail)
            case _:  # duplicate_respondent
                text = duplicate(kept, unusable)
        problems.append((row, header[p - 1], reason, f"{where(row, p)}: {text}"))
    problems.sort(key=lambda p: (p[0], 0 if p[1] is None else header.index(p[1])))
    return problems


def _points(low: float, high: float) -> str:
    """A scale's points, for a message."""
    import math

    whole = range(math.ceil(low), math.floor(high) + 1)
    if len(whole) <= 12:  # noqa: PLR2004 (a longer list is not read)
        return ", ".join(map(str, whole))
    return f"the whole numbers {whole[0]} to {whole[-1]}"


def _decimal_number(separator: str | None) -> str:
    """A decimal number (of a match key) with the separator, or without one with a point or a comma whose
    decimals are not exactly three digits (those could be a thousands separator)."""
    if separator is None:
        return r"[+-]?([0-9]+([.,]([0-9]{0,2}|[0-9]{4,}))?|[.,][0-9]+)(e[+-]?[0-9]+)?"
    mark = re.escape(separator)
    return rf"[+-]?([0-9]+({mark}[0-9]*)?|{mark}[0-9]+)(e[+-]?[0-9]+)?"


def _unreadable_number(spec: WaveSpec, shown_value: str) -> str:
    if spec.decimal_separator is None:
        return (
            f"{shown_value} could be a decimal number or a whole one with a thousands separator; set "
            f"decimal_separator ('.' or ',') in {spec.name}, or correct the file"
        )
    return (
        f"{shown_value} is not written with the decimal separator {shown(spec.decimal_separator)} of "
        f"decimal_separator in {spec.name} (no thousands separators are read); correct the file"
    )


FORMULA_FAILED = ": its formula failed in the survey tool or spreadsheet; ask for a corrected file"


def _value_problem(spec: WaveSpec, reason: str, detail: str) -> str:
    """The message of a submission or response time that cannot be read (survey_warehouse.intake.values)."""
    advice = {
        values.UNREADABLE_TIMESTAMP: "; correct the file (a date and time such as 3.4.2019 10:00 or 2019-04-03T10:00)",
        values.OUTSIDE_WAVE: f"; correct the file, or field_period in {spec.name}",
        values.UNREADABLE_DURATION: (
            "; correct the file (minutes such as 12, 12.5 or 12 min, or a time such as 0:12:30)"
        ),
        values.SPREADSHEET_ERROR: FORMULA_FAILED,
    }
    return detail + advice.get(reason, "")


def _may_repeat(con: duckdb.DuckDBPyConnection, email: int) -> bool:
    """Whether a respondent can be in the file twice: an e-mail value in more than one row, or two values with one
    match key (one of them then differs from its key). Most files have neither, and naming the repeated rows is
    the slowest check of a large file; this test costs a scan of the column."""
    (repeats,) = con.execute(f"""
        select (select count(c{email}) from grid)
                > (select count(*) from resolved join field_map using (p, field_id) where kind = 'email')
            or exists (select 1 from resolved a join resolved b on b.p = a.p and b.k = a.k and b.v <> a.v
                       where a.p = {email} and a.k <> a.v)
    """).fetchall()[0]
    return bool(repeats)


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _check_wave_year(spec: WaveSpec, con: duckdb.DuckDBPyConnection) -> None:
    """Whole-file check: a file whose answers were mostly submitted in another year is another wave."""
    # each timestamp column's values counted first, straight from `grid` (`mapped` is a view over all columns)
    counted = " union all ".join(
        f"select {p} as p, c{p} as v, count(*) as n from grid where c{p} is not null group by 2"
        for (p,) in con.execute("select p from field_map where kind = 'timestamp' order by 1").fetchall()
    )
    if not counted:
        return
    years = con.execute(
        f"select year(cast(r.resolved_value as timestamp)) as y, sum(c.n) from ({counted}) c "
        "join resolved r using (p, v) where r.resolved_value is not null group by 1 order by 2 desc"
    ).fetchall()
    total = sum(n for _y, n in years)
    in_wave = sum(n for y, n in years if y == spec.wave_year)
    if total and in_wave * 2 < total:
        year, count = years[0]
        column = next(c for c, f in spec.columns.items() if f == "submitted_at")
        raise WaveFileError(
            spec.file,
            f"{count} of {total} answers were submitted in {year}, not in "
            f"{spec.wave_year}: is this the file of another wave? Check 'file' and "
            f"'wave_year' in {spec.name}",
            column=shown(column),
        )


def _value_warnings(spec: WaveSpec, con: duckdb.DuckDBPyConnection, grid: Grid) -> list[str]:
    """Usable rows whose times deserve a look: answers submitted outside the field period (in the wave's year), and
    values kept as delivered because the spec lists their field under keep_unreadable."""
    found = con.execute("""
        select m.p, r.note, count(*), list(m.source_row_number order by m.source_row_number)[1:5],
               min(r.resolved_value), max(r.resolved_value),
               list('row ' || m.source_row_number || ': ' || r.detail order by m.source_row_number)[1:3]
        from mapped m join readings r using (p, v)
        where r.note is not null and m.source_row_number not in (select source_row_number from problems)
        group by 1, 2 order by 1, 2
    """).fetchall()
    period = f"{spec.field_period_start:%d.%m.%Y}-{spec.field_period_end:%d.%m.%Y}"
    warnings = []
    for p, note, count, rows, first, last, details in found:
        where = f"{spec.file.name}, column {shown(grid.header[p - 1])}"
        more = ", ..." if count > len(rows) else ""
        if note == values.OUTSIDE_FIELD_PERIOD:
            warnings.append(
                f"{where}: {count} answer{'s' if count > 1 else ''} submitted outside the field period {period} "
                f"(rows {', '.join(map(str, rows))}{more}; from {first.replace('T', ' ')} to "
                f"{last.replace('T', ' ')}); kept. If the survey ran longer, correct field_period in {spec.name}"
            )
        else:
            warnings.append(
                f"{where}: {count} value{'s' if count > 1 else ''} cannot be read and "
                f"{'are' if count > 1 else 'is'} kept as delivered, without a value (keep_unreadable in "
                f"{spec.name}): {'; '.join(details)}{'; ...' if count > len(details) else ''}"
            )
    return warnings


def _key_respondent_warnings(
    spec: WaveSpec, con: duckdb.DuckDBPyConnection, codebook: Codebook, positions: dict[str, int]
) -> list[str]:
    """Usable rows that still deserve a look: key respondents of one city who disagree about who leads."""
    if not {"lead", "city", "respondent_role"} <= set(positions) or not codebook.key_roles:
        return []
    key_roles = ", ".join(_sql_text(r) for r in sorted(codebook.key_roles))
    city, role, lead = positions["city"], positions["respondent_role"], positions["lead"]
    # the cities where they disagree first: the rows are listed for those only (most files have none)
    rows = con.execute(f"""
        with answered as (
            select c.resolved_value as city, g.source_row_number as row, g.c{lead} as label, l.resolved_value as code
            from grid g
            join resolved r on r.p = {role} and r.v = g.c{role} and r.resolved_value in ({key_roles})
            join resolved c on c.p = {city} and c.v = g.c{city}
            join resolved l on l.p = {lead} and l.v = g.c{lead} and l.resolved_value is not null
            where g.source_row_number not in (select source_row_number from problems)
        ),
        disagreeing as (select city from answered group by 1 having count(distinct code) > 1)
        select city, list(row order by row), list(label order by row) from answered
        where city in (select city from disagreeing) group by 1 order by 1
    """).fetchall()
    lead_column = next(c for c, f in spec.columns.items() if f == "lead")
    return [
        f"{spec.file.name}, column {shown(lead_column)}: the key respondents of city {code} disagree ("
        + ", ".join(f"row {r}: {shown(label)}" for r, label in zip(numbers, labels, strict=True))
        + "); the roll-up takes the majority of all the city's respondents (rollup_method in "
        "fct_city_responsibility)"
        for code, numbers, labels in rows
    ]


# ------------------------------------------------------------------------------------------ writing raw


# A load's columns once each, and each cell with its column's id: a million rows of 11 columns are 11 million
# cells, and a text (the load id, a header, a field) repeated on each cost more to write than the cells themselves.
COLUMNS_SQL = (
    "select column_id, {load} as load_id, {wave} as wave_year, column_position, source_column, field_id, "
    "question_text from header"
)
CELL_SQL = "select {column_id} as column_id, source_row_number, c{position} as cell_value from grid"
EXTRA_CELLS_SQL = (
    "select h.column_id, e.source_row_number, e.cell_value from grid_extra e join header h using (column_position)"
)
RESOLUTIONS_SQL = (
    "select {load} as load_id, {wave} as wave_year, field_id, v as cell_value, k as match_key, "
    "resolved_value, resolved_number from resolved"
)
QUARANTINE_SQL = (
    "select {load} as load_id, {wave} as wave_year, source_row_number, source_column, reason_code, "
    "message from problems"
)
RAW_COLUMNS = {
    "raw.survey_columns": "column_id, load_id, wave_year, column_position, source_column, field_id, question_text",
    "raw.survey_cells": "column_id, source_row_number, cell_value",
    "raw.cell_resolutions": "load_id, wave_year, field_id, cell_value, match_key, resolved_value, resolved_number",
    "raw.quarantine": "load_id, wave_year, source_row_number, source_column, reason_code, message",
}


def _write_cells(
    session: Session, con: duckdb.DuckDBPyConnection, spec: WaveSpec, load_id: str, grid: Grid, scratch: Path
) -> None:
    """The columns into raw.survey_columns (those of the header, then any position right of it that a longer row
    has), and every cell of the grid and right of the header into raw.survey_cells with its row and column."""
    import pyarrow as pa

    extra = [r[0] for r in con.execute("select distinct column_position from grid_extra order by 1").fetchall()]
    positions = [*range(1, grid.width + 1), *extra]
    ids = [
        r[0]
        for r in session.execute(
            "select nextval('raw.survey_column_ids') from generate_series(1, ?)", [len(positions)]
        ).fetchall()
    ]
    fields = [spec.columns.get(_column_for(spec, h) or "") for h in grid.header]
    arrow_into(
        con,
        "header",
        pa.table(
            {
                "column_id": pa.array(ids, pa.int32()),
                "column_position": pa.array(positions, pa.int32()),
                "source_column": pa.array([*grid.header, *[""] * len(extra)], pa.string()),
                "field_id": pa.array([*fields, *[None] * len(extra)], pa.string()),
                "question_text": pa.array([*grid.questions, *[None] * len(extra)], pa.string()),
            }
        ),
        replace=True,
    )
    cells = " union all ".join(
        [
            *(
                CELL_SQL.replace("{position}", str(position)).replace("{column_id}", str(column_id))
                for position, column_id in zip(positions[: grid.width], ids, strict=False)
            ),
            EXTRA_CELLS_SQL,
        ]
    )
    _write(session, con, "raw.survey_columns", COLUMNS_SQL, load_id, spec, scratch)
    _write(session, con, "raw.survey_cells", cells, load_id, spec, scratch)
    drop_temp(con, "header")


def _write_raw(
    session: Session, con: duckdb.DuckDBPyConnection, spec: WaveSpec, load_id: str, checked: _Checked, scratch: Path
) -> None:
    """What the checks found, after the cells (`_write_cells`) in the same transaction."""
    for table, template in {"raw.cell_resolutions": RESOLUTIONS_SQL, "raw.quarantine": QUARANTINE_SQL}.items():
        _write(session, con, table, template, load_id, spec, scratch)
    session.executemany(
        "insert into raw.wave_cities_surveyed values (?, ?, ?)",
        [[load_id, spec.wave_year, code] for code in spec.cities_surveyed],
    )


def _write(
    session: Session,
    con: duckdb.DuckDBPyConnection,
    table: str,
    template: str,
    load_id: str,
    spec: WaveSpec,
    scratch: Path,
) -> None:
    """A query on the work connection into a raw table: an insert in DuckDB, COPY into PostgreSQL."""
    query = template.format(load=_sql_text(load_id), wave=int(spec.wave_year))
    if session.is_postgres:
        session.copy_from_duckdb(table, RAW_COLUMNS[table], con, query, scratch)
    else:
        con.execute(f"insert into {table} ({RAW_COLUMNS[table]}) {query}")


def _column_for(spec: WaveSpec, header_name: str) -> str | None:
    from survey_warehouse.intake.matching import match_key

    key = match_key(header_name)
    return next((c for c in spec.columns if match_key(c) == key), None) if key else None
