"""Submission times, response times and numbers: a shared corpus of the ways survey tools and spreadsheets write
them, and what raw holds for each after a load through every reader.

Each case of tests/fixtures/value_corpus.csv is a value of a column of the 2019 wave (its submission time, its
response time, its 0-10 scale question `cooperation` or its category question `lead`), with the spec keys and the
column's other values it is read with, and what raw must hold: the value it resolves to (`raw.cell_resolutions`), or
the reason its row is quarantined (`raw.quarantine`, naming the file, row and column), or the warning it gets. Every
case is written into a file of each reader in READERS (a CSV file; a workbook, a legacy .xls, an Excel binary .xlsb
and an OpenDocument .ods of text cells, and of typed cells where the case has a typed form: a date and time, a
number, a time, a duration, an error value; an SPSS .sav of string variables, and of TIME variables for the
durations) and loaded by the loader itself: raw holds a text cell as delivered and a typed one as the spreadsheet
shows it (`shown`), the same text whatever the format. A new reader gets the whole corpus by adding its entry to
READERS."""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import openpyxl
import pytest
import yaml
from conftest import ROOT, make_paths
from delivered_formats import ErrorValue, ods_cell, write_ods, write_xlsb

from survey_warehouse.intake.matching import shown
from survey_warehouse.intake.values import DURATIONS, NOT_QUOTED, TIMESTAMPS, ValueRules, quoted
from survey_warehouse.intake.waves import WaveSpec
from survey_warehouse.raw.load import load_wave

CORPUS = ROOT / "tests" / "fixtures" / "value_corpus.csv"
WAVE = ROOT / "config" / "waves" / "2019.yml"
BUNDLED = ROOT / "data" / "waves" / "2019" / "city_survey_2019_export.csv"
CASE_ROW = 2  # the case's value is in the first data row, below the header
# what a load warns about a value it keeps, by the corpus's warning codes
WARNINGS = {
    "outside_field_period": "outside the field period",
    "kept_unreadable": "cannot be read and is kept as delivered, without a value (keep_unreadable in",
}


@dataclass(frozen=True)
class Case:
    name: str
    field: str
    value: str
    typed: str  # kind:literal of a typed workbook cell (datetime, number, time, duration, error), or ""
    shown: str  # the typed cell's text in raw, as the spreadsheet shows it
    spec: dict
    others: list[str]  # the column's other values, which decide its date order or decimal separator
    resolved: str | None
    number: float | None
    reason: str | None
    warning: str | None

    @property
    def id(self) -> str:
        return f"{self.field}: {self.name}"


def corpus() -> list[Case]:
    with open(CORPUS, encoding="utf-8", newline="") as f:
        return [
            Case(
                name=r["case"],
                field=r["field"],
                value=r["value"],
                typed=r["typed"],
                shown=r["shown"],
                spec=yaml.safe_load(r["spec"]) if r["spec"] else {},
                others=[v.strip() for v in r["with"].split(" | ")] if r["with"] else [],
                resolved=r["resolved"] or None,
                number=float(r["number"]) if r["number"] else None,
                reason=r["reason"] or None,
                warning=r["warning"] or None,
            )
            for r in csv.DictReader(f)
        ]


# ------------------------------------------------------------------------------------------------ the readers


@dataclass(frozen=True)
class Cell:
    text: str | None
    typed: str = ""  # kind:literal, for a reader that writes typed cells


def _typed(cell: Cell) -> object:
    kind, _, literal = cell.typed.partition(":")
    if kind == "datetime":
        return dt.datetime.fromisoformat(literal)
    if kind == "number":
        return float(literal)
    if kind == "time":
        return dt.time.fromisoformat(literal)
    if kind == "error":
        return literal
    if kind == "duration":  # [-]H:MM:SS[.f]
        hours, minutes, seconds = literal.lstrip("-").split(":")
        length = dt.timedelta(hours=int(hours), minutes=int(minutes), seconds=float(seconds))
        return -length if literal.startswith("-") else length
    raise ValueError(f"unknown typed cell {cell.typed!r}")


