"""A delivered file as the draft sees it: how it is read (its shape) and what each column holds.

The shape (format, encoding, delimiter, sheet, header row) is worked out from the file's bytes and first rows; the
file is then read by intake's own reader (`read_grid`, the one the loader uses), so the draft sees exactly the
cells a load would. What the proposals work from is the header and, per column, its distinct values with their
counts: any format intake reads gives the same.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from survey_warehouse.errors import WaveFileError
from survey_warehouse.intake.grid import HEADER_SEARCH_ROWS, SEPARATOR_HINT, read_grid
from survey_warehouse.intake.matching import looks_like_email, match_keys
from survey_warehouse.intake.spss import CODE_SUFFIX, read_sav_metadata
from survey_warehouse.intake.values import ValueRules, column_date_orders, read_timestamp
from survey_warehouse.intake.verdict import SAV, container_of, is_utf8, zip_kind
from survey_warehouse.intake.waves import WORKBOOK_FORMATS, WaveSpec
from survey_warehouse.intake.workbook import FORMAT_NAMES, workbook_format
from survey_warehouse.intake.workbook import first_rows as read_first_rows

DELIMITERS = (",", ";", "\t", "|")
SNIFF_CHARS = 1 << 16
# the header: the first row with at least this share of the widest row's named cells (a title block has fewer)
HEADER_FILL = 0.8


@dataclass
class Shape:
    format: str
    encoding: str = "utf-8"
    delimiter: str = ","
    sheet: str | None = None
    header_row: int = 1
    evidence: list[str] = field(default_factory=list)
    unsure: list[str] = field(default_factory=list)  # what a person should confirm

    def as_spec(self) -> dict[str, Any]:
        if self.format in WORKBOOK_FORMATS:
            return {"format": self.format, "sheet": self.sheet, "header_row": self.header_row}
        if self.format == "sav":
            return {"format": "sav"}
        return {
            "format": self.format,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "header_row": self.header_row,
        }


@dataclass
class Column:
    position: int  # 1 = the first column
    header: str
    values: dict[str, int]  # distinct delivered value -> rows holding it
    keys: dict[str, str | None]  # delivered value -> its match key
    times: int = 0  # values read as a timestamp
    first_time: dt.datetime | None = None
    last_time: dt.datetime | None = None

    @property
    def filled(self) -> int:
        return sum(self.values.values())

    def share(self, test: Any) -> float:
        """The share of the column's filled rows whose value passes `test`."""
        total = self.filled
        return sum(n for v, n in self.values.items() if test(v)) / total if total else 0.0


@dataclass
class Delivery:
    file: Path
    shape: Shape
    columns: list[Column]
    rows: int


def detect_shape(path: Path, decided: dict[str, Any] | None = None) -> Shape:
    """How the file is read: from its bytes and first rows. `decided`: keys a person set in the spec already."""
    decided = decided or {}
    if not path.is_file():
        raise WaveFileError(path, "file not found")
    with open(path, "rb") as f:
        head = f.read(8192)
    if not head:
        raise WaveFileError(path, "the file is empty (0 bytes); ask for the export again")
    kind = container_of(head)
    workbook = workbook_format(path, head)
    if workbook is not None:  # .xlsx, .xlsb, .xls, .ods by their container, whatever their name
        shape = _workbook_shape(path, decided, workbook)
    elif kind == SAV:
        shape = Shape("sav", evidence=["format sav: an SPSS data file (its variables are its header)"])
    elif kind is not None:
        what = zip_kind(path) if kind == "zip" else kind
        raise WaveFileError(
            path, f"is {what}: the draft reads what the loader reads (CSV text, a spreadsheet, an SPSS .sav)"
        )
    else:
        shape = _text_shape(path, head, decided)
    return shape


