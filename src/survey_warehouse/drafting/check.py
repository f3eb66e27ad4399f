"""`wave check YEAR`: what a run of the wave would do, without doing it.

The wave is loaded and its raw gate run against a scratch copy of the warehouse (a temporary folder under var/tmp,
removed afterwards); the headline preview is dbt's own models (`+fct_responsibility_shares`) built into that copy.
The warehouse is only copied (as a file, never opened); the published marts and Airflow's metadata are not read.

Exit codes:

    0  the wave would load and pass its raw gate (its preview is printed)
    2  the check could not run (e.g. a run kept writing the warehouse while it was copied): the message says why
    3  placeholders remain in the wave's spec or codebook rows (each is named)
    4  the wave cannot be loaded: an error in its spec or codebook, or its file is missing or unreadable as a whole
    5  the wave loads but fails its raw gate (what fails is listed, with the quarantined rows)
    6  the wave passes its raw gate, but dbt could not build the preview (a run would fail at dbt_build)
    7  the wave's spec says `withdrawn`: a run leaves it out of the marts, nothing is loaded, so nothing is checked
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from survey_warehouse.drafting.placeholders import Placeholder, find_placeholders
from survey_warehouse.errors import QualityGateFailed, SurveyWarehouseError, WaveFileError, WaveSpecError
from survey_warehouse.settings import Paths

EXIT_OK = 0
EXIT_NOT_RUN = 2
EXIT_PLACEHOLDERS = 3
EXIT_SPEC_ERROR = 4
EXIT_GATE_FAILED = 5
EXIT_PREVIEW_FAILED = 6
EXIT_WITHDRAWN = 7

# the models the headline preview needs: the share and everything it is built from (seeds included)
PREVIEW_SELECTION = "+fct_responsibility_shares"
# the preview's dbt build is stopped after this long (it takes seconds; a build that hangs must not hold the run)
DBT_TIMEOUT_SECONDS = int(os.environ.get("SURVEY_PREVIEW_DBT_TIMEOUT", "900"))
# how often the warehouse is copied again when it changed while it was copied
COPY_ATTEMPTS = 3
# the quarantined rows the text lists (--json lists all)
QUARANTINE_SHOWN = 50
# no respondent's e-mail address reaches the output, whatever a message quotes
_ADDRESS = re.compile(r"[^\s@<>()\[\],;:'\"]+@[^\s@<>()\[\],;:'\"]+")


@dataclass(frozen=True)
class QuarantinedRow:
    row: int
    column: str | None
    reason: str
    message: str


@dataclass(frozen=True)
class Headline:
    """The wave's IT-led share as the marts compute it: k of the n answering cities, and when some surveyed cities
    did not answer, the bounds they leave for the share of all surveyed cities."""

    cities: int  # k: cities where IT management primarily leads
    cities_responded: int  # n
    cities_surveyed: int
    share: float
    share_of_surveyed_min: float
    share_of_surveyed_max: float
    # a draft's preview: how many of the k IT-led and of the n answering cities rest on an open proposal, a code the
    # draft proposed for one of their lead answers, job titles or city spellings (None: not a draft's preview)
    resting: tuple[int, int] | None = None

    def describe(self) -> str:
        head = f"IT-led {self.cities}/{self.cities_responded} answering cities ({self.share:.1%})"
        if self.resting and self.resting[1]:
            head += (
                f" ({self.resting[0]} of the {self.cities} rest on open proposals, {self.resting[1]} of the "
                f"{self.cities_responded} in all: the code of a lead answer, job title or city spelling)"
            )
        if self.cities_responded < self.cities_surveyed:
            return (
                f"{head}; of all {self.cities_surveyed} surveyed {self.share_of_surveyed_min:.0%} - "
                f"{self.share_of_surveyed_max:.0%} (whatever the {self.cities_surveyed - self.cities_responded} "
                "that did not answer would have said)"
            )
        return f"{head}; all {self.cities_surveyed} surveyed cities answered"


@dataclass(frozen=True)
class OptionChange:
    question_id: str
    answer_code: str
    change: str  # added | removed | renamed | revalued (the labels are the points) | rescaled (no answer_code)
    labels_before: list[str]
    labels_now: list[str]

    def describe(self) -> str:
        if self.change == "rescaled":
            return f"{self.question_id}: {self.labels_before[0]} -> {self.labels_now[0]} (its options are not compared)"
        if self.change == "added":
            return f"{self.question_id}: option {self.answer_code} added ({_labels(self.labels_now)})"
        if self.change == "revalued":
            return (
                f"{self.question_id}: option {self.answer_code} stands for another point: "
                f"{', '.join(self.labels_before)} -> {', '.join(self.labels_now)}"
            )
        if self.change == "removed":
            return f"{self.question_id}: option {self.answer_code} removed (was {_labels(self.labels_before)})"
        return (
            f"{self.question_id}: option {self.answer_code} renamed: {_labels(self.labels_before)} -> "
            f"{_labels(self.labels_now)}"
        )


def _labels(labels: list[str]) -> str:
    return ", ".join(repr(label) for label in labels)


@dataclass
class WaveDiff:
    previous: int | None  # the previous wave in the codebook
    questions_added: list[str] = field(default_factory=list)
    questions_dropped: list[str] = field(default_factory=list)
    options: list[OptionChange] = field(default_factory=list)
    cities_surveyed: int = 0
    cities_added_to_survey: list[str] = field(default_factory=list)
    cities_dropped_from_survey: list[str] = field(default_factory=list)
    cities_not_answering: list[str] | None = None  # None: not known (no preview)

    def lines(self, names: dict[str, str]) -> list[str]:
        def cities(codes: list[str]) -> str:
            return ", ".join(f"{names.get(c, c)} ({c})" for c in codes)

        if self.previous is None:
            out = ["no earlier wave in the codebook to compare with"]
        else:
            out = [
                f"questions added: {', '.join(self.questions_added) or 'none'}",
                f"questions dropped: {', '.join(self.questions_dropped) or 'none'}",
            ]
            out += [f"options: {o.describe()}" for o in self.options] or [
                "options: no option added, removed or renamed"
            ]
            if self.cities_added_to_survey:
                out.append(f"cities surveyed now, not in {self.previous}: {cities(self.cities_added_to_survey)}")
            if self.cities_dropped_from_survey:
                out.append(f"cities surveyed in {self.previous}, not now: {cities(self.cities_dropped_from_survey)}")
        if self.cities_not_answering is None:
            out.append(f"cities not answering: not known without the preview ({self.cities_surveyed} surveyed)")
        elif self.cities_not_answering:
            out.append(
                f"cities not answering: {len(self.cities_not_answering)} of the {self.cities_surveyed} surveyed: "
                f"{cities(self.cities_not_answering)}"
            )
        else:
            out.append(f"cities not answering: none; all {self.cities_surveyed} surveyed cities answered")
        return out


@dataclass
class WaveCheck:
    wave_year: int
    exit_code: int = EXIT_OK
    status: str = "ok"  # ok | not_run | placeholders | spec_error | gate_failed | preview_failed | withdrawn
    error: str | None = None
    placeholders: list[Placeholder] = field(default_factory=list)
    file_name: str | None = None
    rows: int | None = None
    quarantined_rows: int | None = None
    quarantine: list[QuarantinedRow] = field(default_factory=list)
    gate: str | None = None  # the raw gate's report (and what a failing load would drop)
    headline: Headline | None = None
    diff: WaveDiff | None = None
    compared_with_current_load: bool = False
    seconds: float = 0.0
    # a check of a draft (check_draft): the quarantined rows whose answer or city a decision leaves without a code,
    # the columns not read because their question has no answer label yet, and the rows that answered them
    undecided_rows: int | None = None
    unread_columns: list[str] = field(default_factory=list)
    unread_rows: int = 0
    city_names: dict[str, str] = field(default_factory=dict, repr=False)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("city_names")
        return data

    def text(self) -> str:
        from survey_warehouse.intake.matching import shown

        year = self.wave_year
        if self.status == "placeholders":
            return "\n".join(
                [
                    f"wave {year}: {len(self.placeholders)} placeholder(s) left to fill in; nothing was checked:",
                    *(f"  {p.describe()}" for p in self.placeholders),
                    "Replace each with the real value (a value starting with TODO is a placeholder), then run "
                    f"`make wave-check YEAR={year}` again.",
                ]
            )
        if self.status in ("spec_error", "not_run"):
            return f"wave {year}: cannot be checked: {self.error}"
        if self.status == "withdrawn":
            return (
                f"wave {year}: {self.error}: a run leaves the wave out of the marts and loads nothing, so there is "
                f"nothing to check (exit {self.exit_code}); remove `withdrawn` from the spec to check the wave"
            )
        lines = [f"wave {year}: {self.file_name}: {self.rows} rows, {self.quarantined_rows} would be quarantined"]
        if self.quarantine:
            lines.append("Quarantined rows (reason, row, column):")
            lines += [
                f"  {q.reason}, row {q.row}, column {shown(q.column)}: {q.message}"
                if q.column
                else f"  {q.reason}, row {q.row}: {q.message}"
                for q in self.quarantine[:QUARANTINE_SHOWN]
            ]
            if len(self.quarantine) > QUARANTINE_SHOWN:
                lines.append(f"  ... and {len(self.quarantine) - QUARANTINE_SHOWN} more (all of them: --json)")
        lines.append("Raw gate: " + (self.gate or "not run"))
        if not self.compared_with_current_load:
            lines.append("  (no current load of the wave in the warehouse: nothing to compare a re-delivery with)")
        if self.headline is not None:
            lines.append(f"Headline preview: {self.headline.describe()}")
        elif self.status == "gate_failed":
            lines.append("Headline preview: none (a run stops at the raw gate)")
        elif self.error:
            lines.append(f"Headline preview: dbt could not build it: {self.error}")
        if self.diff is not None:
            against = f"wave {self.diff.previous}" if self.diff.previous else "the previous wave"
            lines.append(f"Compared with {against}:")
            lines += [f"  {line}" for line in self.diff.lines(self.city_names)]
        verdict = {
            "ok": "the wave would load and pass its raw gate",
            "gate_failed": "the wave would FAIL its raw gate",
            "preview_failed": "the wave passes its raw gate, but dbt could not build the marts' preview",
        }[self.status]
        lines.append(f"wave {year}: {verdict} (exit {self.exit_code}; checked in {self.seconds:.0f} s)")
        return "\n".join(scrub(line) for line in lines)

    def draft_lines(self, proposals: int) -> list[str]:
        """The preview of a draft (check_draft) in a few lines, for a message that also lists the draft's decisions:
        what it rests on, the headline, the rows that would be quarantined by reason, the questions added and
        dropped; or, when no preview could be made, one line with the cause."""
        if self.status not in ("ok", "gate_failed"):
            cause = "dbt could not build it" if self.status == "preview_failed" else "it could not be made"
            why = (self.error or self.status).splitlines()[0] if self.error else self.status
            return [scrub(f"No preview of the draft: {cause}: {why}")]
        lines = [
            f"Preview if the {proposals} open proposal(s) are accepted as drafted (loaded and built on a scratch "
            "copy only; nothing is loaded until the spec is written and confirmed):"
        ]
        if self.headline is not None:
            lines.append(f"  {self.headline.describe()}")
        else:
            lines.append(f"  a run would stop at the raw gate: {(self.gate or 'failed').splitlines()[0]}")
        reasons: dict[str, set[int]] = {}
        for q in self.quarantine:
            reasons.setdefault(q.reason, set()).add(q.row)
        counted = sorted(reasons.items(), key=lambda r: (-len(r[1]), r[0]))
        quarantined = f"{self.quarantined_rows} of {self.rows} rows would be quarantined" + (
            ": " + ", ".join(f"{reason} {len(rows)}" for reason, rows in counted) if counted else ""
        )
        if self.undecided_rows:
            quarantined += f" ({self.undecided_rows} for an answer or city whose code is left to a person)"
        if self.unread_columns:
            quarantined += (
                f"; not read, their answers' codes left to a person: {', '.join(map(repr, self.unread_columns))} "
                f"({self.unread_rows} row(s) answered)"
            )
        lines.append(f"  {quarantined}")
        diff = self.diff
        if diff is None or diff.previous is None:
            lines.append("  no earlier wave in the codebook to compare with")
        else:
            lines.append(
                f"  compared with {diff.previous}: questions added: {', '.join(diff.questions_added) or 'none'}; "
                f"dropped: {', '.join(diff.questions_dropped) or 'none'}"
            )
        return [scrub(line) for line in lines]


def scrub(text: str) -> str:
    return _ADDRESS.sub("<e-mail address>", text)


def _scrubbed(data: Any) -> Any:
    """Every text in `data` scrubbed (before it becomes JSON: scrubbing JSON text could cut an escape)."""
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, dict):
        return {k: _scrubbed(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_scrubbed(v) for v in data]
    return data


def check_wave(wave_year: int, paths: Paths) -> WaveCheck:
    """Check a wave as a run would load and gate it, on a scratch copy of the warehouse (see the module)."""
    started = time.perf_counter()
    result = WaveCheck(wave_year)
    try:
        _check(result, paths)
    except SurveyWarehouseError as exc:  # e.g. a warehouse a run kept writing while it was copied
        result.exit_code, result.status, result.error = EXIT_NOT_RUN, "not_run", scrub(str(exc))
    except Exception as exc:  # not a traceback: what failed, as raised
        result.exit_code, result.status, result.error = EXIT_NOT_RUN, "not_run", scrub(f"{type(exc).__name__}: {exc}")
    result.seconds = time.perf_counter() - started
    return result


def _check(result: WaveCheck, paths: Paths) -> None:
    year = result.wave_year
    result.placeholders = find_placeholders(paths.root, year, paths.waves_config)
    if result.placeholders:
        result.exit_code, result.status = EXIT_PLACEHOLDERS, "placeholders"
        return
    read = _read_wave(result, paths)
    if read is None:
        return
    with scratch_copy(paths) as (scratch, compared):
        _load_and_preview(result, *read, scratch, compared, paths)


def _load_and_preview(
    result: WaveCheck,
    spec: Any,
    codebook: Any,
    scratch: Paths,
    compared: bool,
    paths: Paths,
    undecided: list[tuple[str, str]] | None = None,
    proposed: list[tuple[str, str]] | None = None,
) -> None:
    """The wave loaded and gated in the scratch copy, and when it passes, its headline previewed (a draft's: with
    the codes its open proposals give, `proposed`)."""
    result.compared_with_current_load = compared
    _load_and_gate(result, spec, codebook, scratch, undecided)
    if result.status == "ok":
        _preview(result, scratch, paths, proposed)


def _read_wave(result: WaveCheck, paths: Paths) -> tuple[Any, Any] | None:
    """The wave's spec and the codebook, checked as a run checks them (and the diff with the previous wave); None
    when the check stops here (its status and error say why)."""
    from survey_warehouse.errors import CodebookError
    from survey_warehouse.intake.codebook import Codebook
    from survey_warehouse.intake.waves import find_wave_spec

    year = result.wave_year
    try:
        codebook = Codebook.from_seeds(paths.dbt_project / "seeds")
        spec = find_wave_spec(year, paths)
        if spec is None:
            raise WaveSpecError(
                f"there is no wave spec {paths.shown(paths.waves_config / f'{year}.yml')}; write it (see "
                "docs/adding-a-wave.md)"
            )
        if spec.withdrawn:
            result.exit_code, result.status = EXIT_WITHDRAWN, "withdrawn"
            result.error = f"withdrawn in {paths.shown(Path(spec.name))} ({spec.withdrawn})"
            return None
        spec.check(codebook)
        if not spec.file.is_file():
            raise WaveFileError(
                Path(paths.shown(spec.file)),
                f"the file has not arrived (or 'file' in {paths.shown(Path(spec.name))} points elsewhere)",
            )
    except (WaveSpecError, CodebookError, WaveFileError) as exc:
        result.exit_code, result.status, result.error = EXIT_SPEC_ERROR, "spec_error", scrub(str(exc))
        return None
    result.city_names = _city_names(paths)
    result.diff = wave_diff(codebook, spec, paths)
    return spec, codebook


def check_draft(file: Path, wave_year: int, paths: Paths) -> WaveCheck:
    """The check of a wave whose spec is not written: `wave draft` of `file` written into the scratch copy's own
    wave specs and seeds (the project's are only copied), every placeholder taken at its proposal there
    (placeholders.take_proposals), then loaded, gated and previewed as `check_wave` does. The answers and city
    spellings a decision leaves without a code are quarantined in the preview and counted (`undecided_rows`); a
    column whose question has no answer label yet is not read (`unread_columns`, with the rows that answered it)."""
    started = time.perf_counter()
    result = WaveCheck(wave_year)
    project: Path | None = None
    try:
        with scratch_copy(paths) as (copy, compared):
            scratch = _with_own_project(paths, copy)
            project = scratch.dbt_project.parent
            _check_draft(result, file, scratch, compared, paths)
    except SurveyWarehouseError as exc:
        result.exit_code, result.status, result.error = EXIT_NOT_RUN, "not_run", scrub(str(exc))
    except Exception as exc:  # not a traceback: what failed, as raised
        result.exit_code, result.status, result.error = EXIT_NOT_RUN, "not_run", scrub(f"{type(exc).__name__}: {exc}")
    if result.error and project is not None:  # the scratch copy is gone when the message is read: the draft's files
        result.error = result.error.replace(f"{project}{os.sep}", "the draft's ")
    result.seconds = time.perf_counter() - started
    return result


def _with_own_project(paths: Paths, scratch: Paths) -> Paths:
    """The scratch paths with wave specs and a dbt project of their own: copies of the project's (the wave specs a
    draft reads, config/waves; the dbt project without its target and logs)."""
    from dataclasses import replace

    from survey_warehouse.drafting.history import WAVES

    project = scratch.var / "project"
    waves = paths.root / WAVES
    if waves.is_dir():
        shutil.copytree(waves, project / WAVES)
    (project / WAVES).mkdir(parents=True, exist_ok=True)
    shutil.copytree(paths.dbt_project, project / "dbt_project", ignore=shutil.ignore_patterns("target", "logs"))
    return replace(scratch, waves_config=project / WAVES, dbt_project=project / "dbt_project")


def _check_draft(result: WaveCheck, file: Path, scratch: Paths, compared: bool, paths: Paths) -> None:
    from survey_warehouse.drafting.draft import draft_wave
    from survey_warehouse.drafting.placeholders import take_proposals

    year, project = result.wave_year, scratch.dbt_project.parent
    draft_wave(file, year, project)
    taken = take_proposals(project, year, scratch.waves_config)
    left = find_placeholders(project, year, scratch.waves_config)
    if left:  # (a placeholder the rule does not take: the preview would not be the draft's)
        raise SurveyWarehouseError(f"a placeholder the preview cannot take: {left[0].describe()}")
    read = _read_wave(result, scratch)
    if read is None:
        return
    result.unread_columns = taken.unread
    _load_and_preview(result, *read, scratch, compared, paths, taken.undecided, taken.proposed)


@contextmanager
def scratch_copy(paths: Paths) -> Iterator[tuple[Paths, bool]]:
    """Paths like `paths` but with the warehouse, the published marts, the gates' files and var/ in a temporary
    folder: the warehouse a copy of the DuckDB warehouse, or an empty one (no warehouse yet, or a PostgreSQL
    warehouse). Removed afterwards. Also whether the copy holds a current load of any wave."""
    (paths.var / "tmp").mkdir(parents=True, exist_ok=True)
    _remove_stopped_checks(paths.var / "tmp")
    folder = Path(tempfile.mkdtemp(prefix=f"wave_check_{os.getpid()}_", dir=paths.var / "tmp"))
    try:
        scratch = Paths(
            root=paths.root,
            var=folder,
            waves_config=paths.waves_config,
            warehouse=folder / "warehouse" / "survey.duckdb",
            published=folder / "published" / "survey_marts.duckdb",
            data_docs=folder / "data_docs",
            dbt_project=paths.dbt_project,
            inbox=folder / "inbox",
        )
        scratch.warehouse.parent.mkdir(parents=True)
        on_duckdb = os.environ.get("SURVEY_DBT_TARGET", "duckdb") != "postgres"  # (settings.Warehouse.from_env)
        if on_duckdb and paths.warehouse.is_file():
            _copy_warehouse(paths, scratch.warehouse)
        yield scratch, _has_current_loads(scratch.warehouse)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_stopped_checks(tmp: Path) -> list[Path]:
    """The scratch folders of checks that were killed (their process is gone): removed. Returns them."""
    import psutil

    removed = []
    for folder in tmp.glob("wave_check_*"):
        found = re.match(r"wave_check_(\d+)_", folder.name)
        if found and not psutil.pid_exists(int(found[1])):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _copy_warehouse(paths: Paths, copy: Path) -> None:
    """A copy of the DuckDB warehouse file (and its write-ahead log) taken without opening it, so that a run is never
    kept from writing it; a copy during which the file changed (a run wrote it) is taken again, and one that DuckDB
    cannot open refuses the check."""
    import duckdb

    source = paths.warehouse
    files = [(source, copy), (_wal(source), _wal(copy))]
    for attempt in range(COPY_ATTEMPTS):
        before = [_state(f) for f, _ in files]
        for file, to in files:
            if file.is_file():
                shutil.copyfile(file, to)
            else:
                to.unlink(missing_ok=True)
        if [_state(f) for f, _ in files] == before:
            break
        time.sleep(1 + attempt)
    else:
        raise SurveyWarehouseError(
            f"the warehouse {paths.shown(source)} kept changing while it was copied: a run of the waves is writing "
            "it; check again when the run has finished"
        )
    try:
        duckdb.connect(str(copy)).close()
    except duckdb.Error as exc:
        raise SurveyWarehouseError(
            f"the copy of the warehouse {paths.shown(source)} cannot be opened ({exc}): a run of the waves may have "
            "been writing it; check again when the run has finished"
        ) from exc


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _state(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_size, found.st_mtime_ns


def _has_current_loads(warehouse: Path) -> bool:
    import duckdb

    if not warehouse.is_file():
        return False
    with duckdb.connect(str(warehouse), read_only=True) as con:
        try:
            found = con.execute("select count(*) from raw.load_registry where is_current").fetchone()
        except duckdb.Error:
            return False
    return bool(found and found[0])


def _load_and_gate(
    result: WaveCheck, spec: Any, codebook: Any, scratch: Paths, undecided: list[tuple[str, str]] | None = None
) -> None:
    from survey_warehouse import quality
    from survey_warehouse.raw.load import load_wave
    from survey_warehouse.raw.registry import current_load
    from survey_warehouse.warehouse import Session, Warehouse

    warehouse = Warehouse.duckdb(scratch.warehouse)
    if result.compared_with_current_load:
        with Session(warehouse, read_only=True) as session:
            result.compared_with_current_load = current_load(session, spec.wave_year) is not None
    try:
        loaded = load_wave(spec, warehouse, codebook, scratch, reload=True)
    except (WaveFileError, WaveSpecError) as exc:
        result.exit_code, result.status, result.error = EXIT_SPEC_ERROR, "spec_error", scrub(str(exc))
        return
    result.file_name, result.rows, result.quarantined_rows = loaded.file_name, loaded.row_count, loaded.quarantined
    with Session(warehouse, read_only=True) as session:
        found = session.execute(
            "select source_row_number, source_column, reason_code, message from raw.quarantine where load_id = ? "
            "order by source_row_number, source_column",
            [loaded.load_id],
        ).fetchall()
    result.quarantine = [
        QuarantinedRow(int(r), c, reason, scrub(_without_where(m, loaded.file_name, int(r), c)))
        for r, c, reason, m in found
    ]
    if undecided is not None:
        result.undecided_rows, result.unread_rows = _undecided(warehouse, loaded.load_id, undecided, result)
    checkpoint = quality.raw_wave_checkpoint(
        quality.file_context(scratch), spec, loaded.load_id, scratch, warehouse, codebook
    )
    try:
        with _quiet():
            gate, passed = quality.run_gate(checkpoint, scratch).message(), True
    except QualityGateFailed as exc:
        removal = quality.removal_summary(warehouse, loaded.load_id)
        gate, passed = scrub("\n".join(p for p in (str(exc), removal) if p)), False
    # the load exists only in the scratch copy: its id would name nothing a reader can look up
    result.gate = gate.replace(f" gate on {loaded.load_id}:", " gate:")
    if not passed:
        result.exit_code, result.status = EXIT_GATE_FAILED, "gate_failed"
        return
    from survey_warehouse.raw.builds import begin_build
    from survey_warehouse.raw.registry import accept_load

    accept_load(warehouse, loaded.load_id, result.gate)
    begin_build(warehouse, "wave-check", spec.wave_year, loaded.load_id, None)


def _without_where(message: str, file_name: str, row: int, column: str | None) -> str:
    """The loader's message without the file, row and column it starts with (the check lists those itself)."""
    from survey_warehouse.intake.matching import shown

    where = f"{file_name}, row {row}" + (f", column {shown(column)}" if column else "") + ": "
    return message.removeprefix(where)


