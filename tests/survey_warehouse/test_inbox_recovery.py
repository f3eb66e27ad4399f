"""What runs leave in the inbox's `.taken/`, and what the next run does with it.

A worker can be killed at any point: between any two file operations of taking a delivery, archiving it, undoing
the archiving, finishing or giving the file back, and of the next run's recovery too. Each is simulated by making
the k-th file operation (link, unlink, rename, replace, fsync, mkdir, rmdir, copy) raise instead of happening, for
every k; the next run's recovery must then leave every file in exactly one sensible place.

The inbox is writable by those who deliver: what is found in `.taken/` is acted on only when a run of this
warehouse made it (a signed journal naming places in this year's inbox folder and the wave's archive); anything
else (a link, a forged journal, a file no run put there) is reported and left as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import make_paths

from survey_warehouse.operations import inbox
from survey_warehouse.operations.inbox import Delivery

WAVE = 2019
NAME = "city_survey_2019_export.csv"
DELIVERED, PREVIOUS, NEWER = b"delivered,v2\n1,2\n", b"published,v1\n1,1\n", b"newer,v3\n1,3\n"
MESSAGE = "the run failed at validate_raw_wave: 1 of 19 expectations failed"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_RENAME = os.rename  # (the sender's, never killed)


class _Killed(BaseException):
    """The worker was killed: nothing after this point ran (no except clause, no callback)."""


_OPERATIONS = [(os, "link"), (os, "unlink"), (os, "rename"), (os, "replace"), (os, "mkdir"), (os, "rmdir")]


@contextmanager
def killed_at(k: int | None) -> Iterator[list[int]]:
    """The k-th file operation (from 0) is where the worker is killed: it raises _Killed instead of happening (None:
    never). Yields the count of operations done. fsync is counted but does nothing (without a power cut it changes
    nothing anyone can see)."""
    done = [0]

    def counted(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if done[0] == k:
                raise _Killed(f"killed at file operation {k}")
            done[0] += 1
            return real(*args, **kwargs)

        return call

    with pytest.MonkeyPatch.context() as patch:
        for module, name in _OPERATIONS:
            patch.setattr(module, name, counted(getattr(module, name)))
        patch.setattr(os, "fsync", counted(lambda _fd: None))
        patch.setattr(shutil, "copy2", counted(shutil.copy2))
        yield done


@pytest.fixture(autouse=True)
def _no_flushing_to_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync changes nothing a test can see (only a power cut would): skipped, so thousands of runs take seconds."""
    monkeypatch.setattr(os, "fsync", lambda _fd: None)


class Scene:
    """An inbox with one delivery for 2019 and the wave's archive (the wave spec's `file:`), in a folder of its own."""

    def __init__(self, base: Path, before: bytes | None) -> None:
        shutil.rmtree(base, ignore_errors=True)
        self.base = base
        self.inbox = base / "inbox"
        self.year = self.inbox / str(WAVE)
        self.year.mkdir(parents=True)
        self.target = base / "archive" / str(WAVE) / NAME
        self.target.parent.mkdir(parents=True)
        if before is not None:
            self.target.write_bytes(before)
        self.entry = self.year / NAME
        self.entry.write_bytes(DELIVERED)
        self.delivery = inbox.look(WAVE, self.entry)
        assert self.delivery is not None
        self.committed = False  # whether the run's publication committed
        self.newer_dropped = False

    def wave_file(self, wave_year: int) -> Path | None:
        return self.target if wave_year == WAVE else None

    def drop_newer(self) -> None:
        """A corrected copy dropped under the name while the run goes (written aside, renamed onto the name)."""
        part = self.year / (NAME + inbox.PART_SUFFIX)
        part.write_bytes(NEWER)
        _RENAME(part, self.entry)
        self.newer_dropped = True

    def recover(self) -> list[str]:
        return inbox.recover_stopped_runs(self.inbox, "scheduled__next", lambda _j: self.committed, self.wave_file)

    def fingerprint(self) -> frozenset[tuple[Any, ...]]:
        """What the scene holds: every entry's place, kind, content and count of names, and each journal's state
        (the times in names and journals apart)."""
        found = set()
        for path in self.base.rglob("*"):
            st = os.lstat(path)
            place = re.sub(r"\d{8}T\d{6}Z", "<time>", str(path.relative_to(self.base)))
            content = path.read_bytes() if path.is_file() and path.name != inbox.JOURNAL else b""
            state = json.loads(path.read_text())["state"] if path.name == inbox.JOURNAL else None
            found.add((place, st.st_mode, st.st_nlink, sha(content), state))
        return frozenset(found)

    def files(self) -> dict[str, list[Path]]:
        """Every name of a regular file under the scene (notes apart), by content."""
        found: dict[str, list[Path]] = {}
        for folder, _dirs, names in os.walk(self.base):
            for name in names:
                path = Path(folder) / name
                if not name.endswith(inbox.REJECTED_SUFFIX) and path.is_file() and not path.is_symlink():
                    found.setdefault(sha(path.read_bytes()), []).append(path)
        return found


