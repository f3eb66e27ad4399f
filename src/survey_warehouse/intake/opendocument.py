"""What calamine does not say of an OpenDocument spreadsheet's (.ods) cells, from the sheet's XML: the same kind of
look the loader takes into an .xlsx sheet's XML (survey_warehouse.intake.workbook), streamed from the archive's
content.xml a row at a time, and taken only when a cheap look at its bytes finds something calamine reads wrong.

What calamine reads wrong, and what is put back:
- a tab (`<text:tab/>`) and a line break (`<text:line-break/>`) inside a paragraph, which it drops (`a<tab/>b`
  reads as `ab`): the cell's text with them;
- an error value (`calcext:value-type="error"`, LibreOffice's `#N/A`, `#DIV/0!`, `Err:502`), which it reads as
  empty or as the number 0: the error as the sheet shows it;
- a time or duration (`office:time-value="PT51H00M00S"`), which it reads as a time of day under 24 hours and as the
  ISO text above them or below zero: the form every reader writes one in (survey_warehouse.intake.values.clock_text);
- a formula stored without its result (`table:formula` with no value type, by a program that does not calculate),
  which it reads as empty: named, so that the load is refused, as in an .xlsx.
Several paragraphs are lines of one text, as calamine reads them; spaces (`<text:s text:c="3"/>`) and leading and
trailing ones it keeps as stored.

Before calamine opens the file (it reads every sheet then, each whole), `refuse_unreadable_tables` looks over the
bytes of content.xml for what it cannot hold or reads wrong: a sheet whose values reach far beyond what they fill
(the rows or cells between stored as one repeated row or cell, in a few bytes) or too large however full, refused
as in an .xlsx (survey_warehouse.intake.workbook.refuse_spread), and one whose few stored values, repeated, fill
as large a rectangle (a value stored once for a million rows), set against the cells it stores by the same rule;
and a table inside a cell of the spec's sheet, where calamine ends the sheet.
"""

from __future__ import annotations

import html
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from survey_warehouse.errors import WaveFileError
from survey_warehouse.intake.matching import shown
from survey_warehouse.intake.values import clock_text
from survey_warehouse.intake.workbook import (
    AGAIN,
    _column_letters,
    _damage,
    _damaged_sheet,
    _matching_sheets,
    _whole_tags,
    holds_markers,
    refuse_spread,
)

OFFICE_NS = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
TABLE_NS = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
TEXT_NS = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
CALCEXT_NS = "{urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0}"
TABLE, ROW = f"{TABLE_NS}table", f"{TABLE_NS}table-row"
CELLS = (f"{TABLE_NS}table-cell", f"{TABLE_NS}covered-table-cell")
PARAGRAPHS = (f"{TEXT_NS}p", f"{TEXT_NS}h")
LOST_INSIDE = (f"{TEXT_NS}tab", f"{TEXT_NS}line-break")
# the bytes of what calamine reads wrong: a formula, an error value, a time value, a tab, a line break
MARKERS = (
    b":formula=",
    b'value-type="error"',
    b"value-type='error'",
    b":time-value=",
    b":tab/",
    b":tab>",
    b":tab ",
    b":line-break",
)
# ODF's time value, an ISO 8601 duration: PT51H00M00S, -PT00H01M00S, P1DT2H, PT00H01M30.5S
TIME_VALUE = re.compile(
    r"(?P<sign>-)?P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?"
)
CONTENT = "content.xml"


def ods_findings(
    path: Path, sheet: str, from_row: int
) -> tuple[list[tuple[int, int]], dict[int, list[tuple[int, str]]]]:
    """Of the named sheet, from `from_row` down: (column, row) of every cell holding a formula without its
    result, and each row's cells whose text calamine does not read as the sheet shows it, by column (1 = A)."""
    if not holds_markers(path, CONTENT, MARKERS):  # the usual case
        return [], {}
    try:
        named = _matching_sheets(_table_names(path) or [sheet], sheet)  # the sheet the reader read, as it found it
        return _scan(path, named[0], from_row) if len(named) == 1 else ([], {})
    except Exception as exc:  # XML the reader took but the defused parser refuses (an entity, a DTD), or cut off
        raise _damaged_sheet(path, sheet, exc) from None


TABLE_NAME = re.compile(rb"<table:table\s[^>]*?table:name\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")


def _attribute_text(raw: bytes) -> str:
    """An attribute's value as text (a sheet's name): its entities unescaped."""
    from html import unescape  # XML's five named references and numeric ones (&#39;, &#x26;)

    return unescape(raw.decode("utf-8"))


