"""The steps of the survey_waves DAG as plain functions; dags/survey_waves.py only wires them together.

A run for a wave: plan (nothing to do, rebuild the marts, or load the file) -> load into raw -> raw gate ->
accept the load as the candidate -> dbt build -> marts gate -> publish (the candidate becomes current). When any
step fails, `record_failure` marks the run's load failed with the reason; the current load, the marts readers see
and the other waves stay as they were.

The plan decides from the load registry (survey_warehouse.raw.registry) whether a wave has anything new; the work
of each stage is in its own folder (intake, raw, quality, publishing), and a step only sequences it, keeps the
run's record and says what failed. One idea in about 750 lines: the DAG's steps, each a function of the run (its
wave year, its delivery, its load, its build).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from survey_warehouse.errors import SurveyWarehouseError, WaveFileError
from survey_warehouse.operations import faults
from survey_warehouse.operations.inbox import Delivery, delivery_of_run
from survey_warehouse.settings import LOAD_SETTINGS, Paths, get_paths

if TYPE_CHECKING:
    from collections.abc import Callable

    from survey_warehouse.intake.waves import WaveSpec
    from survey_warehouse.warehouse import Warehouse

P = ParamSpec("P")
R = TypeVar("R")


def keeps_its_error(step: Callable[P, R]) -> Callable[P, R]:
    """A DAG step whose every failure (not a skip) is kept for `record_failure`, so the run's message gives the
    cause, whatever raised it: a warehouse another process holds, a full disk, a database that refuses."""

    @functools.wraps(step)
    def kept(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return step(*args, **kwargs)
        except Exception as exc:
            if type(exc).__name__ != "AirflowSkipException":
                remember_error(exc)
            raise

    return kept


# The DAG file imports this module when it is parsed: the steps import what they use (DuckDB, pandas, Great
# Expectations) when they run, so parsing stays fast.

log = logging.getLogger(__name__)

LOAD_TASK_ID = "load_raw_wave"
PLAN_TASK_ID = "plan_wave"
DEFER_BUILD_PARAM = "defer_build"
HOLD_OUT_WAITING_PARAM = "build_own_wave_only"
# a build from the current loads alone (no new wave in it): tells a build failure that no wave's data causes
CURRENT_LOADS_ONLY_PARAM = "build_current_loads_only"
BEGIN_BUILD_TASK_ID = "begin_build"
BUILD_STEPS = ("dbt_build", "validate_marts")  # a failure here is the build's, not the wave's raw data


class NothingToDo(Exception):
    """The wave's inputs have not changed since the published marts were built from them."""


@dataclass(frozen=True)
class Plan:
    wave_year: int
    action: str  # nothing | rebuild | load | withdraw | rebuild_current
    reason: str
    file: str


def wave_year_of_run(context: Any) -> int:
    """The wave a run is for: the `wave_year` param when given, else the wave of the delivery that started it
    (a file dropped into the inbox), else the year of the run's logical date."""
    year = (context.get("params") or {}).get("wave_year")
    if year:
        return int(year)
    delivery = delivery_of_run(context)
    if delivery is not None:
        return delivery.wave_year
    if context.get("logical_date") is None:
        raise SurveyWarehouseError(
            "this run has no wave year: no `wave_year` param, no delivery from the inbox and no logical date; "
            'trigger it with {"wave_year": <year>}'
        )
    return int(context["logical_date"].year)


def read_wave_spec(wave_year: int, paths: Paths) -> WaveSpec | None:
    """The wave's spec, or None for a year without one. A spec that cannot be read, whatever is wrong with it,
    raises WaveSpecError naming the file."""
    from survey_warehouse.errors import WaveSpecError
    from survey_warehouse.intake.waves import find_wave_spec

    path = paths.waves_config / f"{wave_year}.yml"
    try:
        return find_wave_spec(wave_year, paths)
    except Exception as exc:
        problem = (
            str(exc).removeprefix(f"{path}: ") if isinstance(exc, WaveSpecError) else f"{type(exc).__name__}: {exc}"
        )
        raise WaveSpecError(
            f"{paths.shown(path)} cannot be read: {problem}; correct it (see docs/adding-a-wave.md)"
        ) from exc


def _spec(wave_year: int, paths: Paths, delivered: str | Path | None = None) -> WaveSpec:
    """The wave's spec; with a delivery, the spec reading the delivered file where the run took it."""
    from survey_warehouse.intake.waves import find_wave_spec

    spec = find_wave_spec(wave_year, paths)
    if spec is None:
        raise SurveyWarehouseError(f"no wave spec for {wave_year} in {paths.waves_config}")
    return replace(spec, file=Path(delivered)) if delivered else spec


