"""The load registry (raw.load_registry): every load of a wave, its status, and which one is current.

A load's lifecycle:

    pending -> candidate -> passed (its wave's current load) -> superseded (by the next passed load)
       |           |                                         -> withdrawn (its wave was withdrawn)
       +-----------+--> failed (the reason kept; the current load stays current)

A load is `pending` when it is written to raw, a `candidate` when its raw gate passes (it may wait there for the
build of a later run: `defer_build`), and `passed` only when the marts built from it are published. Whether a
delivery is `unchanged` is decided here too: the wave's current load (or its waiting candidate) was read from the
same bytes, with the same wave spec and the same codebook and pseudonym key (`read_fingerprint`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from survey_warehouse.errors import NothingToPublish, SurveyWarehouseError
from survey_warehouse.intake.codebook import Codebook
from survey_warehouse.intake.waves import WaveSpec
from survey_warehouse.raw.schema import ensure_raw_schema
from survey_warehouse.settings import pseudonym_key
from survey_warehouse.warehouse import Session, Warehouse, as_warehouse

UNFINISHED = ("loading", "pending", "candidate")


# a candidate waiting for the build of a later run: not unfinished, the next build takes it
WAITING = "status = 'candidate' and coalesce(build_deferred, false)"


@dataclass(frozen=True)
class CurrentLoad:
    load_id: str
    file_sha256: str | None
    row_count: int
    spec_sha256: str | None
    codebook_sha256: str | None
    waiting: bool = False  # a candidate waiting for its build, not yet the published current load


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_fingerprint(spec: WaveSpec, codebook: Codebook) -> str:
    """What a load's reading depends on besides the file: the codebook of its wave and the pseudonym key."""
    key = hashlib.sha256(pseudonym_key().encode()).hexdigest()
    return hashlib.sha256(f"{codebook.fingerprint(spec.wave_year)}|{key}".encode()).hexdigest()


def current_load(session: Session, wave_year: int) -> CurrentLoad | None:
    """The load the wave's marts are built from next: its candidate waiting for a build, else its current load."""
    row = session.execute(
        "select load_id, file_sha256, row_count, spec_sha256, codebook_sha256, not is_current from raw.load_registry "
        f"where wave_year = ? and (is_current or ({WAITING})) order by is_current limit 1",
        [wave_year],
    ).fetchone()
    return CurrentLoad(*row) if row else None


def is_unchanged(current: CurrentLoad | None, sha: str | None, spec: WaveSpec, fingerprint: str) -> bool:
    return bool(
        current
        and current.file_sha256 == sha
        and current.spec_sha256 == spec.fingerprint()
        and current.codebook_sha256 == fingerprint
    )


def utc_now() -> dt.datetime:
    """When a status changes: UTC, stored without its zone."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def abandon_unfinished(session: Session, wave_year: int, load_id: str) -> list[str]:
    """Before load `load_id` of `wave_year` is registered: loads left pending or candidate by a run that stopped
    (killed, crashed) are failed, one run at a time. A candidate waiting for a later build stays, unless it is of
    the same wave: the new load replaces it before it was built."""
    unfinished = f"status in {UNFINISHED} and not ({WAITING})"
    replaced = f"wave_year = ? and {WAITING}"
    found = session.execute(
        f"select load_id, {WAITING} from raw.load_registry where ({unfinished}) or ({replaced})", [wave_year]
    ).fetchall()
    now = utc_now()
    for stale, waiting in found:
        session.execute(
            "update raw.load_registry set status = 'failed', status_at = ?, status_message = ? where load_id = ?",
            [
                now,
                f"replaced by load {load_id} before it was built"
                if waiting
                else "the run that made this load stopped before it finished",
                stale,
            ],
        )
    return [r[0] for r in found]


def defer_build(target: Warehouse | Path, load_id: str, message: str) -> None:
    """The candidate's run leaves the build to a later run: the load waits as a candidate until a build takes it."""
    with Session(as_warehouse(target)) as session, session.transaction():
        _wave, status = _load_status(session, load_id)
        if status != "candidate":
            raise SurveyWarehouseError(f"load {load_id} is {status}; only a candidate can wait for a later build")
        session.execute(
            "update raw.load_registry set build_deferred = true, status_at = ?, status_message = ? where load_id = ?",
            [utc_now(), message, load_id],
        )