# the run's steps, as the pipeline calls them; every file operation in them may be the one where it is killed
def _published(scene: Scene) -> None:
    inbox.take(scene.delivery, "run_1", NAME)
    inbox.archive(scene.delivery, "run_1", scene.target, sha(DELIVERED), "build_1")
    scene.committed = True  # the marts were switched
    inbox.finish(scene.delivery, "run_1")


def _publish_failed(scene: Scene) -> None:
    inbox.take(scene.delivery, "run_1", NAME)
    inbox.archive(scene.delivery, "run_1", scene.target, sha(DELIVERED), "build_1")
    inbox.give_back(scene.delivery, "run_1", MESSAGE, scene.wave_file)


def _failed(scene: Scene) -> None:
    inbox.take(scene.delivery, "run_1", NAME)
    inbox.give_back(scene.delivery, "run_1", MESSAGE, scene.wave_file)


def _failed_with_a_newer_copy(scene: Scene) -> None:
    inbox.take(scene.delivery, "run_1", NAME)
    scene.drop_newer()
    inbox.give_back(scene.delivery, "run_1", MESSAGE, scene.wave_file)


RUNS: dict[str, Callable[[Scene], None]] = {
    "published": _published,
    "publish_failed": _publish_failed,
    "failed": _failed,
    "failed_with_a_newer_copy": _failed_with_a_newer_copy,
}
BEFORE = {"no_archive_yet": None, "another_file_archived": PREVIOUS, "the_same_file_archived": DELIVERED}


def _operations(scene_at: Callable[[], Scene], run: Callable[[Scene], None]) -> int:
    """How many file operations the run does when it is not killed."""
    scene = scene_at()
    with killed_at(None) as done:
        run(scene)
    return done[0]


def assert_every_file_in_one_sensible_place(scene: Scene, before: bytes | None, where: str) -> None:
    taken = scene.year / inbox.TAKEN_DIR
    assert not taken.exists(), f"{where}: left in .taken: {sorted(p.name for p in taken.rglob('*'))}"
    assert scene.recover() == [], f"{where}: a further run found something to do"
    files = scene.files()
    archived = scene.target.read_bytes() if scene.target.exists() else None
    superseded = scene.target.parent / inbox.SUPERSEDED_DIR
    delivered_at = [p for p in files.get(sha(DELIVERED), []) if p != scene.target]
    if scene.committed:
        assert archived == DELIVERED, f"{where}: published, but the archive is not the delivery"
        assert delivered_at == [], f"{where}: the delivery is archived and also at {delivered_at}"
        if before is not None and before != DELIVERED:
            assert [p.parent for p in files[sha(before)]] == [superseded], f"{where}: {files[sha(before)]}"
        return
    assert archived == before, f"{where}: not published, but the archive changed"
    assert not superseded.exists(), f"{where}: not published, but something is in superseded/"
    if before is not None and before != DELIVERED:
        assert files[sha(before)] == [scene.target], f"{where}: the previous file has other names"
    assert len(delivered_at) == 1, f"{where}: the delivery is at {delivered_at or 'no place'}"
    [path] = delivered_at
    entry = inbox.look(WAVE, path)
    assert entry is not None
    note = inbox.rejection_note(path)
    if scene.newer_dropped:
        assert files[sha(NEWER)] == [scene.entry], f"{where}: the newer copy is at {files[sha(NEWER)]}"
        newer = inbox.look(WAVE, scene.entry)
        assert newer is not None and not inbox.has_verdict(newer), f"{where}: the newer copy has a note"
        assert path.parent == scene.year / inbox.REJECTED_DIR, f"{where}: the delivery is at {path}"
        assert inbox.has_verdict(entry), f"{where}: kept in rejected/ without a note describing it"
        text = note.read_text(encoding="utf-8")
        assert f"drop it again as {NAME} " in text, f"{where}: {text}"
        assert f"A newer copy of {NAME} was dropped" in text, f"{where}: {text}"
    else:
        assert path == scene.entry, f"{where}: the delivery is at {path}, not back under its name"
        waiting = [d.path for d in inbox.scan(scene.inbox)]
        assert path in waiting or inbox.has_verdict(entry), f"{where}: neither announced again nor rejected"
        if note.exists():
            assert "A newer copy" not in note.read_text(encoding="utf-8"), f"{where}: the note says a newer copy"


