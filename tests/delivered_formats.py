"""The 2018 wave's workbook saved as the other exports survey tools make: a legacy .xls (xlwt), an OpenDocument
.ods (pandas with odfpy), an SPSS .sav with value labels (pyreadstat), an Excel binary workbook .xlsb (its records
written here, as nothing else here writes one). Used by the tests of the formats and of damaged deliveries."""

from __future__ import annotations

import datetime as dt
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import openpyxl

from survey_warehouse.intake.waves import WaveSpec


def sheet_rows(spec: WaveSpec) -> list[list]:
    """The shipped sheet's rows as Excel stored them, from A1 (title block, header, answers)."""
    ws = openpyxl.load_workbook(spec.file)[spec.sheet]
    return [list(row) for row in ws.iter_rows(values_only=True)]


@dataclass(frozen=True)
class ErrorValue:
    """A cell holding an error value as the sheet shows it (#N/A); `formula`: the cached result of a formula;
    `unknown`: a code that no version of the format knows, in place of the text's."""

    text: str
    formula: bool = False
    unknown: int | None = None

    @property
    def code(self) -> int:
        from survey_warehouse.intake.binary import ERROR_TEXTS

        if self.unknown is not None:
            return self.unknown
        return next(code for code, text in ERROR_TEXTS.items() if text == self.text)


def with_cells(spec: WaveSpec, cells: dict[tuple[int, str], object] | None) -> list[list]:
    """The shipped sheet's rows with `cells` ((row, header) -> value) in place of the sheet's; a cell below the
    sheet's last row is in a row of its own."""
    rows = sheet_rows(spec)
    header = [str(h).strip() if h is not None else "" for h in rows[spec.header_row - 1]]
    for (number, column), value in (cells or {}).items():
        rows += [[None] * len(header) for _ in range(number - len(rows))]
        rows[number - 1][header.index(column)] = value
    return rows


def as_xls(
    spec: WaveSpec,
    path: Path,
    sheet_name: str | None = None,
    cells: dict[tuple[int, str], object] | None = None,
    before: list[list] | None = None,
    beyond: dict[tuple[int, int], object] | None = None,
) -> Path:
    """`sheet_name`: the sheet's name in the file (the spec's by default); `cells`: (row, header) -> a value in
    place of the sheet's, an ErrorValue among them; `before`: the rows of a sheet "Ohje" ahead of it; `beyond`:
    (row, column), both 0-based, -> a value written in the sheet besides its rows (None: an empty cell with a
    style)."""
    import xlwt

    book = xlwt.Workbook(encoding="utf-8")
    when = xlwt.easyxf(num_format_str="YYYY-MM-DD HH:MM:SS")
    clock = xlwt.easyxf(num_format_str="h:mm:ss")
    formula_errors = []
    for name, rows in [*([("Ohje", before)] if before else []), (sheet_name or spec.sheet, with_cells(spec, cells))]:
        sheet = book.add_sheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if isinstance(value, ErrorValue) and value.formula:
                    sheet.write(r, c, xlwt.Formula("NA()"))
                    formula_errors.append((r, c, value.code))
                elif isinstance(value, ErrorValue):
                    sheet.row(r).set_cell_error(c, value.code)
                elif isinstance(value, dt.datetime):
                    sheet.write(r, c, value, when)
                elif isinstance(value, dt.timedelta):  # a duration in days, formatted as a time (h:mm:ss)
                    sheet.write(r, c, value / dt.timedelta(days=1), clock)
                elif value is not None:
                    sheet.write(r, c, value)
    for (r, c), value in (beyond or {}).items():
        sheet.write(r, c, value, xlwt.easyxf("font: bold on"))
    book.save(str(path))
    if formula_errors:
        _formula_results_as_errors(path, formula_errors)
    return path


