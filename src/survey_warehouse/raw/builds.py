"""Which loads a build of the marts is made from: recorded before dbt reads anything, published as recorded.

A run that builds first records its build (`begin_build`): for every wave, the one load the marts are built from
(this run's load for its own wave; for another wave, a candidate waiting for a build when one is still what that
wave's inputs give, else its current load), and the fingerprint of the dbt project, seeds and suites as they are
before the build reads them. Staging reads the loads of the build in progress (`raw.build_loads` of the one
`building` row of `raw.builds`); with no build in progress, each wave's current load. Publishing promotes exactly
the build's loads and closes the build, in one transaction.

So a load a stopped run left behind is never published by another run's build, and a build whose inputs changed
while it ran is recorded with what it read, so the next run sees the change and builds again. The next run
resolves what a stopped run left: its unfinished loads become `failed`, its build `abandoned`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.raw.registry import UNFINISHED, WAITING, fail_load
from survey_warehouse.raw.schema import ensure_raw_schema
from survey_warehouse.warehouse import Session, Warehouse, as_warehouse

log = logging.getLogger(__name__)


STOPPED = "the run that made this load stopped before it finished"


@dataclass(frozen=True)
class Build:
    build_id: str
    run_id: str
    wave_year: int
    loads: tuple[tuple[str, int], ...]  # (load_id, wave_year), one per wave
    fingerprint: str | None
    brings_in: tuple[tuple[str, int], ...] = ()  # the loads not yet current: candidates the publication promotes
    withdraws: tuple[tuple[str, int], ...] = ()  # loads of a withdrawn wave: the publication leaves the wave out
    withdrawn_because: str | None = None

    @property
    def load_ids(self) -> list[str]:
        return [load_id for load_id, _wave in self.loads]

    @property
    def new_waves(self) -> list[int]:
        return sorted({wave for _load, wave in self.brings_in})

    def as_dict(self) -> dict:
        return {
            "build_id": self.build_id,
            "run_id": self.run_id,
            "wave_year": self.wave_year,
            "loads": [list(x) for x in self.loads],
            "fingerprint": self.fingerprint,
            "brings_in": [list(x) for x in self.brings_in],
            "withdraws": [list(x) for x in self.withdraws],
            "withdrawn_because": self.withdrawn_because,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Build:
        return cls(
            data["build_id"],
            data["run_id"],
            int(data["wave_year"]),
            tuple((str(a), int(b)) for a, b in data["loads"]),
            data.get("fingerprint"),
            tuple((str(a), int(b)) for a, b in data.get("brings_in") or ()),
            tuple((str(a), int(b)) for a, b in data.get("withdraws") or ()),
            data.get("withdrawn_because"),
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def resolve_unfinished(session: Session, keep: Iterable[str] = ()) -> list[str]:
    """What a stopped run left: every load still pending or candidate that neither waits for a later build nor
    is in `keep` is failed, and every build still in progress is abandoned. Called by each run before it loads or
    builds (one run at a time per warehouse), so nothing a stopped run left can be taken for this run's."""
    kept = [k for k in keep if k]
    found = [
        r[0]
        for r in session.execute(
            f"select load_id from raw.load_registry where status in {UNFINISHED} and not ({WAITING}) order by load_id"
        ).fetchall()
        if r[0] not in kept
    ]
    now = _now()
    for load_id in found:
        session.execute(
            "update raw.load_registry set status = 'failed', status_at = ?, status_message = ? where load_id = ?",
            [now, STOPPED, load_id],
        )
    session.execute(
        "update raw.builds set status = 'abandoned', status_at = ?, status_message = ? where status = 'building'",
        [now, "the run that started this build stopped before it published"],
    )
    if found:
        log.warning("failed %d load(s) a stopped run left unfinished: %s", len(found), ", ".join(found))
    return found


def resolve_stopped_runs(target: Warehouse | Path, keep: Iterable[str] = ()) -> list[str]:
    with Session(as_warehouse(target)) as session:
        ensure_raw_schema(session)
        with session.transaction():
            return resolve_unfinished(session, keep)


def waiting(session: Session) -> list[tuple[str, int]]:
    rows = session.execute(f"select load_id, wave_year from raw.load_registry where {WAITING} order by 2").fetchall()
    return [(r[0], int(r[1])) for r in rows]


