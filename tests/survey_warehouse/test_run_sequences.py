"""Generated sequences of runs of different waves against one warehouse, as the schedule, a backfill, the inbox and
`make run` make them: each run loads its wave (a new file, or the same one again), passes or fails its raw gate,
leaves its load waiting for a later build or builds (with the waiting loads, or its own wave alone), and the build
is published or fails; a run can also be stopped after its load, leaving what the next run resolves.

The steps are the ones the DAG's tasks call (`load_wave`, `accept_load`/`mark_load`, `defer_build`, `begin_build`,
`publish_marts`, `fail_load` + `fail_build` as `record_failure` does; the gates' verdicts and dbt's outcome are
drawn), so the invariants hold whatever starts the runs:

- the marts are published from exactly the current loads, one per wave (the summary reads these);
- every wave is either published from its newest gated load or that load is waiting or failed with a reason;
- a load is failed by another wave's build only when that build was made from it: a wave held out of a build
  (a run building its own wave alone) is never failed by it;
- a build publishes exactly the loads it recorded when it began, and a waiting load is taken by the next build that
  does not hold it out.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import duckdb
from conftest import make_paths
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.publishing.publish import publish_marts, read_publication
from survey_warehouse.quality.batches import project_marts
from survey_warehouse.raw.builds import begin_build, fail_build, resolve_stopped_runs
from survey_warehouse.raw.load import load_wave
from survey_warehouse.raw.registry import accept_load, defer_build, fail_load, mark_load
from survey_warehouse.settings import Paths
from survey_warehouse.warehouse import Warehouse

WAVES = (2016, 2018, 2019)


def _variant(paths: Paths, year: int, k: int) -> Path:
    """The wave's file with its last k data rows left out: another file (k = 0: the file as shipped)."""
    spec = find_wave_spec(year, paths)
    assert spec is not None
    if k == 0:
        return spec.file
    if spec.format != "csv":  # a workbook: the shipped file under another name is the same content (unchanged)
        return spec.file
    target = paths.var / "variants" / f"{year}_{k}{spec.file.suffix}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        raw = spec.file.read_bytes()
        lines = raw.splitlines(keepends=True)
        target.write_bytes(b"".join(lines[: len(lines) - k]))
    return target


