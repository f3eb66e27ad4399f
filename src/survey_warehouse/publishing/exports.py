"""Exports of the published marts for people without a SQL client: every mart as Parquet and as CSV.

Each publication gets a folder of its own, named by its publication time (UTC), and `latest` points at the newest:

    var/exports/2019-06-01T061512Z/dim_city.parquet, dim_city.csv, ..., manifest.json
    var/exports/latest -> 2019-06-01T061512Z

`manifest.json` lists every table with its rows and columns (name and type), the publication time and run, and the
loads (wave, file, sha256) the marts were built from. Only the published marts are read (the DuckDB file
read-only, or the PostgreSQL schema `marts`), never the warehouse, so an export holds what readers see and no
personal data. A folder is written under a temporary name (`.<folder>.<pid>@<host>.tmp`), its files and itself
flushed to disk, and renamed when complete; only then does `latest` move: a failed export leaves nothing, a power
loss never leaves `latest` pointing at files not yet on disk, and a publication that has been exported already is not
exported again. The exports of the last `SURVEY_EXPORTS_KEEP` publications (10) are kept, older ones removed; a
temporary folder left by an export that was killed is removed by the next export.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.settings import Paths

if TYPE_CHECKING:
    import duckdb

    from survey_warehouse.warehouse import Warehouse

log = logging.getLogger(__name__)

LATEST = "latest"
MANIFEST = "manifest.json"
KEEP_VARIABLE = "SURVEY_EXPORTS_KEEP"
DEFAULT_KEEP = 10
# an export's folder: its publication time, and -2, -3... for a second publication within the same second
_EXPORT_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}T\d{6}Z(?:-\d+)?")
# what an export writes before renaming it into place: .<name>.<pid>@<host>.tmp (earlier versions: .<name>.<pid>.tmp)
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)(?:@(?P<host>[^@/]+))?\.tmp")
# a temporary of another machine (exports on a shared volume) is removed once it is this old: no export takes a day
FOREIGN_TEMPORARY_SECONDS = 86400.0


def exports_dir(paths: Paths) -> Path:
    return paths.var / "exports"


def folder_name(published_at: dt.datetime) -> str:
    return published_at.strftime("%Y-%m-%dT%H%M%SZ")


def exports_to_keep() -> int:
    """How many publications' exports are kept (SURVEY_EXPORTS_KEEP, default 10; the newest is always kept)."""
    value = os.environ.get(KEEP_VARIABLE, str(DEFAULT_KEEP)).strip()
    if not value.isdigit() or int(value) < 1:
        raise SurveyWarehouseError(
            f"{KEEP_VARIABLE} must be a whole number of at least 1 (how many publications' exports to keep), "
            f"not {value!r}"
        )
    return int(value)


def _temporary(root: Path, name: str) -> Path:
    return root / f".{name}.{os.getpid()}@{socket.gethostname()}.tmp"


def _fsync(path: Path) -> None:
    """Flush a file or a folder (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: alive
        return False
    return False


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Remove what exports that were killed left: temporaries of processes of this machine that are gone, and of
    another machine once a day old. A temporary of an export still running is left alone."""
    host, removed = socket.gethostname(), []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        found = _TEMPORARY.fullmatch(entry.name)
        if found is None:
            continue
        if (found["host"] or host) != host:
            try:
                stale = time.time() - entry.lstat().st_mtime > FOREIGN_TEMPORARY_SECONDS
            except FileNotFoundError:
                continue
        else:
            stale = int(found["pid"]) != os.getpid() and _process_is_gone(int(found["pid"]))
        if stale:
            _remove(entry)
            removed.append(entry)
            log.info("Removed %s, left by an export that did not finish", entry)
    return removed


def remove_old_exports(root: Path, keep: int) -> list[Path]:
    """Remove the exports of all but the newest `keep` publications; the one `latest` points at always stays, and
    nothing that is not an export (a folder without a manifest, a file) is touched."""
    latest = os.path.basename(os.readlink(root / LATEST)) if (root / LATEST).is_symlink() else None
    found = []
    for entry in root.iterdir():
        if entry.is_symlink() or not entry.is_dir() or not _EXPORT_FOLDER.fullmatch(entry.name):
            continue
        manifest = read_manifest(entry)
        if manifest is None:
            continue
        found.append((dt.datetime.fromisoformat(manifest["publication"]["published_at"]), entry.name, entry))
    removed = []
    for _published_at, name, folder in sorted(found)[:-keep]:
        if name == latest:
            continue
        # renamed first, so a removal cut short leaves a temporary (removed next time), never a partial export
        doomed = _temporary(root, name)
        os.rename(folder, doomed)
        shutil.rmtree(doomed)
        removed.append(folder)
        log.info("Removed the export %s (%s keeps the last %d)", folder, KEEP_VARIABLE, keep)
    if removed:
        _fsync(root)
    return removed