def write_csv(path: Path, header: list[str], rows: list[list[Cell]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([[c.text or "" for c in row] for row in rows])


def _workbook(path: Path, header: list[str], rows: list[list[Cell]], typed: bool) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Vastaukset"
    sheet.append(header)
    for row in rows:
        sheet.append([_typed(c) if typed and c.typed else c.text for c in row])
    for cells, row in zip(sheet.iter_rows(min_row=2), rows, strict=True):
        for cell, delivered in zip(cells, row, strict=True):
            if typed and delivered.typed.startswith("error:"):
                cell.data_type = "e"  # an error cell, as a formula that failed leaves it
            elif isinstance(cell.value, str):
                cell.data_type = "s"  # a text cell, even when it reads as a number
    workbook.save(path)


def _xls(path: Path, header: list[str], rows: list[list[Cell]], typed: bool = False) -> None:
    """A legacy .xls (BIFF8) of text cells, as xlwt writes it; `typed`: with the typed cells as Excel stores them
    (a number of days formatted as a date, a time or a duration; an error value's code)."""
    import xlwt

    formats = {
        "datetime": xlwt.easyxf(num_format_str="YYYY-MM-DD HH:MM:SS"),
        "time": xlwt.easyxf(num_format_str="h:mm:ss"),
        "duration": xlwt.easyxf(num_format_str="[h]:mm:ss"),
    }
    book = xlwt.Workbook(encoding="utf-8")
    sheet = book.add_sheet("Vastaukset")
    for r, row in enumerate([[Cell(h) for h in header], *rows]):
        for c, cell in enumerate(row):
            kind = cell.typed.partition(":")[0] if typed else ""
            if kind == "duration":
                sheet.write(r, c, _typed(cell) / dt.timedelta(days=1), formats[kind])
            elif kind == "datetime":  # as a serial: xlwt would drop the fraction of a second
                serial = (_typed(cell) - dt.datetime(1899, 12, 30)) / dt.timedelta(days=1)  # noqa: DTZ001
                sheet.write(r, c, serial, formats[kind])
            elif kind in formats:
                sheet.write(r, c, _typed(cell), formats[kind])
            elif kind == "error":
                sheet.row(r).set_cell_error(c, ErrorValue(cell.typed.partition(":")[2]).code)
            elif kind:
                sheet.write(r, c, _typed(cell))
            elif cell.text is not None:
                sheet.write(r, c, cell.text)
    book.save(str(path))


def _xlsb(path: Path, header: list[str], rows: list[list[Cell]], typed: bool = False) -> None:
    """An Excel binary workbook of text cells; `typed`: with the typed cells as Excel stores them (a number of days
    styled as a date, a time or a duration; an error value's code)."""

    def value(cell: Cell) -> object:
        kind, _, literal = cell.typed.partition(":") if typed else ("", "", "")
        if kind == "error":
            return ErrorValue(literal)
        return _typed(cell) if kind else cell.text

    write_xlsb(path, {"Vastaukset": [header, *[[value(c) for c in row] for row in rows]]})


def _ods(path: Path, header: list[str], rows: list[list[Cell]]) -> None:
    """An OpenDocument spreadsheet of text cells (pandas with odfpy)."""
    import pandas as pd

    frame = pd.DataFrame([header, *[[c.text for c in row] for row in rows]], dtype=object)
    frame.to_excel(path, engine="odf", sheet_name="Vastaukset", header=False, index=False)


def _ods_typed(path: Path, header: list[str], rows: list[list[Cell]]) -> None:
    """An OpenDocument spreadsheet with the typed cells as LibreOffice stores them: a date-value, a float, a
    time-value (an ISO duration: PT51H00M00S, -PT00H01M00S), an error value of a formula; text cells besides."""
    from xml.sax.saxutils import escape

    def cell_xml(cell: Cell) -> str:
        kind, _, literal = cell.typed.partition(":")
        if kind == "datetime":
            return ods_cell('office:value-type="date" office:date-value', literal)
        if kind == "number":
            return ods_cell('office:value-type="float" office:value', literal)
        if kind in ("time", "duration"):
            seconds = _seconds(cell)
            hours, rest = divmod(abs(seconds), 3600)
            value = f"{'-' if seconds < 0 else ''}PT{int(hours):02d}H{int(rest // 60):02d}M{rest % 60:02g}S"
            return ods_cell('office:value-type="time" office:time-value', value)
        if kind == "error":
            return (
                '<table:table-cell table:formula="of:=NA()" office:value-type="string" office:string-value="" '
                f'calcext:value-type="error"><text:p>{escape(literal)}</text:p></table:table-cell>'
            )
        if cell.text is None:
            return "<table:table-cell/>"
        return ods_cell('office:value-type="string" office:string-value', cell.text, shown=cell.text)

    table = "".join(
        "<table:table-row>" + "".join(cell_xml(c) for c in row) + "</table:table-row>"
        for row in [[Cell(h) for h in header], *rows]
    )
    write_ods(path, {"Vastaukset": table})


def _sav(path: Path, header: list[str], rows: list[list[Cell]], typed: bool = False) -> None:
    """An SPSS file of string variables v1..vN, each labelled with its header (the spec names them by label);
    `typed`: a column with a time or duration cell is a TIME variable (seconds), as SPSS stores one."""
    import pandas as pd
    import pyreadstat

    names = [f"v{i}" for i in range(1, len(header) + 1)]
    frame = pd.DataFrame([[c.text or "" for c in row] for row in rows], columns=names, dtype=object)
    formats = {}
    for i, name in enumerate(names):
        cells = [row[i] for row in rows]
        if typed and any(c.typed for c in cells):
            frame[name] = [_seconds(c) if c.typed else None for c in cells]
            formats[name] = "TIME11.2"
    pyreadstat.write_sav(frame, str(path), column_labels=list(header), variable_format=formats)


def _seconds(cell: Cell) -> float:
    length = _typed(cell)
    if isinstance(length, dt.time):
        return length.hour * 3600 + length.minute * 60 + length.second + length.microsecond / 1e6
    assert isinstance(length, dt.timedelta)
    return length.total_seconds()


@dataclass(frozen=True)
class Reader:
    suffix: str
    spec: dict  # the wave spec's keys for this kind of file
    write: Callable[[Path, list[str], list[list[Cell]]], None]
    typed: frozenset[str] = frozenset()  # a reader of typed cells: the kinds of typed cell it writes
    keeps_trailing_spaces: bool = True  # SPSS keeps a string without its trailing spaces
    case_row: int = CASE_ROW  # the row a message names for the case (SPSS: its case number; no header row)
    alone: bool = False  # a typed cell only in a column of nothing else of its kind (SPSS: a variable is one kind)

    def takes(self, case: Case) -> bool:
        if not self.typed:
            return True
        kind = case.typed.partition(":")[0]
        return kind in self.typed and not (self.alone and (case.others or case.field == "submitted_at"))


TYPED = frozenset({"datetime", "number", "time", "duration", "error"})
WORKBOOK = {"sheet": "Vastaukset", "header_row": 1}


READERS = {
    "csv": Reader(".csv", {"format": "csv", "encoding": "utf-8", "delimiter": ","}, write_csv),
    "xlsx text cells": Reader(".xlsx", {"format": "xlsx", **WORKBOOK}, lambda p, h, r: _workbook(p, h, r, typed=False)),
    "xlsx typed cells": Reader(
        ".xlsx", {"format": "xlsx", **WORKBOOK}, lambda p, h, r: _workbook(p, h, r, typed=True), typed=TYPED
    ),
    "xls text cells": Reader(".xls", {"format": "xls", **WORKBOOK}, _xls),
    "xls typed cells": Reader(
        ".xls", {"format": "xls", **WORKBOOK}, lambda p, h, r: _xls(p, h, r, typed=True), typed=TYPED
    ),
    "xlsb text cells": Reader(".xlsb", {"format": "xlsb", **WORKBOOK}, _xlsb),
    "xlsb typed cells": Reader(
        ".xlsb", {"format": "xlsb", **WORKBOOK}, lambda p, h, r: _xlsb(p, h, r, typed=True), typed=TYPED
    ),
    "ods text cells": Reader(".ods", {"format": "ods", **WORKBOOK}, _ods),
    "ods typed cells": Reader(".ods", {"format": "ods", **WORKBOOK}, _ods_typed, typed=TYPED),
    "sav strings": Reader(".sav", {"format": "sav"}, _sav, keeps_trailing_spaces=False, case_row=1),
    "sav TIME variables": Reader(
        ".sav",
        {"format": "sav"},
        lambda p, h, r: _sav(p, h, r, typed=True),
        typed=frozenset({"time", "duration"}),
        keeps_trailing_spaces=False,
        case_row=1,
        alone=True,
    ),
}


PARAMS = [
    pytest.param(name, case, id=f"{name} | {case.id}")
    for name, reader in READERS.items()
    for case in corpus()
    if (case.typed or not reader.typed) and reader.takes(case)
]


@pytest.fixture(scope="module")
def paths():
    return make_paths("values")


def _wave_file(case: Case, reader: Reader, folder: Path) -> tuple[WaveSpec, str]:
    """The case's value in the first row of a 2019 file, the column's other values below it, and three rows of the
    delivered 2019 file (their submission times, none of the response times: those would decide a separator)."""
    spec = yaml.safe_load(WAVE.read_text(encoding="utf-8"))
    column = next(c for c, f in spec["columns"].items() if f == case.field)
    with open(BUNDLED, encoding="utf-8-sig", newline="") as f:
        delivered = list(csv.reader(f))
    header, data = delivered[0], delivered[1:]
    at = header.index(column)
    minutes = header.index(next(c for c, f in spec["columns"].items() if f == "response_minutes"))
    rows = []
    for number, value in enumerate([case.value, *case.others, None, None, None]):
        row = [Cell(c) for c in data[number]]
        row[minutes] = Cell(None)
        if value is not None:
            row[at] = Cell(value, case.typed if number == 0 else "")
        rows.append(row)
    file = folder / f"values{reader.suffix}"
    reader.write(file, header, rows)
    for key in ("encoding", "delimiter"):
        spec.pop(key, None)
    spec.update({**reader.spec, **case.spec, "file": str(file)})
    (folder / "2019.yml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return WaveSpec.from_file(folder / "2019.yml", ROOT), column


@pytest.mark.parametrize(("reader", "case"), PARAMS)
def test_corpus(paths, tmp_path: Path, reader: str, case: Case) -> None:
    spec, column = _wave_file(case, READERS[reader], tmp_path)
    row = READERS[reader].case_row
    result = load_wave(spec, paths.warehouse, paths=paths)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        (cell,) = con.execute(
            "select cell_value from raw.survey_cells join raw.survey_columns using (column_id) "
            "where load_id = ? and source_column = ? and source_row_number = ?",
            [result.load_id, column, row],
        ).fetchone()
        resolutions = con.execute(
            "select resolved_value, resolved_number from raw.cell_resolutions "
            "where load_id = ? and field_id = ? and cell_value = ?",
            [result.load_id, case.field, cell],
        ).fetchall()
        quarantined = con.execute(
            "select source_column, reason_code, message from raw.quarantine "
            "where load_id = ? and source_row_number = ?",
            [result.load_id, row],
        ).fetchall()
    if READERS[reader].typed:
        assert cell == case.shown, "raw keeps a typed cell as the spreadsheet shows it, in every format alike"
    else:
        delivered = case.value if READERS[reader].keeps_trailing_spaces else case.value.rstrip(" ")
        assert cell == delivered, "raw keeps the cell as delivered"
    assert resolutions == [(case.resolved, case.number)]
    if case.reason is None:
        assert quarantined == []
    else:
        ((source_column, reason, message),) = quarantined
        assert (source_column, reason) == (column, case.reason)
        assert message.startswith(f"{spec.file.name}, row {row}, column '{column}': "), message
    said = [w for w in result.warnings if any(phrase in w for phrase in WARNINGS.values())]
    if case.warning is None:
        assert said == []
    else:
        assert len(said) == 1 and WARNINGS[case.warning] in said[0], said
        assert re.search(rf"\brows? {row}\b", said[0]) and f"column '{column}'" in said[0], said
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        (kept,) = con.execute("select warnings from raw.load_registry where load_id = ?", [result.load_id]).fetchone()
    assert (kept or "").splitlines() == list(result.warnings), "the load's warnings are kept with it"


# the times whose column holds nothing else that decides (a kept unreadable value is the loader's)
ALONE = [
    c
    for c in corpus()
    if c.field in ("submitted_at", "response_minutes") and not c.others and c.warning != "kept_unreadable"
]


@pytest.mark.parametrize("case", ALONE, ids=[c.id for c in ALONE])
def test_a_value_read_alone_reads_as_in_its_column(case: Case) -> None:
    """A value of a column that holds no other value of its kind reads the same alone (the column's decisions only
    settle what the value leaves open)."""
    spec = {**yaml.safe_load(WAVE.read_text(encoding="utf-8")), **case.spec}
    period = spec["field_period"]
    rules = ValueRules(
        2019,
        period["start"],
        period["end"],
        time_zone=spec.get("time_zone", "Europe/Helsinki"),
        date_order=spec.get("date_order"),
        decimal_separator=spec.get("decimal_separator"),
        duration_clock=spec.get("duration_clock"),
    )
    reader = TIMESTAMPS if case.field == "submitted_at" else DURATIONS
    (reading,) = reader.read_all([case.value], rules)
    assert (reading.value, reading.number, reading.problem) == (case.resolved, case.number, case.reason)


@pytest.mark.parametrize(
    ("value", "is_quoted"),
    [
        ("3.4.2019 klo 10.00", True),
        ("43558.4166666667", True),
        ("1 day, 0:00:00", True),
        ("#N/A", True),
        ("12 minuuttia", True),
        ("Matti Meikäläinen", False),
        ("matti@example.fi", False),
        ("040 123 4567", False),
        ("+358401234567", False),
        ("040.123.4567", False),
        ("2019-04-03T10:00:00.123+03:00", True),
        ("03.04.2019 10:00:00,5", True),
    ],
)
def test_a_time_is_quoted_in_a_message_and_what_a_respondent_wrote_is_not(value: str, is_quoted: bool) -> None:
    assert (quoted(value) == shown(value)) is is_quoted
    assert (quoted(value) == NOT_QUOTED) is not is_quoted
