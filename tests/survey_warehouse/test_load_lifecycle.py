"""The load lifecycle as a state machine: deliveries, runs whose gates pass or fail, builds that fail, runs that
leave their build to a later one, and runs killed after any step, in any order.

The steps are the DAG's own functions (plan, load, accept, record the build, publish, record a failure) on a real
DuckDB warehouse; only dbt is stood in for: the stand-in build makes every mart of the project from the real
staging model `stg_survey__loads` (rendered from dbt_project/models/staging), so the published file shows exactly
which load of each wave a build took.

Invariants, checked after every step: at most one current load per wave; the published marts hold exactly the
current loads; a load whose run stopped before publishing never becomes current; a publication brings in only
loads made from the file its wave has now; after a run that finished (not killed), nothing is left pending, no
candidate waits without having been told to, and no build is left in progress.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from conftest import ROOT, make_paths, with_waves_dir
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.orchestration.pipeline import plan_wave, stale_waiting_loads
from survey_warehouse.publishing.publish import build_fingerprint, publish, read_publication, recover_publication
from survey_warehouse.quality.batches import project_marts
from survey_warehouse.raw import builds, load, registry
from survey_warehouse.settings import Paths
from survey_warehouse.warehouse import Warehouse

WAVES = (2016, 2018, 2019)
STEPS = ("plan", "load", "gate", "begin_build", "build", "publish")
VARIANTS = 3  # per wave: the file as bundled, and with its last one or two rows cut


def staging_loads_sql() -> str:
    """The real staging model, with dbt's source() put in by hand."""
    sql = (ROOT / "dbt_project" / "models" / "staging" / "stg_survey__loads.sql").read_text(encoding="utf-8")
    return re.sub(r"\{\{\s*source\('survey_raw',\s*'(\w+)'\)\s*\}\}", r"raw.\1", sql)


class _Ended(Exception):
    """A run ended before publishing: how."""


def _workbook_cut(path: Path, rows: int) -> bytes:
    """The workbook with its last `rows` rows removed from the first sheet."""
    import io

    import openpyxl

    book = openpyxl.load_workbook(path)
    sheet = book.worksheets[0]
    sheet.delete_rows(sheet.max_row - rows + 1, rows)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


