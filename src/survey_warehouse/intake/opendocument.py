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
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from survey_warehouse.intake.values import clock_text
from survey_warehouse.intake.workbook import _damaged_sheet, _matching_sheets, holds_markers

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


TABLE_NAME = re.compile(rb"<table:table\s[^>]*?table:name=(?:\"([^\"]*)\"|'([^']*)')")


def _table_names(path: Path) -> list[str]:
    """The names of the spreadsheet's sheets, from the start tags of its tables (read a chunk at a time)."""
    from html import unescape  # XML's five named references and numeric ones (&#39;, &#x26;)

    names, tail = [], b""
    with zipfile.ZipFile(path) as archive, archive.open(CONTENT) as part:
        while chunk := part.read(1 << 20):
            window = tail + chunk
            end = 0
            for found in TABLE_NAME.finditer(window):
                raw = found.group(1) if found.group(1) is not None else found.group(2)
                names.append(unescape(raw.decode("utf-8")))
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
            repeated = int(element.get(f"{TABLE_NS}number-rows-repeated") or 1)
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
        repeated = int(cell.get(f"{TABLE_NS}number-columns-repeated") or 1)
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
