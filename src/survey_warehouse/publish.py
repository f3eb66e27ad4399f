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

from survey_warehouse.quality import MART_TABLES
from survey_warehouse.warehouse import connect_readonly


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
    # The new file is attached to a read-only warehouse connection, so publishing never takes the writer's lock.
    with connect_readonly(warehouse) as con:
        con.execute("attach ? as pub (read_write)", [str(tmp)])
        try:
            con.execute("create schema pub.marts")
            tables = {}
            for table in MART_TABLES:
                con.execute(f'create table pub.marts."{table}" as select * from marts."{table}"')
                tables[table] = con.execute(f'select count(*) from pub.marts."{table}"').fetchone()[0]
            loads = con.execute(
                "select load_id, wave_year, file_name, file_sha256, loaded_at from raw.load_registry "
                "where is_current order by wave_year").fetchall()
            con.execute(
                "create table pub.marts.publication (published_at timestamp, run_id varchar, load_ids varchar[], "
                "tables json)")
            con.execute("insert into pub.marts.publication values (?, ?, ?, ?)",
                        [published_at, run_id, [r[0] for r in loads], json.dumps(tables)])
            con.execute(
                "create table pub.marts.source_loads (load_id varchar, wave_year integer, file_name varchar, "
                "file_sha256 varchar, loaded_at timestamp)")
            con.executemany("insert into pub.marts.source_loads values (?, ?, ?, ?, ?)", [list(r) for r in loads])
        finally:
            con.execute("detach pub")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, published)
    dir_fd = os.open(published.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return Publication(published, published_at, tables, [r[0] for r in loads])