def waiting_loads(target: Warehouse | Path) -> list[tuple[str, int]]:
    """The candidates waiting for a later build: (load_id, wave_year)."""
    with Session(as_warehouse(target)) as session:
        ensure_raw_schema(session)
        rows = session.execute(
            f"select load_id, wave_year from raw.load_registry where {WAITING} order by 2"
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def register_load(session: Session, registry: dict, status: str, message: str) -> None:
    """A new load's row: `registry` holds its columns (the file, its reading, its counts) but the status."""
    now = utc_now()
    columns = {
        "accepted_count": None,
        "quarantined_count": None,
        "reader": None,
        **registry,
        "status": status,
        "status_at": now,
        "status_message": message,
        "is_current": False,
    }
    names = list(columns)
    session.execute(
        f"insert into raw.load_registry ({', '.join(names)}) values ({', '.join('?' * len(names))})",
        [columns[n] for n in names],
    )


def _load_status(session: Session, load_id: str) -> tuple[int, str]:
    row = session.execute("select wave_year, status from raw.load_registry where load_id = ?", [load_id]).fetchone()
    if row is None:
        raise NothingToPublish(f"no load {load_id!r} in raw.load_registry")
    return row[0], row[1]


def accept_load(target: Warehouse | Path, load_id: str, message: str) -> None:
    """The load passed its raw gate: it is the candidate the marts are built from (not yet current)."""
    with Session(as_warehouse(target)) as session, session.transaction():
        _wave, status = _load_status(session, load_id)
        if status not in ("pending", "candidate"):
            raise SurveyWarehouseError(f"load {load_id} is {status}; only a pending load can pass its gate")
        session.execute(
            "update raw.load_registry set status = 'candidate', status_at = ?, status_message = ? where load_id = ?",
            [utc_now(), message, load_id],
        )


def fail_load(target: Warehouse | Path, load_id: str, message: str) -> None:
    """Something on the way failed: the load is kept with the reason; the current load stays current."""
    with Session(as_warehouse(target)) as session, session.transaction():
        _load_status(session, load_id)
        session.execute(
            "update raw.load_registry set status = 'failed', status_at = ?, status_message = ? "
            "where load_id = ? and not is_current",
            [utc_now(), message, load_id],
        )


def promote_load(session: Session, load_id: str, message: str) -> None:
    """In the publishing transaction: the candidate becomes its wave's current load; the previous one stays in raw
    as superseded, so corrections between loads can be queried."""
    wave_year, status = _load_status(session, load_id)
    if status == "passed":
        return
    if status != "candidate":
        raise SurveyWarehouseError(f"load {load_id} is {status}; only a candidate that passed its gates is published")
    now = utc_now()
    session.execute(
        "update raw.load_registry set status = 'superseded', is_current = false, status_at = ?, "
        "status_message = ? where wave_year = ? and is_current and load_id <> ?",
        [now, f"superseded by load {load_id}", wave_year, load_id],
    )
    session.execute(
        "update raw.load_registry set status = 'passed', is_current = true, status_at = ?, "
        "status_message = ? where load_id = ?",
        [now, message, load_id],
    )


def withdraw_load(session: Session, load_id: str, message: str) -> None:
    """In the publishing transaction: a withdrawn wave's load is no longer current (or waiting), with the reason."""
    session.execute(
        "update raw.load_registry set status = 'withdrawn', is_current = false, status_at = ?, status_message = ? "
        "where load_id = ?",
        [utc_now(), message, load_id],
    )


def mark_load(target: Warehouse | Path, load_id: str, passed: bool, message: str) -> None:
    """Accept and publish-promote a load in one step (tests and tools that gate a load outside the DAG)."""
    if not passed:
        fail_load(target, load_id, message)
        return
    accept_load(target, load_id, message)
    with Session(as_warehouse(target)) as session, session.transaction():
        promote_load(session, load_id, message)