@dataclass(frozen=True)
class Export:
    folder: Path
    published_at: dt.datetime
    tables: dict[str, int]
    created: bool  # False when the publication had been exported already


@dataclass(frozen=True)
class _Snapshot:
    """The published marts as one consistent read: the publication, its loads and a DuckDB view of every mart."""

    con: duckdb.DuckDBPyConnection
    source: str
    published_at: dt.datetime
    run_id: str
    tables: list[str]
    loads: list[dict[str, Any]]


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def latest_export(paths: Paths) -> dict[str, Any] | None:
    """The manifest of the newest export (with its folder under `folder`), or None when nothing is exported."""
    latest = exports_dir(paths) / LATEST
    manifest = read_manifest(latest)
    if manifest is None:
        return None
    return {**manifest, "folder": str(latest.resolve())}


def is_exported(paths: Paths, published_at: dt.datetime) -> bool:
    """True when the newest export is of the publication made at `published_at`."""
    manifest = latest_export(paths)
    return manifest is not None and manifest["publication"]["published_at"] == published_at.isoformat()


def _open_duckdb(published: Path, root: Path) -> _Snapshot:
    import duckdb

    if not published.exists():
        raise SurveyWarehouseError(f"nothing to export: the published marts {published} do not exist yet")
    con = duckdb.connect(str(published), read_only=True)  # one connection: the file it opened, even if replaced
    try:
        published_at, run_id, tables = con.execute(
            "select published_at, run_id, tables from marts.publication"
        ).fetchall()[0]
        loads = con.execute(
            "select load_id, wave_year, file_name, file_sha256, loaded_at from marts.source_loads order by wave_year"
        ).fetchall()
    except duckdb.Error as exc:
        con.close()
        raise SurveyWarehouseError(f"{published} holds no publication record (marts.publication): {exc}") from exc
    source = str(published.relative_to(root)) if published.is_relative_to(root) else str(published)
    return _Snapshot(con, source, published_at, run_id or "", sorted(json.loads(tables)), _loads(loads))


def _loads(rows: list[tuple]) -> list[dict[str, Any]]:
    keys = ("load_id", "wave_year", "file_name", "file_sha256", "loaded_at")
    return [
        {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in zip(keys, r, strict=True)} for r in rows
    ]


# PostgreSQL's types (information_schema.columns.data_type) as DuckDB writes them to Parquet
_PG_TYPES = {
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "numeric": "decimal({p}, {s})",
    "real": "float",
    "double precision": "double",
    "boolean": "boolean",
    "text": "varchar",
    "character varying": "varchar",
    "character": "varchar",
    "date": "date",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
    "json": "varchar",
    "jsonb": "varchar",
}


def _open_postgres(warehouse: Warehouse) -> _Snapshot:
    """The PostgreSQL marts read in one read-only transaction that first takes a share lock on the publication
    record, then on every table it lists, so a schema swap waits for the read to end: every table comes from the
    same publication. The lock comes before any query, so the transaction's snapshot is taken after it, never
    before a swap that committed while the lock waited."""
    import duckdb
    import pandas as pd
    import psycopg2.errors

    schema = warehouse.marts_schema
    pg = warehouse.pg_connect()
    try:
        pg.set_session(readonly=True, isolation_level="REPEATABLE READ")
        cur = pg.cursor()
        try:  # (LOCK takes no snapshot: the first query after it does)
            cur.execute(f'lock table "{schema}".publication in access share mode')
        except psycopg2.errors.UndefinedTable as exc:
            raise SurveyWarehouseError(f"nothing to export: schema {schema} holds no publication record") from exc
        cur.execute(f'select published_at, run_id, tables from "{schema}".publication')
        record = cur.fetchone()
        if record is None:
            raise SurveyWarehouseError(f"nothing to export: {schema}.publication is empty")
        published_at, run_id, tables = record
        tables = tables if isinstance(tables, dict) else json.loads(tables)
        names = sorted({*tables, "source_loads"})
        cur.execute("lock table " + ", ".join(f'"{schema}"."{n}"' for n in names) + " in access share mode")
        cur.execute(
            "select load_id, wave_year, file_name, file_sha256, loaded_at from "
            f'"{schema}".source_loads order by wave_year'
        )
        loads = cur.fetchall()
        tables = tables if isinstance(tables, dict) else json.loads(tables)
        con = duckdb.connect()
        con.execute("create schema marts")
        for table in sorted(tables):
            cur.execute(
                "select column_name, data_type, numeric_precision, numeric_scale from information_schema.columns "
                "where table_schema = %s and table_name = %s order by ordinal_position",
                [schema, table],
            )
            columns = cur.fetchall()
            cur.execute(f'select * from "{schema}"."{table}"')
            frame = pd.DataFrame.from_records(cur.fetchall(), columns=[d[0] for d in cur.description])
            con.register("_frame", frame)
            # each column with the type PostgreSQL declares, not the one pandas guessed (a nullable integer is
            # not a float, numeric(10, 6) keeps its scale)
            select = ", ".join(
                f'cast("{name}" as {_PG_TYPES[kind].format(p=precision, s=scale)}) as "{name}"'
                if kind in _PG_TYPES and (kind != "numeric" or precision is not None)
                else f'"{name}"'
                for name, kind, precision, scale in columns
            )
            con.execute(f'create table marts."{table}" as select {select} from _frame')
            con.unregister("_frame")
        pg.rollback()
    finally:
        pg.close()
    where = f"postgresql://{warehouse.host}:{warehouse.port}/{warehouse.dbname}#{schema}"
    return _Snapshot(con, where, published_at, run_id or "", sorted(tables), _loads(loads))


