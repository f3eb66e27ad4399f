"""Catching up several waves with one build: a load waiting for a later run's build, and how `make run` orders its
runs (each wave loaded and gated in its own run, the last one building; each on its own when that build fails)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import make_paths

from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.orchestration import runner
from survey_warehouse.orchestration.pipeline import plan_wave
from survey_warehouse.raw import registry
from survey_warehouse.raw.builds import begin_build
from survey_warehouse.raw.load import load_wave
from survey_warehouse.raw.registry import accept_load, defer_build, mark_load


@pytest.fixture
def paths():
    return make_paths("catch_up")


def _status(paths, load_id: str) -> tuple[str, bool, str]:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return con.execute(
            "select status, is_current, status_message from raw.load_registry where load_id = ?", [load_id]
        ).fetchone()


def _waiting(paths, year: int) -> str:
    loaded = load_wave(find_wave_spec(year, paths), paths.warehouse, paths=paths)
    accept_load(paths.warehouse, loaded.load_id, "gate passed")
    defer_build(paths.warehouse, loaded.load_id, "waits for a later build")
    return loaded.load_id


def test_a_waiting_load_stays_through_other_waves_and_is_built_with_them(paths) -> None:
    w16 = _waiting(paths, 2016)
    w18 = _waiting(paths, 2018)  # loading another wave does not abandon 2016's waiting candidate
    left_over = load_wave(find_wave_spec(2019, paths), paths.warehouse, paths=paths)  # a run killed after its load

    assert _status(paths, w16)[:2] == ("candidate", False) and _status(paths, w18)[:2] == ("candidate", False)
    assert registry.waiting_loads(paths.warehouse) == [(w16, 2016), (w18, 2018)]
    plan = plan_wave(2016, paths)
    assert plan.action == "rebuild" and w16 in plan.reason and "waits for its build" in plan.reason
    again = load_wave(find_wave_spec(2016, paths), paths.warehouse, paths=paths)
    assert again.unchanged and again.load_id == w16, "the waiting load is the wave's load: no second copy"

    # the next load abandons what a stopped run left, not the waiting candidates
    w19 = load_wave(find_wave_spec(2019, paths), paths.warehouse, paths=paths).load_id
    assert _status(paths, left_over.load_id)[0] == "failed"
    accept_load(paths.warehouse, w19, "gate passed")
    build = begin_build(paths.warehouse, "run", 2019, w19, "f" * 64)
    assert build.load_ids == [w16, w18, w19], "the build and the publication take every waiting candidate"
    assert build.new_waves == [2016, 2018, 2019]


def test_a_new_file_replaces_its_waves_waiting_load(paths, tmp_path: Path) -> None:
    w19 = _waiting(paths, 2019)
    spec = find_wave_spec(2019, paths)
    lines = spec.file.read_text(encoding="utf-8-sig").splitlines()
    shorter = tmp_path / "corrected.csv"
    shorter.write_text("\n".join(lines[:-2]) + "\n", encoding="utf-8-sig")

    corrected = load_wave(dataclasses.replace(spec, file=shorter), paths.warehouse, paths=paths)

    status, current, message = _status(paths, w19)
    assert (status, current) == ("failed", False) and f"replaced by load {corrected.load_id}" in message
    assert registry.waiting_loads(paths.warehouse) == []


def test_only_a_candidate_can_wait(paths) -> None:
    loaded = load_wave(find_wave_spec(2016, paths), paths.warehouse, paths=paths)
    with pytest.raises(Exception, match="only a candidate"):
        defer_build(paths.warehouse, loaded.load_id, "too early: not gated")
    mark_load(paths.warehouse, loaded.load_id, passed=True, message="ok")
    with pytest.raises(Exception, match="only a candidate"):
        defer_build(paths.warehouse, loaded.load_id, "too late: published")


class FakeRuns:
    """Stands in for Airflow: which runs `run_waves` starts, with what, and what they leave to do."""

    def __init__(
        self, todo: set[int], fail: dict[int, str] | None = None, project_broken: bool = False, published: bool = True
    ) -> None:
        self.todo, self.fail = set(todo), dict(fail or {})
        self.project_broken = project_broken  # every build fails, whatever it is built from
        self.published = published  # waves have current loads (a build from them alone is possible)
        self.calls: list[tuple[int, bool]] = []
        self.alone: list[bool] = []
        self.current_only: list[int] = []  # the runs that built from the current loads alone
        self.waiting: set[int] = set()

    def with_current_load(self, _paths, prefer_outside: list[int]) -> int | None:
        return 2015 if self.published else None  # a wave outside the catch-up, with a current load

    def plan(self, _paths, years: list[int]) -> dict[int, str | None]:
        return {y: None if y in self.todo else f"wave {y}: nothing to do" for y in years}

    def run(
        self, _paths, year: int, defer: str | None, alone: bool = False, current_loads_only: bool = False
    ) -> dict[str, Any]:
        if current_loads_only:  # nothing new in the build: only a broken project fails it
            self.current_only.append(year)
            failed = self.project_broken
            return {"exit_code": int(failed), "seconds": 0.0, "log": None, "failed_build": failed, "run_id": "base"}
        self.calls.append((year, bool(defer)))
        self.alone.append(alone)
        failure = self.fail.get(year) or ("build" if self.project_broken and not defer else None)
        if failure and (failure == "raw gate" or not defer):
            if failure == "build":  # the waiting loads were built with it: they fail too
                self.waiting = set()
            return {"exit_code": 1, "seconds": 0.0, "log": None, "failed_build": failure == "build"}
        if alone:  # a build of this wave alone: the others keep waiting
            self.todo -= {year}
            self.waiting -= {year}
        elif not defer:  # a build publishes this wave and every wave that waits for a build
            self.todo -= {year, *self.waiting}
            self.waiting = set()
        else:
            self.waiting.add(year)
        return {"exit_code": 0, "seconds": 0.0, "log": None, "failed_build": False}


def _run(monkeypatch, tmp_path: Path, runs: FakeRuns, years: list[int], **kwargs) -> dict[int, dict]:
    monkeypatch.setattr(runner, "runtime_env", lambda _paths: {"TMPDIR": str(tmp_path)})
    monkeypatch.setattr(runner, "plan_years", runs.plan)
    monkeypatch.setattr(runner, "_dag_run", runs.run)
    monkeypatch.setattr(runner, "_wave_with_current_load", runs.with_current_load)
    return runner.run_waves(make_paths("catch_up_cli"), years, **kwargs)


def test_several_waves_are_built_once_by_the_last_run(monkeypatch, tmp_path: Path) -> None:
    runs = FakeRuns({2016, 2018, 2019})
    outcomes = _run(monkeypatch, tmp_path, runs, [2016, 2017, 2018, 2019])
    assert runs.calls == [(2016, True), (2018, True), (2019, False)]
    assert outcomes[2017]["skipped"] and runs.todo == set()


def test_one_wave_or_build_each_wave_builds_every_run(monkeypatch, tmp_path: Path) -> None:
    runs = FakeRuns({2019})
    _run(monkeypatch, tmp_path, runs, [2016, 2017, 2018, 2019])
    assert runs.calls == [(2019, False)]
    runs = FakeRuns({2016, 2019})
    _run(monkeypatch, tmp_path, runs, [2016, 2019], catch_up=False)
    assert runs.calls == [(2016, False), (2019, False)]


def test_a_failed_build_runs_each_wave_again_on_its_own(monkeypatch, tmp_path: Path) -> None:
    """The 2019 wave breaks the build: 2016 and 2018 go through on their own; 2019 alone stays unpublished."""
    runs = FakeRuns({2016, 2018, 2019}, fail={2019: "build"})
    outcomes = _run(monkeypatch, tmp_path, runs, [2016, 2018, 2019])
    assert runs.calls == [(2016, True), (2018, True), (2019, False), (2016, False), (2018, False), (2019, False)]
    assert runs.alone == [False, False, False, True, True, True], "the runs again build their wave alone"
    assert runs.todo == {2019} and [y for y, o in outcomes.items() if o["exit_code"]] == [2019]
    assert runs.current_only == [2015], "first, one build from the current loads alone (it went through)"


def test_a_failed_build_without_published_waves_runs_each_wave_on_its_own(monkeypatch, tmp_path: Path) -> None:
    """Nothing published yet: there is no build from current loads to make; each wave runs on its own."""
    runs = FakeRuns({2016, 2018, 2019}, fail={2019: "build"}, published=False)
    _run(monkeypatch, tmp_path, runs, [2016, 2018, 2019])
    assert runs.current_only == [] and runs.alone[-3:] == [True, True, True] and runs.todo == {2019}


def test_a_build_failure_no_waves_data_causes_is_run_once_and_reported_as_such(
    monkeypatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken project fails every build: the build from the current loads alone fails too, so the waves are not
    run again one by one (three more failed builds); each is reported as not run again, with the cause."""
    runs = FakeRuns({2016, 2018, 2019}, project_broken=True)
    outcomes = _run(monkeypatch, tmp_path, runs, [2016, 2018, 2019])
    assert runs.calls == [(2016, True), (2018, True), (2019, False)], "no wave ran again"
    assert runs.current_only == [2015]
    for year in (2016, 2018, 2019):
        assert outcomes[year]["exit_code"] == 1, outcomes[year]
        assert "not run again: the build fails without any new wave's data too" in outcomes[year]["state"]
    assert outcomes[2019]["later_run_ids"] == ["base"], "the build from the current loads is this run's too"
    out = capsys.readouterr().out
    assert "no wave's data is the cause" in out and "each wave on its own" not in out, out


