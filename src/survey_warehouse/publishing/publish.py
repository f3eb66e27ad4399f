"""Publish the marts that passed the gate: a new DuckDB file replaced atomically, or a PostgreSQL schema swap.

Analysts and BI tools read only the published marts. On DuckDB they are written next to the old file under a
temporary name and renamed over it: a reader that has the old file open keeps reading the old marts, a new reader
gets the new ones, nobody sees a half-written file, and a load never waits for a reader. On PostgreSQL the marts
built in the build schema replace the published schema in one transaction.

Publishing is also when the build's candidate loads become their waves' current ones (`survey_warehouse.raw.builds`:
a build publishes exactly the loads it recorded before it read them): both happen in one transaction, so the
registry never says a load is current that the published marts do not hold.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.quality.batches import mart_tables
from survey_warehouse.raw.builds import Build, check_building, finish_build
from survey_warehouse.raw.registry import promote_load, withdraw_load
from survey_warehouse.settings import Paths
from survey_warehouse.warehouse import Session, Warehouse

log = logging.getLogger(__name__)

# a half-written copy of another machine sharing the published folder is removed only after this long
OTHER_HOSTS_COPIES_SECONDS = 24 * 3600

# What the published marts are built from besides the loads: change any of these and the marts are rebuilt.
BUILD_INPUTS = (
    "dbt_project/dbt_project.yml",
    "dbt_project/models",
    "dbt_project/macros",
    "dbt_project/seeds",
    "dbt_project/tests",
    "expectations",
)


@dataclass(frozen=True)
class Publication:
    path: Path | str
    published_at: dt.datetime
    tables: dict[str, int]
    load_ids: list[str]
    build_fingerprint: str | None = None
    run_id: str = ""


def build_fingerprint(paths: Paths, warehouse: Warehouse) -> str:
    """A digest of the dbt project, the seeds and the expectation suites (and the warehouse engine)."""
    digest = hashlib.sha256(warehouse.backend.encode())
    for entry in BUILD_INPUTS:
        base = paths.root / entry
        files = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else [base]
        for path in files:
            if path.exists():
                digest.update(str(path.relative_to(paths.root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _loads_of(session: Session, build: Build) -> list[tuple]:
    """The loads the build's marts are made from, as the publication records them."""
    ids = build.load_ids
    if not ids:
        return []
    return session.execute(
        "select load_id, wave_year, file_name, file_sha256, loaded_at from raw.load_registry "
        f"where load_id in ({', '.join('?' * len(ids))}) order by wave_year",
        ids,
    ).fetchall()


