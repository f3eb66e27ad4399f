"""A delivered spreadsheet's sheet into the grid: Excel workbooks (.xlsx, .xlsm, .xlsb), legacy Excel 97-2003
workbooks (.xls) and OpenDocument spreadsheets (.ods), all read with calamine (python-calamine, a compiled reader).

What the file really is has been judged from its bytes first: a container other than the spec's format, a damaged
zip archive, an encrypted file each get a verdict in words before calamine opens it. Cells become text as the
spreadsheet stored them: a date or time as ISO text, a whole number without a decimal point (and a number too large
for its digits to be exact in its shortest exact form, never with invented digits), text as typed (a "0012" stays
"0012"). Calamine decodes OOXML's `_xHHHH_` escapes itself, and refuses a sheet whose XML is cut off. What it does not
say is looked for in the sheet's XML (of .xlsx / .xlsm) with a cheap scan: a formula saved without its result, and
an error value (#N/A), both of which it reads as empty.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from survey_warehouse.errors import WaveFileError
from survey_warehouse.intake.grid import Grid, check_header, fill_grid
from survey_warehouse.intake.matching import shown
from survey_warehouse.intake.verdict import (
    ENCRYPTED,
    SAV,
    WORKBOOK_KINDS,
    container_of,
    ole2_kind,
    zip_kind,
)
from survey_warehouse.intake.waves import WaveSpec

WORKBOOK_CHUNK_ROWS = 2_000
EXACT_INTEGERS = 2**53  # a float's whole numbers are exact up to here; beyond, its digits are not all in the file
# A workbook saved as Transitional OOXML (Excel's "Excel Workbook") and one saved as Strict ("Strict Open XML
# Spreadsheet") name a sheet's elements and the workbook's relationships in namespaces of their own; calamine reads
# both, and so does the scan of a sheet's XML. The package's relationships are in one namespace in both.
SPREADSHEET_NAMESPACES = (
    "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "http://purl.oclc.org/ooxml/spreadsheetml/main",
)
RELATIONSHIP_NAMESPACES = (
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "http://purl.oclc.org/ooxml/officeDocument/relationships",
)
PACKAGE_RELATIONSHIP_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
CELL_REF = re.compile(r"([A-Z]+)(\d+)")
CELLS_NAMED = 4  # a message names this many of the cells it is about
FORMAT_NAMES = {
    "xlsx": "an Excel workbook (.xlsx or .xlsm)",
    "xlsb": "an Excel binary workbook (.xlsb)",
    "xls": "a legacy Excel 97-2003 workbook (.xls)",
    "ods": "an OpenDocument spreadsheet (.ods)",
}


def cell_text(value: Any) -> str | None:
    """A spreadsheet cell as calamine reads it, as text; an empty cell is None."""
    kind = type(value)
    if kind is str:  # most cells: text as typed
        return value if value != "" else None
    if kind is float:  # the shortest text that reads back as the number: no digits the file lacks
        return str(int(value)) if value.is_integer() and abs(value) < EXACT_INTEGERS else repr(value)
    text = _other_text(value)
    return text if text != "" else None


def _other_text(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):  # .xls stores numbers as floats too: a large one is no more exact as an int
        return str(value) if abs(value) < EXACT_INTEGERS else repr(float(value))
    if isinstance(value, dt.datetime):  # with its fraction of a second, when it has one
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):  # a float subclass
        return cell_text(float(value)) or ""
    return "" if value is None else str(value)  # a time of day (12:30:00), a duration (1:30:00)


def _damage(exc: BaseException) -> str:
    """What the reader found wrong, by the kind of error only: its text may quote the damaged cell's content."""
    kinds = {
        "XmlError": "its XML is malformed",
        "ZipError": "its zip archive is damaged",
        "CalamineError": "a part of it cannot be read",
        "ValueError": "a cell's value does not match its type",
        "PanicException": "its reader stopped on damaged data",
    }
    name = type(exc).__name__
    return f"{name}: {kinds[name]}" if name in kinds else name