def plan_wave(
    wave_year: int, paths: Paths | None = None, warehouse: Warehouse | None = None, delivered: Path | None = None
) -> Plan:
    """What a run for the wave has to do, from its inputs: the file (the spec's, or a delivery in the inbox), the
    wave spec, the codebook and pseudonym key it is read with, the dbt project and the expectation suites,
    compared with what is published."""
    from survey_warehouse.intake.codebook import Codebook
    from survey_warehouse.publishing.publish import build_fingerprint, read_publication
    from survey_warehouse.raw import registry, schema
    from survey_warehouse.warehouse import Session, Warehouse

    paths = paths or get_paths()
    warehouse = warehouse or Warehouse.from_env(paths.warehouse)
    spec = _spec(wave_year, paths, delivered)
    if spec.withdrawn:
        return _plan_withdrawal(spec, paths, warehouse)
    if not spec.file.is_file():
        raise WaveFileError(
            spec.file,
            f"wave {wave_year} is configured but its file has not arrived (or 'file' in {spec.name} points elsewhere)",
        )
    codebook = Codebook.from_seeds(paths.dbt_project / "seeds")
    spec.check(codebook)
    sha = registry.file_sha256(spec.file)
    with Session(warehouse) as session:
        schema.ensure_raw_schema(session)
        current = registry.current_load(session, wave_year)
        current_ids = {
            r[0] for r in session.execute("select load_id from raw.load_registry where is_current").fetchall()
        }
    if not registry.is_unchanged(current, sha, spec, registry.read_fingerprint(spec, codebook)):
        why = (
            "first load of the wave"
            if current is None
            else "the file changed"
            if current.file_sha256 != sha
            else "the wave spec changed"
            if current.spec_sha256 != spec.fingerprint()
            else "the codebook (or the pseudonym key) changed"
        )
        return Plan(wave_year, "load", why, str(spec.file))
    if current is None:  # (unchanged implies a current load)
        return Plan(wave_year, "load", "first load of the wave", str(spec.file))
    publication = read_publication(warehouse, paths.published)
    rebuild = (
        f"load {current.load_id} passed its raw gate and waits for its build"
        if current.waiting
        else "nothing is published yet"
        if publication is None
        else "the published marts do not hold every current load"
        if set(publication.load_ids) != current_ids
        else "the dbt project, a seed or a suite changed"
        if publication.build_fingerprint != build_fingerprint(paths, warehouse)
        else None
    )
    if rebuild or publication is None:
        return Plan(wave_year, "rebuild", rebuild or "nothing is published yet", str(spec.file))
    return Plan(
        wave_year,
        "nothing",
        f"wave {wave_year}: unchanged since publication "
        f"{publication.published_at:%Y-%m-%d %H:%M:%S} UTC (load {current.load_id}); "
        "nothing to do",
        str(spec.file),
    )


def _plan_withdrawal(spec: WaveSpec, paths: Paths, warehouse: Warehouse) -> Plan:
    """A wave whose spec says `withdrawn`: left out of the marts (a run withdraws it), or nothing to do."""
    from survey_warehouse.warehouse import Session

    with Session(warehouse) as session:
        from survey_warehouse.raw import registry, schema

        schema.ensure_raw_schema(session)
        current = registry.current_load(session, spec.wave_year)
    if current is None:
        return Plan(
            spec.wave_year,
            "nothing",
            f"wave {spec.wave_year}: withdrawn ({spec.withdrawn}), and not in the marts; nothing to do",
            str(spec.file),
        )
    return Plan(spec.wave_year, "withdraw", f"withdrawn in {spec.name}: {spec.withdrawn}", str(spec.file))


def published_without_spec(wave_year: int, paths: Paths, warehouse: Warehouse | None = None) -> str | None:
    """When the wave has no spec but its load is still current (published): what to do about it."""
    from survey_warehouse.raw import registry, schema
    from survey_warehouse.warehouse import Session, Warehouse

    warehouse = warehouse or Warehouse.from_env(paths.warehouse)
    with Session(warehouse) as session:
        schema.ensure_raw_schema(session)
        current = registry.current_load(session, wave_year)
    if current is None:
        return None
    expected = paths.waves_config / f"{wave_year}.yml"
    return (
        f"wave {wave_year} is still published (load {current.load_id}), but there is no wave spec {expected}: "
        f"to withdraw the wave from the marts, put its spec back with the line `withdrawn: <why>` and run "
        f"`make run YEARS={wave_year}`"
    )


