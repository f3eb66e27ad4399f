"""Readers during loads, two loads at once, and loads killed midway: the warehouse stays right."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT, PipelineRun, make_paths

from survey_warehouse import cli
from survey_warehouse.load import load_wave
from survey_warehouse.warehouse import WarehouseBusy
from survey_warehouse.waves import find_wave_spec

READER = r"""
import json, sys, time, duckdb
path, stop, out = sys.argv[1:4]
seen, errors, iterations = set(), [], 0
import os
while not os.path.exists(stop) or iterations < 3:
    try:
        with duckdb.connect(path, read_only=True) as con:
            published_at, tables = con.execute("select published_at, tables from marts.publication").fetchone()
            for table, expected in json.loads(tables).items():
                actual = con.execute(f"select count(*) from marts.{table}").fetchone()[0]
                if actual != expected:
                    errors.append(f"{table}: {actual} rows, publication says {expected}")
            for year, cities, responded in con.execute(
                    "select wave_year, sum(cities), max(cities_responded) from marts.fct_responsibility_shares "
                    "group by 1").fetchall():
                if cities != responded:
                    errors.append(f"{year}: shares cover {cities} of {responded} cities")
            seen.add(str(published_at))
        iterations += 1
    except Exception as exc:
        errors.append(repr(exc))
    time.sleep(0.05)
json.dump({"seen": sorted(seen), "errors": errors, "iterations": iterations}, open(out, "w"))
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_reader_never_errors_or_sees_a_partial_state_during_a_full_load(pipeline_run: PipelineRun) -> None:
    paths = make_paths("readers")
    paths.published.parent.mkdir(parents=True)
    paths.published.write_bytes(pipeline_run.paths.published.read_bytes())  # what analysts have now
    cli.setup(paths)
    stop, out = paths.var / "stop", paths.var / "reader.json"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(paths.published), str(stop), str(out)])
    try:
        code, _seconds, log = cli.run_wave(paths, 2016)  # from an empty warehouse: raw, gates, dbt, publish
    finally:
        stop.touch()
        reader.wait(timeout=60)
    result = json.loads(out.read_text())
    assert code == 0, log.read_text()[-2000:]
    assert result["errors"] == [] and result["iterations"] > 10
    with duckdb.connect(str(paths.published), read_only=True) as con:
        new = str(con.execute("select published_at from marts.publication").fetchone()[0])
        waves = [r[0] for r in con.execute("select wave_year from marts.dim_year").fetchall()]
    assert waves == [2016]
    assert new in result["seen"] and len(result["seen"]) == 2, "the reader saw the old marts, then the new ones"


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
from survey_warehouse import load
from survey_warehouse.settings import get_paths
from survey_warehouse.waves import find_wave_spec
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