def begin_build(
    target: Warehouse | Path,
    run_id: str,
    wave_year: int,
    own_load_id: str | None,
    fingerprint: str | None,
    stale: dict[str, str] | None = None,
    hold_out_waiting: bool = False,
    withdraw: str | None = None,
) -> Build:
    """Record the build this run is about to make: per wave one load. `own_load_id` is the run's load for its
    own wave (None: the wave's current load, for a run that only rebuilds). Waiting candidates of other waves are
    taken unless they are `stale` (load_id -> why: their wave's inputs changed since; they are failed) or
    `hold_out_waiting` (they stay waiting for a build of their own). With `withdraw` (why), the run's wave is left
    out of the build: its current load and any waiting one are withdrawn when the build is published."""
    stale = stale or {}
    started = _now()
    build_id = f"b-{wave_year}-{started:%Y%m%dT%H%M%S%f}"
    with Session(as_warehouse(target)) as session:
        ensure_raw_schema(session)
        with session.transaction():
            keep = [own_load_id] if own_load_id else []
            resolve_unfinished(session, keep)
            for load_id, why in stale.items():
                session.execute(
                    "update raw.load_registry set status = 'failed', status_at = ?, status_message = ? "
                    f"where load_id = ? and {WAITING}",
                    [started, why, load_id],
                )
            rows = session.execute(
                "select load_id, wave_year, status, is_current, coalesce(build_deferred, false) "
                "from raw.load_registry where is_current or status = 'candidate' or load_id = ?",
                [own_load_id or ""],
            ).fetchall()
            chosen: dict[int, tuple[str, str]] = {}
            for load_id, wave_of_load, status, is_current, deferred in sorted(rows, key=lambda r: (r[1], not r[3])):
                wave = int(wave_of_load)
                if load_id == own_load_id:
                    if wave != wave_year:
                        raise SurveyWarehouseError(f"load {load_id} is of wave {wave}, not of this run's {wave_year}")
                    if status not in ("candidate", "passed"):
                        raise SurveyWarehouseError(
                            f"load {load_id} is {status}; only a load that passed its gate is built"
                        )
                    chosen[wave] = (load_id, status)
                elif wave == wave_year and own_load_id:
                    continue  # this run's load is the wave's
                elif status == "candidate" and deferred and not hold_out_waiting:
                    chosen[wave] = (load_id, status)  # a waiting candidate replaces its wave's current load
                elif is_current:
                    chosen.setdefault(wave, (load_id, status))
            withdraws: tuple[tuple[str, int], ...] = ()
            if withdraw:
                withdraws = tuple(
                    (str(r[0]), wave_year)
                    for r in rows
                    if int(r[1]) == wave_year and (r[3] or (r[2] == "candidate" and r[4]))
                )
                chosen.pop(wave_year, None)
            loads = tuple((chosen[w][0], w) for w in sorted(chosen))
            brings_in = tuple((chosen[w][0], w) for w in sorted(chosen) if chosen[w][1] == "candidate")
            session.execute(
                "insert into raw.builds (build_id, run_id, wave_year, started_at, status, status_at, status_message, "
                "build_fingerprint) values (?, ?, ?, ?, 'building', ?, ?, ?)",
                [
                    build_id,
                    run_id,
                    wave_year,
                    started,
                    started,
                    f"building from {len(loads)} load(s)"
                    + (f"; wave {wave_year} withdrawn: {withdraw}" if withdraw else ""),
                    fingerprint,
                ],
            )
            session.executemany(
                "insert into raw.build_loads (build_id, load_id, wave_year) values (?, ?, ?)",
                [[build_id, load_id, wave] for load_id, wave in loads],
            )
    build = Build(build_id, run_id, wave_year, loads, fingerprint, brings_in, withdraws, withdraw)
    log.info("build %s of the marts from %s", build_id, ", ".join(f"{w}: {i}" for i, w in loads) or "no loads")
    return build


def check_building(session: Session, build: Build) -> None:
    """Publishing goes on only from the build in progress that this run began."""
    row = session.execute(
        "select status, status_message from raw.builds where build_id = ?", [build.build_id]
    ).fetchone()
    if row is None:
        raise SurveyWarehouseError(f"build {build.build_id} is not in raw.builds; nothing was published")
    if row[0] != "building":
        raise SurveyWarehouseError(
            f"build {build.build_id} of this run is {row[0]} ({row[1]}): another run started after this one's build; "
            "nothing was published, run the wave again"
        )


def finish_build(session: Session, build_id: str, status: str, message: str) -> None:
    session.execute(
        "update raw.builds set status = ?, status_at = ?, status_message = ? where build_id = ? "
        "and status = 'building'",
        [status, _now(), message, build_id],
    )


def fail_build(target: Warehouse | Path, build: Build, message: str) -> list[str]:
    """The build or its gate failed: it is closed as failed, and the waiting candidates of other waves it was made
    from are failed with it (the run's own load is failed by its run). Returns those loads."""
    with Session(as_warehouse(target)) as session, session.transaction():
        finish_build(session, build.build_id, "failed", message[:4000])
    others = [load_id for load_id, wave in build.brings_in if wave != build.wave_year]
    for load_id in others:
        fail_load(target, load_id, f"built with the run of wave {build.wave_year}, which failed: {message}")
    return others