def test_after_the_last_wave_fails_its_gate_a_build_failure_no_waves_data_causes_stops_the_reruns(
    monkeypatch, tmp_path: Path
) -> None:
    """2019 fails its raw gate (no build yet), and the project is broken: the first wave run on its own fails its
    build, the build from the current loads fails too, so the other waiting wave is not run again."""
    runs = FakeRuns({2016, 2018, 2019}, fail={2019: "raw gate"}, project_broken=True)
    outcomes = _run(monkeypatch, tmp_path, runs, [2016, 2018, 2019])
    assert runs.calls == [(2016, True), (2018, True), (2019, False), (2016, False)]
    assert runs.current_only == [2015]
    assert outcomes[2018]["exit_code"] == 1 and outcomes[2018]["build_not_caused_by_data"]
    assert not outcomes[2016].get("build_not_caused_by_data"), "2016 ran, and failed on its own"


def test_the_build_from_current_loads_is_made_with_a_wave_the_catch_up_did_not_change(paths) -> None:
    """Its run gates the wave's current load against the spec as it is now: a wave whose spec or file changed (one
    being caught up) could fail that gate; an unchanged one is taken first, else the latest."""
    for year in (2016, 2018, 2019):
        loaded = load_wave(find_wave_spec(year, paths), paths.warehouse, paths=paths)
        mark_load(paths.warehouse, loaded.load_id, passed=True, message="published")
    assert runner._wave_with_current_load(paths, prefer_outside=[2018, 2019]) == 2016
    assert runner._wave_with_current_load(paths, prefer_outside=[2016, 2019]) == 2018
    assert runner._wave_with_current_load(paths, prefer_outside=[2016, 2018, 2019]) == 2019
    assert runner._wave_with_current_load(make_paths("catch_up_empty"), prefer_outside=[2019]) is None


def test_a_last_wave_failing_its_own_gate_leaves_each_waiting_wave_to_a_run_of_its_own(
    monkeypatch, tmp_path: Path
) -> None:
    """2019 fails its raw gate, before any build: 2016 and 2018 each run again and build alone, so a wave that
    breaks the build could hold back only itself; 2019 is not run again."""
    runs = FakeRuns({2016, 2018, 2019}, fail={2019: "raw gate"})
    _run(monkeypatch, tmp_path, runs, [2016, 2018, 2019])
    assert runs.calls == [(2016, True), (2018, True), (2019, False), (2016, False), (2018, False)]
    assert runs.alone[-2:] == [True, True] and runs.todo == {2019}
