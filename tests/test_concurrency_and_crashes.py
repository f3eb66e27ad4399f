"""Two loads at once, and loads killed midway: the warehouse stays right. (Readers during a run:
test_corrected_redelivery.py.)"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT, make_paths

from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.raw.load import load_wave
from survey_warehouse.warehouse import WarehouseBusy


def test_a_second_writer_gets_a_clear_message_and_nothing_breaks(tmp_path: Path) -> None:
    paths = make_paths("two_writers")
    spec = find_wave_spec(2019, paths)
    load_wave(find_wave_spec(2016, paths), paths.warehouse)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('holding', flush=True); time.sleep(60)",
            str(paths.warehouse),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(WarehouseBusy, match="being written by another process"):
            load_wave(spec, paths.warehouse)
    finally:
        holder.kill()
        holder.wait()
    result = load_wave(spec, paths.warehouse)  # once the first writer is gone, the load goes through
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        loads = con.execute("select wave_year, status from raw.load_registry order by 1").fetchall()
    # one run at a time: a new load fails any load an earlier run left unfinished
    assert loads == [(2016, "failed"), (2019, "pending")] and not result.unchanged


KILLABLE_LOAD = r"""
import dataclasses, sys, time
from pathlib import Path
from survey_warehouse.raw import load
from survey_warehouse.settings import get_paths
from survey_warehouse.intake.waves import find_wave_spec
original = load._write_raw
def stalled(*args, **kwargs):
    original(*args, **kwargs)
    print("written, not committed", flush=True)
    time.sleep(120)
load._write_raw = stalled
spec = dataclasses.replace(find_wave_spec(2019, get_paths()), file=Path(sys.argv[1]))
load.load_wave(spec, Path(sys.argv[2]))
"""


def test_a_load_killed_midway_leaves_no_trace(tmp_path: Path) -> None:
    """A load writes raw in one transaction: killed after writing every cell but before committing, it leaves
    nothing; the next load goes through."""
    import importlib.util

    paths = make_paths("killed_load")
    bench = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "large_wave_load.py")
    module = importlib.util.module_from_spec(bench)
    bench.loader.exec_module(module)
    big = module.make_file(200_000, paths.var / "big_2019.csv")
    spec = find_wave_spec(2019, paths)
    good = load_wave(spec, paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        before = con.execute("select count(*) from raw.survey_cells").fetchone()[0]

    child = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_LOAD, str(big), str(paths.warehouse)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "written, not committed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        after = con.execute("select count(*) from raw.survey_cells").fetchone()[0]
        loads = con.execute("select load_id, status from raw.load_registry order by loaded_at").fetchall()
    assert after == before and loads == [(good.load_id, "pending")], (
        "the killed load left nothing behind, and changed nothing"
    )
    rerun = load_wave(dataclasses.replace(spec, file=big), paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        loads = con.execute("select load_id, status, row_count from raw.load_registry order by loaded_at").fetchall()
        cells = dict(
            con.execute(
                "select k.load_id, count(distinct c.source_row_number) from raw.survey_cells c "
                "join raw.survey_columns k using (column_id) group by 1"
            ).fetchall()
        )
    assert [(status, rows) for _id, status, rows in loads] == [("failed", good.row_count), ("pending", 200_000)]
    assert cells == {good.load_id: good.row_count, rerun.load_id: 200_000}