def _formula_results_as_errors(path: Path, cells: list[tuple[int, int, int]]) -> None:
    """xlwt stores a formula's result as empty text (it does not calculate): each of the cells' Formula record is
    given the cached result Excel stores for an error (02 00 code 00 00 00 FF FF) in its place, in the file's
    bytes, where the record lies whole."""
    import re

    data = path.read_bytes()
    for row, column, code in cells:
        found = re.search(
            rb"\x06\x00[\s\S]{2}" + re.escape(struct.pack("<HH", row, column)) + rb"[\s\S]{2}\x03\0\0\0\0\0\xff\xff",
            data,
        )
        assert found, "the formula's record"
        cached = found.start() + 10
        data = data[:cached] + bytes([2, 0, code, 0, 0, 0, 0xFF, 0xFF]) + data[cached + 8 :]
    path.write_bytes(data)


def as_ods(spec: WaveSpec, path: Path, sheet_name: str | None = None) -> Path:
    """`sheet_name`: the sheet's name in the file (the spec's by default)."""
    import pandas as pd

    frame = pd.DataFrame(sheet_rows(spec), dtype=object)
    frame.to_excel(path, engine="odf", sheet_name=sheet_name or spec.sheet, header=False, index=False)
    return path


def as_sav(spec: WaveSpec, path: Path, uncovered: str | None = None) -> tuple[Path, dict[str, str]]:
    """The answers as an SPSS file: variables q1..qN labelled with the sheet's headers, each column of text answers
    coded 1..k with its texts as value labels (as a survey tool exports them). `uncovered`: a header whose first
    code is left out of its value labels. Returns the file and each header's variable name."""
    import pandas as pd
    import pyreadstat

    rows = sheet_rows(spec)
    header = [str(h).strip() for h in rows[spec.header_row - 1]]
    answers = [r for r in rows[spec.header_row :] if any(v is not None for v in r)]
    names = {h: f"q{i}" for i, h in enumerate(header, start=1)}
    free_text = {"Nimi", "Sähköpostiosoite", "Kommentit"}
    columns, value_labels = {}, {}
    for i, h in enumerate(header):
        values = [r[i] for r in answers]
        if all(v is None or isinstance(v, str) for v in values) and h not in free_text:
            codes = {text: float(n) for n, text in enumerate(sorted({v for v in values if v is not None}), start=1)}
            columns[names[h]] = [codes.get(v) for v in values]
            value_labels[names[h]] = {code: text for text, code in codes.items()}
            if h == uncovered:
                del value_labels[names[h]][1.0]
        elif all(v is None or isinstance(v, dt.datetime) for v in values):
            columns[names[h]] = pd.to_datetime(pd.Series(values, dtype=object))
        elif all(v is None or isinstance(v, str) for v in values):
            columns[names[h]] = ["" if v is None else v for v in values]
        else:
            columns[names[h]] = [None if v is None else float(v) for v in values]
    frame = pd.DataFrame(columns)
    pyreadstat.write_sav(frame, str(path), column_labels=list(header), variable_value_labels=value_labels)
    return path, names


def ods_cell(attribute: str, value: str, shown: str = "") -> str:
    """An OpenDocument cell with its value in `attribute` (the part before ="...") and the text it shows."""
    from xml.sax.saxutils import escape, quoteattr

    return f"<table:table-cell {attribute}={quoteattr(value)}><text:p>{escape(shown)}</text:p></table:table-cell>"


def as_ods_xml(
    spec: WaveSpec,
    path: Path,
    cells: dict[tuple[int, str], str] | None = None,
    before: str = "",
    sheet_name: str | None = None,
) -> Path:
    """The sheet as an OpenDocument spreadsheet whose XML is written here, cell by cell as LibreOffice stores them;
    `cells`: (row, header) -> the XML of a cell in place of the sheet's; `before`: the rows' XML of a sheet "Ohje"
    ahead of it; `sheet_name`: the sheet's name in the file (the spec's by default)."""
    rows = sheet_rows(spec)
    header = [str(h).strip() if h is not None else "" for h in rows[spec.header_row - 1]]

    def cell_xml(value: object) -> str:
        if value is None:
            return "<table:table-cell/>"
        if isinstance(value, dt.datetime):
            return ods_cell('office:value-type="date" office:date-value', value.isoformat(), value.isoformat())
        if isinstance(value, int | float):
            return ods_cell('office:value-type="float" office:value', repr(value), str(value))
        return ods_cell('office:value-type="string" office:string-value', str(value), str(value))

    table = "".join(
        "<table:table-row>"
        + "".join((cells or {}).get((number, header[c]), cell_xml(v)) for c, v in enumerate(row))
        + "</table:table-row>"
        for number, row in enumerate(rows, start=1)
    )
    write_ods(path, {**({"Ohje": before} if before else {}), sheet_name or spec.sheet or "": table})
    return path