def _text_shape(path: Path, head: bytes, decided: dict[str, Any]) -> Shape:
    shape = Shape("csv")
    if head.startswith(codecs.BOM_UTF8):
        shape.encoding, why = "utf-8-sig", "UTF-8 byte order mark"
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        shape.encoding, why = "utf-16", "UTF-16 byte order mark"
    elif head[1::2].count(0) > len(head) // 4 and head[0::2].count(0) == 0:
        shape.encoding, why = "utf-16-le", "every other byte is zero (UTF-16 without a byte order mark)"
    elif head[0::2].count(0) > len(head) // 4 and head[1::2].count(0) == 0:
        shape.encoding, why = "utf-16-be", "every other byte is zero (UTF-16 without a byte order mark)"
    elif is_utf8(path):
        shape.encoding, why = "utf-8-sig", "the whole file is valid UTF-8"
    else:
        with open(path, "rb") as f:
            ascii_only = f.read().isascii()
        shape.encoding, why = ("utf-8", "plain ASCII") if ascii_only else ("cp1252", "not UTF-8: Windows-1252")
    if "encoding" in decided:
        shape.encoding, why = str(decided["encoding"]), "as the spec says"
    shape.evidence.append(f"encoding {shape.encoding}: {why}")
    with open(path, encoding=shape.encoding, errors="replace", newline="") as f:
        text = f.read(SNIFF_CHARS)
    first_line = text.split("\n", 1)[0][:64]
    hint = SEPARATOR_HINT.fullmatch(first_line + "\n") or SEPARATOR_HINT.fullmatch(first_line)
    body = text.split("\n", 1)[1] if hint else text
    if "delimiter" in decided:
        shape.delimiter, why = str(decided["delimiter"]), "as the spec says"
    elif hint:
        shape.delimiter, why = hint.group(1), "named by Excel's 'sep=' first line"
    else:
        shape.delimiter, why = _sniff_delimiter(body, shape)
    shape.evidence.append(f"delimiter {shape.delimiter!r}: {why}")
    rows = _csv_rows(body, shape.delimiter)
    offset = 1 if hint else 0
    _find_header(shape, rows, decided, offset)
    return shape