def _undecided(warehouse: Any, load_id: str, undecided: list[tuple[str, str]], result: WaveCheck) -> tuple[int, int]:
    """The quarantined rows whose answer or city is one a decision leaves without a code (field, match key), and
    the rows that answered a column not read (`result.unread_columns`)."""
    from survey_warehouse.warehouse import Session

    left = set(undecided)
    with Session(warehouse, read_only=True) as session:
        quarantined = session.execute(
            "select q.source_row_number, c.field_id, r.match_key from raw.quarantine q "
            "join raw.survey_columns c on c.load_id = q.load_id and c.source_column = q.source_column "
            "join raw.survey_cells s on s.column_id = c.column_id and s.source_row_number = q.source_row_number "
            "join raw.cell_resolutions r on r.load_id = q.load_id and r.field_id = c.field_id "
            "and r.cell_value = s.cell_value where q.load_id = ?",
            [load_id],
        ).fetchall()
        answered = session.execute(
            "select count(distinct s.source_row_number) from raw.survey_cells s "
            "join raw.survey_columns c on c.column_id = s.column_id "
            "where c.load_id = ? and list_contains(?, c.source_column) and trim(coalesce(s.cell_value, '')) <> ''",
            [load_id, result.unread_columns],
        ).fetchone()
    rows = {row for row, field_id, key in quarantined if (field_id, key) in left}
    return len(rows), int(answered[0]) if answered else 0