@keeps_its_error
def plan_run(
    wave_year: int, delivery: Delivery | None = None, run_id: str | None = None, current_loads_only: bool = False
) -> dict[str, Any]:
    """The DAG's first step: a year without a wave spec, or with nothing new, ends the run skipped. A run started
    by a delivery in the inbox takes the delivered file (see survey_warehouse.operations.inbox) and plans with it; a
    delivery that cannot be the wave's file (not a regular file, another name than the spec's, no spec) fails the run,
    which rejects it. First, what runs that stopped left is resolved (their loads, builds and taken deliveries)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from survey_warehouse.operations import inbox
    from survey_warehouse.raw.builds import resolve_stopped_runs
    from survey_warehouse.warehouse import Warehouse

    paths = get_paths()
    warehouse = Warehouse.from_env(paths.warehouse)
    run_id = run_id or _task_run_id()
    if warehouse.backend == "duckdb":  # a publication killed between its rename and its commit, undone or finished
        from survey_warehouse.publishing.publish import recover_publication

        recover_publication(warehouse, paths.published)
    resolve_stopped_runs(warehouse)
    inbox.recover_stopped_runs(
        paths.inbox_dir, run_id, lambda journal: _archive_committed(warehouse, journal), wave_file_of(paths)
    )
    try:
        if delivery is not None:
            _check_announced(delivery)
        spec = read_wave_spec(wave_year, paths)
        if spec is None:
            expected = paths.waves_config / f"{wave_year}.yml"
            if delivery is None:
                still = published_without_spec(wave_year, paths)
                if still:
                    raise SurveyWarehouseError(still)
                raise AirflowSkipException(f"No survey wave in {wave_year}: there is no {expected}")
            raise SurveyWarehouseError(_without_spec(delivery, wave_year, expected, paths))
        delivered = None
        if delivery is not None:
            _check_delivery_for(delivery, spec)
            delivered = inbox.take(delivery, run_id, spec.file.name)  # read under the spec's spelling of the name
        plan = (
            _plan_current_loads_only(wave_year, warehouse)
            if current_loads_only
            else plan_wave(wave_year, paths, delivered=delivered)
        )
    except inbox.NotTaken as exc:
        raise AirflowSkipException(str(exc)) from exc
    if plan.action == "nothing":
        if delivery is not None:  # the very file already loaded and published: it becomes the wave's file
            inbox.archive(delivery, run_id, spec.file, _current_sha(warehouse, wave_year) or "")
            inbox.finish(delivery, run_id)
        raise AirflowSkipException(plan.reason)
    log.info("wave %s: %s (%s)", wave_year, plan.action, plan.reason)
    return {
        "wave_year": wave_year,
        "action": plan.action,
        "reason": plan.reason,
        "file": plan.file,
        "delivery": str(delivered) if delivered else None,  # what the run reads: the file it took
        "delivered_as": str(delivery.path) if delivery else None,
    }


def _plan_current_loads_only(wave_year: int, warehouse: Warehouse) -> Plan:
    """A run started with `build_current_loads_only`: no load; the marts are built from every wave's current load,
    the loads waiting for a build held out. When that build fails too, no new wave's data is what breaks it."""
    from survey_warehouse.raw import registry
    from survey_warehouse.warehouse import Session

    with Session(warehouse) as session:
        current = registry.current_load(session, wave_year)
    if current is None:
        raise SurveyWarehouseError(
            f"wave {wave_year} has no current load: a build from the current loads alone is started with a wave "
            "that has one"
        )
    return Plan(
        wave_year,
        "rebuild_current",
        "the marts built from the current loads alone, to tell whether a failed build comes from a new wave's data",
        "",
    )


# in the message about a delivery without a wave spec: the decisions shown, so that they, the preview and the steps
# fit the owner's mail (notify.REPORT_LINES lines)
DECISIONS_SHOWN = 5


def _without_spec(delivery: Delivery, wave_year: int, expected: Path, paths: Paths) -> str:
    """A delivery for a year without a wave spec is not loaded: what a draft of its spec proposes (nothing is
    written into the project: the owner writes the draft with `make wave-draft`), the decisions it leaves to a
    person, the check's preview of the draft with its proposals taken (on a scratch copy), and what to do."""
    from survey_warehouse.drafting.draft import draft_wave
    from survey_warehouse.operations import inbox

    name = inbox.shown_name(delivery.path.name)
    shown, expected_shown = paths.shown(delivery.path), paths.shown(expected)
    head = (
        f"{name}: delivered for wave {wave_year}, but there is no wave spec {expected_shown}, so nothing was loaded "
        "(nothing is, until the wave's spec is written and confirmed)."
    )
    steps = (
        f"To go on: `make wave-draft FILE={shown} YEAR={wave_year}` writes the draft into {expected_shown} and the "
        f"codebook seeds; answer what it lists; `make wave-check YEAR={wave_year}` shows what would be quarantined "
        "and the headline preview; then drop the file again. (Or, if the file is of another year, drop it into "
        "the folder of its wave year.)"
    )
    try:
        draft = draft_wave(delivery.path, wave_year, paths.root, write=False)
    except Exception as exc:
        return f"{head}\nNo draft of its spec could be made: {faults.cause(exc) or exc}\n{steps}"
    open_ = [d for d in draft.decisions if d.needs_person]
    lines = [
        head,
        f"A draft of its spec from the file and the earlier waves: {draft.settled} proposal(s) sure, "
        f"{len(open_)} decision(s) left to a person:",
    ]
    for number, d in enumerate(open_[:DECISIONS_SHOWN], start=1):
        about = f" {d.column!r}" if d.column else ""
        proposal = f": proposed {d.proposal!r}" if _proposed(d.proposal) else ""
        lines.append(f"  {number}. [{d.kind}]{about}{proposal}")
    if len(open_) > DECISIONS_SHOWN:
        lines.append(f"  ... and {len(open_) - DECISIONS_SHOWN} more (the draft lists them all)")
    lines += draft_preview(delivery.path, wave_year, paths, sum(_proposed(d.proposal) for d in open_))
    return "\n".join([*lines, steps])