def _table_names(path: Path) -> list[str]:
    """The names of the spreadsheet's sheets, from the start tags of its tables (read a chunk at a time)."""
    names, tail = [], b""
    with zipfile.ZipFile(path) as archive, archive.open(CONTENT) as part:
        while chunk := part.read(1 << 20):
            window = tail + chunk
            end = 0
            for found in TABLE_NAME.finditer(window):
                names.append(_attribute_text(found.group(1) if found.group(1) is not None else found.group(2)))
                end = found.end()
            tail = window[max(end, len(window) - 4096) :]  # a start tag cut at the chunk's end is whole next time
    return names


def _scan(path: Path, sheet: str, from_row: int) -> tuple[list[tuple[int, int]], dict[int, list[tuple[int, str]]]]:
    from openpyxl.xml.functions import iterparse  # defused XML parsing, as the .xlsx scan uses

    unresolved: list[tuple[int, int]] = []
    shown: dict[int, list[tuple[int, str]]] = {}
    stack: list[Any] = []
    inside = False  # within the sheet's table
    row = 0
    with zipfile.ZipFile(path) as archive, archive.open(CONTENT) as part:
        for event, element in iterparse(part, events=("start", "end")):
            if event == "start":
                if element.tag == TABLE and not inside and element.get(f"{TABLE_NS}name") == sheet:
                    inside = True
                stack.append(element)
                continue
            stack.pop()
            if element.tag == TABLE and inside and not any(e.tag == TABLE for e in stack):
                break  # the sheet ends: the rest of the file is other sheets
            if element.tag != ROW or any(e.tag in CELLS for e in stack):
                continue  # a row of a table inside a cell is not the sheet's
            # as many as the reader takes: a repeat count of billions stands for no more rows than a sheet has
            repeated = min(int(element.get(f"{TABLE_NS}number-rows-repeated") or 1), max(MAX_ROWS - row, 0))
            if inside and row + repeated >= from_row:
                found = _row_findings(element)
                for number in range(max(row + 1, from_row), row + repeated + 1) if found[0] or found[1] else ():
                    unresolved.extend((column, number) for column in found[0])
                    if found[1]:
                        shown[number] = list(found[1])
            if inside:
                row += repeated
            element.clear()  # the rows read are let go: memory stays that of one row
            if stack:
                stack[-1].remove(element)
    return unresolved, shown


def _row_findings(row: Any) -> tuple[list[int], list[tuple[int, str]]]:
    """A row's columns of formulas without results, and its cells whose text calamine does not read as shown."""
    unresolved: list[int] = []
    shown: list[tuple[int, str]] = []
    column = 0
    for cell in row:
        if cell.tag not in CELLS:
            continue
        repeated = min(int(cell.get(f"{TABLE_NS}number-columns-repeated") or 1), max(MAX_COLUMNS - column, 0))
        value_type = cell.get(f"{OFFICE_NS}value-type")
        text: str | None = None
        if cell.get(f"{CALCEXT_NS}value-type") == "error":
            text = _text(cell) or None
        elif cell.get(f"{TABLE_NS}formula") is not None and value_type is None:
            unresolved.extend(range(column + 1, column + repeated + 1))
        elif value_type == "time":
            text = _time_value(cell.get(f"{OFFICE_NS}time-value") or "")
        elif (
            value_type == "string"
            and cell.get(f"{OFFICE_NS}string-value") is None
            and any(e.tag in LOST_INSIDE for e in cell.iter())
        ):
            text = _text(cell)
        if text is not None:
            shown.extend((c, text) for c in range(column + 1, column + repeated + 1))
        column += repeated
    return unresolved, shown


def _time_value(value: str) -> str | None:
    """A time value in the form every reader writes a duration in; None for one in years or months, which have no
    fixed length (calamine's reading is kept)."""
    match = TIME_VALUE.fullmatch(value.strip())
    if not match or not any(match[p] for p in ("days", "hours", "minutes", "seconds")):
        return None
    whole, _, fraction = (match["seconds"] or "0").replace(",", ".").partition(".")
    seconds = ((int(match["days"] or 0) * 24 + int(match["hours"] or 0)) * 60 + int(match["minutes"] or 0)) * 60
    micro = (seconds + int(whole)) * 1_000_000 + round(float(f"0.{fraction or 0}") * 1_000_000)
    return clock_text(-micro if match["sign"] else micro)


