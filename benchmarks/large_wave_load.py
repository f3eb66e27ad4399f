"""Benchmark: the loader on a very large wave, beside the floor (DuckDB alone) and what a user would write (pandas).

    .venv/bin/python benchmarks/large_wave_load.py [--rows 1000000] [--xlsx-rows 100000] [--sav-rows 100000]
        [--postgres]

Builds a CSV wave of N rows from the 2019 sample (rows repeated with unique respondents, each submitted at its own
time, spread over the field period, so that every submission time is read) and, in one run, each in a fresh process
so that its peak memory is its own:
- the project's loader (every cell as text with its row, every value resolved, quarantine, one transaction);
- the floor: DuckDB read_csv(all_varchar) + unpivot to (row, column, text) into a table + duplicate e-mail count;
- pandas: read_csv(dtype=str) + melt + duplicate e-mail count;
then prints time, rows per second, peak memory and the ratios. --xlsx-rows also loads an Excel workbook of that
many rows, with the project's reader (calamine) and with openpyxl's streaming reader in its place (the reader the
loader used before); --sav-rows loads an SPSS .sav of that many rows (value labels, as survey tools export them)
beside the same answers as a CSV file; --postgres loads the CSV into a scratch database on the local PostgreSQL
(COPY).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def submission_time(spec: Any, i: int, rows: int) -> dt.datetime:
    """The i-th of `rows` submission times, spread evenly over the wave's field period (8:00 on its first day to
    20:00 on its last), to the second: distinct while the period has more seconds than the file has rows."""
    start = dt.datetime.combine(spec.field_period_start, dt.time(8))
    end = dt.datetime.combine(spec.field_period_end, dt.time(20))
    return start + dt.timedelta(seconds=int((end - start).total_seconds() * i / max(rows, 1)))


def _column(spec: Any, header: list, field: str) -> int:
    return header.index(next(h for h, v in spec.columns.items() if v == field))


def make_file(rows: int, path: Path) -> Path:
    """A 2019-shaped CSV wave of `rows` rows with unique respondents."""
    sys.path.insert(0, str(ROOT / "src"))
    from survey_warehouse.intake.waves import find_wave_spec
    from survey_warehouse.settings import get_paths

    spec = find_wave_spec(2019, get_paths())
    assert spec is not None
    with open(spec.file, encoding=spec.encoding, newline="") as f:
        header, *sample = list(csv.reader(f))
    email, submitted = _column(spec, header, "respondent_email"), _column(spec, header, "submitted_at")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(rows):
            row = list(sample[i % len(sample)])
            row[email] = f"respondent{i}@example.fi"
            row[submitted] = submission_time(spec, i, rows).isoformat()
            writer.writerow(row)
    return path


def make_workbook(rows: int, path: Path) -> Path:
    """A 2018-shaped workbook (title block, header on row 4) of `rows` rows with unique respondents."""
    import openpyxl

    sys.path.insert(0, str(ROOT / "src"))
    from survey_warehouse.intake.waves import find_wave_spec
    from survey_warehouse.settings import get_paths

    spec = find_wave_spec(2018, get_paths())
    assert spec is not None and spec.sheet
    source = openpyxl.load_workbook(spec.file, read_only=True)[spec.sheet]
    all_rows = [list(r) for r in source.iter_rows(values_only=True)]
    top, header, sample = all_rows[: spec.header_row - 1], all_rows[spec.header_row - 1], all_rows[spec.header_row :]
    sample = [r for r in sample if any(c is not None for c in r)]
    email, submitted = _column(spec, header, "respondent_email"), _column(spec, header, "submitted_at")
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet(spec.sheet)
    for row in [*top, header]:
        sheet.append(row)
    for i in range(rows):
        row = list(sample[i % len(sample)])
        row[email] = f"respondent{i}@example.fi"
        row[submitted] = submission_time(spec, i, rows)
        sheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


def _sample_2018() -> tuple[object, list, list[list]]:
    """The 2018 spec, its header and its answer rows (as the workbook stores them)."""
    import openpyxl

    sys.path.insert(0, str(ROOT / "src"))
    from survey_warehouse.intake.waves import find_wave_spec
    from survey_warehouse.settings import get_paths

    spec = find_wave_spec(2018, get_paths())
    assert spec is not None and spec.sheet
    rows = [list(r) for r in openpyxl.load_workbook(spec.file, read_only=True)[spec.sheet].iter_rows(values_only=True)]
    answers = [r for r in rows[spec.header_row :] if any(c is not None for c in r)]
    return spec, [str(h).strip() for h in rows[spec.header_row - 1]], answers


def make_sav_and_csv(rows: int, sav: Path, csv_path: Path) -> tuple[Path, Path]:
    """The same `rows` answers (2018-shaped, unique respondents) as an SPSS .sav (variables q1..qN labelled with the
    questions, text answers coded with value labels) and as a UTF-8 CSV file with the answers' texts."""
    import pandas as pd
    import pyreadstat

    spec, header, sample = _sample_2018()
    email, submitted = _column(spec, header, "respondent_email"), _column(spec, header, "submitted_at")
    answers = []
    for i in range(rows):
        row = list(sample[i % len(sample)])
        row[email] = f"respondent{i}@example.fi"
        row[submitted] = submission_time(spec, i, rows)
        answers.append(row)
    free_text = {"Nimi", "Sähköpostiosoite", "Kommentit"}
    columns, labels = {}, {}
    for i, h in enumerate(header):
        values = [r[i] for r in answers]
        name = f"q{i + 1}"
        if all(v is None or isinstance(v, str) for v in values) and h not in free_text:
            codes = {t: float(n) for n, t in enumerate(sorted({v for v in values if v is not None}), start=1)}
            columns[name] = [codes.get(v) for v in values]
            labels[name] = {c: t for t, c in codes.items()}
        elif all(v is None or isinstance(v, dt.datetime) for v in values):
            columns[name] = pd.to_datetime(pd.Series(values, dtype=object))
        elif all(v is None or isinstance(v, str) for v in values):
            columns[name] = ["" if v is None else v for v in values]
        else:
            columns[name] = [None if v is None else float(v) for v in values]
    sav.parent.mkdir(parents=True, exist_ok=True)
    pyreadstat.write_sav(pd.DataFrame(columns), str(sav), column_labels=header, variable_value_labels=labels)

    def text(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, dt.datetime):
            return value.isoformat(timespec="seconds")
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    with open(csv_path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([text(v) for v in row] for row in answers)
    return sav, csv_path


CHILD = """
import json, resource, sys, time
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
{body}
print(json.dumps({{"seconds": time.perf_counter() - started, "rows": rows, "quarantined": quarantined,
                  "rss_before_kib": before, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""

PROJECT = """
import dataclasses
from pathlib import Path
from typing import Any
from survey_warehouse.raw.load import load_wave
from survey_warehouse.settings import get_paths
from survey_warehouse.warehouse import Warehouse
from survey_warehouse.intake.waves import find_wave_spec
spec = dataclasses.replace(find_wave_spec({year}, get_paths()), file=Path({path!r}), **{changes})
{before}
target = {target}
result = load_wave(spec, target)
rows, quarantined = result.row_count, result.quarantined
"""

FLOOR = """
import duckdb
con = duckdb.connect({warehouse!r})
con.execute("create table wide as select * from read_csv(?, all_varchar = true)", [{path!r}])
con.execute("create table cells as unpivot (select row_number() over () as source_row_number, * from wide) "
            "on columns(* exclude (source_row_number)) into name source_column value cell_value")
duplicates = con.execute('select count(*) from (select "Email" from wide group by 1 having count(*) > 1)').fetchone()
rows = con.execute("select count(*) from wide").fetchone()[0]
quarantined = 0
"""

PANDAS = """
import pandas as pd
frame = pd.read_csv({path!r}, dtype=str, keep_default_na=False, encoding="utf-8-sig")
frame.insert(0, "source_row_number", range(2, len(frame) + 2))
cells = frame.melt(id_vars=["source_row_number"], var_name="source_column", value_name="cell_value")
duplicates = int(frame["Email"].duplicated().sum())
rows, quarantined = len(frame), 0
"""


def run_child(body: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(body=textwrap.dedent(body))], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


# the loader with openpyxl's streaming reader in calamine's place, as the loader read workbooks before
OPENPYXL = """
import openpyxl
from survey_warehouse.intake import workbook

def openpyxl_rows(spec):
    book = openpyxl.load_workbook(spec.file, read_only=True, data_only=True)
    sheet = book[spec.sheet]
    sheet.reset_dimensions()
    yield from (list(row) for row in sheet.iter_rows(values_only=True))
    book.close()

workbook.sheet_rows = openpyxl_rows
"""


def load_in_child(path: Path, warehouse: Path, year: int = 2019, changes: dict | None = None, before: str = "") -> dict:
    """The project's loader on `path`, in a fresh process (its peak memory is the loader's alone)."""
    return run_child(
        PROJECT.format(
            year=year, path=str(path), target=f"Path({str(warehouse)!r})", changes=repr(changes or {}), before=before
        )
    )


def _line(name: str, result: dict, size_mib: float, floor: dict | None = None) -> str:
    peak = result["peak_rss_kib"] / 1024
    text = (
        f"  {name:<34}{result['seconds']:>7.1f} s {result['rows'] / result['seconds']:>11,.0f} rows/s "
        f"{peak:>7,.0f} MiB peak"
    )
    if floor:
        memory = peak / (floor["peak_rss_kib"] / 1024)
        text += f"   x{result['seconds'] / floor['seconds']:.2f} time, x{memory:.2f} memory"
    return text


def excel(rows: int, work: Path) -> None:
    """A workbook of `rows` rows, loaded with openpyxl's reader and with calamine's."""
    book = make_workbook(rows, work / "wave_2018_large.xlsx")
    book_mib = book.stat().st_size / 2**20
    result = load_in_child(book, work / "warehouse_xlsx.duckdb", year=2018)
    old = load_in_child(book, work / "warehouse_xlsx_openpyxl.duckdb", year=2018, before=OPENPYXL)
    print(f"Excel wave: {rows:,} rows, {book_mib:,.1f} MiB")
    print(_line("project loader (openpyxl reader)", old, book_mib))
    print(_line("project loader (calamine reader)", result, book_mib, old))


def spss(rows: int, work: Path) -> None:
    """The same `rows` answers as .sav and as CSV, each loaded."""
    sav, same = make_sav_and_csv(rows, work / "wave_2018_large.sav", work / "wave_2018_large.csv")
    as_csv = load_in_child(
        same, work / "warehouse_sav_csv.duckdb", year=2018, changes={"format": "csv", "header_row": 1}
    )
    result = load_in_child(sav, work / "warehouse_sav.duckdb", year=2018, changes={"format": "sav", "sheet": None})
    print(
        f"SPSS wave: {rows:,} rows, {sav.stat().st_size / 2**20:,.1f} MiB "
        f"(the same answers as CSV: {same.stat().st_size / 2**20:,.1f} MiB)"
    )
    print(_line("project loader (CSV, same answers)", as_csv, same.stat().st_size / 2**20))
    print(_line("project loader (SPSS .sav)", result, sav.stat().st_size / 2**20, as_csv))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--xlsx-rows", type=int, default=0)
    parser.add_argument("--sav-rows", type=int, default=0)
    parser.add_argument("--postgres", action="store_true", help="also load into the local PostgreSQL (COPY)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files and warehouses")
    args = parser.parse_args()
    work = ROOT / "var" / "benchmarks" / "large_wave_load"
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    path = make_file(args.rows, work / "wave_2019_large.csv")
    size_mib = path.stat().st_size / 2**20
    print(f"CSV wave: {args.rows:,} rows, {size_mib:,.0f} MiB (generated in {time.perf_counter() - started:.1f} s)")
    floor = run_child(FLOOR.format(path=str(path), warehouse=str(work / "floor.duckdb")))
    pandas = run_child(PANDAS.format(path=str(path)))
    project = load_in_child(path, work / "warehouse.duckdb")
    print(_line("DuckDB floor (read, unpivot, dups)", floor, size_mib))
    print(_line("pandas (read_csv, melt, dups)", pandas, size_mib, floor))
    print(_line("project loader (DuckDB warehouse)", project, size_mib, floor))
    print(
        f"  project / pandas: x{project['seconds'] / pandas['seconds']:.2f} time, "
        f"x{project['peak_rss_kib'] / pandas['peak_rss_kib']:.2f} memory; "
        f"{project['quarantined']:,} rows quarantined"
    )
    if args.postgres:
        import psycopg2

        database = f"survey_bench_{int(time.time())}"
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
        admin.autocommit = True
        admin.cursor().execute(f'create database "{database}"')
        try:
            target = f"Warehouse(backend='postgres', host='127.0.0.1', port=5432, user='postgres', dbname={database!r})"
            pg = run_child(PROJECT.format(year=2019, path=str(path), target=target, changes="{}", before=""))
            print(_line("project loader (PostgreSQL, COPY)", pg, size_mib, floor))
        finally:
            admin.cursor().execute(f'drop database if exists "{database}"')
            admin.close()
    if args.xlsx_rows:
        excel(args.xlsx_rows, work)
    if args.sav_rows:
        spss(args.sav_rows, work)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