def write_ods(path: Path, tables: dict[str, str]) -> None:
    """An OpenDocument spreadsheet of the sheets given as their rows' XML, as LibreOffice packages one."""
    import zipfile

    namespaces = " ".join(
        f'xmlns:{prefix}="{uri}"'
        for prefix, uri in {
            "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
            "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
            "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
            "calcext": "urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0",
            "of": "urn:oasis:names:tc:opendocument:xmlns:of:1.2",
        }.items()
    )
    sheets = "".join(f'<table:table table:name="{name}">{rows}</table:table>' for name, rows in tables.items())
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document-content {namespaces} office:version="1.3">'
        f"<office:body><office:spreadsheet>{sheets}</office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3">'
        '<manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet", zipfile.ZIP_STORED
        )
        archive.writestr("META-INF/manifest.xml", manifest)
        archive.writestr("content.xml", content)


# ------------------------------------------------------------------------------------------------ .xlsb
# [MS-XLSB] record types
BEGIN_BOOK, END_BOOK, BEGIN_BUNDLE_SHEETS, BUNDLE_SHEET, END_BUNDLE_SHEETS, CALC_PROP = (
    0x83,
    0x84,
    0x8F,
    0x9C,
    0x90,
    0x9D,
)
BEGIN_SHEET, END_SHEET, SHEET_DIMENSION, BEGIN_SHEET_DATA, END_SHEET_DATA = 0x81, 0x82, 0x94, 0x91, 0x92
ROW_HEADER, CELL_ERROR, CELL_REAL, CELL_TEXT, FORMULA_ERROR = 0x00, 0x03, 0x05, 0x06, 0x0B
BEGIN_FORMATS, FORMAT, END_FORMATS, BEGIN_CELL_XFS, CELL_XF, END_CELL_XFS = 0x267, 0x2C, 0x268, 0x269, 0x2F, 0x26A
# the cell styles: general, a date and time, a time (built-in format 21), a duration (built-in format 46)
XLSB_FORMATS = {dt.datetime: (1, 164), dt.time: (2, 21), dt.timedelta: (3, 46)}


def _record(kind: int, data: bytes = b"") -> bytes:
    """A BIFF12 record: its type and size as 7-bit varints, then its data."""

    def varint(n: int) -> bytes:
        out = b""
        while True:
            n, low = divmod(n, 128)
            out += bytes([low | (0x80 if n else 0)])
            if not n:
                return out

    return varint(kind) + varint(len(data)) + data


