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

    def describe(self) -> str:
        head = f"IT-led {self.cities}/{self.cities_responded} answering cities ({self.share:.1%})"
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
    change: str  # added | removed | renamed | rescaled (answer_code empty; the labels are the scales)
    labels_before: list[str]
    labels_now: list[str]

    def describe(self) -> str:
        if self.change == "rescaled":
            return f"{self.question_id}: {self.labels_before[0]} -> {self.labels_now[0]} (its options are not compared)"
        if self.change == "added":
            return f"{self.question_id}: option {self.answer_code} added ({_labels(self.labels_now)})"
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
    from survey_warehouse.errors import CodebookError
    from survey_warehouse.intake.codebook import Codebook
    from survey_warehouse.intake.waves import find_wave_spec

    year = result.wave_year
    result.placeholders = find_placeholders(paths.root, year, paths.waves_config)
    if result.placeholders:
        result.exit_code, result.status = EXIT_PLACEHOLDERS, "placeholders"
        return
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
            return
        spec.check(codebook)
        if not spec.file.is_file():
            raise WaveFileError(
                Path(paths.shown(spec.file)),
                f"the file has not arrived (or 'file' in {paths.shown(Path(spec.name))} points elsewhere)",
            )
    except (WaveSpecError, CodebookError, WaveFileError) as exc:
        result.exit_code, result.status, result.error = EXIT_SPEC_ERROR, "spec_error", scrub(str(exc))
        return
    result.city_names = _city_names(paths)
    result.diff = wave_diff(codebook, spec, paths)
    with scratch_copy(paths) as (scratch, compared):
        result.compared_with_current_load = compared
        _load_and_gate(result, spec, codebook, scratch)
        if result.status == "ok":
            _preview(result, scratch, paths)


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


def _load_and_gate(result: WaveCheck, spec: Any, codebook: Any, scratch: Paths) -> None:
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


@contextmanager
def _quiet() -> Iterator[None]:
    """Great Expectations' own progress output (to stdout) kept out of the check's."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _preview(result: WaveCheck, scratch: Paths, paths: Paths) -> None:
    """dbt's models of the headline, built into the scratch copy, and the wave's row of fct_responsibility_shares."""
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
    if row is None:  # no option of the wave is IT management, or no city answered
        result.exit_code, result.status = EXIT_PREVIEW_FAILED, "preview_failed"
        result.error = "the marts have no IT-led share for the wave (no answering city, or no IT management option)"
        return
    result.headline = Headline(int(row[0]), int(row[1]), int(row[2]), *(float(v) for v in row[3:]))
    if result.diff is not None:
        result.diff.cities_not_answering = [r[0] for r in silent]


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
        code = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
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
        old, new = _options(codebook, diff.previous, question_id), _options(codebook, year, question_id)
        for code in sorted(set(new) - set(old)):
            diff.options.append(OptionChange(question_id, code, "added", [], new[code]))
        for code in sorted(set(old) - set(new)):
            diff.options.append(OptionChange(question_id, code, "removed", old[code], []))
        for code in sorted(set(old) & set(new)):
            if _keys(old[code]) != _keys(new[code]):
                diff.options.append(OptionChange(question_id, code, "renamed", old[code], new[code]))
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
