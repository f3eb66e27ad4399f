"""Load a survey wave file, as delivered, into the raw layer of the warehouse (every cell kept as text)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from survey_warehouse.warehouse import Session, Warehouse, as_warehouse
from survey_warehouse.waves import WaveSpec

log = logging.getLogger(__name__)

RAW_DDL = """
create schema if not exists raw;
create table if not exists raw.load_registry (
    load_id varchar primary key,
    wave_year integer not null,
    file_name varchar not null,
    file_sha256 varchar not null,
    row_count integer not null,
    loaded_at timestamp not null,
    status varchar not null,            -- pending | passed | failed | replaced
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

    def describe(self) -> str:
        if self.unchanged:
            return (f"wave {self.wave_year}: {self.file_name} is unchanged since load {self.load_id}; "
                    f"nothing to load ({self.row_count} rows already in raw)")
        return f"wave {self.wave_year}: loaded {self.row_count} rows from {self.file_name} as load {self.load_id}"


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
        raise WaveFileError(spec.file, f"the file ends before the header row {spec.header_row}",
                            row=spec.header_row)
    header = [(h or "").strip() for h in header_line[1]]
    missing = [col for col in spec.columns if col not in header]
    if missing:
        raise WaveFileError(spec.file, f"mapped column not in the header: {missing[0]!r}; the header has "
                                       f"{header}. Fix 'columns' in the wave spec",
                            row=header_line[0], column=missing[0])
    return header


def cells_frame(spec: WaveSpec, load_id: str) -> pd.DataFrame:
    """The whole file as long (row, column, text) cells, ready for the raw layer."""
    header, rows = read_rows(spec)
    field_of = [spec.columns.get(h) for h in header]
    records: list[tuple] = []
    for row_number, cells in rows:
        if all(c is None or str(c).strip() == "" for c in cells):
            continue  # blank lines at the end of exports carry nothing
        for position, name in enumerate(header):
            value = cells[position] if position < len(cells) else None
            records.append((load_id, spec.wave_year, row_number, position + 1, name, field_of[position], value))
    return pd.DataFrame.from_records(
        records,
        columns=["load_id", "wave_year", "source_row_number", "column_position", "source_column", "field_id",
                 "cell_value"],
    )


def ensure_raw_schema(session: Session) -> None:
    session.execute(RAW_DDL)


def current_load(session: Session, wave_year: int) -> tuple[str, str, int] | None:
    return session.execute(
        "select load_id, file_sha256, row_count from raw.load_registry where wave_year = ? and is_current",
        [wave_year],
    ).fetchone()


def load_wave(spec: WaveSpec, target: Warehouse | Path) -> LoadResult:
    """Load one wave file into raw as a new pending load, or do nothing when the file is unchanged.

    The new load becomes the wave's current one only after it passes validation (`mark_load`)."""
    sha = file_sha256(spec.file) if spec.file.exists() else None
    with Session(as_warehouse(target)) as session:
        ensure_raw_schema(session)
        current = current_load(session, spec.wave_year)
        if current and current[1] == sha:
            return LoadResult(current[0], spec.wave_year, spec.file.name, current[2], unchanged=True)
        loaded_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        load_id = f"{spec.wave_year}-{loaded_at:%Y%m%dT%H%M%S%f}-{(sha or '')[:8]}"
        frame = cells_frame(spec, load_id)
        row_count = int(frame["source_row_number"].nunique()) if len(frame) else 0
        spec_json = json.dumps({"file": spec.file.name, "format": spec.format, "encoding": spec.encoding,
                                "delimiter": spec.delimiter, "sheet": spec.sheet, "header_row": spec.header_row,
                                "columns": spec.columns}, ensure_ascii=False)
        with session.transaction():
            # A pending or failed load of this wave that never became current is superseded by this one.
            for table in ("raw.survey_cells", "raw.wave_cities_surveyed"):
                session.execute(f"delete from {table} where load_id in (select load_id from raw.load_registry "
                                "where wave_year = ? and status in ('pending', 'failed'))", [spec.wave_year])
            session.execute(
                "insert into raw.load_registry (load_id, wave_year, file_name, file_sha256, row_count, loaded_at, "
                "status, status_at, is_current, questionnaire_version, field_period_start, field_period_end, "
                "wave_spec) values (?, ?, ?, ?, ?, ?, 'pending', ?, false, ?, ?, ?, ?)",
                [load_id, spec.wave_year, spec.file.name, sha, row_count, loaded_at, loaded_at,
                 spec.questionnaire_version, spec.field_period_start, spec.field_period_end, spec_json],
            )
            session.insert_frame("raw.survey_cells", frame)
            session.executemany("insert into raw.wave_cities_surveyed values (?, ?, ?)",
                                [[load_id, spec.wave_year, code] for code in spec.cities_surveyed])
    result = LoadResult(load_id, spec.wave_year, spec.file.name, row_count, unchanged=False)
    log.info(result.describe())
    return result


def mark_load(target: Warehouse | Path, load_id: str, passed: bool, message: str) -> None:
    """Record the validation outcome; a passed load becomes its wave's current one and replaces the previous."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with Session(as_warehouse(target)) as session, session.transaction():
        wave_year = session.execute(
            "select wave_year from raw.load_registry where load_id = ?", [load_id]).fetchone()[0]
        if passed:
            replaced = [r[0] for r in session.execute(
                "select load_id from raw.load_registry where wave_year = ? and load_id <> ? "
                "and status <> 'replaced'", [wave_year, load_id]).fetchall()]
            for old in replaced:
                session.execute("delete from raw.survey_cells where load_id = ?", [old])
                session.execute("delete from raw.wave_cities_surveyed where load_id = ?", [old])
                session.execute("update raw.load_registry set status = 'replaced', is_current = false, "
                                "status_at = ?, status_message = ? where load_id = ?",
                                [now, f"replaced by load {load_id}", old])
            session.execute("update raw.load_registry set status = 'passed', is_current = true, status_at = ?, "
                            "status_message = ? where load_id = ?", [now, message, load_id])
        else:
            session.execute("update raw.load_registry set status = 'failed', status_at = ?, status_message = ? "
                            "where load_id = ? and not is_current", [now, message, load_id])