def _proposed(proposal: Any) -> bool:
    return proposal not in (None, "", [])


PREVIEWS_KEPT = "draft_previews"  # under var/: the last preview of a draft per wave year, by what it was made from
PACKAGE = Path(__file__).resolve().parents[1]  # the code that drafts, loads and checks a wave (src/survey_warehouse)


def draft_preview(file: Path, wave_year: int, paths: Paths, proposals: int) -> list[str]:
    """The check's preview of the file's draft (drafting.check.check_draft), in a few lines. Made once for the same
    file and project: the lines are kept under var/draft_previews, named by the digest of the file, its wave year,
    the wave specs a draft reads, what the build reads (the dbt project, the seeds, the suites), the package's own
    code and the settings that change a load or its gate (settings.LOAD_SETTINGS); dropping the same file again
    reuses them. A preview that could not be made is not kept."""
    import hashlib
    import json

    from survey_warehouse.drafting.check import check_draft
    from survey_warehouse.drafting.history import WAVES
    from survey_warehouse.publishing.publish import build_fingerprint
    from survey_warehouse.raw.registry import file_sha256
    from survey_warehouse.warehouse import Warehouse

    try:
        digest = hashlib.sha256(f"{wave_year}\0{file_sha256(file)}\0".encode())
        digest.update(build_fingerprint(paths, Warehouse.from_env(paths.warehouse)).encode())
        for spec in sorted((paths.root / WAVES).glob("*.yml")):
            digest.update(spec.name.encode() + b"\0" + spec.read_bytes() + b"\0")
        for source in sorted(PACKAGE.rglob("*.py")):
            digest.update(source.relative_to(PACKAGE).as_posix().encode() + b"\0" + source.read_bytes() + b"\0")
        for setting in LOAD_SETTINGS:
            digest.update(f"{setting}={os.environ.get(setting, '')}\0".encode())
        kept = paths.var / PREVIEWS_KEPT / f"{wave_year}_{digest.hexdigest()[:24]}.json"
        if kept.is_file():
            log.info("wave %s: the draft's preview of this file is reused (%s)", wave_year, paths.shown(kept))
            return [str(line) for line in json.loads(kept.read_text(encoding="utf-8"))]
        result = check_draft(file, wave_year, paths)
        lines = result.draft_lines(proposals)
        if result.status in ("ok", "gate_failed"):
            kept.parent.mkdir(parents=True, exist_ok=True)
            for earlier in kept.parent.glob(f"{wave_year}_*.json"):
                earlier.unlink(missing_ok=True)
            kept.write_text(json.dumps(lines, ensure_ascii=False), encoding="utf-8")
        log.info("wave %s: the draft's preview made in %.0f s", wave_year, result.seconds)
        return lines
    except Exception as exc:  # the decisions are told whatever happens to the preview
        log.exception("wave %s: no preview of the draft", wave_year)
        from survey_warehouse.drafting.check import scrub

        why = faults.cause(exc) or f"{type(exc).__name__}: {exc}"
        return [scrub(f"No preview of the draft: it could not be made: {why.splitlines()[0]}")]


def _check_announced(delivery: Delivery) -> None:
    """The delivery is still in the inbox as announced (else the run ends skipped: an earlier run took it, or a newer
    copy replaced it, which is announced on its own), and it is a regular file (else it is refused)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from survey_warehouse.operations import inbox

    now = inbox.look(delivery.wave_year, delivery.path)
    if now is None or not delivery.is_as_announced(now):
        why = "an earlier run took it" if now is None else "a newer copy was dropped, announced on its own"
        raise AirflowSkipException(f"{inbox.shown_name(delivery.path)} is no longer in the inbox as announced ({why})")
    refused = inbox.refusal(delivery)
    if refused:
        raise SurveyWarehouseError(refused)


def _check_delivery_for(delivery: Delivery, spec: WaveSpec) -> None:
    """The delivery can be the wave's file: its name is the spec's (by the project's one matching rule, so a name a
    Mac wrote decomposed is the same name), and the wave is not withdrawn."""
    from survey_warehouse.intake.matching import match_key
    from survey_warehouse.operations.inbox import shown_name

    name, wave_year = shown_name(delivery.path.name), spec.wave_year
    if match_key(name) != match_key(spec.file.name):
        raise SurveyWarehouseError(
            f"{name}: {spec.name} expects the {wave_year} file to be named {spec.file.name!r}; rename the delivery "
            f"to {spec.file.name} and drop it again (or, if the new name is meant to stay, point 'file' in "
            f"{spec.name} at {spec.file.parent / name})"
        )
    if spec.withdrawn:
        raise SurveyWarehouseError(
            f"{name}: wave {wave_year} is withdrawn in {spec.name} ({spec.withdrawn}), so the file is not loaded; "
            "remove `withdrawn` from the spec and drop the file again to publish it"
        )


def _task_run_id() -> str:
    """The run of the task calling (its context), or one for this process outside a task."""
    import os

    try:
        from airflow.sdk import get_current_context

        return str(get_current_context()["run_id"])
    except Exception:
        return f"local-{os.getpid()}"


def _current_sha(warehouse: Warehouse, wave_year: int) -> str | None:
    """The sha256 of the file of the wave's current (published) load."""
    from survey_warehouse.warehouse import Session

    with Session(warehouse) as session:
        row = session.execute(
            "select file_sha256 from raw.load_registry where wave_year = ? and is_current", [wave_year]
        ).fetchone()
    return row[0] if row else None


