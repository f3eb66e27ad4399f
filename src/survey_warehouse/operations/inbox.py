"""The inbox: a wave's file dropped into <inbox>/<wave year>/ starts that wave's run.

    <inbox>/2020/kaupunkikysely_2020.txt        a delivery (its name is the name in the wave spec's `file:`)
    <inbox>/2020/kaupunkikysely_2020.txt.part   still being written: not looked at until renamed
    <inbox>/2020/kaupunkikysely_2020.txt.rejected.txt   why a run rejected the file beside it, and which file
    <inbox>/2020/rejected/<time>_kaupunkikysely_2020.txt (+ .rejected.txt)   a rejected file whose name a newer
                                                 copy took while its run went
    <inbox>/2020/.taken/<run>/                   the file a run has taken, while the run goes

`InboxTrigger` (survey_warehouse.operations.inbox_trigger) is an Airflow event trigger for an `AssetWatcher` on the
inbox asset, run by `airflow triggerer`: it announces one delivery at a time, once it has stopped changing, and the DAG
run it starts knows the wave year and the file from the asset event's payload.

A run takes its delivery when it starts (`take`): the file is moved under the run's own name in `.taken/`, if it
is still the very file announced (the same kind, size, modification time, inode and change time), and the run reads
it there; a copy dropped under the same name meanwhile is a new delivery, left for its own run. When the run
publishes, the file it loaded (the same sha256) becomes the wave's archive, the wave spec's `file:` (`archive`),
before the marts are switched, and is undone if they are not; when the run fails, the file goes back to the inbox
with `<file>.rejected.txt` beside it (`give_back`). A file's identity is read with lstat and a file is opened with
O_NOFOLLOW: a symbolic link, a folder, a FIFO or a device in the inbox is rejected with a note, never followed,
read or moved; so is a file whose name is not UTF-8 text. What a run that was killed left in `.taken/` is finished or
undone by the next run (`recover_stopped_runs`): nothing dropped is lost.

A run's folder holds the file it took and its journal (`run.json`): which delivery, and how far archiving or giving
it back got, written before each step, so every step can be finished or undone after a kill at any point (a move
killed between its two steps leaves two names of one file; the next attempt drops the extra name). The inbox is
writable by those who deliver, so a journal is signed (HMAC, `settings.inbox_journal_key`) and checked before it is
acted on: it must be for the folder it is in, name a file in that year's inbox folder, an archive that is the wave
spec's `file:` and a previous file under its `superseded/`. A `.taken` or a run's folder that is a link or not a
folder, a journal that is not signed or names other places, and a folder holding anything a run did not put there
are reported and left as they are: never followed, moved or deleted.

This module imports nothing from Airflow: the pipeline's steps and the command line use it too.

One idea in about 1,050 lines: a delivery's way through the inbox (announced, taken, archived or given back,
recovered after a kill). Every step shares the run's journal, the identity checks and the refusal to follow what
those who deliver may have put there, so they stay together.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import hmac
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from survey_warehouse.errors import SurveyWarehouseError

log = logging.getLogger(__name__)

INBOX_ASSET_NAME = "survey_wave_inbox"
PART_SUFFIX = ".part"
REJECTED_SUFFIX = ".rejected.txt"
TAKEN_DIR = ".taken"  # <inbox>/<year>/.taken/<run>/: what a run has taken (hidden: never a delivery)
REJECTED_DIR = "rejected"  # <inbox>/<year>/rejected/: a rejected file whose name a newer copy took meanwhile
SUPERSEDED_DIR = "superseded"  # beside the archive: the files it held before
JOURNAL = "run.json"  # in a run's folder: which delivery it took, and how far archiving or giving it back got
_JOURNAL_TMP = re.compile(r"\.run\.json\.\d+\.tmp")  # a journal being written (see _write_atomically)
_STATES = ("taken", "archived", "returning")
NOTE_RECORD = "This note describes: "  # a note's last line: the entry it describes, as JSON
# a file must keep its size and modification time this long before it is announced (a copy still in progress
# changes both); SURVEY_INBOX_SETTLE_SECONDS and SURVEY_INBOX_POLL_SECONDS set them for the DAG's watcher
DEFAULT_SETTLE_SECONDS = 10.0
DEFAULT_POLL_SECONDS = 5.0
# a delivery announced but neither taken by a run nor given a verdict after this long (a paused DAG, a lost run) is
# announced again
DEFAULT_REANNOUNCE_SECONDS = 3600.0

_KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFLNK: "symbolic link",
    stat.S_IFDIR: "folder",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "device",
    stat.S_IFBLK: "device",
}


class NotTaken(Exception):
    """The announced delivery is no longer in the inbox as it was announced: the run has nothing to take."""


class Untrusted(SurveyWarehouseError):
    """Something in `.taken/` that no run of this warehouse left as it is (a link, a journal it did not write or that
    names places outside the inbox and the wave's archive, a file it did not put there): never acted on."""


def shown_name(name: str | Path) -> str:
    """A file name (or path) for a message or a note: bytes that are not UTF-8 (a name written on a system with
    another encoding) shown as escapes (\\xe4), so the text can always be written, logged and mailed."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def is_utf8_name(name: str) -> bool:
    """Whether the file name is UTF-8 text (Python keeps other bytes as surrogates, which no message can carry)."""
    try:
        os.fsencode(name).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@dataclass(frozen=True)
class Delivery:
    """An entry in the inbox, for a wave year, as lstat saw it (a delivery is a regular file; anything else is
    announced to be rejected)."""

    wave_year: int
    path: Path
    size: int
    mtime_ns: int
    ino: int = 0
    ctime_ns: int = 0
    kind: str = "file"

    @classmethod
    def of(cls, wave_year: int, path: Path, st: os.stat_result) -> Delivery:
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "special file")
        return cls(wave_year, path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, kind)

    @property
    def rejection_note(self) -> Path:
        return rejection_note(self.path)

    def signature(self) -> tuple[str, int, int, int, int]:
        """What tells one drop from another: a copy over the name, a rename onto it or a touch changes it."""
        return self.kind, self.size, self.mtime_ns, self.ino, self.ctime_ns

    def payload(self) -> dict[str, Any]:
        """What the asset event carries (JSON): the run reads the wave year and the file from it."""
        readable = is_utf8_name(str(self.path))
        return {
            "wave_year": self.wave_year,
            "path": str(self.path) if readable else shown_name(self.path),
            **({} if readable else {"path_bytes": os.fsencode(self.path).hex()}),
            "file_name": shown_name(self.path.name),
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "ino": self.ino,
            "ctime_ns": self.ctime_ns,
            "kind": self.kind,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Delivery:
        return cls(
            wave_year=int(payload["wave_year"]),
            path=Path(os.fsdecode(bytes.fromhex(payload["path_bytes"])))
            if payload.get("path_bytes")
            else Path(str(payload["path"])),
            size=int(payload.get("size", 0)),
            mtime_ns=int(payload.get("mtime_ns", 0)),
            ino=int(payload.get("ino", 0)),
            ctime_ns=int(payload.get("ctime_ns", 0)),
            kind=str(payload.get("kind", "file")),
        )

    def is_as_announced(self, now: Delivery) -> bool:
        """Whether `now` (the entry at the path as it is) is this announced drop. What an announcement does not
        carry (an older payload: no inode, no change time) is not compared."""
        return all(
            announced == found or not announced
            for announced, found in zip(self.signature(), now.signature(), strict=True)
        )


def inbox_dir() -> Path:
    """The inbox: SURVEY_INBOX_DIR, else inbox/ under the var folder."""
    from survey_warehouse.settings import get_paths

    return get_paths().inbox_dir


def rejection_note(path: Path) -> Path:
    return path.with_name(path.name + REJECTED_SUFFIX)


def is_delivery_name(name: str) -> bool:
    """Entries the inbox looks at: not hidden, not still being written (.part), not a rejection note."""
    return not (name.startswith(".") or name.endswith((PART_SUFFIX, REJECTED_SUFFIX)))


def look(wave_year: int, path: Path) -> Delivery | None:
    """The entry at `path` as it is now (lstat: a link is a link), or None when there is none."""
    try:
        return Delivery.of(wave_year, path, os.lstat(path))
    except FileNotFoundError:
        return None


# ---- notes ------------------------------------------------------------------------------------------------------


def note_record(note: Path) -> dict[str, Any] | None:
    """What a note says it describes (its last line), or None for a note without one (written by an earlier
    version, or by hand)."""
    try:
        lines = note.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
    except OSError:
        return None
    if not lines or not lines[-1].startswith(NOTE_RECORD):
        return None
    try:
        record = json.loads(lines[-1].removeprefix(NOTE_RECORD))
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def has_verdict(entry: Delivery) -> bool:
    """Whether the note beside the entry is its verdict: the note describes this very drop. A note without a record
    counts when it is at least as new as the entry (its change time too: a copy that kept its old modification
    time, cp -p, is still new)."""
    note = entry.rejection_note
    record = note_record(note)
    if record is not None:
        described = tuple(record.get(k) for k in ("kind", "size", "mtime_ns", "ino", "ctime_ns"))
        return described == entry.signature()
    try:
        return note.stat().st_mtime_ns >= max(entry.mtime_ns, entry.ctime_ns)
    except OSError:
        return False


def _sha256(path: Path) -> str:
    """The sha256 of a regular file, opened without following a link."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise SurveyWarehouseError(f"{path} is not a regular file; it is not read")
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(entry: Delivery, sha256: str | None) -> list[str]:
    when = dt.datetime.fromtimestamp(entry.mtime_ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    what = (
        f"The file: {shown_name(entry.path.name)}, {entry.size} bytes, modified {when}, sha256 {sha256}."
        if entry.kind == "file"
        else f"The entry: {shown_name(entry.path.name)}, a {entry.kind}, changed {when}."
    )
    record = dict(zip(("kind", "size", "mtime_ns", "ino", "ctime_ns"), entry.signature(), strict=True))
    return [what, NOTE_RECORD + json.dumps({**record, "sha256": sha256})]


def reject(
    delivery: Delivery, message: str, run_id: str | None = None, about: str | None = None, name: str | None = None
) -> Path:
    """Leave the entry where it is, with <name>.rejected.txt beside it saying why and which file it describes
    (size, times, sha256): a different file dropped under the name later is a new delivery. `name`: the name to
    drop it again as (the delivery's name in the inbox, for a file kept aside in rejected/ under another)."""
    now = look(delivery.wave_year, delivery.path)
    entry = now if now is not None and delivery.is_as_announced(now) else delivery  # (another file there now)
    sha256 = _sha256(entry.path) if entry is now and entry.kind == "file" else None
    name = shown_name(name or entry.path.name)
    if entry.kind == "file":
        how = (
            "The file was not accepted; the published marts are as they were. Correct the file (or the wave spec) "
            f"and drop it again as {name} (a new copy starts a new run), or delete this note to try the same file "
            "again."
        )
    else:
        how = f"Nothing was read from it and it was not moved. Remove it, and drop the file itself as {name}."
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        message.rstrip(),
        "",
        how,
        *([about] if about else []),
        f"Rejected {when}" + (f" by run {run_id}" if run_id else "") + ".",
        *_describe(entry, sha256),
    ]
    note = entry.rejection_note
    _write_atomically(note, "\n".join(lines) + "\n")
    log.error("Rejected %s: %s (note: %s)", shown_name(entry.path), message, shown_name(note))
    return note


def refusal(delivery: Delivery) -> str | None:
    """Why the entry cannot be a delivery (it is not a regular file, or its name is not UTF-8 text), in words for
    its note; None for a file it can take."""
    entry = look(delivery.wave_year, delivery.path)
    if entry is None:
        return None
    if not is_utf8_name(entry.path.name):
        return (
            f"the name of {shown_name(entry.path.name)} is not UTF-8 text: it holds bytes of another character "
            "encoding (\\x.. above; a name written on an older system, e.g. in Latin-1), so it cannot be compared "
            "with the wave spec's name or shown as it is. Nothing was read from it and it was not moved; rename it "
            "to the name in the wave spec's `file:` and it is a new delivery"
        )
    if entry.kind == "file":
        return None
    detail = f" (to {shown_name(os.readlink(entry.path))})" if entry.kind == "symbolic link" else ""
    if entry.path.name == str(entry.wave_year):  # the year folder itself
        return (
            f"the year folder {shown_name(entry.path)} is a {entry.kind}{detail}: the inbox never follows a link; "
            "make it a "
            "folder of its own and drop the wave's file into it"
        )
    name = shown_name(entry.path.name)
    return (
        f"{name} is a {entry.kind}{detail}: the inbox takes only regular files, and never reads, follows "
        f"or moves anything else; drop the file itself as {name} (not a link to it, nor a folder "
        f"holding it), and remove the {entry.kind}"
    )


# ---- which entries are deliveries, and when one is announced ---------------------------------------------------


def scan(inbox: Path) -> list[Delivery]:
    """The entries waiting in <inbox>/<year>/, oldest first: files to load, and anything else dropped there (a
    link, a folder, a FIFO...), to be rejected with a note. An entry whose note describes it has had its verdict;
    dropping it again (or deleting the note) makes it a delivery again. Nothing is followed: a year folder that is
    a link is itself an entry to reject."""
    found = []
    try:
        years = [p for p in inbox.iterdir() if re.fullmatch(r"\d{4}", p.name)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for folder in years:
        year_entry = look(int(folder.name), folder)
        if year_entry is None or year_entry.kind not in ("folder", "symbolic link"):
            continue
        entries = [year_entry] if year_entry.kind == "symbolic link" else []
        if year_entry.kind == "folder":
            try:
                names = sorted(p.name for p in folder.iterdir())
            except OSError:
                continue
            for name in names:
                if not is_delivery_name(name):
                    continue
                entry = look(year_entry.wave_year, folder / name)
                if entry is None or (name == REJECTED_DIR and entry.kind == "folder"):
                    continue
                entries.append(entry)
        found += [entry for entry in entries if not has_verdict(entry)]
    return sorted(found, key=lambda d: (d.mtime_ns, str(d.path)))


class InboxWatch:
    """The trigger's bookkeeping, apart from time and the file system (so it can be tested step by step).

    An entry is announced once its signature (kind, size, times, inode) has not changed for `settle_seconds`; one
    delivery is in flight at a time (the next is announced when a run has taken it, or it has its verdict, or it
    changed), so each run handles one; an announced delivery still waiting after `reannounce_seconds` is announced
    again."""

    def __init__(self, settle_seconds: float, reannounce_seconds: float) -> None:
        self.settle_seconds, self.reannounce_seconds = settle_seconds, reannounce_seconds
        self.first_seen: dict[Path, tuple[tuple[Any, ...], float]] = {}
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
                self.in_flight = None  # taken by its run, given its verdict, or replaced
        if not settled:
            return None
        self.in_flight = (settled[0], now)
        return settled[0]


def delivery_of_run(context: Any) -> Delivery | None:
    """The delivery that started this run (from the inbox asset's event), or None for a scheduled or manual run.

    Normally one; were several merged into one run, the first announced is this run's, as it was announced last (a
    file that changed is announced again); the others are announced again, later."""
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
    first = payloads[0][1]["path"]
    return Delivery.from_payload([p for _t, p in payloads if p["path"] == first][-1])


# ---- what a run does with its delivery ------------------------------------------------------------------------

WaveFile = Callable[[int], Path | None]  # a wave year's archive, the wave spec's `file:` (None: no spec)


def run_folder(delivery: Delivery, run_id: str) -> Path:
    """Where the run keeps the delivery it took: <inbox>/<year>/.taken/<run>/ (hidden, so never a delivery)."""
    return delivery.path.parent / TAKEN_DIR / _run_folder_name(run_id)


def _run_folder_name(run_id: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)[:80]
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def take(delivery: Delivery, run_id: str, name: str) -> Path:
    """Take the announced delivery for this run: move it into the run's folder under `name` (the wave spec's
    spelling of its name), if it is still the very file announced. Returns the path the run reads. A copy dropped
    under the delivery's name afterwards is a new delivery; raises NotTaken when the delivery is gone or changed
    since it was announced (the newer copy is announced on its own)."""
    folder = run_folder(delivery, run_id)
    journal = _read_journal(folder) if _run_folder_exists(folder) else None
    if journal is not None and journal["state"] != "returning" and os.path.lexists(folder / journal["name"]):
        return folder / journal["name"]  # (taken already: a repeated step)
    if journal is not None and journal["state"] != "taken":  # (the file went back meanwhile)
        raise SurveyWarehouseError(
            f"{shown_name(delivery.path)}: run {run_id} took this delivery before and is past taking it "
            f"({journal['state']}); trigger a new run"
        )
    before = look(delivery.wave_year, delivery.path)
    if before is None:
        raise NotTaken(
            f"{shown_name(delivery.path)} is no longer in the inbox (an earlier run took it, or it was removed)"
        )
    if before.kind != "file" or not delivery.is_as_announced(before):
        raise NotTaken(
            f"{shown_name(delivery.path)} changed after it was announced (a newer copy was dropped): the newer copy "
            "is announced and run on its own"
        )
    _own_folder(folder.parent)
    _own_folder(folder)
    taken = folder / name
    journal = {
        "run_id": run_id,
        "wave_year": delivery.wave_year,
        "path": str(delivery.path),
        "name": name,
        "state": "taken",
        "ino": before.ino,
        "taken_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _write_journal(folder, journal)
    try:
        os.rename(delivery.path, taken)  # within the year folder: atomic
    except FileNotFoundError:
        _clear_run_folder(folder, journal)
        raise NotTaken(f"{shown_name(delivery.path)} was removed as it was being taken") from None
    moved = look(delivery.wave_year, taken)
    if moved is None or moved.kind != "file" or moved.ino != before.ino:  # replaced between the look and the move
        # the file moved is a newer copy, dropped over the announced one: it goes back unread and without a note,
        # to be announced and run on its own
        _return_to_inbox(
            folder,
            journal,
            f"{shown_name(delivery.path.name)} was dropped over the announced file just as a run was taking that "
            "one, so it was not run",
            None,
            quiet=True,
        )
        raise NotTaken(
            f"{shown_name(delivery.path)} was replaced as it was being taken: the newer copy is announced on its own"
        )
    _fsync(folder)
    _fsync(delivery.path.parent)
    log.info("Took %s for run %s: %s", shown_name(delivery.path), run_id, taken)
    return taken


def archive(delivery: Delivery, run_id: str, target: Path, sha256: str, build_id: str | None = None) -> Path:
    """Make the delivery this run took the wave's file (the spec's `file:`), before the run publishes: only the
    very file the run loaded (`sha256`). A different file already there is kept under superseded/ beside it. The
    taken file stays until `finish` (after the publication); `undo_archive` puts the previous file back. The
    journal says how far it got, for the next run should this one be killed. Returns the target."""
    folder = run_folder(delivery, run_id)
    wave_file = _only(target)
    journal = _read_journal(folder, wave_file) if _run_folder_exists(folder) else None
    if journal is None or journal["state"] == "returning" or not os.path.lexists(folder / journal["name"]):
        raise SurveyWarehouseError(
            f"{shown_name(delivery.path.name)}: run {run_id} has not taken this delivery from the inbox, so it "
            "archives nothing"
        )
    taken = folder / journal["name"]
    if journal["state"] == "archived":
        if _sha256_or_none(target) == sha256 == journal["sha256"]:
            return target  # (archived already: a repeated step)
        journal = _undo(folder, journal)  # (a repeated step after an attempt that stopped: afresh)
    found = _sha256(taken)
    if found != sha256:
        raise SurveyWarehouseError(
            f"{taken.name}: the file changed while its run read it (sha256 {found[:12]}..., loaded "
            f"{sha256[:12]}...); nothing was published. Drop the complete file again"
        )
    current = _sha256_or_none(target)
    previous: str | None = None
    if current == sha256:
        previous = "identical"
    elif os.path.lexists(target):
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        previous = str(_free_name(target.parent / SUPERSEDED_DIR, f"{stamp}_{target.name}"))
    journal = {**journal, "state": "archived", "target": str(target), "previous": previous, "sha256": sha256}
    journal["build_id"] = build_id
    _write_journal(folder, journal)  # first: the next run knows what to undo or finish
    try:
        if previous is not None and previous != "identical":
            kept = Path(previous)
            kept.parent.mkdir(parents=True, exist_ok=True)
            _move_no_replace(target, kept)
            _fsync(kept.parent)
        if previous != "identical":
            target.parent.mkdir(parents=True, exist_ok=True)
            _place(taken, target, folder.name)
        _fsync(target.parent)
    except Exception:
        try:
            undo_archive(delivery, run_id, target)
        except Exception:
            log.exception("Could not undo archiving %s; the next run does it", taken)
        raise
    log.info("Archived %s as %s (the file there before: %s)", delivery.path.name, target, previous or "none")
    return target


def undo_archive(delivery: Delivery, run_id: str, target: Path) -> None:
    """The publication did not happen: the archive (`target`) gets its previous file back (the taken file stays
    the run's)."""
    folder = run_folder(delivery, run_id)
    journal = _read_journal(folder, _only(target)) if _run_folder_exists(folder) else None
    if journal is not None:
        _undo(folder, journal)


def finish(delivery: Delivery, run_id: str) -> list[str]:
    """After the publication: the run's folder goes (the archive holds the file), and so does a note beside the
    delivery's name that describes no entry there now. Never raises: returns what could not be done, and the next
    run tries again."""
    folder = run_folder(delivery, run_id)
    try:
        journal = _read_journal(folder) if _run_folder_exists(folder) else None
    except Untrusted as exc:
        log.warning("After publishing: %s", exc)
        return [str(exc)]
    return _finish(folder, journal)


def give_back(delivery: Delivery, run_id: str, message: str, wave_file: WaveFile) -> Path | None:
    """The run failed: the file it took goes back into the inbox, rejected, with the reason beside it; when a newer
    copy has taken its name meanwhile, into rejected/ beside it (the newer copy is run on its own). Archiving, if
    it began, is undone first (`wave_file`: the wave spec's `file:` of a year, which the journal must name). Returns
    the note, or None when the run had not taken the delivery."""
    folder = run_folder(delivery, run_id)
    journal = _read_journal(folder, wave_file) if _run_folder_exists(folder) else None
    if journal is None:
        return None
    journal = _undo(folder, journal)
    return _return_to_inbox(folder, journal, message, run_id)


def reject_delivery(delivery: Delivery, run_id: str, message: str, wave_file: WaveFile) -> Path | None:
    """The run failed: the delivery it took goes back with the reason (`give_back`); one it had not taken (the run
    failed before, or it is not a file) gets the note where it lies, if it is still the entry announced."""
    try:
        note = give_back(delivery, run_id, message, wave_file)
    except Untrusted as exc:
        log.error("%s", exc)
        note = None
    if note is not None:
        return note
    now = look(delivery.wave_year, delivery.path)
    if now is None or not delivery.is_as_announced(now):
        log.warning("%s is no longer the entry announced: no note for it (%s)", shown_name(delivery.path), message)
        return None
    return reject(now, message, run_id)


def recover_stopped_runs(
    inbox: Path, run_id: str, committed: Callable[[dict[str, Any]], bool], wave_file: WaveFile
) -> list[str]:
    """What runs that stopped (killed, lost) left in `.taken/`, at the start of the next run (one runs at a time):
    a delivery archived for a publication that committed (`committed(journal)`) is finished; otherwise the archive
    gets its previous file back, and the delivery goes back under its name, to be announced and run again, or, when
    a newer copy has its name, into rejected/ with a note; a give-back that was under way is finished with its own
    note. `wave_file`: a year's archive (the wave spec's `file:`), the only archive a journal may name. What is not
    a run's (a link, a journal this warehouse did not write, anything else) is reported and left as it is. Returns
    what was done, for the log."""
    done = []
    own = _run_folder_name(run_id)
    years = sorted(p for p in inbox.glob("[0-9][0-9][0-9][0-9]") if not p.is_symlink() and p.is_dir())
    for taken_dir in [year / TAKEN_DIR for year in years]:
        try:
            st = os.lstat(taken_dir)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            done.append(f"{_foreign(taken_dir, st)}; the inbox does not follow it, nor change it: remove it")
            continue
        for name in sorted(os.listdir(taken_dir)):
            folder = taken_dir / name
            if name == own:
                continue
            try:
                done += _recover(folder, committed, wave_file)
            except Untrusted as exc:
                done.append(f"{exc}. Nothing there was moved or deleted: look at it, and remove it by hand")
            except Exception as exc:  # never blocks the runs after it: told, and left as it is
                done.append(
                    f"{shown_name(folder)}: what a stopped run left here could not be resolved ({type(exc).__name__}: "
                    f"{shown_name(str(exc))}); its {JOURNAL} says which delivery it is and where it was being "
                    "archived: put the file back into the inbox by hand, then delete the folder"
                )
        _remove_if_empty(taken_dir)
    for line in done:
        log.warning("%s", line)
    return done


def _recover(folder: Path, committed: Callable[[dict[str, Any]], bool], wave_file: WaveFile) -> list[str]:
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise Untrusted(_foreign(folder, st))
    journal = _read_journal(folder, wave_file)
    _only_a_run_s(folder, journal)  # (before anything is done)
    if journal is None:
        _clear_run_folder(folder, None)  # stopped before it took anything
        return []
    path = shown_name(journal["path"])
    if journal["state"] == "archived" and committed(journal):
        return [f"finished archiving {path} (run {journal['run_id']} published it)", *_finish(folder, journal)]
    if journal["state"] == "returning":
        note = _return_to_inbox(folder, journal, "", None)
        return [f"{path}: finished giving it back for run {journal['run_id']}" + (f", see {note}" if note else "")]
    journal = _undo(folder, journal)
    stopped = f"run {journal['run_id']}, which took this file, stopped before it published or rejected it"
    note = _return_to_inbox(folder, journal, stopped, None, quiet=True)
    return [f"{path}: {stopped}; " + (f"rejected, see {shown_name(note)}" if note else "back in the inbox")]


# ---- the journal ----------------------------------------------------------------------------------------------


def _signature(folder: Path, journal: dict[str, Any]) -> str:
    from survey_warehouse.settings import inbox_journal_key

    body = json.dumps({k: v for k, v in journal.items() if k != "signature"}, sort_keys=True, ensure_ascii=True)
    return hmac.new(inbox_journal_key(), f"{folder.name}\n{body}".encode(), hashlib.sha256).hexdigest()


def _write_journal(folder: Path, journal: dict[str, Any]) -> None:
    signed = {**{k: v for k, v in journal.items() if k != "signature"}, "signature": _signature(folder, journal)}
    _write_atomically(folder / JOURNAL, json.dumps(signed, indent=1, ensure_ascii=True))


def _read_journal(folder: Path, wave_file: WaveFile | None = None) -> dict[str, Any] | None:
    """The run's journal, checked: None when there is none; raises Untrusted for one the warehouse did not write
    for this folder, or that names a place outside this year's inbox folder, the wave's archive (`wave_file`, when
    given) and its superseded/ folder."""
    st = os.lstat(folder)  # (FileNotFoundError: no folder)
    if not stat.S_ISDIR(st.st_mode):
        raise Untrusted(_foreign(folder, st))
    path = folder / JOURNAL
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise Untrusted(_foreign(path, st))
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        text = f.read(1 << 20)
    try:
        journal = json.loads(text)
    except ValueError:
        journal = None
    if not isinstance(journal, dict):
        raise Untrusted(f"{shown_name(path)} is not a journal a run wrote (not JSON)")
    signature = journal.get("signature")
    if not isinstance(signature, str) or not hmac.compare_digest(signature, _signature(folder, journal)):
        raise Untrusted(
            f"{shown_name(path)} was not written by a run of this warehouse (it is not signed with its key: written by "
            "hand, by an earlier version, or under another SURVEY_PSEUDONYM_KEY)"
        )
    problem = _journal_problem(folder, journal, wave_file)
    if problem:
        raise Untrusted(f"{shown_name(path)} cannot be acted on: {problem}")
    return journal


def _plain_name(name: Any) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..", JOURNAL) and "/" not in name and "\0" not in name


def _journal_problem(folder: Path, journal: dict[str, Any], wave_file: WaveFile | None) -> str | None:
    """What is wrong with a signed journal: every place it names must be where a run of this folder works."""
    year_folder = folder.parent.parent
    run_id, path = journal.get("run_id"), journal.get("path")
    checks: list[tuple[Callable[[], bool], str]] = [
        (
            lambda: isinstance(run_id, str) and _run_folder_name(run_id) == folder.name,
            "it is the journal of another run's folder",
        ),
        (
            lambda: year_folder.name.isdigit() and journal.get("wave_year") == int(year_folder.name),
            f"it is not for wave {shown_name(year_folder.name)}",
        ),
        (
            lambda: _plain_name(journal.get("name")) and isinstance(journal.get("ino"), int),
            "it does not name the file taken",
        ),
        (
            lambda: isinstance(path, str) and _plain_name(Path(path).name) and Path(path).parent == year_folder,
            f"the delivery it names is not in {shown_name(year_folder)}",
        ),
        (lambda: journal.get("state") in _STATES, "its state is unknown"),
    ]
    for holds, problem in checks:
        if not holds():
            return problem
    if journal["state"] == "archived":
        return _archive_problem(journal, wave_file(int(year_folder.name)) if wave_file is not None else None)
    if journal["state"] == "returning":
        return _return_problem(journal, year_folder)
    return None


def _archive_problem(journal: dict[str, Any], expected: Path | None) -> str | None:
    """An archiving journal names the wave's archive (`expected`, the wave spec's `file:`; None: not compared) and
    a previous file under its superseded/."""
    target, previous, sha256 = journal.get("target"), journal.get("previous"), journal.get("sha256")
    if not isinstance(target, str) or (expected is not None and not _same_path(target, expected)):
        return f"the archive it names is not the wave spec's file ({shown_name(expected or 'no wave spec')})"
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        return "it does not say which file was archived"
    superseded = Path(target).parent / SUPERSEDED_DIR
    if previous in (None, "identical"):
        return None
    if isinstance(previous, str) and _plain_name(Path(previous).name) and Path(previous).parent == superseded:
        return None
    return f"the previous file it names is not in {shown_name(superseded)}"


def _return_problem(journal: dict[str, Any], year_folder: Path) -> str | None:
    """A journal of a file being given back names a place in the year's inbox folder or its rejected/."""
    back = journal.get("back")
    if not isinstance(back, str) or not _plain_name(Path(back).name):
        return "it does not say where the file goes back"
    if Path(back).parent not in (year_folder, year_folder / REJECTED_DIR):
        return f"where it gives the file back is not in {shown_name(year_folder)}"
    if not isinstance(journal.get("message"), str) or not isinstance(journal.get("returned_ino"), int):
        return "it does not say what the file given back is"
    return None


def _same_path(a: str | Path, b: str | Path | None) -> bool:
    return b is not None and os.path.abspath(a) == os.path.abspath(b)


def _only(target: Path) -> WaveFile:
    return lambda _wave_year: target


def _foreign(path: Path, st: os.stat_result) -> str:
    kind = _KINDS.get(stat.S_IFMT(st.st_mode), "special file")
    detail = f" (to {shown_name(os.readlink(path))})" if stat.S_ISLNK(st.st_mode) else ""
    return f"{shown_name(path)} is a {kind}{detail}, not a folder a run made"


# ---- the file operations behind them ---------------------------------------------------------------------------


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
    with contextlib.suppress(OSError):
        _fsync(folder.parent)


def _run_folder_exists(folder: Path) -> bool:
    """Whether the run's folder is there; its `.taken` must be a folder (a link there is never followed)."""
    for path in (folder.parent, folder):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            raise Untrusted(f"{_foreign(path, st)}; the inbox never follows it: remove it")
    return True


def _own_folder(folder: Path) -> None:
    """`folder` is a folder of the inbox's own: made if missing; a link or anything else there is refused."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir()
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise Untrusted(f"{_foreign(folder, st)}; the inbox never follows it: remove it")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # (left by a process killed while writing; a link there is never written through)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with open(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def _sha256_or_none(path: Path) -> str | None:
    try:
        return _sha256(path) if stat.S_ISREG(os.lstat(path).st_mode) else None
    except FileNotFoundError:
        return None


def _same_entry(a: Path, b: Path) -> bool:
    """Whether `a` and `b` are two names of one file (never through a link)."""
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/<stem>-2<suffix>`, ... : a name nothing has yet (nothing is overwritten)."""
    candidate, n = folder / name, 1
    while os.path.lexists(candidate):
        n += 1
        stem, dot, suffix = name.partition("_")
        candidate = folder / f"{stem}-{n}{dot}{suffix}"
    return candidate


def _move_no_replace(src: Path, dst: Path) -> None:
    """Rename `src` to `dst` on one file system, never over something at `dst` (FileExistsError). Done in two
    steps (a second name, then the first removed), so a move killed between them leaves two names of one file:
    moving again drops the extra name."""
    if _same_entry(src, dst):
        os.unlink(src)  # (moved, all but removing the old name)
        return
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:  # no hard links here (some network file systems): rename, after a look
        if exc.errno == errno.EXDEV:
            raise
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "exists", str(dst)) from exc
        os.rename(src, dst)
        return
    os.unlink(src)


def _place(taken: Path, target: Path, key: str) -> None:
    """Put the taken file's content at `target` (nothing there), flushed to disk; the taken file stays."""
    _fsync(taken)
    try:
        os.link(taken, target, follow_symlinks=False)  # the same file system: the archive is the very file taken
        return
    except FileExistsError:
        raise
    except OSError:  # another file system (the inbox is a volume of its own), or no hard links: a copy
        pass
    partial = target.with_name(f".{target.name}.{key}{PART_SUFFIX}")
    try:
        shutil.copy2(taken, partial, follow_symlinks=False)
        _fsync(partial)
        _move_no_replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _holds(taken: Path, sha256: str, target: Path) -> bool:
    """Whether the run's taken file holds the content archived at `target` (so removing `target` loses nothing)."""
    return _same_entry(taken, target) or _sha256_or_none(taken) == sha256


def _undo(folder: Path, journal: dict[str, Any]) -> dict[str, Any]:
    """Archiving did not lead to a publication: the archive as it was before, the journal (read and checked against
    the wave's archive) back to `taken`. Any step of archiving or of this, killed, is undone by doing this again.
    Returns the journal."""
    if journal["state"] != "archived":
        return journal
    target, previous = Path(journal["target"]), journal.get("previous")
    Path(target.with_name(f".{target.name}.{folder.name}{PART_SUFFIX}")).unlink(missing_ok=True)
    if previous != "identical":
        kept = Path(previous) if previous else None
        run_s_copy = _sha256_or_none(target) == journal["sha256"]
        if run_s_copy and _holds(folder / journal["name"], journal["sha256"], target):
            os.unlink(target)  # the run's copy: the taken file still holds it
        if kept is not None and os.path.lexists(kept):
            _move_no_replace(kept, target)  # (killed halfway, both are one file: the extra name goes)
        if kept is not None:
            _remove_if_empty(kept.parent)
        _fsync(target.parent)
    journal = {**journal, "state": "taken"}
    _write_journal(folder, journal)
    log.info("Archiving %s undone: %s is as it was", shown_name(journal["path"]), target)
    return journal


def _only_a_run_s(folder: Path, journal: dict[str, Any] | None) -> list[str]:
    """What the run's folder holds, all of it what a run puts there (its journal, a journal being written, the file
    the journal names); raises Untrusted naming anything else."""
    names = os.listdir(folder)
    taken = journal["name"] if journal else None
    foreign = [n for n in names if n not in (JOURNAL, taken) and not _JOURNAL_TMP.fullmatch(n)]
    foreign += [n for n in names if n not in foreign and stat.S_ISDIR(os.lstat(folder / n).st_mode)]
    if foreign:
        raise Untrusted(
            f"{shown_name(folder)} holds what no run put there ({', '.join(shown_name(n) for n in sorted(foreign))})"
        )
    return names


def _clear_run_folder(folder: Path, journal: dict[str, Any] | None) -> None:
    """Remove a run's folder, which holds only what a run puts there: its journal (last), a journal being written
    and the file taken. Anything else there, or a folder that is a link, is not a run's: Untrusted, nothing
    removed."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise Untrusted(_foreign(folder, st))
    names = _only_a_run_s(folder, journal)
    for name in sorted(names, key=lambda n: n == JOURNAL):  # the journal last
        (folder / name).unlink(missing_ok=True)
    folder.rmdir()
    _remove_if_empty(folder.parent)


def _finish(folder: Path, journal: dict[str, Any] | None) -> list[str]:
    problems = []
    try:
        if journal is not None:
            taken, target = folder / journal["name"], Path(journal.get("target") or "")
            if os.path.lexists(taken) and not (
                journal["state"] == "archived" and _sha256_or_none(target) == journal["sha256"]
            ):
                raise SurveyWarehouseError(f"the archive {shown_name(target)} does not hold it")
        _clear_run_folder(folder, journal)
    except (OSError, SurveyWarehouseError) as exc:
        problems.append(
            f"{shown_name(folder)} (the run's copy of the delivery, archived) could not be removed: "
            f"{shown_name(str(exc))}"
        )
    if journal is not None:
        path = Path(journal["path"])
        note = rejection_note(path)
        now = look(int(journal["wave_year"]), path)
        try:
            if os.path.lexists(note) and (now is None or not has_verdict(now)):
                note.unlink()  # it described an earlier copy
        except OSError as exc:
            problems.append(f"{shown_name(note)} (about an earlier copy) could not be removed: {exc}")
    for problem in problems:
        log.warning("After publishing: %s", problem)
    return problems


def _return_to_inbox(
    folder: Path, journal: dict[str, Any], message: str, run_id: str | None, quiet: bool = False
) -> Path | None:
    """The taken file back under its name in the inbox, with a note (unless `quiet`: then announced again and run);
    when another file has the name, into rejected/ with a note in any case. Where it goes, the note's message and
    whether it is quiet are journaled first (state `returning`), so a give-back killed at any step is finished by
    doing this again, with the same note (`message` and `quiet` are then the journal's). Returns the note, if one
    was written."""
    taken, original = folder / journal["name"], Path(journal["path"])
    if journal["state"] != "returning":
        try:
            st = os.lstat(taken)
        except FileNotFoundError:  # (stopped before it took the file: it is still in the inbox)
            _clear_run_folder(folder, journal)
            return None
        if not stat.S_ISREG(st.st_mode):
            raise Untrusted(f"{shown_name(taken)} is not the file a run took: {_foreign(taken, st)}")
        journal = {
            **journal,
            "state": "returning",
            "back": str(original),
            "returned_ino": st.st_ino,
            "message": message,
            "note_by": run_id,
            "quiet": quiet,
        }
        _write_journal(folder, journal)
    back = Path(journal["back"])
    for _attempt in range(10):
        if not os.path.lexists(taken):
            break
        try:
            _move_no_replace(taken, back)  # (when both are one file already: the extra name goes)
        except FileExistsError:  # another file has the name: this one is kept aside
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            back = _free_name(original.parent / REJECTED_DIR, f"{stamp}_{original.name}")
            back.parent.mkdir(exist_ok=True)
            journal = {**journal, "back": str(back)}
            _write_journal(folder, journal)
            continue
        _fsync(back.parent)
    if os.path.lexists(taken):
        raise SurveyWarehouseError(f"{shown_name(taken)} could not be given back: every name for it was taken")
    aside = back.parent != original.parent
    note = None
    now = look(int(journal["wave_year"]), back)
    if now is not None and now.ino == journal["returned_ino"] and now.kind == "file":
        if aside or not journal["quiet"]:
            about = (
                f"A newer copy of {shown_name(original.name)} was dropped while this one's run went; the newer copy "
                f"is run on its own. This one is kept here; to run it instead, move it back to "
                f"{shown_name(original)} (and delete this note)."
                if aside
                else None
            )
            note = reject(now, journal["message"], journal.get("note_by"), about, name=original.name)
    else:  # (replaced by the sender since it went back: nothing to note)
        log.warning("%s is not the file given back any more: no note for it", shown_name(back))
    _clear_run_folder(folder, journal)
    return note
