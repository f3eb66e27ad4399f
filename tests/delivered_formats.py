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