@contextmanager
def _quiet() -> Iterator[None]:
    """Great Expectations' own progress output (to stdout) kept out of the check's."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _preview(result: WaveCheck, scratch: Paths, paths: Paths, proposed: list[tuple[str, str]] | None = None) -> None:
    """dbt's models of the headline, built into the scratch copy, and the wave's row of fct_responsibility_shares;
    for a draft, how many of its cities rest on the open proposals taken (`proposed`: field, match key)."""
    import duckdb

    log = scratch.var / "logs" / "dbt_build.log"
    error = run_dbt(scratch, log)
    if error is not None:
        kept = paths.var / "logs" / f"wave_check_{result.wave_year}_dbt.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, kept)
        result.exit_code, result.status = EXIT_PREVIEW_FAILED, "preview_failed"
        result.error = scrub(f"{error}; dbt's log: {paths.shown(kept)}")
        return
    with duckdb.connect(str(scratch.warehouse), read_only=True) as con:
        row = con.execute(
            "select cities, cities_responded, cities_surveyed, share, share_of_surveyed_min, share_of_surveyed_max "
            "from marts.fct_responsibility_shares where wave_year = ? and is_it_management",
            [result.wave_year],
        ).fetchone()
        silent = con.execute(
            "select municipality_code from intermediate.int_city_responsibilities_rolled_up "
            "where wave_year = ? and not has_responded order by municipality_code",
            [result.wave_year],
        ).fetchall()
        resting = _resting(con, result.wave_year, proposed) if proposed is not None else None
    if row is None:  # no option of the wave is IT management, or no city answered
        result.exit_code, result.status = EXIT_PREVIEW_FAILED, "preview_failed"
        result.error = "the marts have no IT-led share for the wave (no answering city, or no IT management option)"
        return
    share, low, high = (float(v) for v in row[3:])
    result.headline = Headline(int(row[0]), int(row[1]), int(row[2]), share, low, high, resting)
    if result.diff is not None:
        result.diff.cities_not_answering = [r[0] for r in silent]


def _resting(con: Any, year: int, proposed: list[tuple[str, str]]) -> tuple[int, int]:
    """Of the IT-led and of the answering cities (as the roll-up decided them), how many have a respondent who
    answered the lead question and whose lead answer, job title or city spelling is coded by an open proposal."""
    from survey_warehouse.intake.matching import match_key

    cells = con.execute(
        "select distinct r.municipality_code, c.field_id, s.cell_value from staging.stg_survey__answers a "
        "join staging.stg_survey__respondents r on r.load_id = a.load_id and r.source_row_number = a.source_row_number "
        "join raw.survey_columns c on c.load_id = a.load_id and c.field_id in ('lead', 'respondent_role', 'city') "
        "join raw.survey_cells s on s.column_id = c.column_id and s.source_row_number = a.source_row_number "
        "where a.wave_year = ? and a.question_id = 'lead' and a.is_current_load",
        [year],
    ).fetchall()
    open_codes = set(proposed)
    resting = {city for city, field_id, value in cells if (field_id, match_key(value) or "") in open_codes}
    cities = con.execute(
        "select r.municipality_code, coalesce(cast(s.is_it_management as boolean), false) "
        "from intermediate.int_city_responsibilities_rolled_up r "
        "left join reference.responsibilities s on s.responsibility_code = r.responsibility_code "
        "where r.wave_year = ? and r.has_responded",
        [year],
    ).fetchall()
    return (
        sum(1 for city, it_led in cities if it_led and city in resting),
        sum(1 for city, _it_led in cities if city in resting),
    )


def run_dbt(scratch: Paths, log: Path) -> str | None:
    """`dbt build` of the preview's seeds and models (not their tests) into the scratch warehouse; its own target
    and log folders, so the project's dbt_project/target is left as it is. None, or what failed."""
    project = str(scratch.dbt_project)
    env = {k: v for k, v in os.environ.items() if k != "SURVEY_MARTS_BUILD_SCHEMA"}
    env.update(
        {
            "SURVEY_DBT_TARGET": "duckdb",
            "SURVEY_WAREHOUSE_PATH": str(scratch.warehouse),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "DO_NOT_TRACK": "1",
            "TMPDIR": str(scratch.var / "tmp"),
        }
    )
    (scratch.var / "tmp").mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("dbt")),
        "build",
        "--select",
        PREVIEW_SELECTION,
        "--resource-type",
        "seed",
        "--resource-type",
        "model",
        "--project-dir",
        project,
        "--profiles-dir",
        project,
        "--target",
        "duckdb",
        "--target-path",
        str(scratch.var / "dbt_target"),
        "--log-path",
        str(scratch.var / "logs"),
        "--no-use-colors",
    ]
    with open(log, "w", encoding="utf-8") as out:
        try:
            code = subprocess.run(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False, timeout=DBT_TIMEOUT_SECONDS
            ).returncode
        except subprocess.TimeoutExpired:
            return f"dbt build did not end within {DBT_TIMEOUT_SECONDS} s and was stopped"
    if code == 0:
        return None
    # dbt's own summary: from "Completed with N error(s)" to its "compiled code at" (a scratch path) or "Done."
    lines = [re.sub(r"^\d\d:\d\d:\d\d ", "", line).strip() for line in log.read_text(errors="replace").splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("Completed with")), len(lines))
    summary = []
    for line in lines[start + 1 :]:
        if line.startswith(("compiled code at", "Done.")):
            break
        if line and not line.startswith("LINE ") and not set(line) <= {"^", " "}:
            summary.append(line)
    return "; ".join(summary[:4]) or f"dbt build exited with {code}"


