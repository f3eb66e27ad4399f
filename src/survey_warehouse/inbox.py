"""The inbox: a wave's file dropped into <inbox>/<wave year>/ starts that wave's run.

    <inbox>/2020/kaupunkikysely_2020.txt        a delivery (its name is the name in the wave spec's `file:`)
    <inbox>/2020/kaupunkikysely_2020.txt.part   still being written: not looked at until renamed
    <inbox>/2020/kaupunkikysely_2020.txt.rejected.txt   why the run rejected the file beside it

`InboxTrigger` (survey_warehouse.inbox_trigger) is an Airflow event trigger for an `AssetWatcher` on the inbox
asset, run by `airflow triggerer`: it announces one delivery at a time, once the file has stopped changing, and
the DAG run it starts knows the wave year and the file from the asset event's payload. The wave spec's `file:` is
where the wave's accepted file is kept (its archive); a delivery is read where it lies, and moved there when the
run publishes it. A rejected delivery stays where it was, with `<file>.rejected.txt` beside it saying why.

This module imports nothing from Airflow: the pipeline's steps and the command line use it too.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INBOX_ASSET_NAME = "survey_wave_inbox"
PART_SUFFIX = ".part"
REJECTED_SUFFIX = ".rejected.txt"
# a file must keep its size and modification time this long before it is announced (a copy still in progress
# changes both); SURVEY_INBOX_SETTLE_SECONDS and SURVEY_INBOX_POLL_SECONDS set them for the DAG's watcher
DEFAULT_SETTLE_SECONDS = 10.0
DEFAULT_POLL_SECONDS = 5.0
# a delivery announced but neither archived nor rejected after this long (a paused DAG, a lost run) is announced
# again
DEFAULT_REANNOUNCE_SECONDS = 3600.0


@dataclass(frozen=True)
class Delivery:
    """A file in the inbox, for a wave year."""

    wave_year: int
    path: Path
    size: int
    mtime_ns: int

    @property
    def rejection_note(self) -> Path:
        return rejection_note(self.path)

    def signature(self) -> tuple[int, int]:
        return self.size, self.mtime_ns

    def payload(self) -> dict[str, Any]:
        """What the asset event carries (JSON): the run reads the wave year and the file from it."""
        return {
            "wave_year": self.wave_year,
            "path": str(self.path),
            "file_name": self.path.name,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Delivery:
        return cls(
            wave_year=int(payload["wave_year"]),
            path=Path(str(payload["path"])),
            size=int(payload.get("size", 0)),
            mtime_ns=int(payload.get("mtime_ns", 0)),
        )


def inbox_dir() -> Path:
    """The inbox: SURVEY_INBOX_DIR, else inbox/ under the var folder."""
    from survey_warehouse.settings import get_paths

    return get_paths().inbox_dir


def rejection_note(path: Path) -> Path:
    return path.with_name(path.name + REJECTED_SUFFIX)


def is_delivery_name(name: str) -> bool:
    """Files the inbox looks at: not hidden, not still being written (.part), not a rejection note."""
    return not (name.startswith(".") or name.endswith((PART_SUFFIX, REJECTED_SUFFIX)))


def scan(inbox: Path) -> list[Delivery]:
    """The deliveries waiting in <inbox>/<year>/, oldest first. A file with a rejection note at least as new as
    the file has had its verdict; dropping the file again (or deleting the note) makes it a delivery again."""
    found = []
    try:
        folders = [p for p in inbox.iterdir() if p.is_dir() and re.fullmatch(r"\d{4}", p.name)]
    except FileNotFoundError:
        return []
    for folder in folders:
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for path in entries:
            if not is_delivery_name(path.name):
                continue
            try:
                stat = path.stat()
                if not path.is_file():
                    continue
                note = rejection_note(path)
                # ctime too: a file copied in with its old modification time kept (cp -p) is still new here
                if note.exists() and note.stat().st_mtime_ns >= max(stat.st_mtime_ns, stat.st_ctime_ns):
                    continue
            except OSError:  # removed or renamed while looking
                continue
            found.append(Delivery(int(folder.name), path, stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda d: (d.mtime_ns, str(d.path)))


class InboxWatch:
    """The trigger's bookkeeping, apart from time and the file system (so it can be tested step by step).

    A file is announced once it kept its size and modification time for `settle_seconds`; one delivery is in
    flight at a time (the next is announced when the run has archived or rejected it), so each run handles one
    file; an announced delivery still waiting after `reannounce_seconds` is announced again."""

    def __init__(self, settle_seconds: float, reannounce_seconds: float) -> None:
        self.settle_seconds, self.reannounce_seconds = settle_seconds, reannounce_seconds
        self.first_seen: dict[Path, tuple[tuple[int, int], float]] = {}
        self.in_flight: tuple[Delivery, float] | None = None

    def observe(self, deliveries: list[Delivery], now: float) -> Delivery | None:
        """The delivery to announce now, if any, given what the inbox holds at `now`."""
        present = {d.path: d for d in deliveries}
        for path in set(self.first_seen) - set(present):
            del self.first_seen[path]
        settled = []
        for delivery in deliveries:
            seen = self.first_seen.get(delivery.path)
            if seen is None or seen[0] != delivery.signature():
                self.first_seen[delivery.path] = (delivery.signature(), now)
            elif now - seen[1] >= self.settle_seconds:
                settled.append(delivery)
        if self.in_flight is not None:
            announced, at = self.in_flight
            waiting = present.get(announced.path)
            if waiting is not None and waiting.signature() == announced.signature():
                if now - at < self.reannounce_seconds:
                    return None
            else:
                self.in_flight = None  # archived, rejected or replaced: the run has handled it
        if not settled:
            return None
        self.in_flight = (settled[0], now)
        return settled[0]


# ---- what a run does with its delivery ------------------------------------------------------------------------


def delivery_of_run(context: Any) -> Delivery | None:
    """The delivery that started this run (from the inbox asset's event), or None for a scheduled or manual run.

    Normally one; were several merged into one run, the first announced is this run's (the others are announced
    again, later)."""
    events = context.get("triggering_asset_events") or {}
    payloads = []
    for asset, asset_events in events.items():
        if getattr(asset, "name", None) != INBOX_ASSET_NAME:
            continue
        for event in asset_events:
            payload = (event.extra or {}).get("payload")
            if isinstance(payload, dict) and "path" in payload and "wave_year" in payload:
                payloads.append((event.timestamp, payload))
    if not payloads:
        return None
    payloads.sort(key=lambda p: p[0])
    return Delivery.from_payload(payloads[0][1])


def reject(delivery: Delivery, message: str, run_id: str | None = None) -> Path:
    """Leave the delivery where it is, with <file>.rejected.txt beside it saying why."""
    note = delivery.rejection_note
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    how = (
        "The file was not accepted; the published marts are as they were. Correct the file (or the wave spec) and "
        f"drop it again as {delivery.path.name} (a new copy starts a new run), or delete this note to try the same "
        "file again."
    )
    text = f"{message.rstrip()}\n\n{how}\nRejected {when}" + (f" by run {run_id}" if run_id else "") + ".\n"
    note.write_text(text, encoding="utf-8")
    log.error("Rejected %s: %s (note: %s)", delivery.path, message, note)
    return note


def archive(delivery: Delivery, target: Path) -> Path:
    """Move an accepted delivery to the wave's file (the spec's `file:`). A different file already there is kept
    under superseded/ beside it; a rejection note left from an earlier copy of the delivery is removed."""
    if not delivery.path.is_file():
        if target.is_file():
            return target  # (moved already: a repeated step)
        raise FileNotFoundError(f"{delivery.path}: the delivery is no longer in the inbox, nor at {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and not _same_content(target, delivery.path):
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        superseded = target.parent / "superseded" / f"{stamp}_{target.name}"
        superseded.parent.mkdir(exist_ok=True)
        os.replace(target, superseded)
        log.info("Kept the previous %s as %s", target.name, superseded)
    try:
        os.replace(delivery.path, target)
    except OSError:  # another file system (a mounted inbox): copy beside the target, then rename into place
        partial = target.with_name(f".{target.name}{PART_SUFFIX}")
        shutil.copy2(delivery.path, partial)
        os.replace(partial, target)
        delivery.path.unlink()
    delivery.rejection_note.unlink(missing_ok=True)
    log.info("Archived %s as %s", delivery.path, target)
    return target


def _same_content(a: Path, b: Path) -> bool:
    from survey_warehouse.load import file_sha256

    return a.stat().st_size == b.stat().st_size and file_sha256(a) == file_sha256(b)