def _delivered_format(spec: WaveSpec, head: bytes) -> str:
    """The workbook format of the file by its container, or a verdict when it is not the spec's."""
    path, kind = spec.file, container_of(head)
    if kind == "ole2":
        what = ole2_kind(path)
        if what == ENCRYPTED:
            raise WaveFileError(path, f"is {what}")
    elif kind == "zip":
        what = zip_kind(path)
        if what not in WORKBOOK_KINDS:
            raise WaveFileError(path, f"is {what}")
    elif kind == SAV:
        raise WaveFileError(
            path, f"is {SAV}, but the wave spec says format: {spec.format}; set format: sav in the spec"
        )
    elif kind is not None:
        raise WaveFileError(path, f"is {kind}, not a spreadsheet; ask for the survey export as .xlsx or CSV")
    else:
        raise WaveFileError(
            path,
            "is a text file (CSV or similar), not a spreadsheet, although the wave spec "
            f"says format: {spec.format}. Set format: csv (with its encoding and delimiter) in the spec, "
            f"or ask for the .{spec.format} export",
        )
    delivered = WORKBOOK_KINDS[what]
    if delivered != spec.format:
        advice = " (or open it in Excel and save it as .xlsx)" if delivered == "xls" and spec.format == "xlsx" else ""
        raise WaveFileError(
            path,
            f"is {what}, but the wave spec says format: {spec.format} ({FORMAT_NAMES[spec.format]}): "
            f"set format: {delivered} in the spec{advice}",
        )
    return delivered


AGAIN = "open it in Excel or LibreOffice and save it again, or ask for the file again"


def read_workbook(spec: WaveSpec, con: duckdb.DuckDBPyConnection, head: bytes) -> Grid:
    """The spec's sheet into `grid` (survey_warehouse.intake.grid); returns its Grid."""
    path = spec.file
    delivered = _delivered_format(spec, head)
    sheet_xml = _sheet_part(path, spec.sheet or "") if delivered == "xlsx" else None
    rows = enumerate(sheet_rows(spec), start=1)
    header = None
    for number, values in rows:
        if number == spec.header_row:
            header = check_header(spec, [(cell_text(v) or "").strip() for v in values])
            break
    if header is None:
        raise WaveFileError(
            path,
            f"the sheet ends before the header row {spec.header_row}; check 'header_row' in the wave spec",
            row=spec.header_row,
        )
    unresolved, errors = _sheet_findings(path, sheet_xml, spec.header_row) if sheet_xml else ([], {})
    _refuse_formulas_without_results(spec, unresolved, header)
    width = len(header)

    def numbered() -> Iterator[tuple[int, list[str | None]]]:
        # a sheet stores no empty cells at a row's end: such a row is as wide as the header, not ragged
        for number, values in rows:
            texts = [cell_text(v) for v in values]
            for column, error in errors.get(number, ()):  # an error value (#N/A) as the sheet shows it
                texts += [None] * (column - len(texts))
                texts[column - 1] = error
            yield number, texts + [None] * (width - len(texts))

    # smaller chunks than a text file's: their Python values are held beside the sheet calamine holds
    reader = f"calamine ({delivered})"
    grid = fill_grid(con, header, spec.header_row, numbered(), reader=reader, chunk_rows=WORKBOOK_CHUNK_ROWS)
    _hand_back_freed_memory()
    return grid


def _hand_back_freed_memory() -> None:
    """The sheet calamine held, freed once read, stays in the C library's heap (many small blocks), where DuckDB's
    own allocator cannot reuse it: handed back to the system, the load's checks do not add to it (a 100,000-row
    workbook's load peaks about 40 MiB lower)."""
    import contextlib
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):  # not the GNU C library (macOS, musl): nothing to hand back
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


INTERRUPTS = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _reader_failed(exc: BaseException) -> bool:
    """An error of the reader on a damaged file: calamine's own, Python's, or a panic of its Rust code (pyo3's
    PanicException derives from BaseException). Not an interrupt, which goes on up."""
    return not isinstance(exc, INTERRUPTS)


def _open_workbook(path: Path) -> Any:
    """The workbook opened by calamine, or a verdict: encrypted, or damaged (a panic of its reader included)."""
    from python_calamine import CalamineWorkbook, PasswordError

    try:
        return CalamineWorkbook.from_path(str(path))
    except PasswordError:
        raise WaveFileError(path, f"is {ENCRYPTED}") from None
    except BaseException as exc:  # calamine raises its own kinds, and others (a panic too), for a damaged file
        if not _reader_failed(exc):
            raise
        raise WaveFileError(path, f"the workbook is damaged and cannot be opened ({_damage(exc)}); {AGAIN}") from None