@pytest.mark.parametrize("before", list(BEFORE), ids=list(BEFORE))
@pytest.mark.parametrize("run", list(RUNS), ids=list(RUNS))
def test_a_run_killed_at_any_file_operation_leaves_every_file_in_one_place_after_the_next_run(
    run: str, before: str
) -> None:
    """For every k: the run (take, archive, publish or fail, finish or give back) is killed at its k-th file
    operation, then the next run's recovery is killed at its j-th, for every j, then a run recovers in full. The
    delivery ends archived (published) or in exactly one place: back under its name, to be announced again or with
    its note, or in rejected/ with its note when a newer copy has the name; the archive is as it was unless the
    publication committed; nothing is stuck in .taken, lost or duplicated."""
    previous = BEFORE[before]
    base = make_paths(f"inbox_kills_{run}_{before}").var

    def scene_at() -> Scene:
        return Scene(base / "scene", previous)

    def killed_run(k: int) -> Scene:
        scene = scene_at()
        with killed_at(k), pytest.raises(_Killed) if k < steps else _nothing():
            RUNS[run](scene)
        return scene

    steps = _operations(scene_at, RUNS[run])
    assert steps > 5, steps
    seen = set()
    for k in range(steps + 1):
        scene = killed_run(k)
        left = scene.fingerprint()
        with killed_at(None) as recovery_steps:
            scene.recover()
        assert_every_file_in_one_sensible_place(scene, previous, f"killed at operation {k}")
        if left in seen:  # (killed at a flush, it left what the kill at the next step leaves)
            continue
        seen.add(left)
        for j in range(recovery_steps[0]):  # the same, with the recovery killed too
            scene = killed_run(k)
            with killed_at(j), pytest.raises(_Killed):
                scene.recover()
            scene.recover()
            assert_every_file_in_one_sensible_place(scene, previous, f"killed at {k}, its recovery at {j}")


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_an_archive_killed_between_its_two_steps_is_undone_by_the_next_run(tmp_path: Path) -> None:
    """Archiving keeps the file the archive held under superseded/ by a second name, then removes the first; a
    worker killed between the two leaves two names of one file. The next run puts the archive back as it was and
    the delivery back into the inbox (it is never stuck in .taken)."""
    scene = Scene(tmp_path, PREVIOUS)
    inbox.take(scene.delivery, "run_1", NAME)
    real_unlink = os.unlink

    def killed_removing_the_archive(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path) == scene.target:
            raise _Killed
        real_unlink(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "unlink", killed_removing_the_archive)
        with pytest.raises(_Killed):
            inbox.archive(scene.delivery, "run_1", scene.target, sha(DELIVERED), "build_1")
    [kept] = (scene.target.parent / inbox.SUPERSEDED_DIR).iterdir()
    assert os.path.samefile(kept, scene.target), "not killed between the two steps"

    said = scene.recover()

    assert said and "back in the inbox" in said[0], said
    assert_every_file_in_one_sensible_place(scene, PREVIOUS, "killed between link and unlink")


def test_a_give_back_killed_between_its_two_steps_is_not_taken_for_a_newer_copy(tmp_path: Path) -> None:
    """Giving the file back links it under its name, then removes the run's name; killed between the two, the file
    has both names. The next run leaves it under its name: not in rejected/ with a note about a newer copy that was
    never dropped."""
    scene = Scene(tmp_path, None)
    taken = inbox.take(scene.delivery, "run_1", NAME)
    os.link(taken, scene.entry)  # (the first step of the move back, then the worker was killed)

    scene.recover()

    assert not (scene.year / inbox.REJECTED_DIR).exists()
    assert_every_file_in_one_sensible_place(scene, None, "killed between link and unlink")