def _write(snapshot: _Snapshot, folder: Path) -> dict[str, int]:
    con, rows = snapshot.con, {}
    described = []
    for table in snapshot.tables:
        relation = con.sql(f'select * from marts."{table}"')
        relation.write_parquet(str(folder / f"{table}.parquet"))
        relation.write_csv(str(folder / f"{table}.csv"), header=True)
        rows[table] = con.execute(f'select count(*) from marts."{table}"').fetchall()[0][0]
        described.append(
            {
                "table": table,
                "rows": rows[table],
                "columns": [{"name": n, "type": str(t)} for n, t in zip(relation.columns, relation.types, strict=True)],
                "files": {"parquet": f"{table}.parquet", "csv": f"{table}.csv"},
            }
        )
    manifest = {
        "times": "UTC",
        "publication": {
            "published_at": snapshot.published_at.isoformat(),
            "run_id": snapshot.run_id,
            "source": snapshot.source,
        },
        "loads": snapshot.loads,
        "exported_at": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(),
        "tables": described,
        "about": "Every published mart as Parquet and CSV (UTF-8, comma-separated, with a header); the marts' "
        "grain and columns: docs/mart_catalogue.md",
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for path in sorted(folder.iterdir()):
        _fsync(path)
    _fsync(folder)
    return rows


def _point_latest(root: Path, name: str) -> None:
    latest = root / LATEST
    if latest.is_dir() and not latest.is_symlink():
        # a copy of the exports folder made by a tool that follows links: `latest` became a copy of an export,
        # which its own folder holds too
        log.warning("%s is a folder, not a link to the newest export: replaced by the link", latest)
        shutil.rmtree(latest)
    tmp = _temporary(root, LATEST)
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(name, target_is_directory=True)  # relative: the exports folder can be moved or copied
    try:
        os.replace(tmp, latest)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(root)


def export_marts(paths: Paths, warehouse: Warehouse) -> Export:
    """Export the marts that are published now (see the module's docstring); idempotent per publication. Then the
    exports beyond the last `exports_to_keep()` publications are removed."""
    keep = exports_to_keep()
    snapshot = (
        _open_postgres(warehouse) if warehouse.backend == "postgres" else _open_duckdb(paths.published, paths.root)
    )
    try:
        root = exports_dir(paths)
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(root)
        name = folder_name(snapshot.published_at)
        suffix = 1
        while (root / name).exists():
            manifest = read_manifest(root / name)
            if manifest and manifest["publication"]["published_at"] == snapshot.published_at.isoformat():
                _point_latest(root, name)
                remove_old_exports(root, keep)
                tables = {t["table"]: t["rows"] for t in manifest["tables"]}
                log.info("The publication of %s is exported already: %s", snapshot.published_at, root / name)
                return Export(root / name, snapshot.published_at, tables, created=False)
            suffix += 1
            name = f"{folder_name(snapshot.published_at)}-{suffix}"
        tmp = _temporary(root, name)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            rows = _write(snapshot, tmp)  # (flushed to disk, files and folder)
            os.rename(tmp, root / name)
            _fsync(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _point_latest(root, name)
        remove_old_exports(root, keep)
    finally:
        snapshot.con.close()
    log.info("Exported %d marts of the publication of %s to %s", len(rows), snapshot.published_at, root / name)
    return Export(root / name, snapshot.published_at, rows, created=True)


def export_for_run(context: Any) -> dict[str, Any]:
    """The task of the survey_marts_exports DAG: export what is published now (the newest publication, which
    includes whatever the triggering events announced)."""
    from survey_warehouse.settings import get_paths
    from survey_warehouse.warehouse import Warehouse

    for event in (context.get("triggering_asset_events") or {}).values():
        for e in event:
            log.info(
                "Triggered by %s from %s.%s (%s): %s",
                e.asset,
                e.source_dag_id,
                e.source_task_id,
                e.source_run_id,
                e.extra,
            )
    paths = get_paths()
    export = export_marts(paths, Warehouse.from_env(paths.warehouse))
    return {
        "folder": str(export.folder),
        "published_at": export.published_at.isoformat(),
        "tables": export.tables,
        "created": export.created,
    }
