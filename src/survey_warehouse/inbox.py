"""The inbox: a wave's file dropped into <inbox>/<wave year>/ starts that wave's run.

    <inbox>/2020/kaupunkikysely_2020.txt        a delivery (its name is the name in the wave spec's `file:`)
    <inbox>/2020/kaupunkikysely_2020.txt.part   still being written: not looked at until renamed
    <inbox>/2020/kaupunkikysely_2020.txt.rejected.txt   why a run rejected the file beside it, and which file
    <inbox>/2020/rejected/<time>_kaupunkikysely_2020.txt (+ .rejected.txt)   a rejected file whose name a newer
                                                 copy took while its run went
    <inbox>/2020/.taken/<run>/                   the file a run has taken, while the run goes

`InboxTrigger` (survey_warehouse.inbox_trigger) is an Airflow event trigger for an `AssetWatcher` on the inbox
asset, run by `airflow triggerer`: it announces one delivery at a time, once it has stopped changing, and the DAG
run it starts knows the wave year and the file from the asset event's payload.

A run takes its delivery when it starts (`take`): the file is moved under the run's own name in `.taken/`, if it
is still the very file announced (the same kind, size, modification time, inode and change time), and the run reads
it there; a copy dropped under the same name meanwhile is a new delivery, left for its own run. When the run
publishes, the file it loaded (the same sha256) becomes the wave's archive, the wave spec's `file:` (`archive`),
before the marts are switched, and is undone if they are not; when the run fails, the file goes back to the inbox
with `<file>.rejected.txt` beside it (`give_back`). A file's identity is read with lstat and a file is opened with
O_NOFOLLOW: a symbolic link, a folder, a FIFO or a device in the inbox is rejected with a note, never followed,
read or moved. What a run that was killed left in `.taken/` is finished or undone by the next run
(`recover_stopped_runs`): nothing dropped is lost.

This module imports nothing from Airflow: the pipeline's steps and the command line use it too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
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
JOURNAL = "run.json"  # in a run's folder: which delivery it took, and how far archiving got
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
        return {
            "wave_year": self.wave_year,
            "path": str(self.path),
            "file_name": self.path.name,
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
            path=Path(str(payload["path"])),
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
        f"The file: {entry.path.name}, {entry.size} bytes, modified {when}, sha256 {sha256}."
        if entry.kind == "file"
        else f"The entry: {entry.path.name}, a {entry.kind}, changed {when}."
    )
    record = dict(zip(("kind", "size", "mtime_ns", "ino", "ctime_ns"), entry.signature(), strict=True))
    return [what, NOTE_RECORD + json.dumps({**record, "sha256": sha256})]


def reject(delivery: Delivery, message: str, run_id: str | None = None, about: str | None = None) -> Path:
    """Leave the entry where it is, with <name>.rejected.txt beside it saying why and which file it describes
    (size, times, sha256): a different file dropped under the name later is a new delivery."""
    now = look(delivery.wave_year, delivery.path)
    entry = now if now is not None and delivery.is_as_announced(now) else delivery  # (another file there now)
    sha256 = _sha256(entry.path) if entry is now and entry.kind == "file" else None
    name = entry.path.name
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
    log.error("Rejected %s: %s (note: %s)", entry.path, message, note)
    return note


def refusal(delivery: Delivery) -> str | None:
    """Why the entry cannot be a delivery (it is not a regular file), in words for its note; None for a file."""
    entry = look(delivery.wave_year, delivery.path)
    if entry is None or entry.kind == "file":
        return None
    detail = f" (to {os.readlink(entry.path)})" if entry.kind == "symbolic link" else ""
    if entry.path.name == str(entry.wave_year):  # the year folder itself
        return (
            f"the year folder {entry.path} is a {entry.kind}{detail}: the inbox never follows a link; make it a "
            "folder of its own and drop the wave's file into it"
        )
    return (
        f"{entry.path.name} is a {entry.kind}{detail}: the inbox takes only regular files, and never reads, follows "
        f"or moves anything else; drop the file itself as {entry.path.name} (not a link to it, nor a folder "
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


def run_folder(delivery: Delivery, run_id: str) -> Path:
    """Where the run keeps the delivery it took: <inbox>/<year>/.taken/<run>/ (hidden, so never a delivery)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)[:80]
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return delivery.path.parent / TAKEN_DIR / f"{readable}-{digest}"


def take(delivery: Delivery, run_id: str, name: str) -> Path:
    """Take the announced delivery for this run: move it into the run's folder under `name` (the wave spec's
    spelling of its name), if it is still the very file announced. Returns the path the run reads. A copy dropped
    under the delivery's name afterwards is a new delivery; raises NotTaken when the delivery is gone or changed
    since it was announced (the newer copy is announced on its own)."""
    folder = run_folder(delivery, run_id)
    journal = _read_journal(folder)
    if journal is not None and os.path.lexists(folder / journal["name"]):
        return folder / journal["name"]  # (taken already: a repeated step)
    before = look(delivery.wave_year, delivery.path)
    if before is None:
        raise NotTaken(f"{delivery.path} is no longer in the inbox (an earlier run took it, or it was removed)")
    if before.kind != "file" or not delivery.is_as_announced(before):
        raise NotTaken(
            f"{delivery.path} changed after it was announced (a newer copy was dropped): the newer copy is announced "
            "and run on its own"
        )
    folder.mkdir(parents=True, exist_ok=True)
    taken = folder / name
    _write_journal(
        folder,
        {
            "run_id": run_id,
            "wave_year": delivery.wave_year,
            "path": str(delivery.path),
            "name": name,
            "state": "taken",
            "taken_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    try:
        os.rename(delivery.path, taken)  # within the year folder: atomic
    except FileNotFoundError:
        shutil.rmtree(folder, ignore_errors=True)
        raise NotTaken(f"{delivery.path} was removed as it was being taken") from None
    moved = look(delivery.wave_year, taken)
    if moved is None or moved.kind != "file" or moved.ino != before.ino:  # replaced between the look and the move
        _return_to_inbox(folder, "it was replaced while it was being taken", None)
        raise NotTaken(f"{delivery.path} was replaced as it was being taken: the newer copy is announced on its own")
    _fsync(folder)
    _fsync(delivery.path.parent)
    log.info("Took %s for run %s: %s", delivery.path, run_id, taken)
    return taken


def archive(delivery: Delivery, run_id: str, target: Path, sha256: str, build_id: str | None = None) -> Path:
    """Make the delivery this run took the wave's file (the spec's `file:`), before the run publishes: only the
    very file the run loaded (`sha256`). A different file already there is kept under superseded/ beside it. The
    taken file stays until `finish` (after the publication); `undo_archive` puts the previous file back. The
    journal says how far it got, for the next run should this one be killed. Returns the target."""
    folder = run_folder(delivery, run_id)
    journal = _read_journal(folder)
    if journal is None or not os.path.lexists(folder / journal["name"]):
        raise SurveyWarehouseError(
            f"{delivery.path.name}: run {run_id} has not taken this delivery from the inbox, so it archives nothing"
        )
    taken = folder / journal["name"]
    if journal["state"] == "archived" and _sha256_or_none(target) == sha256:
        return target  # (archived already: a repeated step)
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
    journal.update(state="archived", target=str(target), previous=previous, sha256=sha256, build_id=build_id)
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
            undo_archive(delivery, run_id)
        except Exception:
            log.exception("Could not undo archiving %s; the next run does it", taken)
        raise
    log.info("Archived %s as %s (the file there before: %s)", delivery.path.name, target, previous or "none")
    return target


def undo_archive(delivery: Delivery, run_id: str) -> None:
    """The publication did not happen: the archive gets its previous file back (the taken file stays the run's)."""
    _undo(run_folder(delivery, run_id))


def finish(delivery: Delivery, run_id: str) -> list[str]:
    """After the publication: the run's folder goes (the archive holds the file), and so does a note beside the
    delivery's name that describes no entry there now. Never raises: returns what could not be done, and the next
    run tries again."""
    return _finish(run_folder(delivery, run_id))


def give_back(delivery: Delivery, run_id: str, message: str) -> Path | None:
    """The run failed: the file it took goes back into the inbox, rejected, with the reason beside it; when a newer
    copy has taken its name meanwhile, into rejected/ beside it (the newer copy is run on its own). Returns the
    note, or None when the run had not taken the delivery."""
    folder = run_folder(delivery, run_id)
    if _read_journal(folder) is None:
        return None
    _undo(folder)
    return _return_to_inbox(folder, message, run_id)


def reject_delivery(delivery: Delivery, run_id: str, message: str) -> Path | None:
    """The run failed: the delivery it took goes back with the reason (`give_back`); one it had not taken (the run
    failed before, or it is not a file) gets the note where it lies, if it is still the entry announced."""
    note = give_back(delivery, run_id, message)
    if note is not None:
        return note
    now = look(delivery.wave_year, delivery.path)
    if now is None or not delivery.is_as_announced(now):
        log.warning("%s is no longer the entry announced: no note for it (%s)", delivery.path, message)
        return None
    return reject(now, message, run_id)


def recover_stopped_runs(inbox: Path, run_id: str, committed: Callable[[dict[str, Any]], bool]) -> list[str]:
    """What runs that stopped (killed, lost) left in `.taken/`, at the start of the next run (one runs at a time):
    a delivery archived for a publication that committed (`committed(journal)`) is finished; otherwise the archive
    gets its previous file back, and the delivery goes back under its name, to be announced and run again, or, when
    a newer copy has its name, into rejected/ with a note. Returns what was done, for the log."""
    done = []
    own = run_folder(Delivery(0, inbox / "x", 0, 0), run_id).name
    years = sorted(p for p in inbox.glob("[0-9][0-9][0-9][0-9]") if not p.is_symlink() and p.is_dir())
    for taken_dir in [year / TAKEN_DIR for year in years if (year / TAKEN_DIR).is_dir()]:
        for folder in sorted(p for p in taken_dir.iterdir() if p.is_dir() and not p.is_symlink()):
            if folder.name == own:
                continue
            try:
                done += _recover(folder, committed)
            except Exception as exc:  # never blocks the runs after it: told, and left as it is
                done.append(
                    f"{folder}: what a stopped run left here could not be resolved ({type(exc).__name__}: {exc}); "
                    f"its {JOURNAL} says which delivery it is and where it was being archived: put the file back "
                    "into the inbox by hand, then delete the folder"
                )
        _remove_if_empty(taken_dir)
    for line in done:
        log.warning("%s", line)
    return done


def _recover(folder: Path, committed: Callable[[dict[str, Any]], bool]) -> list[str]:
    journal = _read_journal(folder)
    if journal is None:
        shutil.rmtree(folder, ignore_errors=True)  # stopped before it took anything
        return []
    if journal.get("state") == "archived" and committed(journal):
        return [f"finished archiving {journal['path']} (run {journal['run_id']} published it)", *_finish(folder)]
    _undo(folder)
    stopped = f"run {journal['run_id']}, which took this file, stopped before it published or rejected it"
    note = _return_to_inbox(folder, stopped, None, quiet=True)
    return [f"{journal['path']}: {stopped}; " + (f"rejected, see {note}" if note else "back in the inbox")]


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


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def _read_journal(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / JOURNAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_journal(folder: Path, journal: dict[str, Any]) -> None:
    _write_atomically(folder / JOURNAL, json.dumps(journal, indent=1, ensure_ascii=False))


def _sha256_or_none(path: Path) -> str | None:
    try:
        return _sha256(path) if stat.S_ISREG(os.lstat(path).st_mode) else None
    except FileNotFoundError:
        return None


def _free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/<stem>-2<suffix>`, ... : a name nothing has yet (nothing is overwritten)."""
    candidate, n = folder / name, 1
    while os.path.lexists(candidate):
        n += 1
        stem, dot, suffix = name.partition("_")
        candidate = folder / f"{stem}-{n}{dot}{suffix}"
    return candidate


def _move_no_replace(src: Path, dst: Path) -> None:
    """Rename `src` to `dst` on one file system, never over something at `dst` (FileExistsError)."""
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


def _undo(folder: Path) -> None:
    """Archiving did not lead to a publication: the archive as it was before, the journal back to `taken`."""
    journal = _read_journal(folder)
    if journal is None or journal.get("state") != "archived":
        return
    target, previous = Path(journal["target"]), journal.get("previous")
    Path(target.with_name(f".{target.name}.{folder.name}{PART_SUFFIX}")).unlink(missing_ok=True)
    if previous != "identical":
        if _sha256_or_none(target) == journal["sha256"]:
            target.unlink()  # the run's copy: the taken file still holds it
        if previous and os.path.lexists(previous):
            _move_no_replace(Path(previous), target)
            _remove_if_empty(Path(previous).parent)
        _fsync(target.parent)
    journal["state"] = "taken"
    _write_journal(folder, journal)
    log.info("Archiving %s undone: %s is as it was", journal["path"], target)


def _finish(folder: Path) -> list[str]:
    journal = _read_journal(folder) or {}
    problems = []
    try:
        shutil.rmtree(folder)
        _remove_if_empty(folder.parent)
    except OSError as exc:
        problems.append(f"{folder} (the run's copy of the delivery, archived) could not be removed: {exc}")
    if journal.get("path"):
        path = Path(journal["path"])
        note = rejection_note(path)
        now = look(int(journal.get("wave_year", 0)), path)
        try:
            if note.exists() and (now is None or not has_verdict(now)):
                note.unlink()  # it described an earlier copy
        except OSError as exc:
            problems.append(f"{note} (about an earlier copy) could not be removed: {exc}")
    for problem in problems:
        log.warning("After publishing: %s", problem)
    return problems


def _return_to_inbox(folder: Path, message: str, run_id: str | None, quiet: bool = False) -> Path | None:
    """The taken file back under its name in the inbox, with a note (unless `quiet`: then announced again and run);
    when a newer copy has the name, into rejected/ with a note in any case. Returns the note, if one was written."""
    journal = _read_journal(folder)
    if journal is None:
        return None
    taken, original = folder / journal["name"], Path(journal["path"])
    if not os.path.lexists(taken):
        shutil.rmtree(folder, ignore_errors=True)
        return None
    about = None
    try:
        _move_no_replace(taken, original)
        back = original
    except FileExistsError:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        back = _free_name(original.parent / REJECTED_DIR, f"{stamp}_{original.name}")
        back.parent.mkdir(exist_ok=True)
        _move_no_replace(taken, back)
        about = (
            f"A newer copy of {original.name} was dropped while this one's run went; the newer copy is run on its "
            f"own. This one is kept here; to run it instead, move it back to {original} (and delete this note)."
        )
        quiet = False
    _fsync(back.parent)
    note = None
    if not quiet:
        note = reject(Delivery.of(int(journal["wave_year"]), back, os.lstat(back)), message, run_id, about)
    shutil.rmtree(folder, ignore_errors=True)
    _remove_if_empty(folder.parent)
    return note
