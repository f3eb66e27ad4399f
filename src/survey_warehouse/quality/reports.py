"""What a gate found: each failed expectation with its column and examples with the file's rows, kept as JSON."""

from __future__ import annotations

import functools
import json
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from survey_warehouse.errors import QualityGateFailed
from survey_warehouse.intake.matching import shown
from survey_warehouse.quality.suites import columns_on
from survey_warehouse.settings import Paths


@dataclass(frozen=True)
class Failure:
    suite: str
    expectation: str
    column: str | None
    unexpected_count: int | None
    examples: list[Any]
    rows: list[Any]
    columns: list[str] = field(default_factory=list)  # every column it is on (a pair's, a compound key's)

    def describe(self) -> str:
        on = self.columns or ([self.column] if self.column else [])
        text = f"{self.suite}: {self.expectation}"
        if len(on) == 1:
            text += f" on column {on[0]!r}"
        elif on:
            text += f" on columns {', '.join(map(repr, on))}"
        if self.unexpected_count:
            text += f": {self.unexpected_count} unexpected value(s)"
        if self.examples:
            shown = ", ".join(
                f"{_shown(v)} (row {r})" if _is_row(r) else _shown(v)
                for v, r in zip(self.examples[:5], (self.rows + [None] * 5)[:5], strict=False)
            )
            text += f", e.g. {shown}"
        return text


@dataclass(frozen=True)
class GateReport:
    gate: str
    batch: str
    success: bool
    evaluated: int
    failures: list[Failure]

    def message(self) -> str:
        head = f"{self.gate} gate on {self.batch}: " + (
            f"passed ({self.evaluated} expectations)"
            if self.success
            else f"FAILED ({len(self.failures)} of {self.evaluated} expectations)"
        )
        return "\n".join([head, *(f"  - {f.describe()}" for f in self.failures)])

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "gate": self.gate,
            "batch": self.batch,
            "success": self.success,
            "evaluated": self.evaluated,
            "failures": [asdict(f) for f in self.failures],
            "message": self.message(),
        }
        # whole or not at all: a report cut off (a full disk, a killed run) would be read as the gate's verdict
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps(data, ensure_ascii=False, indent=2, default=str))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def read(cls, path: Path) -> GateReport:
        """The report written at `path`; a file that is not one (cut off before reports were written whole, or
        edited) is named as such instead of failing with a JSON error."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UnreadableReport(
                f"the gate report {path} cannot be read ({exc}): run the wave again to write it anew"
            ) from exc
        return cls(
            data["gate"], data["batch"], data["success"], data["evaluated"], [Failure(**f) for f in data["failures"]]
        )


class UnreadableReport(QualityGateFailed):
    """A gate report file that is not a whole report: the gate's verdict is unknown, so it counts as failed."""


def _is_row(value: Any) -> bool:
    """A file row number (a table-level expectation has none: GX gives None or a missing value)."""
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)) or (
        isinstance(value, str) and value.isdigit()
    )


def _shown(value: Any) -> str:
    """Text as the matching rules show it (what a reader could not tell apart escaped), other values as repr."""
    return shown(value) if isinstance(value, str) else repr(value)


def report_path(paths: Paths, gate: str, batch: str) -> Path:
    return paths.var / "quality" / "reports" / gate / f"{batch}.json"


def failures(checkpoint_result: Any, expected: dict[str, int] | None = None) -> tuple[bool, int, list[Failure]]:
    """The failed expectations of a checkpoint run, with the source rows GX returned for them. `expected`: per
    suite, how many expectations it was given; a suite with fewer results (or none) fails, so that nothing the
    suite files hold is left out unseen."""
    found: list[Failure] = []
    evaluated = 0
    results: dict[str, int] = {}
    for validation in checkpoint_result.run_results.values():
        suite = validation.suite_name
        results[suite] = results.get(suite, 0) + len(validation.results)
        for r in validation.results:
            evaluated += 1
            if r.success:
                continue
            cfg = r.expectation_config
            result = r.result or {}
            rows = [
                i.get("source_row_number") if isinstance(i, dict) else i
                for i in (result.get("partial_unexpected_index_list") or [])
            ]
            examples = result.get("partial_unexpected_list") or []
            if not examples and "observed_value" in result:
                examples = [result["observed_value"]]
            error = (r.exception_info or {}).get("exception_message") if isinstance(r.exception_info, dict) else None
            if error:
                examples = [f"could not be evaluated: {error}"]
            found.append(
                Failure(
                    suite,
                    cfg.type,
                    cfg.kwargs.get("column"),
                    result.get("unexpected_count"),
                    list(examples)[:10],
                    rows[:10],
                    columns_on(cfg.type, cfg.kwargs),
                )
            )
    expected = expected or {}
    for suite, count in sorted(expected.items()):
        if results.get(suite, 0) != count:
            found.append(
                Failure(
                    suite,
                    f"{results.get(suite, 0)} of the {count} expectations its suite files hold were evaluated",
                    None,
                    None,
                    [],
                    [],
                )
            )
    success = bool(checkpoint_result.success) and all(results.get(s, 0) == n for s, n in expected.items())
    return success, sum(expected.values()) if expected else evaluated, found


def _record_action_class() -> type:
    """A checkpoint action that writes the gate report (a readable list of failures) next to the snapshots."""
    from great_expectations.checkpoint.actions import ValidationAction
    from great_expectations.compatibility.pydantic import Field

    class RecordGateReport(ValidationAction):
        type: Literal["survey_record_gate_report"] = "survey_record_gate_report"
        gate: str
        batch: str
        report_file: str
        # per suite, the expectations its files hold (templates repeated)
        expected: dict[str, int] = Field(default_factory=dict)

        def run(self, checkpoint_result: Any, action_context: Any = None) -> dict:
            success, evaluated, found = failures(checkpoint_result, self.expected)
            report = GateReport(self.gate, self.batch, success, evaluated, found)
            report.write(Path(self.report_file))
            if checkpoint_result.success and not success:  # GX saw no failure, yet expectations were left out
                raise QualityGateFailed(report.message())
            return {"report_file": self.report_file}

    return RecordGateReport


@functools.cache
def _record_action_type() -> type:
    """The action class, made once (GX registers action types by name)."""
    return _record_action_class()


def record_action(**kwargs: Any) -> Any:
    return _record_action_type()(**kwargs)
