"""The 2018 wave's workbook saved as the other exports survey tools make: a legacy .xls (xlwt), an OpenDocument
.ods (pandas with odfpy), an SPSS .sav with value labels (pyreadstat). Used by the tests of the formats and of
damaged deliveries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl

from survey_warehouse.intake.waves import WaveSpec


def sheet_rows(spec: WaveSpec) -> list[list]:
    """The shipped sheet's rows as Excel stored them, from A1 (title block, header, answers)."""
    ws = openpyxl.load_workbook(spec.file)[spec.sheet]
    return [list(row) for row in ws.iter_rows(values_only=True)]


def as_xls(spec: WaveSpec, path: Path, sheet_name: str | None = None) -> Path:
    """`sheet_name`: the sheet's name in the file (the spec's by default)."""
    import xlwt

    book = xlwt.Workbook(encoding="utf-8")
    sheet = book.add_sheet(sheet_name or spec.sheet)
    when = xlwt.easyxf(num_format_str="YYYY-MM-DD HH:MM:SS")
    for r, row in enumerate(sheet_rows(spec)):
        for c, value in enumerate(row):
            if isinstance(value, dt.datetime):
                sheet.write(r, c, value, when)
            elif value is not None:
                sheet.write(r, c, value)
    book.save(str(path))
    return path


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