PLAIN_NUMBER = re.compile(r"\d+")


def wave_diff(codebook: Any, spec: Any, paths: Paths) -> WaveDiff:
    """What differs from the previous wave the codebook declares: questions, each shared question's options (by
    canonical code: added, removed, or asked with other labels), and the cities surveyed."""
    from survey_warehouse.intake.waves import find_wave_spec

    year = spec.wave_year
    earlier = sorted({w for (w, _q) in codebook.questions if w < year})
    diff = WaveDiff(previous=earlier[-1] if earlier else None, cities_surveyed=len(spec.cities_surveyed))
    if diff.previous is None:
        return diff
    before, now = codebook.questions_for(diff.previous), codebook.questions_for(year)
    diff.questions_added = sorted(set(now) - set(before))
    diff.questions_dropped = sorted(set(before) - set(now))
    for question_id in sorted(set(now) & set(before)):
        if _scale(before[question_id]) != _scale(now[question_id]):
            change = OptionChange(
                question_id, "", "rescaled", [_scale(before[question_id])], [_scale(now[question_id])]
            )
            diff.options.append(change)
            continue
        before_all = _options(codebook, diff.previous, question_id)
        now_all = _options(codebook, year, question_id)
        old, new = before_all, now_all
        if now[question_id].is_scale:  # a scale's numbers standing for their own points, with or without a row
            old = _worded(codebook, diff.previous, question_id, old)
            new = _worded(codebook, year, question_id, new)
        for code in sorted(set(new) - set(before_all)):
            diff.options.append(OptionChange(question_id, code, "added", [], new[code]))
        for code in sorted(set(old) - set(now_all)):
            diff.options.append(OptionChange(question_id, code, "removed", old[code], []))
        worth_before, worth_now = _values(codebook, diff.previous, question_id), _values(codebook, year, question_id)
        for code in sorted((set(old) | set(new)) & set(before_all) & set(now_all)):
            if _keys(before_all[code]) != _keys(now_all[code]):
                diff.options.append(OptionChange(question_id, code, "renamed", before_all[code], now_all[code]))
        for code in sorted(set(worth_before) & set(worth_now)):
            if worth_before[code] != worth_now[code]:
                before, now_ = (sorted(_point(v) for v in w[code]) for w in (worth_before, worth_now))
                diff.options.append(OptionChange(question_id, code, "revalued", before, now_))
    try:
        previous_spec = find_wave_spec(diff.previous, paths)
    except SurveyWarehouseError:
        previous_spec = None
    if previous_spec is not None:
        diff.cities_added_to_survey = sorted(set(spec.cities_surveyed) - set(previous_spec.cities_surveyed))
        diff.cities_dropped_from_survey = sorted(set(previous_spec.cities_surveyed) - set(spec.cities_surveyed))
    return diff