def _damaged_sheet(path: Path, sheet: str | None, exc: BaseException) -> BaseException:
    """The verdict on a sheet the reader fails on; an interrupt is given back as it is, to go on up."""
    if not _reader_failed(exc):
        return exc
    return WaveFileError(path, f"the sheet {shown(sheet)} is damaged and cannot be read ({_damage(exc)}); {AGAIN}")


def sheet_rows(spec: WaveSpec) -> Iterator[list[Any]]:
    """The spec's sheet, row by row from row 1 and column A, as calamine reads its values: the sheet's cells are
    held by calamine, each row becomes Python values only when it is handed on."""
    from python_calamine import PasswordError

    path = spec.file
    workbook = _open_workbook(path)
    with workbook:
        if spec.sheet not in workbook.sheet_names:
            raise WaveFileError(
                path,
                f"sheet {shown(spec.sheet)} not found; the workbook has "
                f"{', '.join(shown(s) for s in workbook.sheet_names)}: fix 'sheet' in the spec",
            )
        try:
            sheet = workbook.get_sheet_by_name(spec.sheet)
        except PasswordError:
            raise WaveFileError(path, f"is {ENCRYPTED}") from None
        except BaseException as exc:
            raise _damaged_sheet(path, spec.sheet, exc) from None
    # The sheet as far as its cells go (the size the file records, <dimension>, which tools other than Excel write
    # wrong, is not what limits it). Calamine hands on its rows from row 1, each from the first column that holds
    # a cell: the columns left of it are put back, so that a cell keeps its column.
    end = sheet.end
    columns = end[1] + 1 if end is not None else 0
    rows = sheet.iter_rows()
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except BaseException as exc:
            raise _damaged_sheet(path, spec.sheet, exc) from None
        yield [None] * (columns - len(row)) + row if len(row) < columns else row


def workbook_format(path: Path, head: bytes) -> str | None:
    """The spreadsheet format a file is by its container (xlsx, xlsb, xls, ods), or None when it is not one."""
    kind = container_of(head)
    if kind == "ole2":
        what = ole2_kind(path)
    elif kind == "zip":
        what = zip_kind(path)
    else:
        return None
    return WORKBOOK_KINDS.get(what)


def first_rows(path: Path, rows: int) -> dict[str, list[list[Any]]]:
    """Every sheet's first `rows` rows as calamine reads them (from row 1 and column A), by sheet name."""

    workbook = _open_workbook(path)
    found: dict[str, list[list[Any]]] = {}
    with workbook:
        for name in workbook.sheet_names:
            try:
                sheet = workbook.get_sheet_by_name(name)
                end = sheet.end
                columns = end[1] + 1 if end is not None else 0
                found[name] = [
                    [None] * (columns - len(row)) + row if len(row) < columns else row
                    for row in itertools.islice(sheet.iter_rows(), rows)
                ]
            except BaseException as exc:  # a damaged or protected sheet: the draft proposes from the others
                if not _reader_failed(exc):
                    raise
                logging.getLogger(__name__).warning("%s: sheet %s cannot be read (%s)", path, name, _damage(exc))
    return found


def _spreadsheet_name(tag: str) -> str | None:
    """An element's name (`c`, `row`, `sheet`) when it is of SpreadsheetML, Transitional or Strict; else None."""
    namespace, _, name = tag.partition("}")
    return name if namespace[1:] in SPREADSHEET_NAMESPACES else None


def _sheet_part(path: Path, sheet: str) -> str | None:
    """The zip member holding the named sheet of an .xlsx / .xlsm (None when the workbook does not name it)."""
    from openpyxl.xml.functions import fromstring  # defused XML parsing, as openpyxl reads a workbook

    try:
        with zipfile.ZipFile(path) as archive:
            book = fromstring(archive.read("xl/workbook.xml"))
            rels = fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    except Exception:  # a damaged package: calamine's opening says so
        return None
    targets = {r.get("Id"): r.get("Target") or "" for r in rels.iter(f"{PACKAGE_RELATIONSHIP_NS}Relationship")}
    for element in book.iter():
        if _spreadsheet_name(element.tag) == "sheet" and element.get("name") == sheet:
            ids = (element.get(f"{{{namespace}}}id") for namespace in RELATIONSHIP_NAMESPACES)
            target = targets.get(next((i for i in ids if i), None), "")
            return target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    return None


