"""Publish the marts that passed the gate as a separate DuckDB file, replaced atomically.

Analysts and BI tools read only the published file. It is written next to the old one under a temporary name and
renamed over it: a reader that has the old file open keeps reading the old marts, a new reader gets the new ones,
nobody sees a half-written file, and a load never waits for a reader.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from survey_warehouse.quality import MART_TABLES


@dataclass(frozen=True)
class Publication:
    path: Path
    published_at: dt.datetime
    tables: dict[str, int]
    load_ids: list[str]


def publish_marts(warehouse: Path, published: Path, run_id: str = "") -> Publication:
    """Copy the marts (and nothing else) into a new file, record the publication, swap it in."""
    published.parent.mkdir(parents=True, exist_ok=True)
    tmp = published.with_name(f".{published.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    published_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with duckdb.connect(str(tmp)) as out:
        out.execute("attach ? as wh (read_only)", [str(warehouse)])
        out.execute("create schema marts")
        tables = {}
        for table in MART_TABLES:
            out.execute(f'create table marts."{table}" as select * from wh.marts."{table}"')
            tables[table] = out.execute(f'select count(*) from marts."{table}"').fetchone()[0]
        loads = out.execute(
            "select load_id, wave_year, file_name, file_sha256, loaded_at from wh.raw.load_registry "
            "where is_current order by wave_year").fetchall()
        out.execute("detach wh")
        out.execute(
            "create table marts.publication (published_at timestamp, run_id varchar, load_ids varchar[], "
            "tables json)")
        out.execute("insert into marts.publication values (?, ?, ?, ?)",
                    [published_at, run_id, [r[0] for r in loads], json.dumps(tables)])
        out.execute(
            "create table marts.source_loads (load_id varchar, wave_year integer, file_name varchar, "
            "file_sha256 varchar, loaded_at timestamp)")
        out.executemany("insert into marts.source_loads values (?, ?, ?, ?, ?)", [list(r) for r in loads])
        out.execute("checkpoint")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, published)
    dir_fd = os.open(published.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return Publication(published, published_at, tables, [r[0] for r in loads])
