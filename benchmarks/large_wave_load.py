"""Benchmark: load a very large wave file (default one million rows) into raw, and report time and memory.

    .venv/bin/python benchmarks/large_wave_load.py [--rows 1000000] [--keep]

Builds the file from the 2019 sample (rows repeated with unique respondents), loads it into a scratch warehouse
under var/benchmarks/, and prints rows per second and the peak resident memory of the loading process beside the
file's size. The loader streams the file in chunks, so its memory does not grow with the file."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_file(rows: int, path: Path) -> Path:
    sys.path.insert(0, str(ROOT / "src"))
    from survey_warehouse.settings import get_paths
    from survey_warehouse.waves import find_wave_spec

    spec = find_wave_spec(2019, get_paths())
    with open(spec.file, encoding=spec.encoding, newline="") as f:
        header, *sample = list(csv.reader(f))
    email = header.index(next(h for h, v in spec.columns.items() if v == "respondent_email"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(rows):
            row = list(sample[i % len(sample)])
            row[email] = f"respondent{i}@example.fi"
            writer.writerow(row)
    return path


def load_in_child(path: Path, warehouse: Path) -> dict:
    """Load in a fresh process, so that its peak memory is the loader's alone."""
    code = f"""
import dataclasses, json, resource, sys, time
from pathlib import Path
from survey_warehouse.load import load_wave
from survey_warehouse.settings import get_paths
from survey_warehouse.waves import find_wave_spec
spec = dataclasses.replace(find_wave_spec(2019, get_paths()), file=Path({str(path)!r}))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
result = load_wave(spec, Path({str(warehouse)!r}))
print(json.dumps({{"seconds": time.perf_counter() - started, "rows": result.row_count,
                  "quarantined": result.quarantined, "rss_before_kib": before,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated file and warehouse")
    args = parser.parse_args()
    work = ROOT / "var" / "benchmarks" / "large_wave_load"
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    path = make_file(args.rows, work / "wave_2019_large.csv")
    generated = time.perf_counter() - started
    result = load_in_child(path, work / "warehouse.duckdb")
    size_mib = path.stat().st_size / 2**20
    peak_mib = result["peak_rss_kib"] / 1024
    print(f"file: {result['rows']:,} rows, {size_mib:,.0f} MiB (generated in {generated:.1f} s)")
    print(f"load: {result['seconds']:.1f} s, {result['rows'] / result['seconds']:,.0f} rows/s, "
          f"{result['quarantined']:,} quarantined")
    print(f"peak memory of the loading process: {peak_mib:,.0f} MiB "
          f"(at start {result['rss_before_kib'] / 1024:,.0f} MiB); peak / file size = {peak_mib / size_mib:.2f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