@pytest.mark.parametrize("how", ["give_back", "recovery"])
def test_a_note_in_rejected_says_to_drop_the_file_again_under_its_own_name(tmp_path: Path, how: str) -> None:
    """A file kept aside in rejected/ under a timestamped name (a newer copy took its name): its note says to drop
    it again under the delivery's name, the one the wave spec gives, never the timestamped one."""
    scene = Scene(tmp_path, None)
    inbox.take(scene.delivery, "run_1", NAME)
    scene.drop_newer()
    if how == "give_back":
        inbox.give_back(scene.delivery, "run_1", MESSAGE, scene.wave_file)
    else:
        scene.recover()

    [note] = (scene.year / inbox.REJECTED_DIR).glob(f"*{inbox.REJECTED_SUFFIX}")
    text = note.read_text(encoding="utf-8")
    assert note.name != NAME + inbox.REJECTED_SUFFIX
    assert f"drop it again as {NAME} (a new copy" in text, text
    assert "drop it again as 2" not in text, text


# ---- what no run of this warehouse made is never followed, moved or deleted -------------------------------------


def _elsewhere(base: Path) -> dict[str, bytes]:
    """A folder outside the inbox that the warehouse's user can write, with files of value."""
    (base / "elsewhere" / "reports").mkdir(parents=True)
    (base / "elsewhere" / "reports" / "keep.txt").write_bytes(b"important\n")
    (base / "elsewhere" / "run.json").write_text("{}")
    return _contents(base / "elsewhere")


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", [".taken", "run_folder", "year_run_folder_file"])
def test_recovery_never_follows_a_link_or_acts_on_what_is_not_a_folder_in_taken(tmp_path: Path, where: str) -> None:
    """`.taken` itself, or a run's folder in it, is a link to a folder elsewhere (or a run's folder is a file):
    the next run reports it and leaves it, and the folder elsewhere keeps everything."""
    scene = Scene(tmp_path / "scene", PREVIOUS)
    kept = _elsewhere(tmp_path)
    taken = scene.year / inbox.TAKEN_DIR
    if where == ".taken":
        taken.symlink_to(tmp_path / "elsewhere")
    elif where == "run_folder":
        taken.mkdir()
        (taken / "run_x").symlink_to(tmp_path / "elsewhere")
    else:
        taken.mkdir()
        (taken / "run_x").write_bytes(b"not a folder\n")

    said = scene.recover()

    assert _contents(tmp_path / "elsewhere") == kept
    assert os.path.lexists(taken / "run_x") if where != ".taken" else taken.is_symlink()
    assert len(said) == 1 and "not a folder a run made" in said[0], said


def test_a_run_never_takes_a_delivery_into_a_linked_taken_folder(tmp_path: Path) -> None:
    """A `.taken` link planted beside a delivery: the run refuses it (its reason says to remove the link) and moves
    nothing out of the inbox."""
    scene = Scene(tmp_path / "scene", None)
    _elsewhere(tmp_path)
    (scene.year / inbox.TAKEN_DIR).symlink_to(tmp_path / "elsewhere")

    with pytest.raises(inbox.Untrusted, match=r"is a symbolic link .* remove it"):
        inbox.take(scene.delivery, "run_1", NAME)

    assert scene.entry.read_bytes() == DELIVERED
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["reports", "run.json"]


def _forge(scene: Scene, run_id: str, journal: dict[str, Any], signed: bool, taken: bytes = b"x\n") -> Path:
    folder = scene.year / inbox.TAKEN_DIR / inbox.run_folder(scene.delivery, run_id).name
    folder.mkdir(parents=True)
    (folder / journal["name"]).write_bytes(taken)
    journal = {"run_id": run_id, "wave_year": WAVE, "state": "taken", "ino": 1, **journal}
    if signed:  # (as if the key were known: the places it names are checked all the same)
        inbox._write_journal(folder, journal)
    else:
        (folder / inbox.JOURNAL).write_text(json.dumps(journal))
    return folder


