"""How good `wave draft`'s proposals are: leave-one-wave-out on the bundled waves and the 2020 example.

    .venv/bin/python benchmarks/wave_draft_quality.py [--details]

Each case copies the project's specs, seeds and wave files into a scratch folder, removes the wave's shipped spec and
codebook rows (and those of later waves), drafts the wave with only the earlier ones as history, and compares the
draft with what was shipped: 2018 from 2016, 2019 from 2016 and 2018, the 2020 example from all three.

- columns: every column of the file; right when the draft maps it to the shipped field or question (a question no
  earlier wave asked counts as right when the draft proposes a new one; an unmapped column when both leave it out)
- answers: every distinct answer of a shipped question in the file; right when the draft codes it as the shipped
  rows do (a plain number on a scale by the scale's points; a new question's codes by the grouping of its labels)

A proposal is *flagged* when the draft leaves it to a person (a `TODO:` value). The aim: at least 90 % right
without a flag, and no wrong proposal without one.

`--details` lists, below the table, every column and answer that is flagged or wrong: the wave, the column (and the
question), the delivered label, the proposal, the shipped code, and the draft's evidence for the proposal (the
reasons it gives a person); an answer flagged only because its column is flagged says so.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import shutil
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from survey_warehouse.drafting.delivery import detect_shape, read_delivery  # noqa: E402
from survey_warehouse.drafting.draft import Draft, draft_wave  # noqa: E402
from survey_warehouse.drafting.history import read_rows  # noqa: E402
from survey_warehouse.drafting.propose import is_number, point_of  # noqa: E402
from survey_warehouse.intake.codebook import STRUCTURAL_FIELDS, is_placeholder  # noqa: E402
from survey_warehouse.intake.matching import match_key  # noqa: E402

UNLABELLED = {"respondent_email", "submitted_at", "response_minutes", "respondent_name", "city"}


@dataclass
class Tally:
    items: int = 0
    right: int = 0  # right, not flagged
    flagged_right: int = 0
    flagged_wrong: int = 0
    silent_wrong: int = 0

    def add(self, right: bool, flagged: bool) -> None:
        self.items += 1
        if flagged:
            self.flagged_right += right
            self.flagged_wrong += not right
        elif right:
            self.right += 1
        else:
            self.silent_wrong += 1


@dataclass
class Detail:
    """A flagged or wrong column or answer, for --details."""

    wave: int
    column: str
    question: str | None  # the shipped field or question
    label: str | None  # the delivered answer (None: the column itself)
    proposal: str | None
    shipped: str | None
    flagged: bool
    right: bool
    evidence: list[str]

    def lines(self) -> list[str]:
        verdict = ("flagged" if self.flagged else "SILENT") + (", right" if self.right else ", wrong")
        what = f"answer {self.label!r}" if self.label is not None else "column"
        out = [
            f"{self.wave} {self.column!r} ({self.question or 'not mapped'}): {what}: "
            f"proposed {self.proposal!r}, shipped {self.shipped!r} [{verdict}]"
        ]
        out.extend(f"      - {e}" for e in self.evidence)
        return out


def reasons(draft: Draft, kind: tuple[str, ...], header: str, label: str | None = None) -> list[str]:
    """The evidence of the draft's decisions about a column (or one of its answers)."""
    key = match_key(header)
    return [
        e
        for d in draft.decisions
        if d.kind in kind
        and match_key(d.column) == key
        and (label is None or [match_key(v) for v in d.values] == [match_key(label)])
        for e in d.evidence
    ]


def plain(value: Any) -> str:
    text = str(value or "").strip()
    return text.split(":", 1)[1].strip() if is_placeholder(text) else text


def scratch_project(folder: Path) -> Path:
    root = folder / "project"
    for part in ("config/waves", "dbt_project/seeds", "data/waves"):
        shutil.copytree(ROOT / part, root / part)
    return root


def remove_from(root: Path, year: int) -> None:
    """The wave of `year` and every later one: their specs and codebook rows."""
    for spec in (root / "config" / "waves").glob("*.yml"):
        if spec.stem.isdigit() and int(spec.stem) >= year:
            spec.unlink()
    for name in ("codebook_questions.csv", "codebook_answers.csv"):
        path = root / "dbt_project" / "seeds" / name
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], [r for r in reader if int(r["wave_year"]) < year]
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


def shipped(root: Path, year: int) -> tuple[dict[str, Any], list[dict[str, str]], list[dict[str, str]]]:
    spec = yaml.safe_load((root / "config" / "waves" / f"{year}.yml").read_text(encoding="utf-8"))
    seeds = root / "dbt_project" / "seeds"
    questions = [r for r in read_rows(seeds / "codebook_questions.csv") if r["wave_year"] == str(year)]
    answers = [r for r in read_rows(seeds / "codebook_answers.csv") if r["wave_year"] == str(year)]
    return spec, questions, answers


def coding(
    qid: str, questions: list[dict[str, str]], answers: list[dict[str, str]]
) -> tuple[dict[str, tuple[str, bool]], tuple[float, float] | None]:
    """A question's labels (match key -> (code, flagged)) and its scale's ends."""
    labels = {
        match_key(r["source_label"]) or "": (plain(r["answer_code"]), is_placeholder(r["answer_code"]))
        for r in answers
        if r["question_id"] == qid
    }
    row = next((r for r in questions if r["question_id"] == qid), None)
    scale = None
    if row and row["answer_type"] == "scale" and plain(row["scale_min"]) and plain(row["scale_max"]):
        scale = (float(plain(row["scale_min"])), float(plain(row["scale_max"])))
    return labels, scale


