"""The inbox: which files count as deliveries, when the trigger announces one, and what a run does with it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import pytest
from conftest import ROOT, make_paths, use_paths, with_waves_dir

from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.operations import inbox
from survey_warehouse.operations.inbox import Delivery, InboxWatch, scan
from survey_warehouse.operations.inbox_trigger import InboxTrigger
from survey_warehouse.orchestration import pipeline

WAVE_2019 = ROOT / "data" / "waves" / "2019" / "city_survey_2019_export.csv"


def _drop(folder: Path, name: str, data: bytes = b"a,b\n1,2\n", mtime: float | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


# ---- which files are deliveries -------------------------------------------------------------------------------


def test_scan_finds_entries_in_year_folders_only_oldest_first(tmp_path: Path) -> None:
    newer = _drop(tmp_path / "2019", "b.csv", mtime=2_000_000)
    older = _drop(tmp_path / "2018", "a.xlsx", mtime=1_000_000)
    _drop(tmp_path / "2019", "b.csv.part")  # still being written
    _drop(tmp_path / "2019", ".hidden.csv")  # an editor's or a copy tool's scratch file
    _drop(tmp_path, "loose.csv")  # not in a wave year's folder
    _drop(tmp_path / "misc", "c.csv")
    _drop(tmp_path / "20190", "d.csv")
    folder = tmp_path / "2019" / "folder"
    folder.mkdir()
    os.utime(folder, (3_000_000, 3_000_000))
    (tmp_path / "2019" / inbox.TAKEN_DIR).mkdir()  # what runs have taken
    (tmp_path / "2019" / inbox.REJECTED_DIR).mkdir()  # rejected files kept aside

    found = scan(tmp_path)

    assert [d.path for d in found] == [older, newer, folder], "a folder is an entry too: to be rejected"
    assert [d.kind for d in found] == ["file", "file", "folder"]
    assert [d.wave_year for d in found] == [2018, 2019, 2019]
    assert found[0].size == older.stat().st_size
    assert found[0].ino == older.stat().st_ino


def test_scan_never_follows_a_link(tmp_path: Path) -> None:
    """A link to a file, a link as a year folder: each is an entry of its own, described by lstat."""
    elsewhere = _drop(tmp_path / "elsewhere", "w.csv", b"x" * 100)
    link = tmp_path / "inbox" / "2019" / "w.csv"
    link.parent.mkdir(parents=True)
    link.symlink_to(elsewhere)
    (tmp_path / "inbox" / "2020").symlink_to(elsewhere.parent, target_is_directory=True)

    found = {d.path: d for d in scan(tmp_path / "inbox")}

    assert set(found) == {link, tmp_path / "inbox" / "2020"}, "nothing behind a link was listed"
    assert found[link].kind == "symbolic link" and found[link].size == len(str(elsewhere))
    assert found[tmp_path / "inbox" / "2020"].kind == "symbolic link"


def test_a_note_is_the_verdict_of_the_very_drop_it_describes(tmp_path: Path) -> None:
    """A note says which drop it describes; another file under the name is announced, even when the note is newer
    (the corrected copy was dropped just before the run wrote the note about the first)."""
    path = _drop(tmp_path / "2019", "x.csv", b"first")
    first = inbox.look(2019, path)
    time.sleep(0.01)
    os.replace(_drop(tmp_path / "2019", "x.csv.part", b"second"), path)  # the corrected copy
    inbox.reject(first, "the run failed at validate_raw_wave: ...", "run_1")  # about the first, written afterwards
    note = inbox.rejection_note(path)
    assert note.stat().st_mtime_ns > path.stat().st_mtime_ns

    assert [d.path for d in scan(tmp_path)] == [path], "the corrected copy is hidden by the note about the first"

    inbox.reject(inbox.look(2019, path), "the run failed again", "run_2")
    assert scan(tmp_path) == [], "a note describing the file is its verdict"
    record = inbox.note_record(note)
    assert record["sha256"] == hashlib.sha256(b"second").hexdigest() and record["size"] == len(b"second")


def test_a_link_in_place_of_a_file_is_a_new_announcement() -> None:
    watch = InboxWatch(settle_seconds=0, reannounce_seconds=1000)
    file = Delivery(2019, Path("/i/2019/x.csv"), 10, 5, ino=1, ctime_ns=5)
    link = Delivery(2019, Path("/i/2019/x.csv"), 10, 5, ino=2, ctime_ns=6, kind="symbolic link")
    watch.observe([file], now=0)
    assert watch.observe([file], now=1) == file
    assert watch.observe([link], now=2) is None
    assert watch.observe([link], now=3) == link, "the same size and time, but another entry: announced"


def test_scan_of_a_missing_inbox_is_empty(tmp_path: Path) -> None:
    assert scan(tmp_path / "absent") == []


def test_a_rejected_file_waits_until_it_is_dropped_again_or_its_note_deleted(tmp_path: Path) -> None:
    path = _drop(tmp_path / "2019", "x.csv", mtime=1_000_000)
    note = inbox.rejection_note(path)
    note.write_text("why")
    assert note.name == "x.csv.rejected.txt"
    assert scan(tmp_path) == [], "a file with its verdict beside it is not announced again"

    time.sleep(0.05)
    os.utime(path)  # dropped again: newer than its note
    assert [d.path for d in scan(tmp_path)] == [path]

    note.write_text("why, again")  # rejected again
    assert scan(tmp_path) == []
    note.unlink()
    assert [d.path for d in scan(tmp_path)] == [path]


# ---- when a delivery is announced -----------------------------------------------------------------------------


def _d(path: str, size: int, mtime: int = 1, year: int = 2019) -> Delivery:
    return Delivery(year, Path(path), size, mtime)


def test_a_file_is_announced_once_it_stopped_changing_for_the_settle_time() -> None:
    watch = InboxWatch(settle_seconds=10, reannounce_seconds=1000)
    assert watch.observe([_d("/i/2019/x.csv", 100, 1)], now=0) is None
    assert watch.observe([_d("/i/2019/x.csv", 200, 2)], now=6) is None, "still growing: a copy in progress"
    assert watch.observe([_d("/i/2019/x.csv", 200, 2)], now=15) is None, "unchanged for 9 s only"
    announced = watch.observe([_d("/i/2019/x.csv", 200, 2)], now=16)
    assert announced == _d("/i/2019/x.csv", 200, 2)


def test_one_delivery_in_flight_and_announced_again_when_nobody_took_it() -> None:
    watch = InboxWatch(settle_seconds=0, reannounce_seconds=100)
    first, second = _d("/i/2018/a.xlsx", 1, 1, 2018), _d("/i/2019/b.csv", 1, 2)
    watch.observe([first, second], now=0)
    assert watch.observe([first, second], now=1) == first
    assert watch.observe([first, second], now=50) is None, "one run at a time: b waits until a has its verdict"
    assert watch.observe([first, second], now=102) == first, "not archived nor rejected after 100 s: again"
    assert watch.observe([second], now=103) == second, "a was archived: b is next"
    assert watch.observe([], now=104) is None


def test_a_replaced_file_settles_again_before_it_is_announced() -> None:
    watch = InboxWatch(settle_seconds=5, reannounce_seconds=1000)
    watch.observe([_d("/i/2019/x.csv", 1, 1)], now=0)
    assert watch.observe([_d("/i/2019/x.csv", 1, 1)], now=5) is not None
    assert watch.observe([_d("/i/2019/x.csv", 9, 9)], now=6) is None
    assert watch.observe([_d("/i/2019/x.csv", 9, 9)], now=11) == _d("/i/2019/x.csv", 9, 9)


def _first_event(trigger: InboxTrigger, timeout: float) -> dict | None:
    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger stopped without an event")

    async def bounded() -> dict | None:
        try:
            return await asyncio.wait_for(first(), timeout)
        except TimeoutError:
            return None

    return asyncio.run(bounded())


def test_trigger_fires_for_a_new_file_with_its_wave_and_path(tmp_path: Path) -> None:
    trigger = InboxTrigger(directory=str(tmp_path), poll_seconds=0.05, settle_seconds=0.3)
    path = _drop(tmp_path / "2019", "city_survey_2019_export.csv", b"x" * 1000)

    started = time.monotonic()
    payload = _first_event(trigger, timeout=10)

    assert payload is not None, "no event for a complete file within 10 s"
    assert time.monotonic() - started >= 0.3, "announced before the file had settled"
    assert payload["wave_year"] == 2019
    assert payload["path"] == str(path)
    assert payload["file_name"] == "city_survey_2019_export.csv"
    assert payload["size"] == 1000
    assert Delivery.from_payload(payload).path == path


def test_trigger_does_not_fire_while_a_file_is_being_written(tmp_path: Path) -> None:
    """A copy in progress (the file grows every 0.1 s for 1.5 s) is announced only once it stops growing."""
    path = _drop(tmp_path / "2019", "big.csv", b"")
    trigger = InboxTrigger(directory=str(tmp_path), poll_seconds=0.05, settle_seconds=0.5)
    writing_until = time.monotonic() + 1.5
    last_write = [0.0]

    async def write_slowly() -> None:
        with open(path, "ab") as f:
            while time.monotonic() < writing_until:
                f.write(b"y" * 100)
                f.flush()
                last_write[0] = time.monotonic()
                await asyncio.sleep(0.1)

    async def scenario() -> tuple[dict, float]:
        writer = asyncio.create_task(write_slowly())
        async for event in trigger.run():
            fired_at = time.monotonic()
            await writer
            return event.payload, fired_at
        raise AssertionError("the trigger stopped without an event")

    payload, fired_at = asyncio.run(asyncio.wait_for(scenario(), 15))
    assert fired_at >= last_write[0] + 0.5, "announced before the file had stopped changing for 0.5 s"
    assert payload["size"] == path.stat().st_size, "announced a partial file"


def test_trigger_ignores_a_part_file_until_it_is_renamed(tmp_path: Path) -> None:
    part = _drop(tmp_path / "2019", "x.csv.part", b"z" * 10)
    trigger = InboxTrigger(directory=str(tmp_path), poll_seconds=0.05, settle_seconds=0.1)
    assert _first_event(trigger, timeout=1.0) is None, "a .part file is still being written"

    done = part.with_name("x.csv")
    part.rename(done)
    payload = _first_event(trigger, timeout=5)
    assert payload is not None
    assert payload["path"] == str(done)


def test_trigger_serializes_to_an_importable_class_and_back() -> None:
    import importlib

    trigger = InboxTrigger(directory="/srv/inbox", poll_seconds=2, settle_seconds=4, reannounce_seconds=60)
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (classpath, kwargs)

    from airflow.triggers.base import BaseEventTrigger

    assert isinstance(trigger, BaseEventTrigger), "AssetWatcher accepts event triggers only"


def test_inbox_asset_watches_the_configured_inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from survey_warehouse.operations.inbox_trigger import inbox_asset

    monkeypatch.setenv("SURVEY_INBOX_DIR", str(tmp_path / "drop"))
    monkeypatch.setenv("SURVEY_INBOX_SETTLE_SECONDS", "3")
    asset = inbox_asset()
    assert asset.name == inbox.INBOX_ASSET_NAME
    [watcher] = asset.watchers
    assert watcher.trigger.directory == str((tmp_path / "drop").resolve())
    assert watcher.trigger.settle_seconds == 3


# ---- the run's delivery ---------------------------------------------------------------------------------------


class _Asset(NamedTuple):
    name: str


def _context(*payloads: dict, asset_name: str = inbox.INBOX_ASSET_NAME, **extra: object) -> dict:
    asset = _Asset(asset_name)
    events = [SimpleNamespace(extra={"from_trigger": True, "payload": p}, timestamp=i) for i, p in enumerate(payloads)]
    return {"triggering_asset_events": {asset: events} if payloads else {}, "params": {}, **extra}


def test_the_run_knows_its_delivery_and_wave_from_the_asset_event() -> None:
    first = _d("/i/2019/x.csv", 5).payload()
    context = _context(first, _d("/i/2018/y.xlsx", 5, year=2018).payload(), logical_date=None)
    assert inbox.delivery_of_run(context) == Delivery.from_payload(first)
    assert pipeline.wave_year_of_run(context) == 2019

    assert inbox.delivery_of_run(_context(first, asset_name="other_asset")) is None
    assert inbox.delivery_of_run({"params": {}}) is None


def test_a_file_announced_again_after_it_changed_is_the_run_s_as_last_announced() -> None:
    """Two announcements of one name merged into one run (the file changed between them): the run's delivery is the
    latest, the one it will find in the inbox."""
    first, changed = _d("/i/2019/x.csv", 5, 1).payload(), _d("/i/2019/x.csv", 9, 2).payload()
    assert inbox.delivery_of_run(_context(first, changed, _d("/i/2018/y.csv", 1, 3, 2018).payload())) == (
        Delivery.from_payload(changed)
    )


def test_a_run_without_a_wave_year_says_how_to_give_one() -> None:
    with pytest.raises(SurveyWarehouseError, match=r'"wave_year": <year>'):
        pipeline.wave_year_of_run(_context(logical_date=None))


def test_archive_puts_exactly_the_taken_file_in_place_and_keeps_the_previous_one(tmp_path: Path) -> None:
    delivered = _drop(tmp_path / "inbox" / "2019", "w.csv", b"new")
    inbox.rejection_note(delivered).write_text("an earlier copy was rejected")
    target = _drop(tmp_path / "archive" / "2019", "w.csv", b"old")
    delivery = inbox.look(2019, delivered)

    taken = inbox.take(delivery, "run_1", "w.csv")
    newer = _drop(tmp_path / "inbox" / "2019", "w.csv", b"newer")  # dropped while the run goes: its own delivery
    with pytest.raises(SurveyWarehouseError, match="changed while its run read it"):
        inbox.archive(delivery, "run_1", target, hashlib.sha256(b"not what was loaded").hexdigest())
    assert target.read_bytes() == b"old"
    assert inbox.archive(delivery, "run_1", target, hashlib.sha256(b"new").hexdigest()) == target
    assert inbox.finish(delivery, "run_1") == []

    assert target.read_bytes() == b"new"
    assert newer.read_bytes() == b"newer", "the newer copy is left for its own run"
    assert not taken.exists() and not (tmp_path / "inbox" / "2019" / inbox.TAKEN_DIR).exists()
    assert not inbox.rejection_note(delivered).exists(), "the note about an earlier copy is gone"
    [kept] = (target.parent / inbox.SUPERSEDED_DIR).iterdir()
    assert kept.read_bytes() == b"old"
    assert kept.name.endswith("_w.csv")


def test_archiving_undone_puts_the_previous_file_back_and_the_delivery_goes_back_rejected(tmp_path: Path) -> None:
    delivered = _drop(tmp_path / "inbox" / "2019", "w.csv", b"new")
    target = _drop(tmp_path / "archive" / "2019", "w.csv", b"old")
    delivery = inbox.look(2019, delivered)
    inbox.take(delivery, "run_1", "w.csv")
    inbox.archive(delivery, "run_1", target, hashlib.sha256(b"new").hexdigest())

    note = inbox.give_back(delivery, "run_1", "the run failed at publish_marts: SwapBlocked: ...", lambda _y: target)

    assert target.read_bytes() == b"old" and not (target.parent / inbox.SUPERSEDED_DIR).exists()
    assert delivered.read_bytes() == b"new" and note == inbox.rejection_note(delivered)
    assert inbox.has_verdict(inbox.look(2019, delivered))
    assert not (tmp_path / "inbox" / "2019" / inbox.TAKEN_DIR).exists()


def test_reject_leaves_the_file_with_the_reason_beside_it(tmp_path: Path) -> None:
    delivered = _drop(tmp_path / "2019", "w.csv", b"bad")
    note = inbox.reject(Delivery(2019, delivered, 3, 0), "w.csv, row 3: the file ends in the middle", "run_1")
    assert delivered.read_bytes() == b"bad"
    assert note == tmp_path / "2019" / "w.csv.rejected.txt"
    text = note.read_text()
    assert text.startswith("w.csv, row 3: the file ends in the middle\n")
    assert "run_1" in text
    assert "drop it again" in text
    assert scan(tmp_path) == []


@pytest.fixture
def waves_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A test folder with the 2019 wave spec, its `file:` pointing at an archive folder of the test's own."""
    paths = make_paths("inbox_unit")
    spec = (ROOT / "config" / "waves" / "2019.yml").read_text(encoding="utf-8")
    archive = paths.var / "archive" / "2019" / "city_survey_2019_export.csv"
    folder = paths.var / "waves"
    folder.mkdir()
    (folder / "2019.yml").write_text(
        spec.replace("file: data/waves/2019/city_survey_2019_export.csv", f"file: {archive}"), encoding="utf-8"
    )
    use_paths(monkeypatch, with_waves_dir(paths, folder))
    return paths.inbox_dir