def _wide(text: str) -> bytes:
    return struct.pack("<I", len(text.encode("utf-16-le")) // 2) + text.encode("utf-16-le")


def _xlsb_cell(column: int, value: object) -> bytes:
    """A cell's record: Cell (its column, its style) and its value."""
    style = next((s for kind, (s, _f) in XLSB_FORMATS.items() if isinstance(value, kind)), 0)
    cell = struct.pack("<II", column, style)
    if isinstance(value, ErrorValue) and value.formula:  # the error, flags, and the formula =NA() (PtgFunc NA)
        formula = bytes([0x21, 0x0A, 0x00])
        return _record(FORMULA_ERROR, cell + bytes([value.code]) + b"\0\0" + struct.pack("<I", 3) + formula + b"\0" * 4)
    if isinstance(value, ErrorValue):
        return _record(CELL_ERROR, cell + bytes([value.code]))
    if isinstance(value, str):
        return _record(CELL_TEXT, cell + _wide(value))
    if isinstance(value, dt.datetime):
        value = (value - dt.datetime(1899, 12, 30)) / dt.timedelta(days=1)  # noqa: DTZ001
    elif isinstance(value, dt.time):
        value = (value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6) / 86400
    elif isinstance(value, dt.timedelta):
        value = value / dt.timedelta(days=1)
    assert isinstance(value, int | float), value
    return _record(CELL_REAL, cell + struct.pack("<d", value))


def write_xlsb(path: Path, sheets: dict[str, list[list]]) -> Path:
    """An Excel binary workbook of the sheets given as their rows' values (text, numbers, dates and times, durations,
    ErrorValue), packaged as Excel packages one: the workbook's sheets (BrtBundleSh) and their relationships,
    styles for dates, times and durations, each sheet's rows (BrtRowHdr) and cells."""
    book = _record(BEGIN_BOOK) + _record(BEGIN_BUNDLE_SHEETS)
    for number, name in enumerate(sheets, start=1):
        book += _record(BUNDLE_SHEET, struct.pack("<II", 0, number) + _wide(f"rId{number}") + _wide(name))
    book += _record(END_BUNDLE_SHEETS) + _record(CALC_PROP, bytes(26)) + _record(END_BOOK)
    styles = _record(BEGIN_FORMATS, struct.pack("<I", 1)) + _record(
        FORMAT, struct.pack("<H", 164) + _wide("YYYY-MM-DD HH:MM:SS")
    )
    styles += _record(END_FORMATS) + _record(BEGIN_CELL_XFS, struct.pack("<I", 4))
    for fmt in (0, *(f for _s, f in XLSB_FORMATS.values())):
        styles += _record(CELL_XF, struct.pack("<HH", 0xFFFF, fmt) + bytes(12))
    styles += _record(END_CELL_XFS)
    binary = "application/vnd.ms-excel"
    types = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="bin" ContentType="application/vnd.ms-excel.sheet.binary.macroEnabled.main"/>'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        + "".join(
            f'<Override PartName="/xl/worksheets/sheet{n}.bin" ContentType="{binary}.worksheet"/>'
            for n in range(1, len(sheets) + 1)
        )
        + f'<Override PartName="/xl/styles.bin" ContentType="{binary}.styles"/></Types>'
    )
    relationships = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    package_rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{relationships}/officeDocument" Target="xl/workbook.bin"/></Relationships>'
    )
    book_rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        + "".join(
            f'<Relationship Id="rId{n}" Type="{relationships}/worksheet" Target="worksheets/sheet{n}.bin"/>'
            for n in range(1, len(sheets) + 1)
        )
        + f'<Relationship Id="rId{len(sheets) + 1}" Type="{relationships}/styles" Target="styles.bin"/>'
        "</Relationships>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", types)
        archive.writestr("_rels/.rels", package_rels)
        archive.writestr("xl/workbook.bin", book)
        archive.writestr("xl/_rels/workbook.bin.rels", book_rels)
        archive.writestr("xl/styles.bin", styles)
        for n, rows in enumerate(sheets.values(), start=1):
            width = max((len(row) for row in rows), default=1)
            sheet = _record(BEGIN_SHEET) + _record(
                SHEET_DIMENSION, struct.pack("<IIII", 0, max(len(rows) - 1, 0), 0, width - 1)
            )
            sheet += _record(BEGIN_SHEET_DATA)
            for r, row in enumerate(rows):
                if any(value is not None for value in row):
                    sheet += _record(ROW_HEADER, struct.pack("<IIH", r, 0, 300) + bytes(3) + struct.pack("<I", 0))
                    sheet += b"".join(_xlsb_cell(c, value) for c, value in enumerate(row) if value is not None)
            sheet += _record(END_SHEET_DATA) + _record(END_SHEET)
            archive.writestr(f"xl/worksheets/sheet{n}.bin", sheet)
    return path


def as_xlsb(
    spec: WaveSpec,
    path: Path,
    sheet_name: str | None = None,
    cells: dict[tuple[int, str], object] | None = None,
    before: list[list] | None = None,
) -> Path:
    """The sheet as an Excel binary workbook; `sheet_name`: the sheet's name in the file (the spec's by default);
    `cells`: (row, header) -> a value in place of the sheet's, an ErrorValue among them; `before`: the rows of a
    sheet "Ohje" ahead of it."""
    return write_xlsb(
        path, {**({"Ohje": before} if before else {}), sheet_name or spec.sheet or "": with_cells(spec, cells)}
    )