class RunSequences(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.paths: Paths
        self.published_loads: set[str] = set()  # what the model expects the marts to be published from
        self.waiting: dict[int, str] = {}  # wave -> its load waiting for a build (the model's)
        self.latest: dict[int, str] = {}  # wave -> its newest load that passed its gate
        self.held_out: dict[str, set[str]] = {}  # build_id -> the waiting loads it held out
        self.runs = 0

    @initialize()
    def a_warehouse(self) -> None:
        self.paths = make_paths("run_sequences")
        self.paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
        with duckdb.connect(str(self.paths.warehouse)) as con:  # what dbt would build: every mart, empty
            con.execute("create schema if not exists marts")
            for table in project_marts(self.paths.dbt_project):
                con.execute(f'create table marts."{table}" (id integer)')
        resolve_stopped_runs(self.warehouse)  # (creates the raw schema, as every run's first step does)

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse.from_env(self.paths.warehouse)

    def _registry(self) -> dict[str, tuple[int, str, bool, str, bool]]:
        with duckdb.connect(str(self.paths.warehouse), read_only=True) as con:
            rows = con.execute(
                "select load_id, wave_year, status, is_current, status_message, coalesce(build_deferred, false) "
                "from raw.load_registry"
            ).fetchall()
        return {r[0]: (int(r[1]), r[2], bool(r[3]), r[4] or "", bool(r[5])) for r in rows}

    @rule(
        wave=st.sampled_from(WAVES),
        variant=st.integers(0, 2),
        gate_passes=st.booleans(),
        then=st.sampled_from(["defer", "build", "build alone", "stopped after its load"]),
        build_passes=st.booleans(),
    )
    def a_run(self, wave: int, variant: int, gate_passes: bool, then: str, build_passes: bool) -> None:
        self.runs += 1
        run_id = f"run-{self.runs}"
        resolve_stopped_runs(self.warehouse)  # every run's first step
        spec = dataclasses.replace(find_wave_spec(wave, self.paths), file=_variant(self.paths, wave, variant))
        loaded = load_wave(spec, self.warehouse, paths=self.paths)
        if not loaded.unchanged:
            self.waiting.pop(wave, None)  # a new load of the wave replaces its waiting one
        if then == "stopped after its load":
            return  # a new load stays pending: the next run's first step fails it
        if not loaded.unchanged:
            if not gate_passes:
                mark_load(self.warehouse, loaded.load_id, passed=False, message="the raw gate failed")
                return
            accept_load(self.warehouse, loaded.load_id, "passed its raw gate")
            self.latest[wave] = loaded.load_id
        if then == "defer":
            if not loaded.unchanged:
                defer_build(self.warehouse, loaded.load_id, "waits for a later build")
                self.waiting[wave] = loaded.load_id
            return
        alone = then == "build alone"
        before = self._registry()
        build = begin_build(self.warehouse, run_id, wave, loaded.load_id, "f" * 64, hold_out_waiting=alone)
        taken = {load_id for load_id, _w in build.loads}
        expected_in_build = dict.fromkeys(WAVES)
        for load_id, (w, _status, current, _m, _d) in before.items():
            if current:
                expected_in_build[w] = load_id
        if not alone:
            expected_in_build.update({w: i for w, i in self.waiting.items() if w != wave})
        expected_in_build[wave] = loaded.load_id
        assert taken == {i for i in expected_in_build.values() if i}, (
            f"build of {wave} ({then}) took {sorted(taken)}, expected {expected_in_build}"
        )
        held = {i for w, i in self.waiting.items() if w != wave} if alone else set()
        self.held_out[build.build_id] = held
        if build_passes:
            publication = publish_marts(self.warehouse, self.paths.published, build, run_id)
            assert set(publication.load_ids) == taken, "the publication is not the build's loads"
            self.published_loads = taken
            for w in [wave, *([] if alone else list(self.waiting))]:
                self.waiting.pop(w, None)
        else:
            if not loaded.unchanged:
                fail_load(self.warehouse, loaded.load_id, "the run failed at dbt_build")
            failed = set(fail_build(self.warehouse, build, "the run failed at dbt_build"))
            assert not failed & held, f"the build of {wave} alone failed loads it held out: {failed & held}"
            assert failed <= taken, "a build failed loads it was not made from"
            for w in [] if alone else [w for w in self.waiting if w != wave]:
                self.waiting.pop(w, None)
            # the run's own wave: a waiting load it built again (unchanged) keeps waiting for a build of its own

    @invariant()
    def the_marts_are_published_from_exactly_the_current_loads(self) -> None:
        if not hasattr(self, "paths"):
            return
        registry = self._registry()
        current = {load_id for load_id, row in registry.items() if row[2]}
        per_wave = [row[0] for row in registry.values() if row[2]]
        assert len(per_wave) == len(set(per_wave)), "a wave has two current loads"
        assert current == self.published_loads
        publication = read_publication(self.warehouse, self.paths.published)
        if publication is None:
            assert not current
        else:
            assert set(publication.load_ids) == current, "the published file and the registry disagree"

    @invariant()
    def every_waiting_load_is_the_models_and_no_load_failed_without_a_reason(self) -> None:
        if not hasattr(self, "paths"):
            return
        registry = self._registry()
        waiting = {row[0]: load_id for load_id, row in registry.items() if row[1] == "candidate" and row[4]}
        assert waiting == self.waiting, f"waiting loads {waiting}, expected {self.waiting}"
        for load_id, (_w, status, _current, message, _d) in registry.items():
            if status == "failed":
                assert message.strip(), f"load {load_id} failed without a reason"

    @invariant()
    def every_wave_is_published_from_its_newest_gated_load_or_that_load_says_why_not(self) -> None:
        if not hasattr(self, "paths"):
            return
        registry = self._registry()
        for wave, load_id in self.latest.items():
            _w, status, current, message, _d = registry[load_id]
            assert current or status in ("candidate", "failed", "superseded"), (wave, load_id, status)
            if status == "failed":
                assert message, f"the newest gated load of {wave} failed without a reason"


RunSequences.TestCase.settings = settings(
    max_examples=int(os.environ.get("SURVEY_TEST_SEQUENCE_EXAMPLES", "8")),
    stateful_step_count=10,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_run_sequences = RunSequences.TestCase