def code_of(
    key: str, labels: dict[str, tuple[str, bool]], scale: tuple[float, float] | None
) -> tuple[str | None, bool]:
    if key in labels:
        return labels[key]
    if scale and is_number(key):
        point = point_of(key)
        if point is not None and scale[0] <= point <= scale[1]:
            return f"score_{point}", False
    return None, False


def evaluate(root: Path, year: int, file: Path, details: list[Detail]) -> tuple[Tally, Tally]:
    truth_spec, truth_questions, truth_answers = shipped(root, year)
    remove_from(root, year)
    history_questions = {r["question_id"] for r in read_rows(root / "dbt_project" / "seeds" / "codebook_questions.csv")}
    draft = draft_wave(file, year, root)
    draft_spec, draft_questions, draft_answers = shipped(root, year)
    delivery = read_delivery(file, year, detect_shape(file))
    truth_columns = {match_key(h): v for h, v in truth_spec["columns"].items()}
    draft_columns = {match_key(h): v for h, v in draft_spec["columns"].items()}
    columns, answers = Tally(), Tally()

    def is_new(field: str | None) -> bool:
        return field is not None and field not in history_questions and field not in STRUCTURAL_FIELDS

    for column in delivery.columns:
        key = match_key(column.header)
        truth, proposed = truth_columns.get(key), draft_columns.get(key)
        flagged = is_placeholder(proposed)
        drafted = plain(proposed) if proposed is not None else None
        right = truth == drafted or (is_new(truth) and is_new(drafted))
        columns.add(right, flagged)
        if flagged or not right:
            why = reasons(draft, ("column", "question"), column.header)
            details.append(Detail(year, column.header, truth, None, drafted, truth, flagged, right, why))
        if truth is None or truth in UNLABELLED:
            continue
        t_labels, t_scale = coding(truth, truth_questions, truth_answers)
        d_labels, d_scale = coding(drafted or "", draft_questions, draft_answers) if drafted else ({}, None)
        pairs = []
        values = list(column.values)
        for value in values:
            value_key = column.keys[value] or ""
            t_code, _ = code_of(value_key, t_labels, t_scale)
            d_code, d_flag = code_of(value_key, d_labels, d_scale)
            pairs.append((t_code, d_code, d_flag or flagged))
        groups_t: dict[str | None, set[str | None]] = defaultdict(set)
        groups_d: dict[str | None, set[str | None]] = defaultdict(set)
        for t_code, d_code, _ in pairs:
            groups_t[t_code].add(d_code)
            groups_d[d_code].add(t_code)
        for value, (t_code, d_code, flag) in zip(values, pairs, strict=True):
            if is_new(truth):  # a new question's codes are ids: right when they group the labels alike
                ok = d_code is not None and len(groups_t[t_code]) == 1 and len(groups_d[d_code]) == 1
            else:
                ok = t_code == d_code
            answers.add(ok, flag)
            if flag or not ok:
                why = reasons(draft, ("answer",), column.header, value)
                if flagged:
                    why = ["its column is flagged", *why]
                details.append(Detail(year, column.header, truth, value, d_code, t_code, flag, ok, why))
    return columns, answers


def example_2020() -> Any:
    spec = importlib.util.spec_from_file_location("example_wave_2020", ROOT / "scripts" / "example_wave_2020.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--details", action="store_true", help="list every flagged or wrong column and answer")
    args = parser.parse_args()
    details: list[Detail] = []
    cases = [
        (2018, "2016", "data/waves/2018/kaupunkikysely_2018.xlsx"),
        (2019, "2016, 2018", "data/waves/2019/city_survey_2019_export.csv"),
        (2020, "2016, 2018, 2019", "data/waves/2020/kaupunkikysely_2020.txt"),
    ]
    header = (
        f"{'wave':<14}{'history':<18}{'columns':>8}{'right':>7}{'flagged':>9}{'(wrong)':>9}{'SILENT':>8}"
        f"{'answers':>9}{'right':>7}{'flagged':>9}{'(wrong)':>9}{'SILENT':>8}"
    )
    print(header)
    print("-" * len(header))
    totals = (Tally(), Tally())
    for year, history, file in cases:
        with tempfile.TemporaryDirectory(prefix="draft-eval-") as tmp:
            root = scratch_project(Path(tmp))
            if year == 2020:  # noqa: PLR2004
                example_2020().write_wave_2020(root)
            columns, answers = evaluate(root, year, root / file, details)
        for total, tally in zip(totals, (columns, answers), strict=True):
            for name in ("items", "right", "flagged_right", "flagged_wrong", "silent_wrong"):
                setattr(total, name, getattr(total, name) + getattr(tally, name))
        name = f"{year}" + (" (example)" if year == 2020 else "")  # noqa: PLR2004
        print(f"{name:<14}{history:<18}{row(columns)}{row(answers, 9)}")
    print("-" * len(header))
    print(f"{'all':<32}{row(totals[0])}{row(totals[1], 9)}")
    for label, tally in (("columns", totals[0]), ("answers", totals[1])):
        share = tally.right / tally.items if tally.items else 0.0
        print(
            f"{label}: {share:.0%} right without a flag; {tally.flagged_right + tally.flagged_wrong} flagged "
            f"({tally.flagged_wrong} of them wrong proposals); {tally.silent_wrong} wrong without a flag"
        )
    if args.details:
        print()
        for detail in details:
            print("\n".join(detail.lines()))


def row(t: Tally, width: int = 8) -> str:
    return (
        f"{t.items:>{width}}{t.right:>7}{t.flagged_right + t.flagged_wrong:>9}{t.flagged_wrong:>9}{t.silent_wrong:>8}"
    )


if __name__ == "__main__":
    main()