def test_a_delivery_with_another_name_than_the_spec_says_is_refused(waves_dir: Path) -> None:
    delivered = waves_dir / "2019" / "export (1).csv"
    delivered.parent.mkdir(parents=True)
    shutil.copy(WAVE_2019, delivered)
    with pytest.raises(SurveyWarehouseError) as caught:
        pipeline.plan_run(2019, inbox.look(2019, delivered))
    message = str(caught.value)
    assert message.startswith("export (1).csv: ")
    assert "named 'city_survey_2019_export.csv'" in message
    assert "rename the delivery" in message


def _reworded_2019_as(year: int, change=None) -> bytes:
    """The 2019 file delivered as another year's: its first question reworded, its dates moved to the year; `change`
    may change the rows (lists of cells, the header first)."""
    import csv
    import io

    with open(WAVE_2019, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    rows[0] = [
        h.replace("Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?", "Q1 Kuka johtaa?") for h in rows[0]
    ]
    rows[1:] = [[cell.replace("2019-", f"{year}-") for cell in row] for row in rows[1:]]
    if change is not None:
        change(rows)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def _project_state(*folders: Path) -> dict[str, str]:
    """Every file under the folders, by its digest."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _draft_accepted_and_checked(delivered: Path, year: int) -> tuple:
    """What `wave draft` + deleting every `TODO: ` (taking each proposal, as the draft tells a person to) + `wave
    check` give, in a copy of the project of the test's own."""
    from conftest import TEST_VAR

    from survey_warehouse.drafting.check import check_wave
    from survey_warehouse.drafting.draft import draft_wave
    from survey_warehouse.settings import Paths

    base = TEST_VAR / "inbox_draft_expected"
    shutil.rmtree(base, ignore_errors=True)
    root = base / "project"
    for folder in ("config", "expectations"):
        shutil.copytree(ROOT / folder, root / folder)
    shutil.copytree(ROOT / "dbt_project", root / "dbt_project", ignore=shutil.ignore_patterns("target", "logs"))
    draft = draft_wave(delivered, year, root)
    spec = root / "config" / "waves" / f"{year}.yml"
    spec.write_text(
        "".join(
            line.replace('"TODO: ', '"')
            for line in spec.read_text(encoding="utf-8").splitlines(keepends=True)
            if not line.lstrip().startswith('- "TODO: ')  # the cities surveyed: "confirm this list (delete this line)"
        ),
        encoding="utf-8",
    )
    for seed in (root / "dbt_project" / "seeds").glob("*.csv"):
        seed.write_text(seed.read_text(encoding="utf-8").replace("TODO: ", ""), encoding="utf-8")
    var = base / "var"
    paths = Paths(
        root, var, root / "config" / "waves", var / "w.duckdb", var / "p.duckdb", var / "dd", root / "dbt_project"
    )
    return draft, check_wave(year, paths)


def test_a_delivery_for_a_year_without_a_wave_spec_is_not_loaded_and_its_draft_is_told(
    waves_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wave file dropped for a year that has no spec: nothing is loaded or written into the project; the message
    (the rejection note and the owner's mail) carries what a draft of its spec proposes, the decisions left to a
    person, the headline preview `wave draft` + taking the proposals + `wave check` would give, and the commands that
    go on from there; nothing of the file's respondents is in it. Dropped again, the file's preview is not made
    again."""
    from survey_warehouse.drafting import check
    from survey_warehouse.orchestration import notify

    project = _project_state(ROOT / "config", ROOT / "dbt_project" / "seeds", waves_dir.parent / "waves")
    delivered = _drop(waves_dir / "2021", "kysely.csv", _reworded_2019_as(2021))

    with pytest.raises(SurveyWarehouseError) as caught:
        pipeline.plan_run(2021, inbox.look(2021, delivered))

    message = str(caught.value)
    assert message.startswith("kysely.csv: delivered for wave 2021, but there is no wave spec"), message
    assert "nothing was loaded" in message
    found = re.search(r"(\d+) proposal\(s\) sure, (\d+) decision\(s\) left to a person", message)
    assert found and int(found[1]) > 0, message
    listed = re.findall(r"^  \d+\. \[(\w+)\]", message, re.MULTILINE)
    assert len(listed) == min(int(found[2]), pipeline.DECISIONS_SHOWN) > 0, message
    assert "Q1 Kuka johtaa?" in message, "the reworded question is among the decisions"
    assert "nothing is loaded until the spec is written and confirmed" in message

    draft, expected = _draft_accepted_and_checked(delivered, 2021)
    proposed = [d for d in draft.decisions if d.needs_person and d.proposal not in (None, "", [])]
    assert f"Preview if the {len(proposed)} open proposal(s) are accepted as drafted" in message, message
    assert expected.status == "ok" and expected.headline is not None, expected.text()
    assert f"\n  {expected.headline.describe()}\n" in message, (expected.text(), message)
    assert f"  {expected.quarantined_rows} of {expected.rows} rows would be quarantined" in message
    assert expected.diff is not None and expected.diff.previous is not None
    added, dropped = ", ".join(expected.diff.questions_added) or "none", ", ".join(expected.diff.questions_dropped)
    assert f"questions added: {added}; dropped: {dropped or 'none'}" in message

    assert f"make wave-draft FILE={delivered.relative_to(ROOT)} YEAR=2021" in message
    assert "make wave-check YEAR=2021" in message
    assert "@" not in message, "an e-mail address of the file is in the message"
    mail = notify.failure_mail(2021, ["plan_wave"], f"the run failed at plan_wave: {message}", []).body
    assert expected.headline.describe() in mail and "make wave-check YEAR=2021" in mail, "the mail is cut short"
    assert "more lines in the full report" not in mail and "@" not in mail
    assert not (ROOT / "config" / "waves" / "2021.yml").exists()
    assert _project_state(ROOT / "config", ROOT / "dbt_project" / "seeds", waves_dir.parent / "waves") == project

    def made_again(*args: object) -> None:
        raise AssertionError("the preview of the same file was made again")

    monkeypatch.setattr(check, "check_draft", made_again)
    with pytest.raises(SurveyWarehouseError) as again:
        pipeline.plan_run(2021, inbox.look(2021, delivered))
    assert str(again.value) == message


def test_a_delivery_without_a_wave_spec_whose_preview_fails_still_tells_the_decisions(waves_dir: Path) -> None:
    """A file whose city column reads as no city: the draft maps no column to the city, so no preview can be made;
    the message says why in one line and still lists the draft's decisions and the steps."""

    def no_city(rows: list[list[str]]) -> None:
        column = rows[0].index("Organisaatio")
        for number, row in enumerate(rows[1:]):
            row[column] = f"Paikka {number}"

    delivered = _drop(waves_dir / "2021", "kysely.csv", _reworded_2019_as(2021, no_city))

    with pytest.raises(SurveyWarehouseError) as caught:
        pipeline.plan_run(2021, inbox.look(2021, delivered))

    message = str(caught.value)
    failed = [line for line in message.splitlines() if line.startswith("No preview of the draft")]
    assert len(failed) == 1 and "city" in failed[0], message
    assert "Preview if" not in message
    found = re.search(r"(\d+) decision\(s\) left to a person", message)
    listed = re.findall(r"^  \d+\. \[(\w+)\]", message, re.MULTILINE)
    assert found and len(listed) == min(int(found[1]), pipeline.DECISIONS_SHOWN) > 0, message
    assert "make wave-check YEAR=2021" in message and "@" not in message


def test_a_delivery_taken_by_an_earlier_run_ends_the_run_skipped(waves_dir: Path) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="no longer in the inbox"):
        pipeline.plan_run(2019, Delivery(2019, waves_dir / "2019" / "city_survey_2019_export.csv", 1, 1))


def test_a_kept_preview_is_made_again_when_the_code_or_a_setting_of_the_load_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preview of a draft is kept by what it was made from: the same file with the same project, code and
    settings reuses it; a change of the package's code or of a setting that changes a load or its gate makes it
    again."""
    from survey_warehouse.drafting import check
    from survey_warehouse.settings import LOAD_SETTINGS

    assert (pipeline.PACKAGE / "drafting" / "check.py").is_file(), pipeline.PACKAGE
    paths = make_paths("draft_preview_kept")
    file = _drop(tmp_path / "inbox" / "2021", "kysely.csv")
    made: list[int] = []

    def checked(file: Path, year: int, paths: object) -> check.WaveCheck:
        made.append(year)
        return check.WaveCheck(year, rows=3, quarantined_rows=0, headline=check.Headline(1, 3, 3, 1 / 3, 1 / 3, 1 / 3))

    monkeypatch.setattr(check, "check_draft", checked)
    package = tmp_path / "package"
    (package / "raw").mkdir(parents=True)
    (package / "raw" / "load.py").write_text("LIMIT = 1\n", encoding="utf-8")
    monkeypatch.setattr(pipeline, "PACKAGE", package)
    for setting in LOAD_SETTINGS:
        monkeypatch.delenv(setting, raising=False)

    def preview() -> list[str]:
        return pipeline.draft_preview(file, 2021, paths, 1)

    lines = preview()
    assert preview() == lines and len(made) == 1, "the same file, project, code and settings: the preview is kept"
    for setting in LOAD_SETTINGS:
        monkeypatch.setenv(setting, "duckdb" if setting == "SURVEY_DBT_TARGET" else "1")
        before = len(made)
        preview()
        assert len(made) == before + 1, f"{setting} changed: the kept preview was reused"
    (package / "raw" / "load.py").write_text("LIMIT = 2\n", encoding="utf-8")
    preview()
    assert len(made) == len(LOAD_SETTINGS) + 2, "the code changed: the kept preview was reused"
    preview()
    assert len(made) == len(LOAD_SETTINGS) + 2