class Warehouse_:
    """A test warehouse whose wave specs point at files the test replaces (deliveries)."""

    def __init__(self, name: str) -> None:
        base = make_paths(name)
        waves = base.var / "waves"
        waves.mkdir()
        self.files: dict[int, Path] = {}
        self.variants: dict[int, list[bytes]] = {}
        for wave in WAVES:
            spec_path = ROOT / "config" / "waves" / f"{wave}.yml"
            spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
            original = find_wave_spec(wave, base)
            data = original.file.read_bytes()
            lines = data.splitlines(keepends=True)
            if original.file.suffix == ".csv":
                self.variants[wave] = [data, b"".join(lines[:-1]), b"".join(lines[:-2])]
            else:
                self.variants[wave] = [data, *(_workbook_cut(original.file, n) for n in (1, 2))]
            target = base.var / "inbox_files" / f"{wave}{original.file.suffix}"
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(data)
            self.files[wave] = target
            spec["file"] = str(target)
            (waves / f"{wave}.yml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
        self.paths: Paths = with_waves_dir(base, waves)
        self.warehouse = Warehouse.duckdb(self.paths.warehouse)
        self.marts = project_marts(self.paths.dbt_project)
        self.sql = staging_loads_sql()

    def deliver(self, wave: int, variant: int) -> None:
        options = self.variants[wave]
        self.files[wave].write_bytes(options[variant % len(options)])

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

    def run(
        self,
        wave: int,
        run_id: str,
        gate_ok: bool = True,
        build_ok: bool = True,
        defer: bool = False,
        alone: bool = False,
        kill_after: str | None = None,
    ) -> dict:
        """One run of the DAG's steps for a wave. Returns what happened: the run's load, its build, how it ended."""
        out: dict = {"load_id": None, "build": None, "end": "published"}
        try:
            self._steps(wave, run_id, out, gate_ok, build_ok, defer, alone, kill_after)
        except _Ended as ended:
            out["end"] = str(ended)
        return out

    def _steps(
        self,
        wave: int,
        run_id: str,
        out: dict,
        gate_ok: bool,
        build_ok: bool,
        defer: bool,
        alone: bool,
        kill_after: str | None,
    ) -> None:
        def done(step: str) -> None:
            if kill_after == step:
                raise _Ended(f"killed after {step}")

        recover_publication(self.warehouse, self.paths.published)  # plan_run
        builds.resolve_stopped_runs(self.warehouse)
        if plan_wave(wave, self.paths, self.warehouse).action == "nothing":
            raise _Ended("nothing to do")
        done("plan")
        loaded = load.load_wave(find_wave_spec(wave, self.paths), self.warehouse, paths=self.paths)
        out["load_id"] = loaded.load_id
        done("load")
        if not gate_ok:
            if not loaded.unchanged:
                registry.fail_load(self.warehouse, loaded.load_id, "the raw gate failed")  # record_failure
            raise _Ended("raw gate failed")
        if not loaded.unchanged:
            registry.accept_load(self.warehouse, loaded.load_id, "gate passed")
        done("gate")
        if defer:
            if not loaded.unchanged:
                registry.defer_build(self.warehouse, loaded.load_id, "waits for a later build")
            raise _Ended("deferred")
        build = builds.begin_build(
            self.warehouse,
            run_id,
            wave,
            loaded.load_id,
            build_fingerprint(self.paths, self.warehouse),
            stale=stale_waiting_loads(self.paths, self.warehouse, wave),
            hold_out_waiting=alone,
        )
        out["build"] = build
        done("begin_build")
        self.stand_in_build()
        if not build_ok:
            if not loaded.unchanged:
                registry.fail_load(self.warehouse, loaded.load_id, "dbt failed")
            builds.fail_build(self.warehouse, build, "dbt failed")  # record_failure
            raise _Ended("build failed")
        done("build")
        publish(self.warehouse, self.paths.published, build, run_id)

    # ---------------------------------------------------------------------------------------------- reading

    def registry(self) -> list[tuple]:
        if not self.paths.warehouse.exists():
            return []
        with duckdb.connect(str(self.paths.warehouse), read_only=True) as con:
            return con.execute(
                "select load_id, wave_year, status, is_current, coalesce(build_deferred, false), file_sha256 "
                "from raw.load_registry order by loaded_at"
            ).fetchall()

    def builds_in_progress(self) -> int:
        with duckdb.connect(str(self.paths.warehouse), read_only=True) as con:
            return con.execute("select count(*) from raw.builds where status = 'building'").fetchone()[0]

    def published(self) -> tuple[list[str], dict[str, set[str]]] | None:
        publication = read_publication(self.warehouse, self.paths.published)
        if publication is None:
            return None
        with duckdb.connect(str(self.paths.published), read_only=True) as con:
            contents = {
                mart: {r[0] for r in con.execute(f"select load_id from marts.{mart}").fetchall()} for mart in self.marts
            }
        return publication.load_ids, contents

    def file_sha(self, wave: int) -> str:
        return registry.file_sha256(self.files[wave])


class LoadLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.house: Warehouse_
        self.runs = 0
        self.stopped_loads: set[str] = set()  # loads of runs killed before they published
        self.deferred: set[str] = set()
        self.last_end = ""

    @initialize()
    def fresh_warehouse(self) -> None:
        self.house = Warehouse_("lifecycle")

    @rule(wave=st.sampled_from(WAVES), variant=st.integers(0, VARIANTS - 1))
    def deliver(self, wave: int, variant: int) -> None:
        self.house.deliver(wave, variant)

    @rule(wave=st.sampled_from(WAVES), gate_ok=st.booleans(), build_ok=st.booleans())
    def run(self, wave: int, gate_ok: bool, build_ok: bool) -> None:
        self._run(wave, gate_ok=gate_ok, build_ok=build_ok)

    @rule(wave=st.sampled_from(WAVES), gate_ok=st.booleans())
    def run_leaving_the_build_to_a_later_run(self, wave: int, gate_ok: bool) -> None:
        self._run(wave, gate_ok=gate_ok, defer=True)

    @rule(wave=st.sampled_from(WAVES), build_ok=st.booleans())
    def run_building_its_wave_alone(self, wave: int, build_ok: bool) -> None:
        self._run(wave, build_ok=build_ok, alone=True)

    @rule(wave=st.sampled_from(WAVES), step=st.sampled_from(STEPS[:-1]), defer=st.booleans())
    def run_killed(self, wave: int, step: str, defer: bool) -> None:
        self._run(wave, defer=defer, kill_after=step)

    def _waiting_of_other_waves(self, wave: int) -> set[str]:
        return {r[0] for r in self.house.registry() if r[2] == "candidate" and r[4] and r[1] != wave}

    def _run(self, wave: int, **how: Any) -> None:
        self.runs += 1
        run_id = f"run_{self.runs}"
        waiting_before = self._waiting_of_other_waves(wave)
        out = self.house.run(wave, run_id, **how)
        build = out["build"]
        if build is not None and how.get("alone"):  # a wave built alone holds the others' waiting loads out
            assert not {load_id for load_id, _w in build.loads} & waiting_before, "a build alone took another wave"
            assert self._waiting_of_other_waves(wave) == waiting_before, (
                "a build of one wave alone changed another wave's waiting load"
            )
        elif build is not None:  # every other wave's waiting load is taken (or failed as stale), none left behind
            taken = {load_id for load_id, _w in build.loads}
            left = waiting_before - taken
            assert not left & self._waiting_of_other_waves(wave), f"the build left waiting loads behind: {left}"
        self.last_end = out["end"]
        if out["end"].startswith("killed") and out["load_id"] and out["load_id"] not in self.deferred:
            self.stopped_loads.add(out["load_id"])
        if out["end"] == "deferred" and out["load_id"]:
            self.deferred.add(out["load_id"])
        if out["end"] == "published":
            build = out["build"]
            for load_id, wave_of_load in build.brings_in:
                assert self._sha(load_id) == self.house.file_sha(wave_of_load), (
                    f"run {run_id} published load {load_id} of {wave_of_load}, not made from the wave's file"
                )
        if not out["end"].startswith("killed"):
            rows = self.house.registry()
            assert not [r for r in rows if r[2] in ("loading", "pending")], "a finished run leaves nothing pending"
            assert not [r for r in rows if r[2] == "candidate" and not r[4]], (
                "a finished run leaves no candidate except those waiting for a build"
            )
            assert self.house.builds_in_progress() == 0, "a finished run leaves no build in progress"

    def _sha(self, load_id: str) -> str:
        return next(r[5] for r in self.house.registry() if r[0] == load_id)

    @invariant()
    def one_current_load_per_wave(self) -> None:
        if not hasattr(self, "house"):
            return
        current = [r[1] for r in self.house.registry() if r[3]]
        assert len(current) == len(set(current))

    @invariant()
    def published_marts_hold_the_current_loads(self) -> None:
        if not hasattr(self, "house"):
            return
        current = {r[0] for r in self.house.registry() if r[3]}
        published = self.house.published()
        if published is None:
            assert not current, "loads are current but nothing is published"
            return
        load_ids, contents = published
        assert set(load_ids) == current
        for mart, ids in contents.items():
            assert ids == current, f"{mart} holds {ids}, the current loads are {current}"

    @invariant()
    def a_stopped_runs_load_is_never_current(self) -> None:
        if not hasattr(self, "house"):
            return
        current = {r[0] for r in self.house.registry() if r[3]}
        assert not (current & self.stopped_loads), f"published a load whose run stopped: {current & self.stopped_loads}"


LoadLifecycle.TestCase.settings = settings(
    max_examples=10,
    stateful_step_count=10,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_load_lifecycle = LoadLifecycle.TestCase


# ------------------------------------------------------------------------------------------------ scenarios


@pytest.fixture
def house() -> Warehouse_:
    return Warehouse_("lifecycle_scenarios")


def _publish_all(house: Warehouse_) -> None:
    for i, wave in enumerate(WAVES):
        assert house.run(wave, f"first_{i}")["end"] == "published"


def test_a_candidate_left_by_a_killed_run_is_never_published_by_another_waves_build(house: Warehouse_) -> None:
    """A re-delivery of 2019 loaded and accepted, the run killed before publishing; the owner restores the good
    file; a rebuild of 2016 (its file changed) must publish 2019 as it was, and fail the stale candidate."""
    _publish_all(house)
    published_2019 = next(r[0] for r in house.registry() if r[1] == 2019 and r[3])
    house.deliver(2019, 2)
    stopped = house.run(2019, "killed", kill_after="gate")["load_id"]
    house.deliver(2019, 0)  # the good file back
    assert plan_wave(2019, house.paths, house.warehouse).action == "nothing"
    house.deliver(2016, 1)

    assert house.run(2016, "rebuild_2016")["end"] == "published"

    rows = {r[0]: r for r in house.registry()}
    assert rows[published_2019][3], "2019's published load is still the current one"
    assert rows[stopped][2] == "failed" and not rows[stopped][3]
    load_ids, contents = house.published()
    assert stopped not in load_ids and all(stopped not in ids for ids in contents.values())


def test_a_waiting_load_whose_file_changed_is_not_built(house: Warehouse_) -> None:
    _publish_all(house)
    house.deliver(2018, 1)
    waiting = house.run(2018, "catch_up", defer=True)["load_id"]
    house.deliver(2018, 0)  # the wave's file is replaced again before the build that would take it
    house.deliver(2019, 1)

    out = house.run(2019, "builder")

    assert out["end"] == "published" and waiting not in out["build"].load_ids
    status = {r[0]: r[2] for r in house.registry()}
    assert status[waiting] == "failed"
    with duckdb.connect(str(house.paths.warehouse), read_only=True) as con:
        message = con.execute("select status_message from raw.load_registry where load_id = ?", [waiting]).fetchone()
    assert "changed after this load waited" in message[0]


def test_a_build_alone_leaves_other_waves_waiting(house: Warehouse_) -> None:
    _publish_all(house)
    house.deliver(2016, 1)
    house.deliver(2018, 1)
    w16 = house.run(2016, "catch_up_16", defer=True)["load_id"]
    w18 = house.run(2018, "catch_up_18", defer=True)["load_id"]

    out = house.run(2016, "alone_16", alone=True)

    assert out["end"] == "published" and w16 in out["build"].load_ids and w18 not in out["build"].load_ids
    _load_ids, contents = house.published()
    assert all(w16 in ids and w18 not in ids for ids in contents.values()), "the marts were built without 2018's"
    status = {r[0]: (r[2], r[3], r[4]) for r in house.registry()}
    assert status[w16][:2] == ("passed", True) and status[w18] == ("candidate", False, True)


def test_the_build_records_the_inputs_it_read_not_those_at_publish_time(house: Warehouse_, tmp_path: Path) -> None:
    """An edit to the dbt project between a run's build and its publish is not recorded as built: the next plan
    rebuilds."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "dbt_project", project / "dbt_project", ignore=shutil.ignore_patterns("target", "logs"))
    shutil.copytree(ROOT / "expectations", project / "expectations")
    house.paths = dataclasses.replace(house.paths, root=project, dbt_project=project / "dbt_project")
    house.deliver(2019, 0)
    out_first = house.run(2019, "first")
    assert out_first["end"] == "published"
    house.deliver(2019, 1)
    build = builds.begin_build(
        house.warehouse,
        "edited",
        2019,
        house.run(2019, "load_only", kill_after="gate")["load_id"],
        build_fingerprint(house.paths, house.warehouse),
    )
    house.stand_in_build()
    seed = project / "dbt_project" / "seeds" / "city_aliases.csv"
    seed.write_text(seed.read_text(encoding="utf-8") + "Stadi,091\n", encoding="utf-8")  # edited before publish
    publish(house.warehouse, house.paths.published, build, "edited")

    publication = read_publication(house.warehouse, house.paths.published)
    assert publication.build_fingerprint == build.fingerprint
    assert publication.build_fingerprint != build_fingerprint(house.paths, house.warehouse)
    assert plan_wave(2019, house.paths, house.warehouse).action != "nothing"


def test_a_table_left_in_the_marts_schema_by_a_removed_model_is_not_published(house: Warehouse_) -> None:
    _publish_all(house)
    with duckdb.connect(str(house.paths.warehouse)) as con:
        con.execute("create table marts.fct_renamed_long_ago as select 1 as x")
    house.deliver(2019, 1)
    assert house.run(2019, "after_rename")["end"] == "published"
    with duckdb.connect(str(house.paths.published), read_only=True) as con:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    assert "fct_renamed_long_ago" not in tables
    assert tables == {*house.marts, "publication", "source_loads"}


def test_a_registry_that_cannot_commit_leaves_the_published_file_as_it_was(
    house: Warehouse_, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish_all(house)
    before = house.paths.published.read_bytes()
    house.deliver(2019, 1)
    out = house.run(2019, "to_fail", kill_after="build")
    build = out["build"]

    import survey_warehouse.publishing.publish as publishing

    calls = []
    real_fsync = publishing._fsync_dir

    def fail_once(directory: Path) -> None:  # after the file was swapped in, before the registry commits
        calls.append(directory)
        if len(calls) == 1:
            raise duckdb.TransactionException("could not commit")
        real_fsync(directory)

    monkeypatch.setattr(publishing, "_fsync_dir", fail_once)
    with pytest.raises(duckdb.TransactionException):
        publish(house.warehouse, house.paths.published, build, "to_fail")

    assert house.paths.published.read_bytes() == before
    rows = {r[0]: r for r in house.registry()}
    assert rows[out["load_id"]][2] == "candidate" and not rows[out["load_id"]][3], "not promoted"
    assert [p.name for p in house.paths.published.parent.iterdir()] == [house.paths.published.name]


def test_a_run_with_nothing_to_do_still_resolves_what_a_killed_run_left(house: Warehouse_) -> None:
    _publish_all(house)
    house.deliver(2019, 2)
    stopped = house.run(2019, "killed", kill_after="gate")["load_id"]
    house.deliver(2019, 0)  # the good file back: every wave has nothing to do

    ends = [house.run(wave, f"again_{wave}")["end"] for wave in WAVES]

    assert ends == ["nothing to do"] * len(WAVES)
    status = {r[0]: r[2] for r in house.registry()}
    assert status[stopped] == "failed"
    assert house.builds_in_progress() == 0


def test_a_waiting_load_of_a_wave_withdrawn_since_is_not_built(house: Warehouse_) -> None:
    _publish_all(house)
    house.deliver(2016, 1)
    waiting = house.run(2016, "catch_up", defer=True)["load_id"]
    spec = house.paths.waves_config / "2016.yml"
    spec.write_text(spec.read_text(encoding="utf-8") + 'withdrawn: "answers of two cities mixed up"\n', "utf-8")
    house.deliver(2019, 1)

    out = house.run(2019, "builder")

    assert out["end"] == "published" and waiting not in out["build"].load_ids
    rows = {r[0]: r for r in house.registry()}
    assert rows[waiting][2] == "failed" and not rows[waiting][3]


def test_a_run_that_withdraws_its_wave_builds_even_when_asked_to_leave_the_build_to_a_later_run() -> None:
    from survey_warehouse.orchestration.pipeline import DEFER_BUILD_PARAM, build_in_this_run

    withdrawing = {"load_id": "L", "unchanged": True, "withdraw": "answers of two cities mixed up"}
    assert build_in_this_run(withdrawing, {"params": {DEFER_BUILD_PARAM: True}}) is True


KILLED_PUBLISH = r"""
import json, os, sys
from pathlib import Path
from survey_warehouse.publishing import publish
from survey_warehouse.raw.builds import Build
from survey_warehouse.warehouse import Warehouse

real = publish._fsync_dir
calls = []
def fsync_then_die(directory):
    real(directory)
    calls.append(directory)
    if len(calls) == 2:  # the new file renamed into place, the registry not yet committed
        os._exit(9)
publish._fsync_dir = fsync_then_die
build = Build.from_dict(json.loads(sys.argv[3]))
publish.publish_marts(Warehouse.duckdb(Path(sys.argv[1])), Path(sys.argv[2]), build, "killed")
"""


def test_a_publication_killed_between_its_rename_and_its_commit_is_undone_by_the_next_run(
    house: Warehouse_,
) -> None:
    import json
    import subprocess
    import sys

    _publish_all(house)
    before = house.paths.published.read_bytes()
    published_loads = read_publication(house.warehouse, house.paths.published).load_ids
    house.deliver(2019, 1)
    out = house.run(2019, "to_kill", kill_after="build")
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_PUBLISH,
            str(house.paths.warehouse),
            str(house.paths.published),
            json.dumps(out["build"].as_dict()),
        ],
        check=False,
    )
    assert killed.returncode == 9
    assert out["load_id"] in read_publication(house.warehouse, house.paths.published).load_ids, (
        "the killed publication had renamed its file into place"
    )

    done = recover_publication(house.warehouse, house.paths.published)  # what the next run does first

    assert done is not None and "back" in done
    assert house.paths.published.read_bytes() == before
    assert read_publication(house.warehouse, house.paths.published).load_ids == published_loads
    assert [p.name for p in house.paths.published.parent.iterdir()] == [house.paths.published.name]
    assert house.run(2019, "next")["end"] == "published", "the next run publishes the delivery"