def wave_file_of(paths: Paths) -> Callable[[int], Path | None]:
    """A wave year's archive, the wave spec's `file:` (None without a spec, or with one that cannot be read): the
    only archive a run's journal in the inbox may name."""

    def wave_file(wave_year: int) -> Path | None:
        try:
            spec = read_wave_spec(wave_year, paths)
        except SurveyWarehouseError:
            return None
        return spec.file if spec is not None else None

    return wave_file


def _archive_committed(warehouse: Warehouse, journal: dict[str, Any]) -> bool:
    """Whether the publication a stopped run archived its delivery for committed: its build was published (for a
    delivery archived without a publication, the wave's current load is that file)."""
    from survey_warehouse.warehouse import Session

    if journal.get("build_id"):
        with Session(warehouse) as session:
            row = session.execute("select status from raw.builds where build_id = ?", [journal["build_id"]]).fetchone()
        return row is not None and row[0] == "published"
    return _current_sha(warehouse, int(journal["wave_year"])) == journal.get("sha256")


@keeps_its_error
def load_raw_wave(wave_year: int, delivered: str | None = None, action: str | None = None) -> dict[str, Any]:
    """Load the wave's file into raw: the spec's file, or the delivery the run took (`delivered`, the plan's). A
    run that withdraws the wave loads nothing: it goes on with the wave's current load, which its build leaves
    out."""
    from survey_warehouse.raw import load, registry
    from survey_warehouse.warehouse import Session, Warehouse

    paths = get_paths()
    if action == "rebuild_current":
        with Session(Warehouse.from_env(paths.warehouse)) as session:
            current = registry.current_load(session, wave_year)
        if current is None:
            raise SurveyWarehouseError(f"wave {wave_year} has no current load to build from")
        return {
            "load_id": current.load_id,
            "rows": current.row_count,
            "unchanged": True,
            "quarantined": 0,
            "message": f"wave {wave_year}: nothing loaded; the marts are built from the current loads alone",
            "warnings": [],
        }
    if action == "withdraw":
        spec = _spec(wave_year, paths)
        with Session(Warehouse.from_env(paths.warehouse)) as session:
            current = registry.current_load(session, wave_year)
        if current is None:
            raise SurveyWarehouseError(f"wave {wave_year} has no current load to withdraw")
        return {
            "load_id": current.load_id,
            "rows": current.row_count,
            "unchanged": True,
            "quarantined": 0,
            "message": f"wave {wave_year}: withdrawn ({spec.withdrawn}); load {current.load_id} leaves the marts",
            "warnings": [],
            "withdraw": spec.withdrawn,
        }
    result = load.load_wave(_spec(wave_year, paths, delivered), Warehouse.from_env(paths.warehouse), paths=paths)
    log.info(result.describe())
    return {
        "load_id": result.load_id,
        "rows": result.row_count,
        "unchanged": result.unchanged,
        "quarantined": result.quarantined,
        "message": result.describe(),
        "warnings": list(result.warnings),
    }


def _run_load(context: Any) -> dict[str, Any]:
    return context["ti"].xcom_pull(task_ids=LOAD_TASK_ID)


def raw_wave_checkpoint_for_run(gx_context: Any) -> Any:
    """configure_checkpoint for the GX operator: the checkpoint of exactly the load this run made."""
    from airflow.sdk import get_current_context

    from survey_warehouse import quality

    context = get_current_context()
    paths = get_paths()
    spec = _spec(wave_year_of_run(context), paths)
    return quality.raw_wave_checkpoint(gx_context, spec, _run_load(context)["load_id"], paths)