def _forgeries(scene: Scene, outside: Path) -> list[tuple[str, dict[str, Any], bytes]]:
    published = sha(PREVIOUS)
    elsewhere = outside / NAME
    return [
        ("a delivery path outside the inbox", {"path": str(outside / "evil.py"), "name": "evil.py"}, b"x\n"),
        ("a delivery name with a folder in it", {"path": str(scene.entry), "name": "../../evil.py"}, b"x\n"),
        (
            "an archive that is not the wave spec's file",
            {"path": str(scene.entry), "name": NAME, "state": "archived", "target": str(elsewhere)}
            | {"previous": None, "sha256": sha(b"other\n")},
            b"other\n",
        ),
        (
            "the wave's archive, to be removed as the run's copy",
            {"path": str(scene.entry), "name": NAME, "state": "archived", "target": str(scene.target)}
            | {"previous": None, "sha256": published},
            b"not what the archive holds\n",
        ),
        (
            "a previous file outside superseded/",
            {"path": str(scene.entry), "name": NAME, "state": "archived", "target": str(scene.target)}
            | {"previous": str(elsewhere), "sha256": sha(b"other\n")},
            b"other\n",
        ),
    ]


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_recovery_acts_only_on_a_journal_a_run_wrote_naming_this_inbox_and_the_wave_spec_s_file(
    tmp_path: Path, signed: bool
) -> None:
    """Journals planted in `.taken/`, naming a delivery outside the inbox (dags/), a name with a folder in it, an
    archive that is not the wave spec's `file:`, the wave's archive to be removed as if it were the run's copy, a
    previous file outside superseded/: unsigned, each is refused for its signature; signed (as if the key had
    leaked), each for what it names, or (the archive) for the taken file not holding what would be removed.
    Nothing moves, nothing is deleted, the archive keeps its file."""
    outside = tmp_path / "dags"
    outside.mkdir()
    (outside / NAME).write_bytes(b"other\n")
    for i, (what, journal, taken) in enumerate(_forgeries(Scene(tmp_path / "scene", PREVIOUS), outside)):
        scene = Scene(tmp_path / "scene", PREVIOUS)
        folder = _forge(scene, f"run_{i}", journal, signed, taken)
        before = {**_contents(scene.base), **_contents(outside)}

        said = scene.recover()

        if signed and what == "the wave's archive, to be removed as the run's copy":
            # signed and naming only the inbox and the wave's archive: acted on as a run's, but the archive, which
            # the taken file does not hold, is not removed; the taken file is kept aside in rejected/
            assert scene.target.read_bytes() == PREVIOUS, what
            assert scene.entry.read_bytes() == DELIVERED, what
            assert [p.read_bytes() for p in scene.year.glob(f"rejected/*_{NAME}")] == [taken], what
            continue
        assert {**_contents(scene.base), **_contents(outside)} == before, f"{what}: something moved"
        assert folder.is_dir() and sorted(p.name for p in outside.iterdir()) == [NAME], what
        assert len(said) == 1 and "Nothing there was moved or deleted" in said[0], (what, said)
        assert ("not signed" in said[0]) != signed, (what, said)


def test_recovery_never_removes_a_run_folder_holding_what_no_run_put_there(tmp_path: Path) -> None:
    """A run's folder (its journal signed, or none at all) holding a file the journal does not name: reported and
    left with all it holds."""
    scene = Scene(tmp_path / "scene", None)
    inbox.take(scene.delivery, "run_1", NAME)
    folder = inbox.run_folder(scene.delivery, "run_1")
    (folder / "report.pdf").write_bytes(b"someone's\n")
    empty = folder.with_name("run_2-00000000")
    empty.mkdir()
    (empty / "notes.txt").write_bytes(b"someone else's\n")

    said = scene.recover()

    assert (folder / "report.pdf").exists() and (folder / NAME).read_bytes() == DELIVERED
    assert (empty / "notes.txt").exists()
    assert len(said) == 2 and all("holds what no run put there" in line for line in said), said


def test_a_journal_signed_for_another_run_s_folder_is_not_acted_on(tmp_path: Path) -> None:
    """A run's signed journal copied into another folder (to replay what it says) is refused."""
    scene = Scene(tmp_path / "scene", None)
    inbox.take(scene.delivery, "run_1", NAME)
    folder = inbox.run_folder(scene.delivery, "run_1")
    copy = folder.with_name(inbox.run_folder(scene.delivery, "run_2").name)
    shutil.copytree(folder, copy)

    said = inbox.recover_stopped_runs(scene.inbox, "run_1", lambda _j: False, scene.wave_file)

    assert len(said) == 1 and inbox.JOURNAL in said[0] and "Nothing there was moved" in said[0], said
    assert (copy / NAME).exists() and (folder / NAME).exists()


def test_a_delivery_s_payload_is_json_text_and_names_the_very_file(tmp_path: Path) -> None:
    """An announcement is UTF-8 JSON whatever bytes the file's name holds, and brings the run to the same file."""
    folder = tmp_path / "2019"
    folder.mkdir()
    for name in (b"city_survey_2019_export\xe4.csv", "kyselyä_2019.csv".encode()):
        path = Path(os.fsdecode(os.fsencode(folder) + b"/" + name))
        path.write_bytes(b"x\n")
        delivery = inbox.look(WAVE, path)
        assert delivery is not None
        text = json.dumps(delivery.payload(), ensure_ascii=False).encode("utf-8")
        assert Delivery.from_payload(json.loads(text)) == delivery