def _text(cell: Any) -> str:
    """A cell's text as shown: its paragraphs (those of lists in it too) as lines, a comment on it left out."""
    lines: list[str] = []

    def paragraphs(element: Any) -> None:
        for child in element:
            if child.tag in PARAGRAPHS:
                lines.append(_inline(child))
            elif child.tag != f"{OFFICE_NS}annotation":
                paragraphs(child)

    paragraphs(cell)
    return "\n".join(lines)


def _inline(element: Any) -> str:
    """A paragraph's text: runs of spaces (text:s), tabs and line breaks as the characters, spans' text within."""
    parts = [element.text or ""]
    for child in element:
        if child.tag == f"{TEXT_NS}s":
            parts.append(" " * int(child.get(f"{TEXT_NS}c") or 1))
        elif child.tag == f"{TEXT_NS}tab":
            parts.append("\t")
        elif child.tag == f"{TEXT_NS}line-break":
            parts.append("\n")
        elif child.tag != f"{OFFICE_NS}annotation":
            parts.append(_inline(child))
        parts.append(child.tail or "")
    return "".join(parts)


# The reader holds each sheet as a dense rectangle up to its last cell holding a value (or a formula), 32 bytes a
# cell (24 more for a formula's text, when the sheet has formulas), and hands a copy of it on: 64 bytes a cell. It
# repeats no row or cell beyond its bounds.
ODS_CELL_BYTES = 64
MAX_ROWS, MAX_COLUMNS = 1_048_576, 16_384
ROW_START = b"<table:table-row"
ROW_NAME_ENDS = (b" ", b"\t", b"\n", b"\r", b">", b"/")  # after ROW_START: a row (not a table-rows, table-row-group)
_ATTRIBUTES = rb"((?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*/?>"
# the tags that place a sheet's cells, as the reader names them (the prefixes `table:` and `office:`)
TABLE_TAG = re.compile(
    rb"<(?:(/)table:table\s*>|table:(table-row|table-cell|covered-table-cell|table)(?=[\s/>])" + _ATTRIBUTES + rb")"
)
ROW_ATTRIBUTES = re.compile(_ATTRIBUTES)
TABLE_BOUND = re.compile(rb"table:table[\s/>]")  # in a sheet's start or end tag, or a table's inside a cell
UNREAD_MARKUP = re.compile(rb"<[!?]")  # a comment, CDATA, a DTD, a processing instruction


def _attribute(name: bytes) -> re.Pattern[bytes]:
    return re.compile(rb"\s" + name + rb"\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")


ROWS_REPEATED = _attribute(rb"table:number-rows-repeated")
COLUMNS_REPEATED = _attribute(rb"table:number-columns-repeated")
NAME = _attribute(rb"table:name")
# a cell the reader keeps: one with a value, a string (text, even empty) or a formula
VALUED = re.compile(
    rb"\s(?:office:(?:value|string-value|date-value|time-value|boolean-value)|table:formula)\s*="
    rb"|\soffice:value-type\s*=\s*[\"']string[\"']"
)


def _count(raw: bytes | str | None) -> int:
    """A number of repeats as the reader takes it (its entities unescaped, a leading +); 1 when it is none."""
    text = html.unescape(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw or "").strip()
    text = text.removeprefix("+")
    return int(text) if text.isascii() and text.isdecimal() else 1


def _found_count(found: re.Match[bytes] | tuple[bytes, bytes] | None) -> int:
    if found is None:
        return 1
    double, single = found.groups() if isinstance(found, re.Match) else found
    return _count(double or single)