def _promote(session: Session, build: Build, run_id: str) -> None:
    """In the publishing transaction: the build in progress is this run's, its candidates become current."""
    check_building(session, build)
    for load_id, _wave in build.brings_in:
        promote_load(session, load_id, f"published by run {run_id}")
    for load_id, wave in build.withdraws:
        withdraw_load(session, load_id, f"wave {wave} withdrawn by run {run_id}: {build.withdrawn_because}")
    finish_build(session, build.build_id, "published", f"published by run {run_id}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _previous(published: Path) -> Path:
    return published.with_name(f".{published.name}.previous")


def _intent(published: Path) -> Path:
    return published.with_name(f".{published.name}.publishing")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host() -> str:
    """This machine's name as it goes into a copy's name (no dots: they separate the name's parts)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _copy_of(published: Path) -> Path:
    """The copy a publication writes before it swaps it in: `.<file>.<host>.<pid>.tmp` (DuckDB adds `.wal`)."""
    return published.with_name(f".{published.name}.{_host()}.{os.getpid()}.tmp")


def sweep_stopped_copies(published: Path) -> list[Path]:
    """The half-written copies (`.<file>.<host>.<pid>.tmp` and its `.wal`) a publication left when its process was
    killed or the disk filled: removed when that process, on this machine, is gone; a copy of another machine
    sharing the folder only after a day. Nothing else is touched. Returns what it removed."""
    removed = []
    copy = re.compile(rf"\.{re.escape(published.name)}\.([A-Za-z0-9_-]+)\.(\d+)\.tmp(\.wal)?")
    for stale in published.parent.iterdir():
        found = copy.fullmatch(stale.name)
        if not found:
            continue
        host, pid = found.group(1), int(found.group(2))
        gone = False
        if host == _host():
            gone = pid != os.getpid() and not _alive(pid)
        else:
            with contextlib.suppress(OSError):
                gone = time.time() - stale.stat().st_mtime > OTHER_HOSTS_COPIES_SECONDS
        if gone:
            stale.unlink(missing_ok=True)
            removed.append(stale)
    if removed:
        log.warning("published marts: removed %d copies a stopped publication left", len(removed))
    return removed


def recover_publication(warehouse: Warehouse, published: Path) -> str | None:
    """DuckDB: a publication stopped (killed, a power cut) between renaming its file into place and committing the
    registry is finished or undone, by what the registry says of its build: published, the old file is dropped;
    otherwise the old file is put back. Copies a stopped publication was writing are removed. Runs before anything
    reads or publishes the marts. Returns what it did."""
    if published.parent.is_dir():
        sweep_stopped_copies(published)
    intent = _intent(published)
    if not intent.exists():
        return None
    try:
        record = json.loads(intent.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    previous = _previous(published)
    with Session(warehouse, read_only=True) as session:
        row = session.execute("select status from raw.builds where build_id = ?", [record.get("build_id")]).fetchone()
    if row is not None and row[0] == "published":
        done = f"finished the publication of build {record.get('build_id')}"
    elif record.get("had_previous") and previous.exists():
        os.replace(previous, published)
        done = f"put the marts back as they were before build {record.get('build_id')} (its publication stopped)"
    elif not record.get("had_previous"):
        published.unlink(missing_ok=True)
        done = f"removed the marts of build {record.get('build_id')} (its publication stopped)"
    else:
        done = "found a stopped publication without the file it replaced; the next publication replaces it"
    previous.unlink(missing_ok=True)
    intent.unlink(missing_ok=True)
    _fsync_dir(published.parent)
    log.warning("published marts: %s", done)
    return done


def publish_marts(warehouse: Warehouse, published: Path, build: Build, run_id: str = "") -> Publication:
    """DuckDB: copy the marts (and nothing else) into a new file, record the publication, then in one transaction
    promote the build's candidate loads and swap the file in. When the registry's commit fails, the previous file
    is put back; when the process is killed between the rename and the commit, an intent file beside the marts
    lets the next run (`recover_publication`) do the same. The registry and the published file never disagree
    for longer than that."""
    published.parent.mkdir(parents=True, exist_ok=True)
    recover_publication(warehouse, published)
    tmp = _copy_of(published)
    previous, intent = _previous(published), _intent(published)
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal"), previous):
        leftover.unlink(missing_ok=True)
    published_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    tables_to_publish = mart_tables(warehouse, "marts")
    swapped = False
    try:
        with Session(warehouse) as session:
            con = session.duckdb_connection
            check_building(session, build)
            loads = _loads_of(session, build)
            con.execute("attach ? as pub", [str(tmp)])
            try:
                con.execute("create schema pub.marts")
                tables = {}
                for table in tables_to_publish:
                    con.execute(f'create table pub.marts."{table}" as select * from marts."{table}"')
                    tables[table] = con.execute(f'select count(*) from pub.marts."{table}"').fetchall()[0][0]
                _record(con, "pub.marts", published_at, run_id, loads, tables, build.fingerprint)
            finally:
                con.execute("detach pub")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            with session.transaction():
                _promote(session, build, run_id)
                had_previous = published.exists()
                with open(intent, "w", encoding="utf-8") as f:
                    json.dump({"build_id": build.build_id, "had_previous": had_previous}, f)
                    f.flush()
                    os.fsync(f.fileno())
                if had_previous:
                    os.link(published, previous)
                _fsync_dir(published.parent)
                os.replace(tmp, published)
                swapped = True
                _fsync_dir(published.parent)
    except BaseException:
        if swapped:  # the registry did not commit: the readers get the previous marts back
            if previous.exists():
                os.replace(previous, published)
            else:
                published.unlink(missing_ok=True)
            _fsync_dir(published.parent)
        raise
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal"), previous, intent):
            leftover.unlink(missing_ok=True)
    return Publication(published, published_at, tables, [r[0] for r in loads], build.fingerprint, run_id)


def _record(
    con: duckdb.DuckDBPyConnection | Session,
    schema: str,
    published_at: dt.datetime,
    run_id: str,
    loads: list[tuple],
    tables: dict[str, int],
    fingerprint: str | None,
) -> None:
    """The publication's own tables beside the marts: when, by which run, from which loads and build."""
    con.execute(
        f"create table {schema}.publication (published_at timestamp, run_id varchar, "
        "load_ids varchar[], tables json, build_fingerprint varchar)"
    )
    con.execute(
        f"insert into {schema}.publication values (?, ?, ?, ?, ?)",
        [published_at, run_id, [r[0] for r in loads], json.dumps(tables), fingerprint],
    )
    con.execute(
        f"create table {schema}.source_loads (load_id varchar, wave_year integer, file_name varchar, "
        "file_sha256 varchar, loaded_at timestamp)"
    )
    con.executemany(f"insert into {schema}.source_loads values (?, ?, ?, ?, ?)", [list(r) for r in loads])


def swap_wait_seconds() -> float:
    """How long a schema swap keeps trying to take the published marts from their readers (SURVEY_SWAP_WAIT_SECONDS)."""
    return float(os.environ.get("SURVEY_SWAP_WAIT_SECONDS", "120"))


def reader_idle_timeout() -> str:
    """How long a reader's session may stay idle inside a transaction before PostgreSQL ends it
    (SURVEY_READER_IDLE_TIMEOUT): such a session holds its locks on the marts and would hold off every swap."""
    return os.environ.get("SURVEY_READER_IDLE_TIMEOUT", "10min")


def ensure_reader_role(warehouse: Warehouse) -> None:
    """The role BI tools and analysts log in with: it may read the published marts and nothing else, and a session
    of it left idle in a transaction is ended after `reader_idle_timeout()`."""
    role = warehouse.reader_role
    with Session(warehouse) as session:
        exists = session.execute("select 1 from pg_roles where rolname = ?", [role]).fetchone()
        if not exists:
            session.execute(f'create role "{role}" login')
        session.execute(f'grant connect on database "{warehouse.dbname}" to "{role}"')
        session.execute(f'revoke create on schema public from "{role}"')
        _set_reader_idle_timeout(session, role)


def _set_reader_idle_timeout(session: Session, role: str) -> None:
    """The reader's idle-in-transaction timeout, when it is not set to `reader_idle_timeout()` already. Setting it
    takes a role that may alter roles; a warehouse owner without that right (the compose stack's, whose init sets
    it) publishes all the same, and the log says what to run."""
    import psycopg2.errors

    wanted = f"idle_in_transaction_session_timeout={reader_idle_timeout()}"
    settings = session.execute(
        "select coalesce(s.setconfig, '{}') from pg_roles r left join pg_db_role_setting s "
        "on s.setrole = r.oid and s.setdatabase = 0 where r.rolname = ?",
        [role],
    ).fetchone()
    if settings and wanted in list(settings[0]):
        return
    try:
        session.execute(f'alter role "{role}" set idle_in_transaction_session_timeout = ?', [reader_idle_timeout()])
    except psycopg2.errors.InsufficientPrivilege:
        log.warning(
            'could not set the reader role\'s idle timeout as %s: run `alter role "%s" set '
            "idle_in_transaction_session_timeout = '%s'` as a superuser",
            session.warehouse.user,
            role,
            reader_idle_timeout(),
        )


class SwapBlocked(SurveyWarehouseError):
    """The published marts stayed locked by other sessions for longer than the swap waits."""


def _lock_published(session: Session, schema: str) -> None:
    """Every published table locked for the swap, or none: NOWAIT, so the swap never queues behind a reader (a
    queued exclusive lock would make every later reader wait behind it) and never holds one table while waiting
    for another (no deadlock with a reader that reads one mart after another)."""
    names = [
        r[0]
        for r in session.execute(
            "select table_name from information_schema.tables where table_schema = ? order by 1", [schema]
        ).fetchall()
    ]
    if names:
        session.execute(
            "lock table " + ", ".join(f'"{schema}"."{n}"' for n in names) + " in access exclusive mode nowait"
        )


def blocking_sessions(warehouse: Warehouse, schema: str) -> list[str]:
    """The other sessions holding a lock on a table of `schema`: who, in what state, since when, on what."""
    with Session(warehouse, read_only=True) as session:
        rows = session.execute(
            "select a.pid, a.usename, coalesce(nullif(a.application_name, ''), '-'), a.state, "
            "to_char(coalesce(a.xact_start, a.backend_start) at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'), "
            "string_agg(distinct c.relname, ', ' order by c.relname) "
            "from pg_locks l join pg_class c on c.oid = l.relation "
            "join pg_namespace n on n.oid = c.relnamespace join pg_stat_activity a on a.pid = l.pid "
            "where n.nspname = ? and l.granted and l.pid <> pg_backend_pid() "
            "group by 1, 2, 3, 4, 5 order by 1",
            [schema],
        ).fetchall()
    return [
        f"pid {pid} (user {user}, application {app}, {state} since {since} UTC) holds {tables}"
        for pid, user, app, state, since, tables in rows
    ]


def swap_marts(warehouse: Warehouse, build: Build, run_id: str = "") -> Publication:
    """PostgreSQL: the marts built (and validated) in the build schema replace the published schema in one
    transaction, together with promoting the build's candidate loads. Readers see the old marts or the new ones,
    never a mix. The swap takes the published tables only when no reader holds them (it tries again every 0.2 s
    for `swap_wait_seconds()`), so it never makes a reader wait and never deadlocks with one; when readers hold
    them all that time, it fails naming their sessions, and nothing changes."""
    import psycopg2.errors

    ensure_reader_role(warehouse)
    deadline = time.monotonic() + swap_wait_seconds()
    while True:
        try:
            return _swap(warehouse, build, run_id)
        except psycopg2.errors.LockNotAvailable as exc:
            if time.monotonic() >= deadline:
                held = blocking_sessions(warehouse, warehouse.marts_schema) or ["(they have let go since)"]
                raise SwapBlocked(
                    f"the published marts stayed in use by other sessions for {swap_wait_seconds():.0f} s, so they "
                    f"were not replaced (nothing changed; run the wave again): " + "; ".join(held)
                ) from exc
            time.sleep(0.2)


def _swap(warehouse: Warehouse, build: Build, run_id: str) -> Publication:
    build_schema, published = warehouse.marts_build_schema, warehouse.marts_schema
    role = warehouse.reader_role
    published_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    tables_to_publish = mart_tables(warehouse, build_schema)
    with Session(warehouse) as session, session.transaction():
        _lock_published(session, published)
        session.execute("set local lock_timeout = '5s'")  # nothing else here waits on readers; never for long
        tables = {
            t: session.execute(f'select count(*) from "{build_schema}"."{t}"').fetchall()[0][0]
            for t in tables_to_publish
        }
        loads = _loads_of(session, build)
        _promote(session, build, run_id)
        for table in session.execute(
            "select table_name from information_schema.tables where table_schema = ?", [build_schema]
        ).fetchall():
            if table[0] not in tables_to_publish:  # a table the project no longer defines
                session.execute(f'drop table "{build_schema}"."{table[0]}" cascade')
        _record(session, f'"{build_schema}"', published_at, run_id, loads, tables, build.fingerprint)
        session.execute(f'grant usage on schema "{build_schema}" to "{role}"')
        session.execute(f'grant select on all tables in schema "{build_schema}" to "{role}"')
        session.execute(f'drop schema if exists "{published}_previous" cascade')
        if session.execute("select 1 from information_schema.schemata where schema_name = ?", [published]).fetchone():
            session.execute(f'alter schema "{published}" rename to "{published}_previous"')
        session.execute(f'alter schema "{build_schema}" rename to "{published}"')
        session.execute(f'drop schema if exists "{published}_previous" cascade')
    where = f"postgresql://{warehouse.host}:{warehouse.port}/{warehouse.dbname}#{published}"
    return Publication(where, published_at, tables, [r[0] for r in loads], build.fingerprint, run_id)


def publish(warehouse: Warehouse, published_file: Path, build: Build, run_id: str = "") -> Publication:
    """Publish the build's marts on whichever warehouse is configured: a swapped file (DuckDB) or a swapped schema
    (PostgreSQL)."""
    if warehouse.backend == "postgres":
        return swap_marts(warehouse, build, run_id)
    return publish_marts(warehouse, published_file, build, run_id)


def read_publication(warehouse: Warehouse, published_file: Path) -> Publication | None:
    """The publication the readers see now, or None when nothing has been published."""
    columns = "published_at, load_ids, tables, build_fingerprint, run_id"
    if warehouse.backend == "postgres":
        with Session(warehouse, read_only=True) as session:
            if not session.execute(
                "select 1 from information_schema.tables where table_schema = ? and table_name = 'publication'",
                [warehouse.marts_schema],
            ).fetchone():
                return None
            row = session.execute(f'select {columns} from "{warehouse.marts_schema}".publication').fetchone()
        where: Path | str = (
            f"postgresql://{warehouse.host}:{warehouse.port}/{warehouse.dbname}#{warehouse.marts_schema}"
        )
    else:
        if not published_file.exists():
            return None
        try:
            with duckdb.connect(str(published_file), read_only=True) as con:
                names = {
                    r[0]
                    for r in con.execute(
                        "select column_name from information_schema.columns where "
                        "table_schema = 'marts' and table_name = 'publication'"
                    ).fetchall()
                }
                if not names:
                    return None
                wanted = ", ".join(c if c in names else f"null as {c}" for c in columns.split(", "))
                row = con.execute(f"select {wanted} from marts.publication").fetchone()
        except duckdb.Error:
            return None
        where = published_file
    if row is None:
        return None
    published_at, load_ids, tables, fingerprint, run_id = row
    tables = json.loads(tables) if isinstance(tables, str) else (tables or {})
    return Publication(where, published_at, tables, list(load_ids or []), fingerprint, run_id or "")
