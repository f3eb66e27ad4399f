"""Load a survey wave file, as delivered, into the raw layer of the warehouse (every cell kept as text)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from survey_warehouse.codebook import Codebook, normalise
from survey_warehouse.settings import get_paths
from survey_warehouse.warehouse import Session, Warehouse, as_warehouse
from survey_warehouse.waves import REQUIRED_FIELDS, WaveSpec

log = logging.getLogger(__name__)

ANSWER_FIELDS = ("respondent_role", "lead", "cooperation", "it_involvement_stage", "business_digital_skills")

RAW_DDL = """
create schema if not exists raw;
create table if not exists raw.load_registry (
    load_id varchar primary key,
    wave_year integer not null,
    file_name varchar not null,
    file_sha256 varchar not null,
    row_count integer not null,          -- data rows in the file = accepted_count + quarantined_count
    accepted_count integer,
    quarantined_count integer,
    loaded_at timestamp not null,
    status varchar not null,            -- loading | pending (not yet gated) | passed | failed | superseded
    status_at timestamp not null,
    status_message varchar,
    is_current boolean not null default false,
    questionnaire_version varchar not null,
    field_period_start date not null,
    field_period_end date not null,
    wave_spec json not null             -- the wave spec the file was read with, for the audit trail
);
create table if not exists raw.survey_cells (
    load_id varchar not null,
    wave_year integer not null,
    source_row_number integer not null,  -- row number in the delivered file (1 = first line / first sheet row)
    column_position integer not null,
    source_column varchar not null,      -- header as delivered
    field_id varchar,                    -- what the wave spec maps the column to; null = kept but not used
    cell_value varchar                   -- the cell as delivered, as text
);
create table if not exists raw.quarantine (
    load_id varchar not null,
    wave_year integer not null,
    source_row_number integer not null,  -- the row that cannot be used (staging leaves it out)
    source_column varchar,               -- the column at fault, as delivered
    reason_code varchar not null,        -- ragged_row, missing_required, unknown_city, duplicate_respondent,
                                         -- unknown_answer, out_of_scale
    message varchar not null             -- what is wrong and what to do, naming the file, row and column
);
create table if not exists raw.wave_cities_surveyed (
    load_id varchar not null,
    wave_year integer not null,
    municipality_code varchar not null
);
"""


class WaveFileError(ValueError):
    """A wave file cannot be loaded at all. The message names the file, the row and the column."""

    def __init__(self, file: Path, message: str, row: int | None = None, column: str | None = None):
        where = f"{file}" + (f", row {row}" if row is not None else "") + (f", column {column!r}" if column else "")
        super().__init__(f"{where}: {message}")
        self.file, self.row, self.column = file, row, column


@dataclass(frozen=True)
class LoadResult:
    load_id: str
    wave_year: int
    file_name: str
    row_count: int
    unchanged: bool
    quarantined: int = 0
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.unchanged:
            return (f"wave {self.wave_year}: {self.file_name} is unchanged since load {self.load_id}; "
                    f"nothing to load ({self.row_count} rows already in raw)")
        return (f"wave {self.wave_year}: loaded {self.row_count} rows from {self.file_name} as load {self.load_id}"
                f" ({self.row_count - self.quarantined} accepted, {self.quarantined} quarantined)")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cell_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text if text != "" else None


def read_rows(spec: WaveSpec) -> tuple[list[str], Iterator[tuple[int, list[str | None]]]]:
    """Header and (source row number, cells) of a wave file, read as the spec describes.

    Rows are streamed; the file is closed when the rows have been read."""
    if not spec.file.exists():
        raise WaveFileError(spec.file, "file not found; check 'file' in the wave spec")
    rows = _numbered_rows(spec)
    header_line = None
    for row_number, cells in rows:
        if row_number == spec.header_row:
            header_line = (row_number, cells)
            break
    return _header(spec, header_line), rows


def _numbered_rows(spec: WaveSpec) -> Iterator[tuple[int, list[str | None]]]:
    """Every row of the file with its row number (1 = the first line or sheet row), cells as text or None."""
    path = spec.file
    if spec.format == "xlsx":
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            if spec.sheet not in wb.sheetnames:
                raise WaveFileError(path, f"sheet {spec.sheet!r} not found; the workbook has {wb.sheetnames}")
            for n, row in enumerate(wb[spec.sheet].iter_rows(values_only=True), start=1):
                yield n, [_cell_text(v) for v in row]
        finally:
            wb.close()
        return
    with open(path, encoding=spec.encoding, newline="") as f:
        try:
            for n, row in enumerate(csv.reader(f, delimiter=spec.delimiter), start=1):
                yield n, [c if c != "" else None for c in row]
        except UnicodeDecodeError as exc:
            raise WaveFileError(path, f"not readable as {spec.encoding} ({exc.reason}); fix 'encoding' in the "
                                      "wave spec or re-export the file") from exc


def _header(spec: WaveSpec, header_line: tuple[int, list] | None) -> list[str]:
    if header_line is None:
        if spec.file.stat().st_size == 0:
            raise WaveFileError(spec.file, "the file is empty; ask for the export again")
        raise WaveFileError(spec.file, f"the file ends before the header row {spec.header_row}; check "
                                       "'header_row' in the wave spec", row=spec.header_row)
    header = [(h or "").strip() for h in header_line[1]]
    missing = [col for col in spec.columns if col not in header]
    if missing:
        hint = "Fix 'columns' in the wave spec, or ask for a file with the agreed columns"
        if len(header) == 1 and spec.format == "csv":
            found = next((d for d in ";,\t|" if d != spec.delimiter and d in header[0]), None)
            if found:
                hint = f"The header has one column: is the delimiter {found!r} rather than {spec.delimiter!r}?"
        raise WaveFileError(spec.file, f"mapped column {missing[0]!r} is not in the header. {hint}",
                            row=header_line[0], column=missing[0])
    return header


CELL_COLUMNS = ["load_id", "wave_year", "source_row_number", "column_position", "source_column", "field_id",
                "cell_value"]
QUARANTINE_COLUMNS = ["load_id", "wave_year", "source_row_number", "source_column", "reason_code", "message"]
CHUNK_ROWS = 20_000  # rows held in memory at a time: a file of any size loads in bounded memory
TIMESTAMP_FORMATS = ("%d.%m.%Y %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


@dataclass(frozen=True)
class RowProblem:
    source_row_number: int
    source_column: str | None
    reason_code: str
    message: str


class RowChecker:
    """Row-level checks at load time. A row with a problem stays in raw and is quarantined with a reason."""

    def __init__(self, spec: WaveSpec, header: list[str], codebook: Codebook):
        self.spec, self.header, self.codebook = spec, header, codebook
        self.position = {field: header.index(column) for column, field in spec.columns.items()}
        self.column = {field: column for column, field in spec.columns.items()}
        self.seen_respondents: dict[str, int] = {}
        self.submitted_years: Counter[int] = Counter()
        self.key_answers: dict[str, dict[int, str]] = {}  # city -> {row: lead answer} of key respondents
        self.key_roles = {normalise(label) for label in codebook.key_role_labels(spec.wave_year)}

    def _where(self, row: int, field: str | None) -> str:
        return f"{self.spec.file.name}, row {row}" + (f", column {self.column[field]!r}" if field else "")

    def check(self, row: int, cells: list[str | None]) -> list[RowProblem]:
        spec, problems = self.spec, []

        def problem(field: str | None, reason: str, text: str) -> None:
            problems.append(RowProblem(row, self.column.get(field) if field else None, reason,
                                       f"{self._where(row, field)}: {text}"))

        if len(cells) != len(self.header):
            problem(None, "ragged_row", f"the row has {len(cells)} cells but the header has {len(self.header)}: "
                                        "a truncated or misaligned row; re-export the file")
            return problems
        value = {field: normalise(cells[pos]) for field, pos in self.position.items()}
        for field in REQUIRED_FIELDS:
            if value.get(field) is None:
                problem(field, "missing_required", "empty, but every respondent needs it; ask for a corrected file")
        city = value.get("city")
        if city is not None and city not in self.codebook.city_aliases:
            problem("city", "unknown_city", f"unknown city {cells[self.position['city']]!r}; if it is a way of "
                                            "writing a surveyed city, add it to dbt_project/seeds/city_aliases.csv")
        email = value.get("respondent_email")
        if email is not None:
            first = self.seen_respondents.setdefault(email, row)
            if first != row:
                problem("respondent_email", "duplicate_respondent",
                        f"the same respondent already answered in row {first}; the first answer is kept")
        for field in ANSWER_FIELDS:
            label = value.get(field)
            known = self.codebook.labels_for(spec.wave_year, field)
            if label is None or field not in self.position or known is None or label in known:
                continue
            scale = self.codebook.scales.get((spec.wave_year, field))
            number = _number(label)
            if scale is not None and number is not None and not scale[0] <= number <= scale[1]:
                problem(field, "out_of_scale", f"{label!r} is outside the question's scale "
                                               f"{scale[0]:g}-{scale[1]:g} in {spec.wave_year}; correct the file")
            else:
                problem(field, "unknown_answer", f"answer {cells[self.position[field]]!r} is not in the "
                                                 f"{spec.wave_year} codebook; add it to "
                                                 "dbt_project/seeds/codebook_answers.csv or correct the file")
        if not problems and value.get("respondent_role") in self.key_roles and value.get("lead"):
            self.key_answers.setdefault(self.codebook.city_aliases[city], {})[row] = value["lead"]
        submitted = _year(cells[self.position["submitted_at"]]) if "submitted_at" in self.position else None
        if submitted is not None:
            self.submitted_years[submitted] += 1
        return problems

    def warnings(self) -> list[str]:
        """Usable rows that still deserve a look: key respondents of one city who disagree."""
        out = []
        for code, answers in sorted(self.key_answers.items()):
            if len(set(answers.values())) > 1:
                rows = ", ".join(f"row {r}: {a!r}" for r, a in sorted(answers.items()))
                out.append(f"{self.spec.file.name}, column {self.column['lead']!r}: the key respondents of city "
                           f"{code} disagree ({rows}); the roll-up takes the majority of all the city's respondents "
                           "(rollup_method in fct_city_responsibility)")
        return out

    def wrong_year(self) -> str | None:
        """Whole-file check: a file whose answers were mostly submitted in another year is another wave."""
        total = sum(self.submitted_years.values())
        in_wave = self.submitted_years.get(self.spec.wave_year, 0)
        if total and in_wave * 2 < total:
            year, count = self.submitted_years.most_common(1)[0]
            return (f"{count} of {total} answers were submitted in {year}, not in {self.spec.wave_year}: is this "
                    f"the file of another wave? Check 'file' and 'wave_year' in {self.spec.spec_path or 'the spec'}")
        return None


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "."))
    except ValueError:
        return None


def _year(text: str | None) -> int | None:
    if not text:
        return None
    for fmt in TIMESTAMP_FORMATS:
        try:
            return dt.datetime.strptime(text.strip(), fmt).year
        except ValueError:
            continue
    return None


def _chunks(spec: WaveSpec, header: list[str], rows: Iterator[tuple[int, list[str | None]]], load_id: str,
            checker: RowChecker) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, int, int]]:
    """The file as long (row, column, text) cells and its quarantined rows, CHUNK_ROWS rows at a time."""
    field_of = [spec.columns.get(h) for h in header]
    cells_out: list[tuple] = []
    quarantine_out: list[tuple] = []
    n_rows = n_quarantined = 0
    for row_number, cells in rows:
        if all(c is None or str(c).strip() == "" for c in cells):
            continue  # blank lines at the end of exports carry nothing
        while len(cells) > len(header) and cells[-1] is None:
            cells = cells[:-1]  # empty cells right of the header (spreadsheets pad rows) are not data
        n_rows += 1
        for position, name in enumerate(header):
            value = cells[position] if position < len(cells) else None
            cells_out.append((load_id, spec.wave_year, row_number, position + 1, name, field_of[position], value))
        for extra, value in enumerate(cells[len(header):], start=len(header) + 1):
            cells_out.append((load_id, spec.wave_year, row_number, extra, "", None, value))
        problems = checker.check(row_number, cells)
        if problems:
            n_quarantined += 1
            quarantine_out += [(load_id, spec.wave_year, p.source_row_number, p.source_column, p.reason_code,
                                p.message) for p in problems]
        if n_rows % CHUNK_ROWS == 0:
            yield (pd.DataFrame.from_records(cells_out, columns=CELL_COLUMNS),
                   pd.DataFrame.from_records(quarantine_out, columns=QUARANTINE_COLUMNS), n_rows, n_quarantined)
            cells_out, quarantine_out = [], []
    yield (pd.DataFrame.from_records(cells_out, columns=CELL_COLUMNS),
           pd.DataFrame.from_records(quarantine_out, columns=QUARANTINE_COLUMNS), n_rows, n_quarantined)


def ensure_raw_schema(session: Session) -> None:
    session.execute(RAW_DDL)


def current_load(session: Session, wave_year: int) -> tuple[str, str, int] | None:
    return session.execute(
        "select load_id, file_sha256, row_count from raw.load_registry where wave_year = ? and is_current",
        [wave_year],
    ).fetchone()


def load_wave(spec: WaveSpec, target: Warehouse | Path, codebook: Codebook | None = None) -> LoadResult:
    """Load one wave file into raw as a new pending load, or do nothing when the file is unchanged.

    Rows that cannot be used are kept and quarantined with a reason. A whole-file problem (unreadable, wrong
    columns, no data, another year's file) raises WaveFileError and leaves raw as it was. The new load becomes
    the wave's current one only after it passes its quality gate (`mark_load`)."""
    sha = file_sha256(spec.file) if spec.file.exists() else None
    codebook = codebook or Codebook.from_seeds(get_paths().dbt_project / "seeds")
    with Session(as_warehouse(target)) as session:
        ensure_raw_schema(session)
        current = current_load(session, spec.wave_year)
        if current and current[1] == sha:
            return LoadResult(current[0], spec.wave_year, spec.file.name, current[2], unchanged=True)
        header, rows = read_rows(spec)
        checker = RowChecker(spec, header, codebook)
        loaded_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        load_id = f"{spec.wave_year}-{loaded_at:%Y%m%dT%H%M%S%f}-{(sha or '')[:8]}"
        spec_json = json.dumps({"file": spec.file.name, "format": spec.format, "encoding": spec.encoding,
                                "delimiter": spec.delimiter, "sheet": spec.sheet, "header_row": spec.header_row,
                                "columns": spec.columns}, ensure_ascii=False)
        # A load that never finished (the process was killed) or never became current is cleared first.
        with session.transaction():
            stale = [r[0] for r in session.execute(
                "select load_id from raw.load_registry where wave_year = ? and status in ('loading', 'pending')",
                [spec.wave_year]).fetchall()]
            _forget(session, stale)
            session.execute(
                "insert into raw.load_registry (load_id, wave_year, file_name, file_sha256, row_count, loaded_at, "
                "status, status_at, is_current, questionnaire_version, field_period_start, field_period_end, "
                "wave_spec) values (?, ?, ?, ?, 0, ?, 'loading', ?, false, ?, ?, ?, ?)",
                [load_id, spec.wave_year, spec.file.name, sha, loaded_at, loaded_at,
                 spec.questionnaire_version, spec.field_period_start, spec.field_period_end, spec_json],
            )
        # Chunk by chunk, each committed: memory stays bounded whatever the file's size. Until the load is
        # complete it is 'loading', which nothing downstream reads, and a failed or killed load is cleared.
        try:
            row_count = quarantined = 0
            for cells, quarantine, row_count, quarantined in _chunks(spec, header, rows, load_id, checker):
                with session.transaction():
                    if len(cells):
                        session.insert_frame("raw.survey_cells", cells)
                    if len(quarantine):
                        session.insert_frame("raw.quarantine", quarantine)
            if row_count == 0:
                raise WaveFileError(spec.file, "the file has a header but no data rows; ask for the full export",
                                    row=spec.header_row)
            wrong_year = checker.wrong_year()
            if wrong_year:
                raise WaveFileError(spec.file, wrong_year, column=checker.column.get("submitted_at"))
        except BaseException:
            with session.transaction():
                _forget(session, [load_id])
            raise
        with session.transaction():
            session.execute("update raw.load_registry set row_count = ?, accepted_count = ?, quarantined_count = ?, "
                            "status = 'pending' where load_id = ?",
                            [row_count, row_count - quarantined, quarantined, load_id])
            session.executemany("insert into raw.wave_cities_surveyed values (?, ?, ?)",
                                [[load_id, spec.wave_year, code] for code in spec.cities_surveyed])
    result = LoadResult(load_id, spec.wave_year, spec.file.name, row_count, unchanged=False,
                        quarantined=quarantined, warnings=tuple(checker.warnings()))
    log.info(result.describe())
    for warning in result.warnings:
        log.warning(warning)
    return result


def _forget(session: Session, load_ids: list[str]) -> None:
    """Remove loads that never completed: their rows were never used by anything."""
    for load_id in load_ids:
        for table in ("raw.survey_cells", "raw.quarantine", "raw.wave_cities_surveyed", "raw.load_registry"):
            session.execute(f"delete from {table} where load_id = ?", [load_id])


def mark_load(target: Warehouse | Path, load_id: str, passed: bool, message: str) -> None:
    """Record the gate's outcome. A passed load becomes its wave's current one; the one it supersedes stays."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with Session(as_warehouse(target)) as session, session.transaction():
        wave_year = session.execute(
            "select wave_year from raw.load_registry where load_id = ?", [load_id]).fetchone()[0]
        if passed:
            # The previous load stays in raw (superseded), so corrections between loads can be queried.
            session.execute("update raw.load_registry set status = 'superseded', is_current = false, "
                            "status_at = ?, status_message = ? where wave_year = ? and is_current and load_id <> ?",
                            [now, f"superseded by load {load_id}", wave_year, load_id])
            session.execute("update raw.load_registry set status = 'passed', is_current = true, status_at = ?, "
                            "status_message = ? where load_id = ?", [now, message, load_id])
        else:
            session.execute("update raw.load_registry set status = 'failed', status_at = ?, status_message = ? "
                            "where load_id = ? and not is_current", [now, message, load_id])