@dataclass
class _Reach:
    """How far a table's cells holding a value reach, as the reader places them: a row or cell stored once for
    several (number-rows-repeated, number-columns-repeated) stands for as many."""

    sheet: str | None  # the sheet it is, or is inside of
    top: bool  # a sheet (not a table inside a cell)
    cells: int = 0
    written: int = 0  # the cells holding a value as the file stores them, a repeated one once
    most: tuple[int, int, int, int] | None = None  # (column, row, across, down): the cell repeated most, read by tag
    lowest: tuple[int, int] = (0, 0)  # (column, row): the last cell with a value of the last row holding one
    rightmost: tuple[int, int] = (0, 0)  # and a cell of the last column holding one
    nested: tuple[int, int] | None = None  # (column, row) of the first cell holding a table
    above: int = 0  # the rows above the current row
    repeats: int = 0  # how many rows the current row stands for
    column: int = 0  # the columns of the current row so far
    cell: int = 0  # the current cell's column

    def row(self, repeats: int) -> None:
        self.above += self.repeats
        self.repeats = min(repeats, max(MAX_ROWS - self.above, 0))
        self.column = 0

    def add_cell(self, repeats: int, valued: bool) -> None:
        repeats = min(repeats, MAX_COLUMNS - self.column)
        self.cell, self.column = self.column + 1, self.column + repeats
        if valued and repeats > 0:
            self.reach(self.column, repeats * self.repeats, 1)
            if self.repeats and repeats * self.repeats > (self.most[2] * self.most[3] if self.most else 1):
                self.most = (self.cell, self.above + 1, repeats, self.repeats)

    def reach(self, column: int, cells: int, written: int) -> None:
        """The current row holds values up to `column`: `cells` of them in all its repeats, `written` in the file."""
        if self.repeats and column:
            self.cells += cells
            self.written += written
            bottom = self.above + self.repeats
            self.lowest = (column, bottom) if bottom >= self.lowest[1] else self.lowest
            self.rightmost = (column, self.above + 1) if column > self.rightmost[0] else self.rightmost

    def plain_row(self, row: bytes, covered: bool) -> bool:
        """A row whose bytes (from after ROW_START) hold no table's start or end: its cells counted in its bytes,
        not one by one. `covered`: whether it may hold covered cells (of merged ones). False, and nothing read, when
        its start tag is not read, or its values may lie beyond the reader's last column (which it drops): to be
        read tag by tag."""
        repeats = 1
        if b"rows-repeated" in row:
            attributes = ROW_ATTRIBUTES.match(row)
            if attributes is None:
                return False
            repeats = _found_count(ROWS_REPEATED.search(attributes[1]))
        # the last cell with a value: by its value's attributes (office:value, office:value-type, office:string-value
        # and the like) or its formula (text quoting them is taken for one too); its column, counting the cells up to
        # the end of its start tag
        at = max(row.rfind(b"office:value"), row.rfind(b"-value"), row.rfind(b"table:formula"))
        end = row.find(b"<", at) if at >= 0 else -1
        end = len(row) if end < 0 else end
        column = row.count(b"<table:table-cell", 0, end) if at >= 0 else 0
        column += row.count(b"<table:covered-table-cell", 0, end) if at >= 0 and covered else 0
        stored = column  # the cells the row stores up to its last value, each once
        if column and b"columns-repeated" in row:
            column += sum(_found_count(found) - 1 for found in COLUMNS_REPEATED.findall(row, 0, end))
        if column > MAX_COLUMNS:
            return False
        self.row(repeats)
        if column:
            valued = row.count(b"office:value-type", 0, end)  # no more than the cells that hold them
            self.reach(column, max(valued, 1) * self.repeats, max(min(valued, stored), 1))
        return True


class _Tables:
    """The tables of content.xml as its tags are read: each sheet's reach, and those of tables inside cells."""

    def __init__(self, by_tag: bool = False) -> None:
        self.open: list[_Reach] = []
        self.read: list[_Reach] = []
        self.by_tag = by_tag  # every row read tag by tag (each repeated cell found), none by its bytes

    def start(self, name: str | None, closed: bool = False) -> None:
        if len(self.open) == 1 and self.open[0].nested is None:
            self.open[0].nested = (self.open[0].cell, self.open[0].above + 1)
        table = _Reach(self.open[0].sheet if self.open else name, top=not self.open)
        (self.read if closed else self.open).append(table)

    def end(self) -> None:
        if self.open:
            self.read.append(self.open.pop())

    def tags(self, text: bytes) -> None:
        """Bytes holding whole tags, read tag by tag."""
        for found in TABLE_TAG.finditer(text):
            end, tag, attributes = found.groups()
            if end:
                self.end()
            elif tag == b"table":
                named = NAME.search(attributes)
                self.start(_attribute_text(named[1] or named[2] or b"") if named else None, found[0].endswith(b"/>"))
            elif self.open and tag == b"table-row":
                self.open[-1].row(_found_count(ROWS_REPEATED.search(attributes)))
            elif self.open:
                self.open[-1].add_cell(
                    _found_count(COLUMNS_REPEATED.search(attributes)), bool(VALUED.search(attributes))
                )

    def rows(self, text: bytes) -> None:
        """Bytes holding whole rows (cut before ROW_START): a row without a table's start or end in it is read by
        its bytes, as nearly every row is; others tag by tag."""
        if UNREAD_MARKUP.search(text):
            raise _Unread
        bounds = [found.start() for found in TABLE_BOUND.finditer(text)]
        covered = b"<table:covered-table-cell" in text
        start, at = 0, 0
        for number, row in enumerate(text.split(ROW_START)):
            end = start + len(row)
            while at < len(bounds) and bounds[at] < start:
                at += 1
            plain = number and self.open and row[:1] in ROW_NAME_ENDS and (at == len(bounds) or bounds[at] >= end)
            plain = plain and not self.by_tag
            if not (plain and self.open[-1].plain_row(row, covered)):
                self.tags(ROW_START + row if number else row)
            start = end + len(ROW_START)

    def tables(self) -> list[_Reach]:
        return self.read + self.open


