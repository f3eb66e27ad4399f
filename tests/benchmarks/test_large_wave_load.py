"""A one-million-row wave file loads with bounded memory: the loader streams it in chunks.

The time and memory figures themselves are reported by benchmarks/large_wave_load.py; this test only holds the
loader to its memory bound, which does not depend on how fast the machine is."""

from __future__ import annotations

import importlib.util
import shutil

import duckdb
from conftest import ROOT, TEST_VAR

MEMORY_BOUND_MIB = 1024  # the whole file as cells would take several GiB; chunked it stays far below this


def _benchmark():
    spec = importlib.util.spec_from_file_location("large_wave_load", ROOT / "benchmarks" / "large_wave_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_million_rows_load_in_bounded_memory() -> None:
    work = TEST_VAR / "large_wave_load"
    shutil.rmtree(work, ignore_errors=True)
    benchmark = _benchmark()
    path = benchmark.make_file(1_000_000, work / "wave_2019_large.csv")
    result = benchmark.load_in_child(path, work / "warehouse.duckdb")
    peak_mib = result["peak_rss_kib"] / 1024
    print(
        f"\n1,000,000 rows ({path.stat().st_size / 2**20:.0f} MiB) loaded in {result['seconds']:.1f} s, "
        f"peak memory {peak_mib:.0f} MiB"
    )
    assert result["rows"] == 1_000_000 and result["quarantined"] == 0
    assert peak_mib < MEMORY_BOUND_MIB
    with duckdb.connect(str(work / "warehouse.duckdb"), read_only=True) as con:
        rows, status = con.execute(
            "select count(distinct c.source_row_number), min(r.status) from raw.survey_cells c "
            "join raw.survey_columns k using (column_id) join raw.load_registry r using (load_id)"
        ).fetchone()
    assert (rows, status) == (1_000_000, "pending")
    shutil.rmtree(work, ignore_errors=True)


def test_the_generated_answers_are_submitted_at_distinct_times_in_the_field_period(tmp_path) -> None:
    """Each generated row has a submission time of its own, inside the wave's field period, so that the benchmark
    reads as many distinct times as the file has rows (a real wave's answers do not share one time)."""
    import csv
    import datetime as dt

    import openpyxl
    import pyreadstat

    from survey_warehouse.intake.waves import find_wave_spec
    from survey_warehouse.settings import get_paths

    benchmark = _benchmark()
    rows = 300

    def check(year: int, times: list) -> None:
        spec = find_wave_spec(year, get_paths())
        moments = [t if isinstance(t, dt.datetime) else dt.datetime.fromisoformat(t) for t in times]
        assert len(moments) == rows and len(set(moments)) == rows
        assert all(spec.field_period_start <= m.date() <= spec.field_period_end for m in moments)

    with open(benchmark.make_file(rows, tmp_path / "wave.csv"), encoding="utf-8-sig", newline="") as f:
        check(2019, [r["Aikaleima"] for r in csv.DictReader(f)])
    spec_2018 = find_wave_spec(2018, get_paths())
    sheet = openpyxl.load_workbook(benchmark.make_workbook(rows, tmp_path / "wave.xlsx"))[spec_2018.sheet]
    header = [c.value for c in sheet[spec_2018.header_row]]
    at = header.index("Vastattu")
    check(2018, [r[at] for r in sheet.iter_rows(min_row=spec_2018.header_row + 1, values_only=True)])
    sav, same = benchmark.make_sav_and_csv(rows, tmp_path / "wave.sav", tmp_path / "same.csv")
    frame, meta = pyreadstat.read_sav(str(sav))
    check(2018, list(frame[meta.column_names[meta.column_labels.index("Vastattu")]]))
    with open(same, encoding="utf-8", newline="") as f:
        check(2018, [r["Vastattu"] for r in csv.DictReader(f)])
