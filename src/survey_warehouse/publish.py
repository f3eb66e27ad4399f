"""Publish the marts that passed the gate: a new DuckDB file replaced atomically, or a PostgreSQL schema swap.

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
from survey_warehouse.warehouse import Session, Warehouse, connect_readonly


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


def ensure_reader_role(warehouse: Warehouse) -> None:
    """The role BI tools and analysts log in with: it may read the published marts and nothing else."""
    role = warehouse.reader_role
    with Session(warehouse) as session:
        exists = session.execute("select 1 from pg_roles where rolname = ?", [role]).fetchone()
        if not exists:
            session.execute(f'create role "{role}" login')
        session.execute(f'grant connect on database "{warehouse.dbname}" to "{role}"')
        session.execute(f'revoke create on schema public from "{role}"')


def swap_marts(warehouse: Warehouse, run_id: str = "") -> Publication:
    """PostgreSQL: the marts built (and validated) in the build schema replace the published schema in one
    transaction. Readers see the old marts or the new ones, never a mix; a reader's running query finishes
    on the old marts before they are dropped."""
    build, published = warehouse.marts_build_schema, warehouse.marts_schema
    role = warehouse.reader_role
    published_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ensure_reader_role(warehouse)
    with Session(warehouse) as session, session.transaction():
        tables = {t: session.execute(f'select count(*) from "{build}"."{t}"').fetchone()[0] for t in MART_TABLES}
        loads = session.execute(
            "select load_id, wave_year, file_name, file_sha256, loaded_at from raw.load_registry "
            "where is_current order by wave_year").fetchall()
        session.execute(f'create table "{build}".publication (published_at timestamp, run_id varchar, '
                        'load_ids varchar[], tables json)')
        session.execute(f'insert into "{build}".publication values (?, ?, ?, ?)',
                        [published_at, run_id, [r[0] for r in loads], json.dumps(tables)])
        session.execute(f'create table "{build}".source_loads as select load_id, wave_year, file_name, '
                        'file_sha256, loaded_at from raw.load_registry where is_current')
        session.execute(f'grant usage on schema "{build}" to "{role}"')
        session.execute(f'grant select on all tables in schema "{build}" to "{role}"')
        session.execute(f'drop schema if exists "{published}_previous" cascade')
        if session.execute("select 1 from information_schema.schemata where schema_name = ?",
                           [published]).fetchone():
            session.execute(f'alter schema "{published}" rename to "{published}_previous"')
        session.execute(f'alter schema "{build}" rename to "{published}"')
        session.execute(f'drop schema if exists "{published}_previous" cascade')
    return Publication(Path(f"postgresql://{warehouse.host}:{warehouse.port}/{warehouse.dbname}#{published}"),
                       published_at, tables, [r[0] for r in loads])


def publish(warehouse: Warehouse, published_file: Path, run_id: str = "") -> Publication:
    """Publish on whichever warehouse is configured: a swapped file (DuckDB) or a swapped schema (PostgreSQL)."""
    if warehouse.backend == "postgres":
        return swap_marts(warehouse, run_id)
    assert warehouse.path is not None
    return publish_marts(warehouse.path, published_file, run_id)