def _csv_rows(text: str, delimiter: str) -> list[list[str]]:
    rows: list[list[str]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for cells in reader:
            rows.append([c.strip() for c in cells])
            if len(rows) >= HEADER_SEARCH_ROWS:
                break
    except csv.Error:
        pass
    return rows[:-1] if len(rows) > 1 and len(text) >= SNIFF_CHARS else rows  # the last may be cut by the sniff


def _filled(cells: list[Any]) -> int:
    return sum(1 for c in cells if c is not None and str(c).strip())


def _sniff_delimiter(text: str, shape: Shape) -> tuple[str, str]:
    """The delimiter that splits the first rows into the most rows of one width (above one)."""
    scores = {}
    for candidate in DELIMITERS:
        widths = Counter(len(r) for r in _csv_rows(text, candidate) if _filled(r))
        width, count = max(widths.items(), key=lambda item: (item[1], item[0]), default=(0, 0))
        scores[candidate] = (count if width > 1 else 0, width)
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    best, (count, width) = ranked[0]
    if count == 0:
        shape.unsure.append("no delimiter splits the rows into columns")
    elif len(ranked) > 1 and ranked[1][1][0] == count and ranked[1][1][1] == width:
        shape.unsure.append(f"{ranked[1][0]!r} splits the rows as evenly as {best!r}")
    return best, f"{count} of the first rows have {width} cells"


def _find_header(shape: Shape, rows: list[list[Any]], decided: dict[str, Any], offset: int = 0) -> None:
    if "header_row" in decided:
        shape.header_row = int(decided["header_row"])
        shape.evidence.append(f"header row {shape.header_row}: as the spec says")
        return
    widest = max((_filled(r) for r in rows), default=0)
    found = next(
        (
            i
            for i, r in enumerate(rows, start=1)
            if widest and _filled(r) >= HEADER_FILL * widest and not any(looks_like_email(c) for c in r if c)
        ),
        None,
    )
    if found is None:
        shape.unsure.append(f"no header found in the first {HEADER_SEARCH_ROWS} rows")
        found = 1
    shape.header_row = found + offset
    above = found - 1
    shape.evidence.append(
        f"header row {shape.header_row}: the first row with {_filled(rows[found - 1]) if rows else 0} named cells"
        + (f", below a title block of {above} row(s)" if above else "")
        + (" (row 1 is Excel's delimiter hint)" if offset else "")
    )


def _workbook_shape(path: Path, decided: dict[str, Any], workbook: str) -> Shape:
    shape = Shape(workbook, evidence=[f"format {workbook}: {FORMAT_NAMES[workbook]}, by its container"])
    first_rows = read_first_rows(path, HEADER_SEARCH_ROWS)
    if not first_rows:
        raise WaveFileError(path, "the workbook has no sheet that can be read")
    filled = {name: sum(_filled(r) for r in rows) for name, rows in first_rows.items()}
    if decided.get("sheet") in first_rows:
        shape.sheet = str(decided["sheet"])
        shape.evidence.append(f"sheet {shape.sheet!r}: as the spec says")
    else:
        shape.sheet = max(filled, key=lambda n: filled[n])
        others = [n for n in filled if n != shape.sheet and filled[n]]
        shape.evidence.append(
            f"sheet {shape.sheet!r}: the one with the most filled cells ({filled[shape.sheet]} in its first rows)"
        )
        if others:
            shape.unsure.append(f"other sheets hold data too: {', '.join(repr(n) for n in others)}")
    rows = [["" if c is None else str(c) for c in r] for r in first_rows[shape.sheet]]
    _find_header(shape, rows, decided)
    return shape


def read_delivery(path: Path, year: int, shape: Shape) -> Delivery:
    """The file read by intake's reader with the shape: its header and every column's distinct values."""
    import pyarrow as pa

    spec = WaveSpec(  # no columns: the reader expects none, and returns the header as the file has it
        wave_year=year,
        file=path,
        format=shape.format,
        columns={},
        cities_surveyed=(),
        questionnaire_version="draft",
        field_period_start=dt.date(year, 1, 1),
        field_period_end=dt.date(year, 12, 31),
        encoding=shape.encoding,
        delimiter=shape.delimiter,
        sheet=shape.sheet,
        header_row=shape.header_row,
    )
    with tempfile.TemporaryDirectory(prefix="wave-draft-") as scratch, duckdb.connect() as con:
        grid = read_grid(spec, con, Path(scratch))
        names = _sav_labels(path, grid.header) if shape.format == "sav" else {}
        columns = []
        for i, name in enumerate(grid.header, start=1):
            if shape.format == "sav" and name.endswith(CODE_SUFFIX):
                continue  # an SPSS variable's codes, beside its labels: the labels are what is matched
            name = names.get(name, name)  # noqa: PLW2901 (an SPSS variable by its label: the question as worded)
            counted = con.execute(
                f"select c{i} as v, count(*) from grid where trim(coalesce(c{i}, '')) <> '' group by 1 order by 2 desc"
            ).fetchall()
            values = {str(v): int(n) for v, n in counted}
            keys = match_keys(pa.array(list(values), pa.string())).to_pylist()
            times = _times(values, year)
            columns.append(
                Column(
                    i,
                    name,
                    values,
                    dict(zip(values, keys, strict=True)),
                    times=times[0],
                    first_time=times[1],
                    last_time=times[2],
                )
            )
        return Delivery(path, shape, columns, grid.rows)


def _sav_labels(path: Path, header: list[str]) -> dict[str, str]:
    """An SPSS file's variables by their labels (the questions as worded, which the wave spec may name them by),
    where a variable has a label no other variable has; the others keep their names."""
    labels = {v.name: v.label.strip() for v in read_sav_metadata(path).variables if v.label and v.label.strip()}
    counts = Counter(labels.values())
    return {name: label for name, label in labels.items() if counts[label] == 1 and name in header}


def _times(values: dict[str, int], year: int) -> tuple[int, dt.datetime | None, dt.datetime | None]:
    """How many of the column's rows read as a submission time, by the loader's own rule (intake.values), and the
    earliest and latest of them: (rows, first, last)."""
    rules = ValueRules(year, dt.date(year, 1, 1), dt.date(year, 12, 31))
    orders = column_date_orders(values, rules)
    rows, moments = 0, []
    for value, n in values.items():
        reading = read_timestamp(value, rules, orders)
        if reading.value is not None:
            rows += n
            moments.append(dt.datetime.fromisoformat(reading.value))
    return rows, min(moments, default=None), max(moments, default=None)