def _scale(question: Any) -> str:
    if not question.is_scale:
        return question.answer_type
    return f"scale {_number(question.scale_min)}-{_number(question.scale_max)}"


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _options(codebook: Any, year: int, question_id: str) -> dict[str, list[str]]:
    """A question's options in a wave: canonical code -> its labels as the codebook spells them."""
    options: dict[str, list[str]] = {}
    for answer in codebook.answers:
        if answer.wave_year == year and answer.question_id == question_id:
            options.setdefault(answer.answer_code, []).append(answer.source_label)
    return options


def _worded(codebook: Any, year: int, question_id: str, options: dict[str, list[str]]) -> dict[str, list[str]]:
    """A scale's options without the labels that are a whole number standing for that very point ('7' worth 7),
    which the scale reads the same with or without the row; a number worth another point or none ('7' worth 3,
    '0' coded score_10, '99' cannot_say) is kept."""
    implied = {
        (a.answer_code, a.source_label)
        for a in codebook.answers
        if a.wave_year == year
        and a.question_id == question_id
        and PLAIN_NUMBER.fullmatch(a.source_label.strip())
        and a.answer_value == float(a.source_label.strip())
    }
    kept = {code: [label for label in labels if (code, label) not in implied] for code, labels in options.items()}
    return {code: labels for code, labels in kept.items() if labels}