class _CellPlaces:
    """Where each cell of a sheet's XML is, by OOXML's rule, which leaves a cell's reference (`r`) optional: a row
    without `r` is the row after the previous row (row 1 for the first), a cell without `r` the column after the
    previous cell of its row (column A for the first). Calamine places cells so."""

    def __init__(self) -> None:
        self.row, self.column = 0, 0

    def enter_row(self, reference: str | None) -> None:
        self.row = int(reference) if reference and reference.isdigit() else self.row + 1
        self.column = 0

    def cell(self, reference: str | None) -> tuple[int, int]:
        """The (column, row) of the next cell of the row, 1-based, by its reference or by the rule."""
        where = CELL_REF.fullmatch(reference or "")
        if where is None:
            self.column += 1
            return self.column, self.row
        self.column = _column_index(where.group(1))
        return self.column, int(where.group(2))


def _sheet_findings(
    path: Path, sheet_xml: str, from_row: int
) -> tuple[list[tuple[int, int]], dict[int, list[tuple[int, str]]]]:
    """What calamine does not say, from the sheet's XML, from `from_row` down: (column, row) of every cell that
    holds a formula and no result (a workbook saved by a tool that does not calculate; Excel always stores the
    result), which calamine reads as empty; and each row's error values (#N/A, #DIV/0!) by column, which it reads
    as empty too. The XML is parsed only when a chunk-by-chunk look finds a formula or an error value in it."""
    from openpyxl.xml.functions import iterparse  # defused XML parsing, as openpyxl reads a workbook

    unresolved: list[tuple[int, int]] = []
    errors: dict[int, list[tuple[int, str]]] = {}
    if not _holds_formulas_or_errors(path, sheet_xml):  # the usual case
        return unresolved, errors
    places = _CellPlaces()
    with zipfile.ZipFile(path) as archive, archive.open(sheet_xml) as part:
        for event, element in iterparse(part, events=("start", "end")):
            name = _spreadsheet_name(element.tag)
            if event == "start":
                if name == "row":
                    places.enter_row(element.get("r"))
                continue
            if name == "c":
                column, row = places.cell(element.get("r"))
                if row >= from_row:
                    parts = {_spreadsheet_name(child.tag): child for child in element}
                    formula, value = parts.get("f"), parts.get("v")
                    # Excel stores a formula whose result is "" as t="str" with an empty <v/>: a result
                    no_result = value is None or (value.text is None and element.get("t") != "str")
                    if formula is not None and no_result:
                        unresolved.append((column, row))
                    elif element.get("t") == "e" and value is not None and value.text:
                        errors.setdefault(row, []).append((column, value.text))
                element.clear()
            elif name == "row":
                element.clear()
    return unresolved, errors


FORMULA_OR_ERROR = (b"<f", b":f>", b":f ", b't="e"', b"t='e'")


def _holds_formulas_or_errors(path: Path, sheet_xml: str) -> bool:
    """Whether the sheet's XML has a formula element (<f>, or <x:f> with a prefix) or a cell of type error, read a
    chunk at a time."""
    tail = b""
    with zipfile.ZipFile(path) as archive, archive.open(sheet_xml) as part:
        while chunk := part.read(1 << 20):
            window = tail + chunk
            if any(marker in window for marker in FORMULA_OR_ERROR):
                return True
            tail = chunk[-6:]
    return False


def _refuse_formulas_without_results(spec: WaveSpec, unresolved: list[tuple[int, int]], header: list[str]) -> None:
    if not unresolved:
        return
    index, row = unresolved[0]
    cells = ", ".join(f"{_column_letters(c)}{r}" for c, r in unresolved[:CELLS_NAMED])
    more = " ..." if len(unresolved) > CELLS_NAMED else ""
    raise WaveFileError(
        spec.file,
        f"{len(unresolved)} cell(s) of the sheet hold a formula without its result ({cells}{more}): the program "
        "that saved the workbook did not calculate them, so their answers would be read as empty; open it in Excel "
        "or LibreOffice and save it again, or ask for the file again",
        row=row,
        column=shown(header[index - 1]) if 0 < index <= len(header) else None,
    )


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - ord("A") + 1
    return index


def _column_letters(index: int) -> str:
    """A column's letters (1 = A, 27 = AA), as a cell's reference writes them."""
    letters = ""
    while index > 0:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters
