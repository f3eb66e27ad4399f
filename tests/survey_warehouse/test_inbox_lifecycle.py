"""The inbox over a delivery's whole life: drops, re-drops, a copy replaced while its run goes, rejections, links and
other things that are not files, runs killed after any step, and the runs after them.

A run is the survey_waves DAG's own steps called one at a time, as the DAG wires them, each under a task context of
its own (a stand-in task instance keeps the run's XComs and task states): plan_wave, load_raw_wave, the raw gate's
verdict, accept_raw_wave, begin_build, a stand-in for the dbt build (every mart of the project from the real staging
model, as in test_load_lifecycle.py), publish_marts with its failure callback and, when a step failed,
record_failure with its callback. The owner's mails are kept, not sent. The watcher is the trigger's own InboxWatch
over `scan`, without the settle time.

Invariants: every file dropped is loaded and archived, or rejected with a note that describes it, or still waits
(in the inbox, or as its run's while the run goes); the archive (the wave spec's `file:`) is the current load's
file; nothing dropped is lost or overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import unicodedata
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, NamedTuple

import duckdb
import pytest
import yaml
from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk.execution_time.context import set_current_context
from conftest import ROOT, make_paths, use_paths, with_waves_dir
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from test_load_lifecycle import staging_loads_sql

from survey_warehouse.errors import QualityGateFailed
from survey_warehouse.operations import inbox
from survey_warehouse.operations.inbox import Delivery, InboxWatch, scan
from survey_warehouse.orchestration import notify, pipeline
from survey_warehouse.publishing.publish import read_publication
from survey_warehouse.quality.batches import project_marts
from survey_warehouse.settings import Paths
from survey_warehouse.warehouse import Warehouse

WAVE = 2019
BASE = ROOT / "data" / "waves" / "2019" / "city_survey_2019_export.csv"
REANNOUNCE_SECONDS = 3600  # the watcher's clock advances 1 s a poll
STEPS = ("plan_wave", "load_raw_wave", "validate_raw_wave", "accept_raw_wave", "begin_build", "dbt_build")


def variant(n: int) -> bytes:
    """The 2019 file with its answers' rows rotated by n: another file (its own sha256), the same respondents."""
    header, *rows = BASE.read_bytes().splitlines(keepends=True)
    rows = [r if r.endswith(b"\n") else r + b"\n" for r in rows]
    k = n % len(rows)
    return header + b"".join(rows[k:] + rows[:k])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(path: Path) -> str | None:
    """The sha256 of a regular file (never through a link), None for anything else or nothing."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
    except FileNotFoundError:
        return None
    return sha(path.read_bytes())


class _Asset(NamedTuple):
    name: str


class _Ended(Exception):
    """A run ended before it published: how."""


class _Killed(BaseException):
    """The process running a step was killed: nothing after this point ran (no except, no callback)."""


class _TaskInstance:
    def __init__(self, run: Run, task_id: str) -> None:
        self.run, self.task_id = run, task_id
        self.dag_id, self.run_id = "survey_waves", run.run_id

    def xcom_push(self, key: str, value: Any) -> None:
        self.run.xcoms[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.run.xcoms.get((task_ids, key))

    def get_task_states(self, dag_id: str, run_ids: list[str]) -> dict[str, dict[str, str]]:
        return {self.run_id: dict(self.run.states)}


class Run:
    """One run of survey_waves, for a delivery (or a run by the calendar, without one), step by step."""

    def __init__(self, house: Inbox, delivery: Delivery | None, run_id: str) -> None:
        self.house, self.delivery, self.run_id = house, delivery, run_id
        self.xcoms: dict[tuple[str, str], Any] = {}
        self.states: dict[str, str] = {}
        self.next = 0
        self.end: str | None = None

    def context(self, task_id: str, **extra: Any) -> dict[str, Any]:
        events = {}
        if self.delivery is not None:
            event = SimpleNamespace(extra={"from_trigger": True, "payload": self.delivery.payload()}, timestamp=0)
            events = {_Asset(inbox.INBOX_ASSET_NAME): [event]}
        params = {} if self.delivery is not None else {"wave_year": WAVE}
        return {
            "run_id": self.run_id,
            "params": params,
            "triggering_asset_events": events,
            "ti": _TaskInstance(self, task_id),
            "logical_date": None,
            **extra,
        }

    def _task(self, task_id: str, work: Callable[[dict[str, Any]], Any]) -> Any:
        context = self.context(task_id)
        with set_current_context(context):  # type: ignore[arg-type]
            try:
                value = work(context)
            except AirflowSkipException as exc:
                self.states[task_id] = "skipped"
                raise _Ended(f"skipped: {exc}") from exc
            except Exception as exc:
                self.states[task_id] = "failed"
                if task_id == "publish_marts":  # its own on_failure_callback; it is a leaf: no record_failure
                    notify.on_run_failed(self.context(task_id, exception=exc))
                    raise _Ended(f"failed at {task_id}: {exc}") from exc
                raise
        self.states[task_id] = "success"
        self.xcoms[(task_id, "return_value")] = value
        return value

    def step(self, gate_ok: bool = True, build_ok: bool = True) -> str | None:
        """The next step; the run's end (published, skipped..., failed at...) once it has one."""
        if self.end is not None:
            return self.end
        step = [*STEPS, "publish_marts"][self.next]
        self.next += 1
        try:
            self._steps[step](self, gate_ok, build_ok)
        except _Ended as ended:
            self.end = str(ended)
        except Exception as exc:  # the step failed: record_failure runs, then its callback
            self.end = f"failed at {step}: {type(exc).__name__}: {exc}"
            self.record_failure()
        else:
            if step == "publish_marts":
                self.end = "published"
        return self.end

    def finish(self, gate_ok: bool = True, build_ok: bool = True) -> str:
        while self.end is None:
            self.step(gate_ok, build_ok)
        return self.end

    def advance_past(self, step: str) -> None:
        while self.end is None and self.next <= STEPS.index(step):
            self.step()
        assert self.end is None, f"the run ended before {step}: {self.end}"

    def record_failure(self) -> None:
        context = self.context("record_failure")
        with set_current_context(context):  # type: ignore[arg-type]
            message = pipeline.record_failure(**context)
        self.xcoms[("record_failure", "return_value")] = message
        self.states["record_failure"] = "success"
        notify.on_run_failed(self.context("record_failure"))

    # ---- the steps, as dags/survey_waves.py calls them

    def _plan(self, _gate_ok: bool, _build_ok: bool) -> None:
        self._task("plan_wave", lambda c: pipeline.plan_run(pipeline.wave_year_of_run(c), pipeline.delivery_of_run(c)))

    def _load(self, _gate_ok: bool, _build_ok: bool) -> None:
        plan = self.xcoms[("plan_wave", "return_value")]
        self._task(
            "load_raw_wave",
            lambda _c: pipeline.load_raw_wave(plan["wave_year"], plan.get("delivery"), plan.get("action")),
        )

    def _gate(self, gate_ok: bool, _build_ok: bool) -> None:
        def verdict(_context: dict) -> None:
            if not gate_ok:
                raise QualityGateFailed("the raw gate failed: 1 of 19 expectations")

        self._task("validate_raw_wave", verdict)

    def _accept(self, _gate_ok: bool, _build_ok: bool) -> None:
        loaded = self.xcoms[("load_raw_wave", "return_value")]
        self._task("accept_raw_wave", lambda _c: pipeline.accept_raw_wave(loaded))

    def _begin(self, _gate_ok: bool, _build_ok: bool) -> None:
        loaded = self.xcoms[("load_raw_wave", "return_value")]
        self._task(pipeline.BEGIN_BUILD_TASK_ID, lambda c: pipeline.begin_build(loaded, c))

    def _build(self, _gate_ok: bool, build_ok: bool) -> None:
        def build(_context: dict) -> None:
            if not build_ok:
                raise RuntimeError("a dbt model failed")
            self.house.stand_in_build()

        self._task("dbt_build", build)

    def _publish(self, _gate_ok: bool, _build_ok: bool) -> None:
        build = self.xcoms[(pipeline.BEGIN_BUILD_TASK_ID, "return_value")]
        self._task(
            "publish_marts",
            lambda c: pipeline.publish_marts(c["run_id"], build, pipeline.delivery_of_run(c), outlet_events=None),
        )

    _steps: ClassVar[dict[str, Callable[[Run, bool, bool], None]]] = {
        "plan_wave": _plan,
        "load_raw_wave": _load,
        "validate_raw_wave": _gate,
        "accept_raw_wave": _accept,
        "begin_build": _begin,
        "dbt_build": _build,
        "publish_marts": _publish,
    }


class Inbox:
    """A test folder with its own inbox, its own 2019 wave spec whose `file:` (the archive) is in the folder, a
    DuckDB warehouse, the watcher, and the owner's mails."""

    def __init__(self, name: str, monkeypatch: pytest.MonkeyPatch, file_name: str = BASE.name) -> None:
        base = make_paths(name)
        self.archive = base.var / "archive" / "2019" / file_name
        waves = base.var / "waves"
        waves.mkdir()
        spec = yaml.safe_load((ROOT / "config" / "waves" / "2019.yml").read_text(encoding="utf-8"))
        spec["file"] = str(self.archive)
        (waves / "2019.yml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
        self.paths: Paths = with_waves_dir(base, waves)
        use_paths(monkeypatch, self.paths)
        self.folder = self.paths.inbox_dir / str(WAVE)
        self.folder.mkdir(parents=True)
        self.warehouse = Warehouse.duckdb(self.paths.warehouse)
        self.watch = InboxWatch(settle_seconds=0, reannounce_seconds=REANNOUNCE_SECONDS)
        self.clock = 0.0
        self.runs = 0
        self.mails: list[tuple[int, notify.Mail]] = []
        monkeypatch.setattr(
            notify, "deliver", lambda wave, mail, _context, _paths=None: self.mails.append((wave, mail))
        )
        self.marts = project_marts(self.paths.dbt_project)
        self.sql = staging_loads_sql()

    # ---- the sender

    def drop(self, data: bytes, name: str | None = None, in_place: bool = False) -> Path:
        """A file dropped as docs/operating.md says (written as .part, then renamed), or copied over the name in
        place."""
        path = self.folder / (name or self.archive.name)
        if in_place:
            path.write_bytes(data)
        else:
            part = path.with_name(path.name + inbox.PART_SUFFIX)
            part.write_bytes(data)
            os.rename(part, path)
        return path

    # ---- the watcher and the scheduler

    def announce(self) -> list[Delivery]:
        """What the watcher announces, polling until it has nothing more to say (one delivery in flight at a
        time: a delivery's run takes it from the inbox, then the next is announced)."""
        found = []
        for _ in range(8):
            self.clock += 1
            delivery = self.watch.observe(scan(self.paths.inbox_dir), self.clock)
            if delivery is not None:
                found.append(delivery)
        return found

    def run(self, delivery: Delivery | None = None) -> Run:
        self.runs += 1
        kind = "asset_triggered" if delivery is not None else "scheduled"
        return Run(self, delivery, f"{kind}__2019-06-01T06:00:00+00:00_{self.runs}")

    def stand_in_build(self) -> None:
        """What dbt does with the loads, reduced to which load of each wave staging takes."""
        with duckdb.connect(str(self.paths.warehouse)) as con:
            con.execute("create schema if not exists staging")
            con.execute("create schema if not exists marts")
            con.execute(f"create or replace view staging.stg_survey__loads as {self.sql}")
            for mart in self.marts:
                con.execute(
                    f"create or replace table marts.{mart} as select load_id, wave_year "
                    "from staging.stg_survey__loads where is_current_load"
                )

    # ---- reading

    def current_sha(self) -> str | None:
        if not self.paths.warehouse.exists():
            return None
        with duckdb.connect(str(self.paths.warehouse), read_only=True) as con:
            row = con.execute(
                "select file_sha256 from raw.load_registry where wave_year = ? and is_current", [WAVE]
            ).fetchone()
        return row[0] if row else None

    def published_by(self) -> str | None:
        publication = read_publication(self.warehouse, self.paths.published)
        return publication.run_id if publication else None

    def notes(self) -> dict[Path, str]:
        """Every rejection note under the inbox, with its text."""
        return {
            p: p.read_text(encoding="utf-8") for p in sorted(self.paths.inbox_dir.rglob(f"*{inbox.REJECTED_SUFFIX}"))
        }

    def kept(self) -> dict[str, list[Path]]:
        """Every regular file under the inbox and beside the archive, by sha256 (links are not followed)."""
        found: dict[str, list[Path]] = {}
        for top in (self.paths.inbox_dir, self.archive.parent):
            for folder, _dirs, files in os.walk(top):
                for name in files:
                    path = Path(folder) / name
                    digest = file_sha(path)
                    if digest is not None and not name.endswith(inbox.REJECTED_SUFFIX):
                        found.setdefault(digest, []).append(path)
        return found


@pytest.fixture
def house(monkeypatch: pytest.MonkeyPatch) -> Inbox:
    return Inbox("inbox_lifecycle", monkeypatch)


_TEMPLATES: set[Path] = set()


def published_inbox(name: str, monkeypatch: pytest.MonkeyPatch) -> Inbox:
    """A test folder whose wave has its first file (variant 0) published, as a delivery's run publishes it: made
    once per test session, then copied."""
    house = Inbox(name, monkeypatch)
    template = house.paths.var.with_name(f"{name}_published")
    if template not in _TEMPLATES:
        shutil.rmtree(template, ignore_errors=True)
        _published(house, 0)
        shutil.copytree(house.paths.var, template, symlinks=True)
        _TEMPLATES.add(template)
    else:
        shutil.rmtree(house.paths.var)
        shutil.copytree(template, house.paths.var, symlinks=True)
    return house


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Inbox:
    return published_inbox("inbox_published", monkeypatch)


def _published(house: Inbox, n: int) -> bytes:
    """Variant n dropped, announced and published by its run."""
    data = variant(n)
    house.drop(data)
    [delivery] = house.announce()
    assert house.run(delivery).finish() == "published"
    assert file_sha(house.archive) == sha(data) == house.current_sha()
    return data


# ------------------------------------------------------------------------------------------------ scenarios


def test_a_copy_dropped_while_the_first_run_goes_waits_for_its_own_run(house: Inbox) -> None:
    """v1 announced and loaded; the sender drops a corrected v2 under the same name while v1's run builds. v1's run
    publishes v1 and archives exactly v1; v2 stays in the inbox for its own run, which publishes and archives it."""
    v1, v2 = variant(1), variant(2)
    house.drop(v1)
    [first] = house.announce()
    run1 = house.run(first)
    run1.advance_past("dbt_build")
    house.drop(v2)
    [second] = house.announce()

    assert run1.finish() == "published"

    assert file_sha(house.archive) == sha(v1) == house.current_sha(), "the archive is not the file that was loaded"
    assert file_sha(house.folder / house.archive.name) == sha(v2), "the newer copy was taken by the first run"
    assert house.run(second).finish() == "published"
    assert file_sha(house.archive) == sha(v2) == house.current_sha()
    assert [p.parent.name for p in house.kept()[sha(v1)]] == ["superseded"], "v1 is kept under superseded/"
    assert not (house.folder / house.archive.name).exists()
    assert house.notes() == {}


@pytest.mark.parametrize("kind", ["link_to_the_archive", "fifo", "folder", "relative_link"])
def test_what_is_not_a_file_is_rejected_with_a_note_and_never_followed_or_moved(published: Inbox, kind: str) -> None:
    house, v1 = published, variant(0)
    entry = house.folder / house.archive.name
    if kind == "link_to_the_archive":
        entry.symlink_to(house.archive)
    elif kind == "relative_link":
        entry.symlink_to(os.path.relpath(house.archive, entry.parent))
    elif kind == "fifo":
        os.mkfifo(entry)
    else:
        entry.mkdir()
        (entry / "inside.csv").write_bytes(variant(3))
    before = os.lstat(entry)

    [delivery] = house.announce()
    end = house.run(delivery).finish()

    assert end.startswith("failed at plan_wave"), end
    assert file_sha(house.archive) == sha(v1) == house.current_sha(), "the archive was replaced"
    after = os.lstat(entry)
    assert (after.st_ino, stat.S_IFMT(after.st_mode)) == (before.st_ino, stat.S_IFMT(before.st_mode)), "moved"
    [(note, text)] = house.notes().items()
    assert note == inbox.rejection_note(entry)
    said = {
        "link_to_the_archive": "is a symbolic link",
        "relative_link": "is a symbolic link",
        "fifo": "is a FIFO",
        "folder": "is a folder",
    }[kind]
    assert f"{entry.name} {said}" in text, text
    assert "only regular files" in text and "drop the file itself" in text, text
    assert house.announce() == [], "its verdict stands: not announced again"
    [(_wave, mail)] = house.mails
    assert said in mail.body


def test_when_the_file_cannot_be_archived_nothing_is_published(
    published: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk of the wave files is full: the run fails before anything is switched, the owner is told that nothing
    was published (true), and the delivery waits in the inbox with the reason beside it."""
    house, v1 = published, variant(0)
    published_by = house.published_by()
    v2 = variant(2)
    house.drop(v2)
    [delivery] = house.announce()
    run = house.run(delivery)
    run.advance_past("dbt_build")
    _fail_writes_under(monkeypatch, house.archive.parent)

    end = run.finish()

    assert end.startswith("failed at publish_marts"), end
    assert house.published_by() == published_by, "the marts were switched"
    assert file_sha(house.archive) == sha(v1) == house.current_sha()
    delivered = house.folder / house.archive.name
    assert file_sha(delivered) == sha(v2), "the delivery is not back in the inbox"
    [(note, text)] = house.notes().items()
    assert note == inbox.rejection_note(delivered) and "No space left on device" in text
    [(_wave, mail)] = house.mails
    assert "Nothing was published" in mail.body
    assert house.announce() == []


def _fail_writes_under(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Every file operation that would create or replace something under `folder` fails: the disk is full."""

    def failing(real: Callable[..., Any], target_arg: int) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if Path(os.path.abspath(args[target_arg])).is_relative_to(folder):
                raise OSError(errno.ENOSPC, "No space left on device", str(args[target_arg]))
            return real(*args, **kwargs)

        return call

    for module, name in [(os, "replace"), (os, "rename"), (os, "link"), (shutil, "copy2"), (shutil, "copyfile")]:
        monkeypatch.setattr(module, name, failing(getattr(module, name), 1))


def test_a_run_killed_after_publishing_is_told_as_published_and_the_next_run_finishes_its_archive(
    published: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """publish_marts is killed right after the publication committed: the owner is not told that nothing was
    published, and the next run (the calendar's) leaves the archive holding the published file."""
    house = published
    v2 = variant(2)
    house.drop(v2)
    [delivery] = house.announce()
    run = house.run(delivery)
    run.advance_past("dbt_build")
    import survey_warehouse.publishing.publish as publishing

    real_publish = publishing.publish

    def killed_after(*args: Any, **kwargs: Any) -> Any:
        real_publish(*args, **kwargs)
        raise _Killed

    monkeypatch.setattr(publishing, "publish", killed_after)
    with pytest.raises(_Killed):
        run.step()
    monkeypatch.setattr(publishing, "publish", real_publish)
    assert house.current_sha() == sha(v2), "published"
    run.states["publish_marts"] = "failed"  # the scheduler finds the task dead and runs its failure callback
    notify.on_run_failed(run.context("publish_marts", exception=None))

    [(_wave, mail)] = house.mails
    assert "Nothing was published" not in mail.body, mail.body
    assert "The marts were published" in mail.body, mail.body

    assert house.run().finish().startswith("skipped"), "nothing left to do"
    assert file_sha(house.archive) == sha(v2) == house.current_sha()
    assert not (house.folder / house.archive.name).exists()


def test_a_copy_dropped_just_before_the_first_is_rejected_is_announced(house: Inbox) -> None:
    """v1 fails its raw gate; a corrected v2 is dropped just before v1's run writes its note: v2 is announced and
    published, and v1's note describes v1."""
    v1, v2 = variant(1), variant(2)
    house.drop(v1)
    [first] = house.announce()
    run1 = house.run(first)
    run1.advance_past("load_raw_wave")
    house.drop(v2)

    assert run1.finish(gate_ok=False).startswith("failed at validate_raw_wave")

    [second] = house.announce()
    assert second.path == house.folder / house.archive.name
    [(note, text)] = house.notes().items()
    assert sha(v1) in text, "the note does not say which file it describes"
    assert file_sha(note.with_name(note.name.removesuffix(inbox.REJECTED_SUFFIX))) == sha(v1)
    assert house.run(second).finish() == "published"
    assert file_sha(house.archive) == sha(v2) == house.current_sha()
    assert house.notes() == {note: text}, "the rejected v1 keeps its note"


def test_a_file_name_written_decomposed_is_the_wave_specs_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec names kyselyä_2019.csv (ä one character); a Mac writes the dropped name decomposed (a + combining
    diaeresis): the same name, accepted and archived under the spec's spelling."""
    house = Inbox("inbox_names", monkeypatch, file_name=unicodedata.normalize("NFC", "kyselyä_2019.csv"))
    dropped = unicodedata.normalize("NFD", house.archive.name)
    assert dropped != house.archive.name
    data = variant(4)
    house.drop(data, name=dropped)
    [delivery] = house.announce()

    end = house.run(delivery).finish()

    assert end == "published", end
    assert file_sha(house.archive) == sha(data) == house.current_sha()
    assert [p.name for p in house.archive.parent.iterdir()] == [house.archive.name]
    with duckdb.connect(str(house.paths.warehouse), read_only=True) as con:
        [(file_name,)] = con.execute("select file_name from raw.load_registry").fetchall()
    assert file_name == house.archive.name, "the load registry names the file as the spec does"
    assert house.run().finish().startswith("skipped"), "the calendar's run finds the wave unchanged"


@pytest.mark.parametrize("kind", ["file", "symbolic_link"])
def test_a_name_that_is_not_utf8_is_rejected_with_a_note_saying_to_rename_it(house: Inbox, kind: str) -> None:
    """A file (or a link) dropped under a name written in another encoding (ä as the Latin-1 byte e4): its run
    fails at once with a reason that can be recorded, mailed and written, the note beside it says to rename it and
    shows the byte as \\xe4, and it is not announced again (an hour later neither)."""
    raw = os.fsencode(house.folder) + b"/city_survey_2019_export\xe4.csv"
    entry = Path(os.fsdecode(raw))
    if kind == "file":
        entry.write_bytes(variant(1))
    else:
        entry.symlink_to(house.archive)
    [delivery] = house.announce()

    end = house.run(delivery).finish()

    assert end.startswith("failed at plan_wave"), end
    assert "not UTF-8" in end, end
    [(note, text)] = house.notes().items()
    assert os.fsencode(note) == raw + inbox.REJECTED_SUFFIX.encode()
    assert "city_survey_2019_export\\xe4.csv" in text and "rename it" in text, text
    assert inbox.has_verdict(inbox.look(WAVE, entry)), "the note does not describe it"
    [(_wave, mail)] = house.mails
    assert "not UTF-8" in mail.body and "\\xe4" in mail.body, mail.body
    assert house.announce() == []
    house.clock += REANNOUNCE_SECONDS
    assert house.announce() == [], "announced again"
    assert os.path.lexists(entry) and house.current_sha() is None


def test_a_copy_dropped_over_the_file_just_as_its_run_takes_it_is_run_on_its_own(
    house: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1 is announced; the sender renames a corrected v2 onto the name in the instant between the run's last look
    and its move. The run ends skipped, v2 goes back under its name unread and without a note, and it is announced
    and published by its own run."""
    v1, v2 = variant(1), variant(2)
    house.drop(v1)
    [first] = house.announce()
    real_rename = os.rename

    def sender_first(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(src) == first.path and inbox.TAKEN_DIR in Path(dst).parts:
            monkeypatch.setattr(os, "rename", real_rename)
            house.drop(v2)
        real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", sender_first)

    end = house.run(first).finish()

    assert end.startswith("skipped") and "replaced as it was being taken" in end, end
    assert file_sha(first.path) == sha(v2)
    assert house.notes() == {}, "the newer copy got a note"
    [second] = house.announce()
    assert house.run(second).finish() == "published"
    assert file_sha(house.archive) == sha(v2) == house.current_sha()


# ------------------------------------------------------------------------------------------ the state machine


FATES = (
    "published",
    "published",
    "gate_fails",
    "build_fails",
    "publish_fails",
    "archive_fails",
    "killed_before_commit",
    "killed_after_commit",
    *(f"killed_after_{step}" for step in STEPS),
)


# ------------------------------------------------------------------------------------------ the scenario matrix

# every way a delivery's run can end, each with what the sender does while it goes: nothing, a new copy dropped (by
# rename, or written in place over the name), the published file dropped again
FATE_SENDER = [
    ("published", None),
    ("published", "new"),
    ("published", "new_in_place"),
    ("gate_fails", None),
    ("gate_fails", "new"),
    ("build_fails", "new_in_place"),
    ("publish_fails", "new"),
    ("archive_fails", "published_again"),
    ("killed_before_commit", "new"),
    ("killed_before_commit", None),
    ("killed_after_commit", "new_in_place"),
    ("killed_after_plan_wave", "new"),
    ("killed_after_load_raw_wave", None),
    ("killed_after_validate_raw_wave", "new_in_place"),
    ("killed_after_accept_raw_wave", "published_again"),
    ("killed_after_begin_build", "new"),
    ("killed_after_dbt_build", None),
]


@pytest.mark.parametrize(("fate", "sender"), FATE_SENDER, ids=[f"{f}-{s or 'nothing'}" for f, s in FATE_SENDER])
def test_every_way_a_run_ends_with_a_copy_dropped_meanwhile(
    monkeypatch: pytest.MonkeyPatch, fate: str, sender: str | None
) -> None:
    """From a published wave (v0): v1 dropped and run to `fate`, the sender doing `sender` while it goes; then
    whatever the watcher announces is run, and the calendar's run, until nothing is left. v1 ends loaded and
    archived (current, or superseded by a later copy) or rejected with a note describing it; a copy dropped meanwhile
    gets its own run; the archive is the current load's file; nothing is lost."""
    machine = InboxLifecycle()
    machine.patch = monkeypatch
    machine.a_published_wave()
    house = machine.house
    v0, v1 = variant(0), variant(1)
    house.drop(v1)
    machine.drops[sha(v1)], machine.fresh = v1, 1  # a new copy is v2
    machine.announce()
    during = {"new": "new", "new_in_place": "new_in_place", "published_again": "published"}
    how = {"new": ("new", False), "new_in_place": ("new", True), "published_again": ("published", False)}
    killed = fate.startswith("killed_after_") and fate != "killed_after_commit"
    if killed or sender is None:
        machine.run("new", fate, None, "new")
        if sender is not None:
            machine.drop(*how[sender])  # after the run was killed, before anything resolved it
    else:  # v1 taken and loaded, not yet gated
        machine.run("new", fate, STEPS.index("validate_raw_wave"), during[sender])

    machine._drain()

    stopped = killed or fate == "killed_before_commit"
    v1_published = fate in ("published", "killed_after_commit") or (stopped and sender is None)
    expected = {"new": machine.fresh, "new_in_place": machine.fresh, "published_again": 0}.get(sender or "")
    final = sha(variant(expected)) if expected is not None else sha(v1) if v1_published else sha(v0)
    assert house.current_sha() == final and file_sha(house.archive) == final, "the wave did not end as expected"
    v1_at = [p.relative_to(house.paths.var) for p in house.kept().get(sha(v1), [])]
    if v1_published:
        assert v1_at and all(p.parts[0] == "archive" for p in v1_at), f"v1 is not archived: {v1_at}"
    else:
        [v1_path] = v1_at
        assert v1_path.parts[0] == "inbox", v1_path
        assert inbox.has_verdict(inbox.look(WAVE, house.paths.var / v1_path)), "v1 has no note describing it"


def _event(text: str) -> None:
    """Counted in Hypothesis' statistics (--hypothesis-show-statistics); nothing outside the state machine."""
    with contextlib.suppress(InvalidArgument):
        event(text)


class InboxLifecycle(RuleBasedStateMachine):
    """The sender drops files (new ones, the published one again, a rejected one again, by rename or by copying
    over the name, or a link, a FIFO, a folder), also while a run goes; the watcher announces; runs go one at a time
    (the next announced delivery's, else the calendar's) and publish, fail (the raw gate, the build, publishing,
    archiving), or are killed after any task, or inside publish_marts before or after the publication commits."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = pytest.MonkeyPatch()
        self.house: Inbox
        self.queue: list[Delivery] = []
        self.drops: dict[str, bytes] = {}  # every file content dropped, by sha256
        self.replaced: set[str] = set()  # contents the sender overwrote before a run took them
        self.fresh = 0
        self.archive_may_lag = False  # a run was killed between archiving and publishing: the next run's plan fixes it

    @initialize()
    def a_published_wave(self) -> None:
        """The wave's first file, published: what follows are corrections, re-drops and mistakes."""
        self.house = published_inbox("inbox_machine", self.patch)
        self.drops[sha(variant(0))] = variant(0)

    def teardown(self) -> None:
        try:
            if hasattr(self, "house"):
                self._drain()
        finally:
            self.patch.undo()

    # ---- the sender

    @property
    def entry(self) -> Path:
        return self.house.folder / self.house.archive.name

    def _clear_what_is_not_a_file(self) -> None:
        """What a note about a link, a FIFO or a folder says to do: remove it (and the note)."""
        now = inbox.look(WAVE, self.entry)
        if now is not None and now.kind != "file":
            shutil.rmtree(self.entry) if now.kind == "folder" else self.entry.unlink()
            inbox.rejection_note(self.entry).unlink(missing_ok=True)

    def drop(self, content: str, in_place: bool) -> None:
        data = None
        if content == "published" and self.house.current_sha():
            data = self.drops[self.house.current_sha()]
        elif content == "rejected":
            rejected = [p.with_name(p.name.removesuffix(inbox.REJECTED_SUFFIX)) for p in self.house.notes()]
            rejected = [p for p in rejected if file_sha(p)]
            if rejected:
                data = rejected[0].read_bytes()
        if data is None:
            self.fresh += 1
            data = variant(self.fresh)
        self._clear_what_is_not_a_file()
        there = file_sha(self.entry)
        if there is not None and there != sha(data):
            self.replaced.add(there)  # the sender's own choice: the earlier copy was never taken
        self.drops[sha(data)] = data
        self.house.drop(data, in_place=in_place)
        _event(f"dropped {content}" + (" in place" if in_place else ""))

    @rule(content=st.sampled_from(["new", "new", "published", "rejected"]), in_place=st.booleans())
    def drop_and_announce(self, content: str, in_place: bool) -> None:
        self.drop(content, in_place)
        self.announce()

    @rule(kind=st.sampled_from(["link_to_the_archive", "fifo", "folder"]))
    def drop_what_is_not_a_file(self, kind: str) -> None:
        if os.path.lexists(self.entry):
            return
        if kind == "link_to_the_archive":
            self.entry.symlink_to(self.house.archive)
        elif kind == "fifo":
            os.mkfifo(self.entry)
        else:
            self.entry.mkdir()
        self.announce()

    # ---- the watcher and the runs

    def announce(self) -> None:
        self.queue += self.house.announce()

    @rule()
    def calendar_run(self) -> None:
        """The calendar's run (or one triggered by hand): it resolves what killed runs left."""
        self.archive_may_lag = False
        _event(f"a calendar run: {self.house.run().finish().split(':')[0]}")
        self.announce()

    @rule(
        first=st.sampled_from(["new", "new", "published", "rejected"]),
        fate=st.sampled_from(FATES),
        drop_before=st.sampled_from([None, None, *range(len(STEPS) + 1)]),
        during=st.sampled_from(["new", "new_in_place", "published", "rejected"]),
    )
    def run(self, first: str, fate: str, drop_before: int | None, during: str) -> None:
        """The next announced delivery's run (when none is announced, the sender drops `first` and it is announced)
        to its fate; the sender drops `during` before the run's task number `drop_before` (len(STEPS): before
        publish_marts)."""
        if not self.queue:
            self.drop(first, in_place=False)
            self.announce()
        if not self.queue:  # (a link, a FIFO or a folder with its note sits at the name)
            self.calendar_run()
            return
        run = self.house.run(self.queue.pop(0))
        who = "a delivery's run"
        content, in_place = during.removesuffix("_in_place"), during.endswith("_in_place")
        self.archive_may_lag = False  # its plan resolves what a killed run left
        for i, step in enumerate(STEPS):
            if drop_before == i:
                self.drop(content, in_place)
            end = run.step(gate_ok=fate != "gate_fails", build_ok=fate != "build_fails")
            if end is not None:
                _event(f"{who}: {end.split(':')[0]}")
                self.announce()
                return
            if fate == f"killed_after_{step}":
                _event(f"{who}: killed after {step}")
                self.announce()
                return
        if drop_before == len(STEPS):
            self.drop(content, in_place)
        _event(f"{who}: publish_marts {fate}: {self._publish(run, fate).split(':')[0]}")
        self.announce()

    def _publish(self, run: Run, fate: str) -> str:
        import survey_warehouse.publishing.publish as publishing

        real = publishing.publish

        def killed_after_commit(*args: Any, **kwargs: Any) -> Any:
            real(*args, **kwargs)
            raise _Killed

        with pytest.MonkeyPatch.context() as patch:
            if fate == "publish_fails":
                patch.setattr(publishing, "publish", lambda *a, **k: (_ for _ in ()).throw(OSError("swap failed")))
            elif fate == "archive_fails":
                _fail_writes_under(patch, self.house.archive.parent)
            elif fate == "killed_before_commit":
                patch.setattr(publishing, "publish", lambda *a, **k: (_ for _ in ()).throw(_Killed()))
            elif fate == "killed_after_commit":
                patch.setattr(publishing, "publish", killed_after_commit)
            try:
                return run.finish()
            except _Killed:
                self.archive_may_lag = fate == "killed_before_commit"
                return "killed"

    # ---- the invariants

    @invariant()
    def the_archive_is_the_current_loads_file(self) -> None:
        if not hasattr(self, "house"):
            return
        if os.path.lexists(self.house.archive):
            assert stat.S_ISREG(os.lstat(self.house.archive).st_mode), "the archive is not a regular file"
        if not self.archive_may_lag:
            assert file_sha(self.house.archive) == self.house.current_sha()

    @invariant()
    def nothing_dropped_is_lost(self) -> None:
        if not hasattr(self, "house"):
            return
        kept = self.house.kept()
        lost = [s for s in self.drops if s not in kept and s not in self.replaced]
        assert not lost, f"dropped files found nowhere: {lost}"

    @invariant()
    def every_file_in_the_inbox_waits_for_a_run_or_has_its_note(self) -> None:
        if not hasattr(self, "house"):
            return
        waiting = {d.path for d in scan(self.house.paths.inbox_dir)}
        for folder in (self.house.folder, self.house.folder / inbox.REJECTED_DIR):
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                entry = inbox.look(WAVE, path)
                if entry is None or not inbox.is_delivery_name(path.name) or path.name == inbox.REJECTED_DIR:
                    continue
                if folder.name == inbox.REJECTED_DIR:
                    assert inbox.has_verdict(entry), f"{path}: kept as rejected without a note describing it"
                else:
                    assert path in waiting or inbox.has_verdict(entry), f"{path}: neither waiting nor rejected"

    # ---- the end: every run finished, every announcement run

    def _drain(self) -> None:
        for _ in range(20):
            self.queue += self.house.announce()
            if not self.queue:  # the calendar's run resolves what killed runs left; an hour on, all is announced
                self.house.run().finish()
                self.archive_may_lag = False
                self.house.clock += REANNOUNCE_SECONDS
                self.queue += self.house.announce()
                if not self.queue:
                    break
            end = self.house.run(self.queue.pop(0)).finish()
            assert not end.startswith("failed at publish_marts"), end
        self.the_archive_is_the_current_loads_file()
        self.nothing_dropped_is_lost()
        assert not list(self.house.folder.glob(f"{inbox.TAKEN_DIR}/*")), "a run's taken file was left behind"
        for path in self.house.folder.iterdir():
            entry = inbox.look(WAVE, path)
            if entry is not None and inbox.is_delivery_name(path.name) and path.name != inbox.REJECTED_DIR:
                assert inbox.has_verdict(entry), f"{path} was neither loaded and archived nor rejected with a note"


InboxLifecycle.TestCase.settings = settings(
    # a deeper search: SURVEY_TEST_INBOX_EXAMPLES=200 (about 9 minutes)
    max_examples=int(os.environ.get("SURVEY_TEST_INBOX_EXAMPLES", "10")),
    stateful_step_count=8,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_inbox_lifecycle = InboxLifecycle.TestCase