class _Unread(Exception):
    """Markup the byte scan does not read (a comment, CDATA, a DTD, a processing instruction)."""


def _reaches(path: Path, by_tag: bool = False) -> list[_Reach]:
    """Every table's reach, by the bytes of content.xml, a chunk of whole rows at a time (`by_tag`: each row tag by
    tag, which finds the cell repeated most)."""
    tables = _Tables(by_tag)
    for text in _whole_tags(path, CONTENT, ROW_START):
        tables.rows(text)
    return tables.tables()


def _parsed_reaches(path: Path) -> list[_Reach]:
    """Every table's reach, content.xml parsed (slower: for markup the byte scan does not read). Elements and
    attributes are taken by their names in any namespace."""
    from openpyxl.xml.functions import iterparse  # defused XML parsing, as the .xlsx scan uses

    def attribute(element: Any, name: str) -> str | None:
        return next((v for k, v in element.attrib.items() if k.rpartition("}")[2] == name), None)

    tables = _Tables()
    with zipfile.ZipFile(path) as archive, archive.open(CONTENT) as part:
        for event, element in iterparse(part, events=("start", "end")):
            name = element.tag.rpartition("}")[2]
            if event == "start" and name == "table":
                tables.start(attribute(element, "name"))
            elif event == "start" and tables.open and name == "table-row":
                tables.open[-1].row(_count(attribute(element, "number-rows-repeated")))
            elif event == "start" and tables.open and name in ("table-cell", "covered-table-cell"):
                names = {k.rpartition("}")[2] for k in element.attrib}
                valued = bool(names & VALUE_ATTRIBUTES) or attribute(element, "value-type") == "string"
                tables.open[-1].add_cell(_count(attribute(element, "number-columns-repeated")), valued)
            elif event == "end" and name == "table":
                tables.end()
            elif event == "end" and name == "table-row":
                element.clear()
    return tables.tables()


VALUE_ATTRIBUTES = {"value", "string-value", "date-value", "time-value", "boolean-value", "formula"}


def refuse_unreadable_tables(path: Path, sheet: str | None = None) -> None:
    """Before the reader opens the .ods (it reads every sheet then, each whole): the verdict on a sheet whose values
    reach far beyond what they fill, or too large however full (as in an .xlsx), or whose few cells, repeated, stand
    for a sheet that large (a value stored once for a million rows); and on the spec's `sheet` (when given) holding a
    table inside a cell, where the reader would end the sheet without a word, the rows below lost."""
    parsed = False
    try:
        tables = _reaches(path)
    except _Unread:
        try:
            tables, parsed = _parsed_reaches(path), True
        except Exception as exc:  # XML the reader takes but the defused parser refuses (an entity, a DTD), or cut off
            raise WaveFileError(
                path, f"the workbook is damaged and cannot be opened ({_damage(exc)}); {AGAIN}"
            ) from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):  # the reader's opening says what is wrong
        return
    for number, table in enumerate(tables):

        def repeated(number: int = number, table: _Reach = table) -> tuple[int, int, int, int] | None:
            """The sheet's cell repeated most: found by reading its rows again, tag by tag, unless they were."""
            return table.most if parsed else _reaches(path, by_tag=True)[number].most

        refuse_spread(
            path, table.sheet, table.cells, table.lowest, table.rightmost, ODS_CELL_BYTES, table.written, repeated
        )
    named = set(_matching_sheets([t.sheet for t in tables if t.top and t.sheet is not None], sheet or ""))
    held = [t.nested for t in tables if t.top and t.sheet in named and t.nested] if len(named) == 1 else []
    if held:  # no sheet of that name, or two: the reader's opening names them
        column, row = held[0]
        raise WaveFileError(
            path,
            f"the sheet {shown(*named)} holds a table inside cell {_column_letters(column)}{row}: the reader ends the "
            "sheet where that table ends, so the rows below it would be lost; remove the table from that cell (or "
            "save the file as .xlsx and set format: xlsx in the spec) and save it again, or ask for the file again",
            row=row,
        )