def _point(value: float | None) -> str:
    return "no point" if value is None else f"{value:g}"


def _values(codebook: Any, year: int, question_id: str) -> dict[str, set[float | None]]:
    """A question's options in a wave: canonical code -> the points its labels stand for."""
    values: dict[str, set[float | None]] = {}
    for answer in codebook.answers:
        if answer.wave_year == year and answer.question_id == question_id:
            values.setdefault(answer.answer_code, set()).add(answer.answer_value)
    return values


def _keys(labels: list[str]) -> set[str]:
    from survey_warehouse.intake.matching import match_key

    return {match_key(label) or "" for label in labels}


def _city_names(paths: Paths) -> dict[str, str]:
    import csv

    with open(paths.dbt_project / "seeds" / "cities.csv", encoding="utf-8", newline="") as f:
        return {row["municipality_code"]: row["name_fi"] for row in csv.DictReader(f)}


def add_command(wave_commands: Any) -> None:
    """`wave check YEAR [--json]` under the command line's `wave` group."""
    parser = wave_commands.add_parser(
        "check",
        help="load the wave and run its raw gate on a scratch copy of the warehouse: quarantine, headline preview, "
        "what differs from the previous wave (exit 0 passes, 3 placeholders left, 4 spec error, 5 gate fails)",
    )
    parser.add_argument("year", type=int, help="the wave year (config/waves/YEAR.yml)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(wave_command_run=command)


def command(paths: Paths, args: Any) -> int:
    import json

    result = check_wave(args.year, paths)
    if args.json:
        sys.stdout.write(json.dumps(_scrubbed(result.as_json()), ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(result.text() + "\n")
    return result.exit_code