def marts_checkpoint_for_run(gx_context: Any) -> Any:
    """configure_checkpoint for the GX operator: the marts as this run built them."""
    from airflow.sdk import get_current_context

    from survey_warehouse import quality

    context = get_current_context()
    try:
        return quality.marts_checkpoint(
            gx_context, marts_batch(wave_year_of_run(context), context["run_id"]), get_paths()
        )
    except Exception as exc:  # (a suite that does not load): the reason the run failed, not an earlier report
        remember_error(exc)
        raise


def marts_batch(wave_year: int, run_id: str) -> str:
    """The name of a run's marts gate batch (and of its report)."""
    return f"{wave_year}_{re.sub(r'[^A-Za-z0-9_.-]', '_', run_id)}"


def gate_message(paths: Paths, warehouse: Warehouse, load_id: str) -> str:
    from survey_warehouse import quality

    path = quality.report_path(paths, "raw_wave", load_id)
    report = (
        quality.GateReport.read(path).message()
        if path.exists()
        else "the raw gate did not complete; see the validate_raw_wave task log"
    )
    parts = [report, quality.quarantine_summary(warehouse, load_id), quality.removal_summary(warehouse, load_id)]
    return "\n".join(p for p in parts if p)


@keeps_its_error
def accept_raw_wave(loaded: dict[str, Any]) -> str:
    """The load passed its raw gate: it becomes the candidate the marts are built from (not yet current)."""
    from survey_warehouse.raw import registry
    from survey_warehouse.warehouse import Warehouse

    paths = get_paths()
    warehouse = Warehouse.from_env(paths.warehouse)
    if loaded["unchanged"]:
        return f"load {loaded['load_id']} is already current; the marts are rebuilt from it"
    message = gate_message(paths, warehouse, loaded["load_id"])
    registry.accept_load(warehouse, loaded["load_id"], message)
    return message


def build_in_this_run(loaded: dict[str, Any], context: Any) -> bool:
    """Whether this run goes on to build, gate and publish the marts. A run started with the param `defer_build`
    (`make run` catching up several waves, for all but the last) stops here: its load, gated and accepted, waits
    as a candidate, and the next run that builds takes it with its own wave and publishes both. A run that
    withdraws its wave always builds: the withdrawal happens only when a build that leaves the wave out is
    published."""
    if not (context.get("params") or {}).get(DEFER_BUILD_PARAM) or loaded.get("withdraw"):
        return True
    from survey_warehouse.raw import registry
    from survey_warehouse.warehouse import Warehouse

    if not loaded["unchanged"]:
        registry.defer_build(
            Warehouse.from_env(get_paths().warehouse),
            loaded["load_id"],
            "passed its raw gate; waits for the build of a later run, which publishes it with its own wave",
        )
    log.info("wave %s: the build is left to a later run (%s)", wave_year_of_run(context), DEFER_BUILD_PARAM)
    return False


def stale_waiting_loads(paths: Paths, warehouse: Warehouse, own_wave: int) -> dict[str, str]:
    """The candidates waiting for a build whose wave's inputs changed since they were loaded (the file, its spec,
    the codebook): load_id -> why. A build never takes them; the next run of their wave loads the wave again."""
    from survey_warehouse.intake.codebook import Codebook
    from survey_warehouse.intake.waves import find_wave_spec
    from survey_warehouse.raw import registry
    from survey_warehouse.raw.builds import waiting
    from survey_warehouse.warehouse import Session

    stale: dict[str, str] = {}
    with Session(warehouse) as session:
        waiting_loads = waiting(session)
        currents = {wave: registry.current_load(session, wave) for _id, wave in waiting_loads}
    if not waiting_loads:
        return stale
    codebook = Codebook.from_seeds(paths.dbt_project / "seeds")
    for load_id, wave in waiting_loads:
        if wave == own_wave:
            continue
        spec = find_wave_spec(wave, paths)
        again = f"run wave {wave} again to load it as it is now"
        if spec is None:
            stale[load_id] = f"wave {wave} has no wave spec any more; {again}"
        elif spec.withdrawn:
            stale[load_id] = f"wave {wave} is withdrawn ({spec.withdrawn}) in {spec.name}"
        elif not spec.file.is_file():
            stale[load_id] = f"the file of wave {wave} is no longer at {paths.shown(spec.file)}; {again}"
        elif not registry.is_unchanged(
            currents[wave], registry.file_sha256(spec.file), spec, registry.read_fingerprint(spec, codebook)
        ):
            stale[load_id] = (
                f"the file, wave spec or codebook of wave {wave} changed after this load waited for its build; {again}"
            )
    return stale


@keeps_its_error
def begin_build(loaded: dict[str, Any], context: Any) -> dict[str, Any]:
    """Before dbt reads anything: record which load of every wave this run's build is made from (its own load for
    its wave, the candidates waiting for a build, every other wave's current load) and the fingerprint of the dbt
    project, seeds and suites as the build is about to read them. Staging builds from exactly these loads, and
    publishing promotes exactly these."""
    from survey_warehouse.publishing.publish import build_fingerprint
    from survey_warehouse.raw.builds import begin_build as record
    from survey_warehouse.warehouse import Warehouse

    paths = get_paths()
    warehouse = Warehouse.from_env(paths.warehouse)
    wave_year = wave_year_of_run(context)
    fingerprint = build_fingerprint(paths, warehouse)
    withdraw = loaded.get("withdraw")
    build = record(
        warehouse,
        context.get("run_id") or "",
        wave_year,
        None if withdraw else loaded["load_id"],
        fingerprint,
        stale=stale_waiting_loads(paths, warehouse, wave_year),
        hold_out_waiting=bool(
            (context.get("params") or {}).get(HOLD_OUT_WAITING_PARAM)
            or (context.get("params") or {}).get(CURRENT_LOADS_ONLY_PARAM)
        ),
        withdraw=withdraw,
    )
    return build.as_dict()


def gx_file_context() -> Any:
    """configure_file_data_context for the GX operators: results kept under var/gx, Data Docs in var/data_docs."""
    from survey_warehouse import quality

    return quality.file_context(get_paths())


def _build_of_run(context: Any) -> Any:
    """The build this run began (the begin_build task's XCom), or None when it did not get that far."""
    from survey_warehouse.raw.builds import Build

    data = context["ti"].xcom_pull(task_ids=BEGIN_BUILD_TASK_ID)
    return Build.from_dict(data) if data else None


def publish_marts(
    run_id: str, build: dict[str, Any], delivery: Delivery | None = None, outlet_events: Any = None
) -> dict[str, Any]:
    """Publish the marts of this run's build and make its candidate loads current, together. A delivery that
    started the run becomes the wave's file (the spec's `file:`) first, exactly the file the run loaded, so the
    archive and the published marts change together: when publishing fails, the archive is put back and the
    delivery is rejected. What fails after the publication committed fails nothing: it is logged and returned under
    `warnings`. The task's asset event (`outlet_events`, of the asset `survey_marts`) says when, where and from
    which loads."""
    from survey_warehouse.operations import inbox
    from survey_warehouse.publishing.publish import publish, read_publication
    from survey_warehouse.raw.builds import Build, fail_build
    from survey_warehouse.warehouse import Warehouse

    paths = get_paths()
    warehouse = Warehouse.from_env(paths.warehouse)
    this_build = Build.from_dict(build)
    archived, warnings = None, []
    try:
        if delivery is not None:
            archived = inbox.archive(
                delivery,
                run_id,
                _spec(delivery.wave_year, paths).file,
                _loaded_sha(warehouse, this_build) or "",
                this_build.build_id,
            )
        publication = publish(warehouse, paths.published, this_build, run_id)
    except Exception as exc:
        if not _build_published(warehouse, this_build):
            remember_error(exc)
            message = f"the run failed at publish_marts: {type(exc).__name__}: {exc}"
            from survey_warehouse.raw import registry

            for load_id, wave in this_build.brings_in:
                if wave == this_build.wave_year:
                    registry.fail_load(warehouse, load_id, message)
            fail_build(warehouse, this_build, message)
            if delivery is not None:
                try:
                    inbox.give_back(delivery, run_id, message, wave_file_of(paths))
                except Exception:
                    log.exception("Could not give %s back; the next run does it", inbox.shown_name(delivery.path))
            raise
        log.exception("publish_marts: the publication committed, then this failed")
        warnings.append(f"after the publication committed: {type(exc).__name__}: {exc}")
        found = read_publication(warehouse, paths.published)
        if found is None:
            raise
        publication = found
    log.info("Published %s to %s", publication.tables, publication.path)
    if delivery is not None:
        warnings += inbox.finish(delivery, run_id)
    published = {
        "path": str(publication.path),
        "tables": publication.tables,
        "load_ids": publication.load_ids,
        "published_at": publication.published_at.isoformat(),
        "waves": this_build.new_waves,  # the waves this publication brings in (more than one after a catch-up)
        "withdrawn": sorted({wave for _load, wave in this_build.withdraws}),  # the waves it leaves out
        "withdrawn_because": this_build.withdrawn_because,
    }
    if outlet_events is not None:
        from survey_warehouse.publishing.assets import SURVEY_MARTS

        outlet_events[SURVEY_MARTS].extra = published
    return {**published, "archived": str(archived) if archived else None, "warnings": warnings}


def _loaded_sha(warehouse: Warehouse, build: Any) -> str | None:
    """The sha256 of the file this run's build holds for its own wave: what its delivery must be to be archived."""
    from survey_warehouse.warehouse import Session

    own = [load_id for load_id, wave in build.loads if wave == build.wave_year]
    if not own:
        return None
    with Session(warehouse) as session:
        row = session.execute("select file_sha256 from raw.load_registry where load_id = ?", own[:1]).fetchone()
    return row[0] if row else None


def _build_published(warehouse: Warehouse, build: Any) -> bool:
    from survey_warehouse.warehouse import Session

    with Session(warehouse) as session:
        row = session.execute("select status from raw.builds where build_id = ?", [build.build_id]).fetchone()
    return row is not None and row[0] == "published"


def remember_error(exc: BaseException) -> None:
    """Keep a step's error where `record_failure` finds it (an XCom of the failed task)."""
    try:
        from airflow.sdk import get_current_context

        context = get_current_context()
    except Exception:  # outside a task (tests, tools): the exception itself is the report
        log.debug("no task context to keep the error in", exc_info=True)
        return
    keep_the_error_of({**context, "exception": exc})


def keep_the_error_of(context: Any) -> None:
    """Keep the failed step's exception (`context["exception"]`) as its XCom `error`. Also the on_failure_callback
    of a step this project does not write (the dbt build's producer, a Cosmos operator): without it a dbt build
    that failed on a full disk or a refused connection was told as "a dbt model or test failed"."""
    exc = context.get("exception")
    if not isinstance(exc, BaseException) or type(exc).__name__ == "AirflowSkipException":
        return
    try:
        context["ti"].xcom_push(key="error", value=faults.described(exc)[:4000])
    except Exception:  # the callback must never hide the step's own failure
        log.warning("could not keep the error of %s", getattr(context.get("ti"), "task_id", "a step"), exc_info=True)


def _failed_steps(context: Any) -> list[str]:
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    return sorted(task for task, state in states.items() if state == "failed" and task != ti.task_id)


PRODUCER_TASK_ID = "dbt_build.dbt_producer_watcher"  # the one `dbt build`; the group's other steps report its nodes


def steps_named(steps: list[str]) -> str:
    """The failed steps for a message: a failed dbt build once (its producer, or its first step, and how many of
    its model and test steps failed with it), not each of its dozens of steps."""
    dbt = sorted((s for s in steps if s.startswith("dbt_build.")), key=lambda s: (s != PRODUCER_TASK_ID, s))
    named = [s for s in steps if not s.startswith("dbt_build.")] + dbt[:1]
    more = max(len(dbt) - 1, 0)
    if more:
        named.append(f"{more} more dbt_build step{'' if more == 1 else 's'}")
    return ", ".join(named)


def failure_message(
    paths: Paths,
    warehouse: Warehouse,
    steps: list[str],
    load_id: str | None,
    errors: dict[str, str] | None = None,
    marts_batch: str | None = None,
) -> str:
    """Why a run failed, in the words of the step that failed, for the load registry and the owner."""
    from survey_warehouse import quality

    head = f"the run failed at {steps_named(steps) or 'an unknown step'}"
    errors = {step: error for step, error in (errors or {}).items() if error}
    if errors:
        return f"{head}: " + "\n".join(errors.values())
    if load_id and "validate_raw_wave" in steps:
        return f"{head}:\n{gate_message(paths, warehouse, load_id)}"
    if "validate_marts" in steps:  # this run's report, never an earlier run's
        report = quality.report_path(paths, "marts", marts_batch) if marts_batch else None
        if report is not None and report.exists():
            return f"{head}:\n{quality.GateReport.read(report).message()}"
        return f"{head}: the marts gate did not complete; see the validate_marts task log"
    if any(step.startswith("dbt_build") for step in steps):
        return (
            f"{head}: a dbt model or test failed, so nothing was published; the task log of the failed dbt "
            "step names the model or test and the rows"
        )
    return f"{head}; see its task log"


def record_failure(**context: Any) -> str:
    """Runs when any step failed: the run's load (if it made one) is failed with the reason. The load itself,
    when it failed, has already recorded its rejection in the registry."""
    from survey_warehouse.raw import registry
    from survey_warehouse.warehouse import Warehouse

    paths = get_paths()
    warehouse = Warehouse.from_env(paths.warehouse)
    steps = _failed_steps(context)
    loaded = _run_load(context)
    load_id = loaded["load_id"] if loaded and not loaded.get("unchanged") else None
    errors = {step: context["ti"].xcom_pull(task_ids=step, key="error") for step in steps}
    message = failure_message(
        paths, warehouse, steps, load_id, errors, marts_batch(wave_year_of_run(context), context.get("run_id") or "")
    )
    if load_id:
        registry.fail_load(warehouse, load_id, message)
    build = _build_of_run(context)
    if build is not None:  # the candidates waiting for a build that this run's build took fail with it
        from survey_warehouse.raw.builds import fail_build

        fail_build(warehouse, build, message)
    delivery = delivery_of_run(context)
    if delivery is not None:  # back into the inbox with the reason beside it (or, not taken, the reason beside it)
        from survey_warehouse.operations.inbox import reject_delivery

        reject_delivery(delivery, context.get("run_id") or _task_run_id(), message, wave_file_of(paths))
    log.error("Wave %s: %s", wave_year_of_run(context), message)
    return message
