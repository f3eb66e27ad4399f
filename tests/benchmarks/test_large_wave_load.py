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
