"""A delivered spreadsheet's sheet into the grid: Excel workbooks (.xlsx, .xlsm, .xlsb), legacy Excel 97-2003
workbooks (.xls) and OpenDocument spreadsheets (.ods), all read with calamine (python-calamine, a compiled reader).

What the file really is has been judged from its bytes first: a container other than the spec's format, a damaged
zip archive, an encrypted file each get a verdict in words before calamine opens it. Cells become text as the
spreadsheet stored them: a date or date-time as ISO text, a time or duration in total hours (51:00:00, as every
reader writes one), a whole number without a decimal point (and a number too large for its digits to be exact in
its shortest exact form, never with invented digits), text as typed (a "0012" stays "0012"). Calamine decodes
OOXML's `_xHHHH_` escapes itself, and refuses a sheet whose XML is cut off. What it does not say is looked for in
the sheet itself, only when a cheap look at its bytes finds it there: in an .xlsx / .xlsm's XML, a formula saved without
its result and an error value (#N/A), both of which it reads as empty, and cells that reach so far beyond what they
fill that the dense rectangle calamine would hold does not fit in memory (a cell typed at XFD1048576), refused
before it reads; in an .ods, formulas and error values and what else it reads otherwise, far cells as in an
.xlsx, and a table inside a cell, where it would end the sheet (survey_warehouse.intake.opendocument); in an .xls and
an .xlsb, error values, from the sheet's binary records (survey_warehouse.intake.binary: a formula's result is part
of its record there, so none is saved without one).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import re
import string
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import duckdb

from survey_warehouse.errors import WaveFileError
from survey_warehouse.intake.grid import Grid, check_header, fill_grid
from survey_warehouse.intake.matching import match_key, shown
from survey_warehouse.intake.values import clock_text
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
CELL_REF = re.compile(r"([A-Za-z]+)(\d+)")  # the reader takes a reference's letters in either case
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
    if isinstance(value, dt.date):  # a date-time with its fraction of a second, when it has one
        return value.isoformat()
    if isinstance(value, dt.timedelta | dt.time):
        return _clock_cell(value)
    if isinstance(value, float):  # a float subclass
        return cell_text(float(value)) or ""
    return "" if value is None else str(value)


def _clock_cell(value: dt.timedelta | dt.time) -> str:
    """A duration ([h]:mm:ss) in total hours (51:00:00), and a time (h:mm:ss), which may be a duration under a day, in
    the same form (0:12:30): as every reader writes a time or duration cell."""
    if isinstance(value, dt.timedelta):
        return clock_text(value // dt.timedelta(microseconds=1))
    return clock_text(((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond)


def _damage(exc: BaseException) -> str:
    """What the reader found wrong, by the kind of error only: its text may quote the damaged cell's content."""
    kinds = {
        "XmlError": "its XML is malformed",
        "ZipError": "its zip archive is damaged",
        "CalamineError": "a part of it cannot be read",
        "ValueError": "a cell's value does not match its type",
        "PanicException": "its reader stopped on damaged data",
        "BadZipFile": "its zip archive is damaged",
        "error": "its compressed data is damaged",  # zlib's
        "KeyError": "a part the package names is missing",
        "UnicodeDecodeError": "a name or text in it is no text in its encoding",
        "EOFError": "a part of it is cut off",
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
    with _damage_said(path, spec.sheet):  # what is read of the file before the reader opens it
        sheet_xml = _sheet_part(path, spec.sheet or "") if delivered == "xlsx" else None
        look = _look_over(path, sheet_xml) if sheet_xml else None
        if sheet_xml and look:
            _refuse_far_cells(path, spec.sheet, sheet_xml, look)
        if delivered == "ods":
            from survey_warehouse.intake.opendocument import refuse_unreadable_tables

            refuse_unreadable_tables(path, spec.sheet)
        if delivered in ("xls", "xlsb"):
            from survey_warehouse.intake.binary import refuse_far_cells

            refuse_far_cells(path, delivered, spec.sheet)
        unknown, unresolved, shown_cells, clocks = _findings(spec, delivered, sheet_xml, look)

    def as_shown(number: int, values: list[Any]) -> list[str | None]:
        """A row's cells as the sheet shows them: calamine's values, with what it reads otherwise put back (#N/A,
        a tab in an .ods, a negative duration it wraps into a time of day)."""
        nonlocal clocks
        texts = [cell_text(v) for v in values]
        if clocks is None:  # an .xls: its negative numbers read from its records once it hands on a time
            if not any(isinstance(v, dt.time | dt.datetime | dt.timedelta) for v in values):
                return _with_shown(texts, shown_cells.get(number, ()), 0)
            from survey_warehouse.intake.binary import xls_negative_numbers

            clocks = xls_negative_numbers(path, spec.sheet or "", spec.header_row)
        for column, days in clocks.get(number, ()):
            if column <= len(values) and isinstance(values[column - 1], dt.time | dt.datetime | dt.timedelta):
                texts[column - 1] = clock_text(round(days * MICROSECONDS_A_DAY))
        return _with_shown(texts, shown_cells.get(number, ()), 0)

    rows = enumerate(sheet_rows(spec), start=1)
    header = None
    for number, values in rows:
        if number == spec.header_row:
            header = check_header(spec, [(text or "").strip() for text in as_shown(number, values)])
            break
    if header is None:
        raise WaveFileError(
            path,
            f"the sheet ends before the header row {spec.header_row}; check 'header_row' in the wave spec",
            row=spec.header_row,
        )
    _refuse_cells(spec, unknown, header, UNKNOWN_ERRORS)
    _refuse_cells(spec, unresolved, header, WITHOUT_RESULTS)
    # The reader hands on every row as wide as the sheet: the header's columns are those up to its last named one,
    # and a value right of them (typed at XFD60, or repeated across a whole row of an .ods) is kept as the cell it
    # is, right of the header, not as thousands of empty columns of every row
    header = header[: max((i for i, name in enumerate(header, start=1) if name), default=0)]
    _refuse_far_names(spec, header)
    width = len(header)

    def numbered() -> Iterator[tuple[int, list[str | None]]]:
        # a sheet stores no empty cells at a row's end: such a row is as wide as the header, not ragged
        last = spec.header_row
        for number, values in rows:
            last = number
            yield number, _with_shown(as_shown(number, values), (), width)
        # rows below the reader's last (an .xlsb's formula that failed, which it skips, may be all a row holds)
        for number in sorted(n for n in shown_cells if n > last):
            yield number, _with_shown([], shown_cells[number], width)

    # smaller chunks than a text file's: their Python values are held beside the sheet calamine holds
    reader = f"calamine ({delivered})"
    grid = fill_grid(
        con, header, spec.header_row, numbered(), reader=reader, chunk_rows=WORKBOOK_CHUNK_ROWS, ragged=False
    )
    _hand_back_freed_memory()
    return grid


Clocks = dict[int, list[tuple[int, float]]]  # a row's negative numbers (days) by column, which calamine wraps


def _findings(
    spec: WaveSpec, delivered: str, sheet_xml: str | None, look: _Look | None
) -> tuple[list[tuple[int, int]], list[tuple[int, int]], dict[int, list[tuple[int, str]]], Clocks | None]:
    """What the reader does not say of the spec's sheet, from the header row down, by its format: error values of a
    code the format does not know and formulas saved without their results (both refused, by cell), the cells as
    the sheet shows them where the reader reads them otherwise, and negative numbers by row (None: an .xls, whose
    are read only if the reader hands on a time)."""
    path = spec.file
    if sheet_xml and look and look.formulas_or_errors:
        try:
            unresolved, shown_cells, negatives = _sheet_findings(path, sheet_xml, spec.header_row)
        except Exception as exc:  # XML calamine takes but the defused parser refuses (an entity, a DTD)
            raise _damaged_sheet(path, spec.sheet, exc) from None
        return [], unresolved, shown_cells, negatives
    if delivered == "ods":
        from survey_warehouse.intake.opendocument import ods_findings

        unresolved, shown_cells = ods_findings(path, spec.sheet or "", spec.header_row)
        return [], unresolved, shown_cells, {}
    if delivered in ("xls", "xlsb"):  # a formula's result is part of its record: only error values to find
        from survey_warehouse.intake.binary import xls_errors, xlsb_errors

        scan = xls_errors if delivered == "xls" else xlsb_errors
        unknown, shown_cells = scan(path, spec.sheet or "", spec.header_row)
        return unknown, [], shown_cells, None if delivered == "xls" else {}
    return [], [], {}, {}


def _with_shown(texts: list[str | None], shown_cells: Iterable[tuple[int, str]], width: int) -> list[str | None]:
    """A row's cells with those calamine reads otherwise (#N/A) as the sheet shows them, (column, text) each, and
    as wide as the header at least."""
    for column, text in shown_cells:
        texts += [None] * (column - len(texts))
        texts[column - 1] = text
    return texts + [None] * (width - len(texts))


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


@contextlib.contextmanager
def _damage_said(path: Path, sheet: str | None) -> Iterator[None]:
    """What is read of the file's parts beside the reader (its sheets' XML or records, before the reader opens it)
    fails in words: a damaged zip entry (a wrong checksum, broken compressed data), a part the package names but
    lacks, bytes that are no text, as the reader's own failures are told."""
    try:
        yield
    except WaveFileError:
        raise
    except Exception as exc:
        raise _damaged_sheet(path, sheet, exc) from None


def _damaged_sheet(path: Path, sheet: str | None, exc: BaseException) -> BaseException:
    """The verdict on a sheet the reader fails on; an interrupt is given back as it is, to go on up."""
    if not _reader_failed(exc):
        return exc
    what = f"the sheet {shown(sheet)}" if sheet is not None else "the workbook"
    return WaveFileError(path, f"{what} is damaged and cannot be read ({_damage(exc)}); {AGAIN}")


def sheet_rows(spec: WaveSpec) -> Iterator[list[Any]]:
    """The spec's sheet, row by row from row 1 and column A, as calamine reads its values: the sheet's cells are
    held by calamine, each row becomes Python values only when it is handed on."""
    from python_calamine import PasswordError

    path = spec.file
    workbook = _open_workbook(path)
    with workbook:
        name = _sheet_named(path, workbook.sheet_names, spec.sheet)
        try:
            sheet = workbook.get_sheet_by_name(name)
        except PasswordError:
            raise WaveFileError(path, f"is {ENCRYPTED}") from None
        except BaseException as exc:
            raise _damaged_sheet(path, name, exc) from None
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
            raise _damaged_sheet(path, name, exc) from None
        yield [None] * (columns - len(row)) + row if len(row) < columns else row


def _matching_sheets(names: list[str], wanted: str | None) -> list[str]:
    """The sheets the spec's `sheet` names: the sheet of that very name, or else those whose names have its match
    key (survey_warehouse.intake.matching: a name typed with letters composed or decomposed, `ä` or `a` and a
    combining diaeresis, in other case or spacing, is the same name)."""
    if wanted in names:
        return [wanted]
    key = match_key(wanted)
    return [name for name in names if key is not None and match_key(name) == key]


def _sheet_named(path: Path, names: list[str], wanted: str | None) -> str:
    """The one sheet the spec's `sheet` names, or a verdict listing the workbook's sheets."""
    found = _matching_sheets(names, wanted)
    if len(found) == 1:
        return found[0]
    listed = ", ".join(shown(s) for s in names)
    if found:
        raise WaveFileError(
            path,
            f"sheet {shown(wanted)} could be {' or '.join(shown(s) for s in found)}, whose names differ only in "
            f"case, spacing or how their letters are typed; the workbook has {listed}: write the one with the "
            "answers exactly in 'sheet' in the spec",
        )
    raise WaveFileError(path, f"sheet {shown(wanted)} not found; the workbook has {listed}: fix 'sheet' in the spec")


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

    with open(path, "rb") as file:
        delivered = workbook_format(path, file.read(8192))
    if delivered == "ods":  # the reader reads every sheet of an .ods when it opens it
        from survey_warehouse.intake.opendocument import refuse_unreadable_tables

        with _damage_said(path, None):
            refuse_unreadable_tables(path)
    if delivered == "xls":  # and builds every sheet of an .xls
        from survey_warehouse.intake.binary import refuse_far_cells

        with _damage_said(path, None):
            refuse_far_cells(path, delivered)
    workbook = _open_workbook(path)
    found: dict[str, list[list[Any]]] = {}
    with workbook:
        for name in workbook.sheet_names:
            try:
                with _damage_said(path, name):
                    part = _sheet_part(path, name)
                    if part:
                        _refuse_far_cells(path, name, part, _look_over(path, part))
                    elif delivered == "xlsb":
                        from survey_warehouse.intake.binary import refuse_far_cells

                        refuse_far_cells(path, delivered, name)
            except WaveFileError as refused:  # read whole, the sheet would not fit in memory
                logging.getLogger(__name__).warning("%s: sheet %s is left out: %s", path, shown(name), refused.reason)
                continue
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
            targets = _relationship_targets(archive, "xl/_rels/workbook.xml.rels")
    except Exception:  # a damaged package: calamine's opening says so
        return None
    sheets = [element for element in book.iter() if _spreadsheet_name(element.tag) == "sheet"]
    named = _matching_sheets([element.get("name") or "" for element in sheets], sheet)
    for element in sheets:
        if named == [element.get("name")]:
            ids = (element.get(f"{{{namespace}}}id") for namespace in RELATIONSHIP_NAMESPACES)
            return targets.get(next((i for i in ids if i), None), "xl/")
    return None


def _relationship_targets(archive: zipfile.ZipFile, member: str) -> dict[str | None, str]:
    """The workbook's relationships (xl/_rels/workbook.xml.rels, or .bin.rels): each one's id and the member it
    names, a target relative to xl/ or, beginning with a slash, to the package."""
    from openpyxl.xml.functions import fromstring  # defused XML parsing, as openpyxl reads a workbook

    rels = fromstring(archive.read(member))
    targets = {r.get("Id"): r.get("Target") or "" for r in rels.iter(f"{PACKAGE_RELATIONSHIP_NS}Relationship")}
    return {i: target.lstrip("/") if target.startswith("/") else f"xl/{target}" for i, target in targets.items()}


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


def _placed_cells(
    path: Path, sheet_xml: str, name_of: Callable[[str], str | None] = _spreadsheet_name
) -> Iterator[tuple[int, int, dict[str | None, Any], Any]]:
    """Each cell of the sheet's XML, in order: its (column, row), 1-based, by `_CellPlaces`; its children by name
    (`v`, `f`, `is`); and its element. `name_of`: an element's name, by its tag. The XML is parsed as it is read,
    each cell let go once handed on."""
    from openpyxl.xml.functions import iterparse  # defused XML parsing, as openpyxl reads a workbook

    places = _CellPlaces()
    with zipfile.ZipFile(path) as archive, archive.open(sheet_xml) as part:
        for event, element in iterparse(part, events=("start", "end")):
            name = name_of(element.tag)
            if event == "start":
                if name == "row":
                    places.enter_row(element.get("r"))
                continue
            if name == "c":
                column, row = places.cell(element.get("r"))
                yield column, row, {name_of(child.tag): child for child in element}, element
                element.clear()
            elif name == "row":
                element.clear()


def _sheet_findings(
    path: Path, sheet_xml: str, from_row: int
) -> tuple[list[tuple[int, int]], dict[int, list[tuple[int, str]]], dict[int, list[tuple[int, float]]]]:
    """What calamine does not say, from the sheet's XML, from `from_row` down: (column, row) of every cell that
    holds a formula and no result (a workbook saved by a tool that does not calculate; Excel always stores the
    result), which calamine reads as empty; each row's error values (#N/A, #DIV/0!) by column, which it reads as
    empty too; and each row's negative numbers by column (in days), which calamine wraps into a time of day when the
    cell is formatted as a time (-0:01 as 23:59). Parsed only when `_look_over` finds one of them in the XML."""
    unresolved: list[tuple[int, int]] = []
    errors: dict[int, list[tuple[int, str]]] = {}
    negatives: dict[int, list[tuple[int, float]]] = {}
    for column, row, parts, cell in _placed_cells(path, sheet_xml):
        if row < from_row:
            continue
        formula, value = parts.get("f"), parts.get("v")
        # Excel stores a formula whose result is "" as t="str" with an empty <v/>: a result, not a missing one
        no_result = value is None or (value.text is None and cell.get("t") != "str")
        if formula is not None and no_result:
            unresolved.append((column, row))
        elif cell.get("t") == "e" and value is not None and value.text:
            errors.setdefault(row, []).append((column, value.text))
        elif cell.get("t") in (None, "n") and value is not None and (value.text or "").startswith("-"):
            with contextlib.suppress(ValueError):
                negatives.setdefault(row, []).append((column, float(value.text or "")))
    return unresolved, errors, negatives


MICROSECONDS_A_DAY = 86_400_000_000
# a formula (<f>, <x:f ...>), an error value (t="e", with any spaces and quotes XML allows), or a negative number
# (<v>-, which calamine wraps when its cell is a time), in a chunk of whole tags
FORMULA_OR_ERROR = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?f[\s/>]|\st\s*=\s*[\"']e[\"']|<(?:[A-Za-z_][\w.-]*:)?v(?:\s[^>]*)?>\s*-"
)
# A sheet is read into a dense grid (calamine holds each cell of the rectangle from A1 to its last row and column
# holding a value, 32 bytes a cell, empty or not): one cell typed far from the answers (XFD1048576) would make it 17
# billion cells. A sheet whose rectangle is larger than SPAN_CELLS and SPAN_PER_CELL times the cells it holds is
# refused, and so is one larger than SPAN_LIMIT however full.
SPAN_CELLS = 1 << 22  # 128 MiB of the reader's cells
SPAN_PER_CELL = 32  # a sheet holding fewer than 1 cell in 32 of its rectangle is no table of answers
SPAN_LIMIT = 1 << 25  # 1 GiB of the reader's cells: no sheet of answers is as large
READER_CELL_BYTES = 32
LOOK_CHUNK = 1 << 20
LETTERS, DIGITS = string.ascii_letters.encode(), string.digits.encode()


def _look_patterns(prefix: bytes) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """What the look over a sheet's bytes reads, for elements of the prefix (a pattern), as XML allows them written
    (any whitespace after a name, a reference in either case): (1) every cell, with its reference when that is its
    first attribute, as writers put it (else the reader places it by the cells before it, and the look is unsure);
    (2) a value of a cell (<v>, <is>)."""
    return (
        re.compile(rb"<" + prefix + rb"c(?=[\s/>])(?:\s+r\s*=\s*[\"']([A-Za-z]{1,3}[0-9]{1,7})[\"'])?"),
        re.compile(rb"<" + prefix + rb"(?:v|is)[\s/>]"),
    )


# the reader goes by an element's name after its prefix (<c>, <x:c>): a sheet whose cells have one is read so
UNPREFIXED, ANY_PREFIX = _look_patterns(b""), _look_patterns(rb"(?:[^\s<>/:=\"']+:)?")
PREFIXED_CELL = re.compile(rb":c[\s/>]")
UNREAD_MARKUP = re.compile(rb"<[!?]")  # a comment, CDATA, a DTD, a processing instruction: the look does not read them
XML_DECLARATION = re.compile(rb"(?:\xef\xbb\xbf)?\s*<\?xml[^>]*\?>")


def holds_markers(path: Path, member: str, markers: tuple[bytes, ...]) -> bool:
    """Whether a member of the archive (a sheet's XML) holds any of the markers, read a chunk at a time."""
    tail = b""
    overlap = max(len(m) for m in markers) - 1
    with zipfile.ZipFile(path) as archive, archive.open(member) as part:
        while chunk := part.read(1 << 20):
            window = tail + chunk
            if any(marker in window for marker in markers):
                return True
            tail = window[-overlap:]
    return False


@dataclass
class _Look:
    """What a chunk-by-chunk read of a sheet's bytes tells, without parsing them: whether it holds a formula or an
    error value; a cell of the last row and one of the last column any reference reaches, wherever in the file (rows
    may come in any order; what <row r> and <dimension> say is not taken); whether it is unsure of where a cell
    lies; and how many values its cells hold, counted only when that matters (see `_look_over`)."""

    formulas_or_errors: bool = False
    cells: int = 0
    lowest: tuple[int, int] = (0, 0)  # (column, row)
    rightmost: tuple[int, int] = (0, 0)
    unsure: bool = False

    def may_spread(self) -> bool:
        """Whether the cells may reach far beyond what they fill: the rectangle of their references may be larger
        than allowed for the values the sheet holds, or the look is unsure of where a cell lies."""
        return self.unsure or _too_spread(self.lowest[1] * self.rightmost[0], self.cells)

    def read(self, text: bytes) -> None:
        """A part of the sheet's XML holding whole tags."""
        cells, _values = ANY_PREFIX if PREFIXED_CELL.search(text) else UNPREFIXED
        self.formulas_or_errors = self.formulas_or_errors or FORMULA_OR_ERROR.search(text) is not None
        found = cells.findall(text)
        self.unsure = self.unsure or b"" in found or UNREAD_MARKUP.search(text) is not None
        found = [reference for reference in found if reference] if self.unsure else found
        if not found:
            return
        rows = list(map(int, map(bytes.lstrip, found, repeat(LETTERS))))
        row = max(rows)
        if row > self.lowest[1]:
            self.lowest = (_column_index(found[rows.index(row)].rstrip(DIGITS).decode()), row)
        letters = list(map(bytes.rstrip, found, repeat(DIGITS)))
        column, widest = max((_column_index(each.decode()), each) for each in set(letters))
        if column > self.rightmost[0]:
            self.rightmost = (column, rows[letters.index(widest)])


def _sparse(span: int, cells: int) -> bool:
    return span > max(SPAN_CELLS, SPAN_PER_CELL * cells)


def _too_spread(span: int, cells: int) -> bool:
    return span > SPAN_LIMIT or _sparse(span, cells)


def _look_over(path: Path, sheet_xml: str) -> _Look:
    """The sheet's XML read a chunk at a time; its values counted in a second read, only when its references' rectangle
    is large enough for that to matter."""
    look = _Look()
    for text in _whole_tags(path, sheet_xml):
        look.read(text)
    if not look.unsure and SPAN_CELLS < look.lowest[1] * look.rightmost[0] <= SPAN_LIMIT:
        for text in _whole_tags(path, sheet_xml):
            values = (ANY_PREFIX if PREFIXED_CELL.search(text) else UNPREFIXED)[1]
            look.cells += len(values.findall(text))
    return look


def _whole_tags(path: Path, member: str, before: bytes = b"<") -> Iterator[bytes]:
    """A member of the archive (a sheet's XML) a chunk at a time, each up to the last `before` in it, a tag's start
    (every tag in it whole, the rest handed on with the next chunk), in the memory of a chunk; its XML declaration
    left out."""
    pending = b""
    with zipfile.ZipFile(path) as archive, archive.open(member) as part:
        chunk = part.read(LOOK_CHUNK)
        declared = XML_DECLARATION.match(chunk)
        chunk = chunk[declared.end() :] if declared else chunk
        while True:
            window = pending + chunk
            cut = window.rfind(before, max(len(pending) - len(before) + 1, 0)) if chunk else len(window)
            if cut > 0:
                yield window[:cut]
                pending = window[cut:]
            else:  # no tag begins in the chunk (a long text): read on
                pending = window
            if not chunk:
                return
            chunk = part.read(LOOK_CHUNK)


def _local_name(tag: str) -> str:
    """An element's name without its namespace: the reader takes a sheet's `c`, `row`, `v` in any namespace."""
    return tag.rpartition("}")[2]


def _refuse_far_cells(path: Path, sheet: str | None, sheet_xml: str, look: _Look) -> None:
    """The verdict on a sheet whose cells reach far beyond what they fill (a cell typed or pasted far below or right
    of the answers): read whole, it would not fit in memory. Its cells' places are parsed only when the look over
    its XML says they may reach so far, and placed as the reader places them."""
    if not look.may_spread():
        return
    cells = 0
    lowest, rightmost = (0, 0), (0, 0)  # (column, row): the first cell of the last row, the first of the last column
    try:
        for column, row, parts, _cell in _placed_cells(path, sheet_xml, _local_name):
            if parts.keys() & {"v", "is"}:  # a cell without a value (styled, a formula without its result) is not read
                cells += 1
                lowest = max(lowest, (column, row), key=lambda cell: cell[1])
                rightmost = max(rightmost, (column, row), key=lambda cell: cell[0])
    except Exception as exc:  # XML the parser refuses (cut off, or with a DTD the reader skips)
        if look.unsure:  # where its cells lie is not known but by parsing it
            raise _damaged_sheet(path, sheet, exc) from None
        cells, lowest, rightmost = look.cells, look.lowest, look.rightmost  # what the look saw of it
    refuse_spread(path, sheet, cells, lowest, rightmost)


def refuse_spread(
    path: Path,
    sheet: str | None,
    cells: int,
    lowest: tuple[int, int],
    rightmost: tuple[int, int],
    cell_bytes: int = READER_CELL_BYTES,
    written: int | None = None,
    repeated: Callable[[], tuple[int, int, int, int] | None] | None = None,
) -> None:
    """The verdict on a sheet too large to read whole: from A1 to its last row and column holding a value (`lowest`
    and `rightmost`: (column, row) of a cell there), larger than allowed for the `cells` it holds, or than any
    sheet of answers; or, where the file stores a cell once for many (an .ods's repeated rows and cells), larger
    than allowed for the `written` cells it stores, as if they were all it held. `cell_bytes`: what the reader
    holds of a cell; `repeated`: (column, row, across, down) of the cell repeated most, looked for only then."""
    rows, columns = lowest[1], rightmost[0]
    span = rows * columns
    stored = cells if written is None else min(written, cells)
    if not _too_spread(span, stored):
        return
    far = " and ".join(
        f"{_column_letters(c)}{r}" for c, r in [lowest, *([rightmost] if rightmost[0] > lowest[0] else [])]
    )
    whole = (
        f"read whole, the sheet is {rows:,} rows by {columns:,} columns ({span:,} cells, "
        f"{span * cell_bytes / (1 << 30):,.1f} GiB in memory)"
    )
    most = repeated() if repeated and not _too_spread(span, cells) else None
    if most:  # a few cells of the file stand for the sheet's millions
        column, row, across, down = most
        times = " and ".join(f"{n:,} times {way}" for n, way in [(across, "across"), (down, "down")] if n > 1)
        said = (
            f"stores {stored:,} cells, but cell {_column_letters(column)}{row} is repeated {times} "
            f"({across * down:,} cells from a few bytes of the file), reaching {far}: {whole}. A value filled or "
            "pasted down whole columns or across whole rows does this: in LibreOffice or Excel, delete the rows "
            "below the answers and the columns right of them (or clear the repeated cells) and save the file again, "
            "or ask for the file again"
        )
        raise WaveFileError(path, f"the sheet {shown(sheet)} {said}", row=row)
    cells = cells if _too_spread(span, cells) else stored  # no cell found repeated: as many as are stored
    if _sparse(span, cells):
        said = (
            f"holds {cells:,} cells, but they reach {far}: {whole}, nearly all empty. A cell typed or pasted far from "
            "the answers does this: in Excel or LibreOffice, clear that cell (or delete the rows below the answers "
            "and the columns right of them) and save the file, or ask for the file again"
        )
    else:
        said = (
            f"holds {cells:,} cells, reaching {far}: {whole}, more than the {SPAN_LIMIT:,} cells a sheet may have. "
            "Values filled or pasted down whole columns or across whole rows do this: in Excel or LibreOffice, "
            "delete the rows below the answers and the columns right of them and save the file, or ask for the file "
            "again"
        )
    raise WaveFileError(path, f"the sheet {shown(sheet)} {said}", row=rows)


# what cells hold whose answers would be read as empty, and what to do
WITHOUT_RESULTS = (
    "a formula without its result",
    "the program that saved the workbook did not calculate them, so their answers would be read as empty; open it "
    "in Excel or LibreOffice and save it again, or ask for the file again",
)
UNKNOWN_ERRORS = (
    "an error value of a kind that cannot be read",
    "their answers would be read as empty, not as the error the sheet shows; open the workbook in Excel and save it "
    "as .xlsx, or ask for a CSV export",
)


def _refuse_cells(spec: WaveSpec, cells: list[tuple[int, int]], header: list[str], held: tuple[str, str]) -> None:
    """The verdict on cells, (column, row) each, that hold what would be read as empty: naming them (the first by
    its row and column)."""
    if not cells:
        return
    what, why = held
    index, row = cells[0]
    named = ", ".join(f"{_column_letters(c)}{r}" for c, r in cells[:CELLS_NAMED])
    more = " ..." if len(cells) > CELLS_NAMED else ""
    raise WaveFileError(
        spec.file,
        f"{len(cells)} cell(s) of the sheet hold {what} ({named}{more}): {why}",
        row=row,
        column=shown(header[index - 1]) if 0 < index <= len(header) else None,
    )


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters.upper():
        index = index * 26 + ord(letter) - ord("A") + 1
    return index


# A header's names stand side by side, a few empty columns between them at most; a name further right than this
# from the one before it is a note typed far right of the header, which would make every row as wide as the sheet
HEADER_GAP = 256


def _refuse_far_names(spec: WaveSpec, header: list[str]) -> None:
    """The verdict on a header row with a name far right of its other names (a note typed at XFD4): the grid would
    be as wide as the sheet for every row."""
    named = [i for i, name in enumerate(header, start=1) if name]
    for before, after in itertools.pairwise(named):
        if after - before > HEADER_GAP:
            raise WaveFileError(
                spec.file,
                f"the header row has a name at {_column_letters(after)}{spec.header_row} ({shown(header[after - 1])}), "
                f"{after - before - 1:,} empty columns right of the name before it at "
                f"{_column_letters(before)}{spec.header_row}: a note typed far right of the header? Clear it and save "
                "the file again, or ask for the file again",
                row=spec.header_row,
            )


def _column_letters(index: int) -> str:
    """A column's letters (1 = A, 27 = AA), as a cell's reference writes them."""
    letters = ""
    while index > 0:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters
