"""What a wave's configuration still leaves to be filled in: placeholders, values that start with `TODO`.

A draft of a wave writes `TODO ...` where a person has to decide (a header it could not map, a label's code, a city
spelling); `wave check` refuses while any is left. The rule is here once: a value starting with `TODO` in the wave
spec (config/waves/YEAR.yml: any key or value, at any depth), in the wave's rows of
dbt_project/seeds/codebook_questions.csv and codebook_answers.csv, or in any row of dbt_project/seeds/city_aliases.csv
(its rows belong to no wave). `take_proposals` takes each at its proposal in a scratch copy of the project, for the
preview of a draft that is not written.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from survey_warehouse.intake.codebook import is_placeholder

# a key or value starting with the mark, on a line of YAML
IN_LINE = re.compile(r"""(?:^|[:,\[{]|-\s)\s*["']?TODO""")  # (the same rule as is_placeholder, on raw text)
SEEDS = Path("dbt_project") / "seeds"
# seed -> whether its rows carry a wave_year (only the wave's rows are looked at)
SEED_FILES = {"codebook_questions.csv": True, "codebook_answers.csv": True, "city_aliases.csv": False}


@dataclass(frozen=True)
class Placeholder:
    file: str  # relative to the project
    where: str  # "row 12, column answer_code", or the key path in the spec ("columns.'Q5 ...'")
    value: str

    def describe(self) -> str:
        return f"{self.file}, {self.where}: {self.value}"


def find_placeholders(project_root: Path, year: int, waves_config: Path | None = None) -> list[Placeholder]:
    """Every placeholder left in the wave's spec and its seed rows, in file order. `waves_config`: where the wave
    specs are (default config/waves under the project)."""
    spec = (waves_config or project_root / "config" / "waves") / f"{year}.yml"
    found = list(_in_spec(spec, _relative(spec, project_root)))
    for name, by_wave in SEED_FILES.items():
        path = project_root / SEEDS / name
        if path.is_file():
            found += _in_seed(path, _relative(path, project_root), year if by_wave else None)
    return found


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _in_spec(path: Path, shown: str) -> Iterator[Placeholder]:
    if not path.is_file():
        return
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        # not readable as YAML: a placeholder may still be in its text, line by line (the spec error is told too)
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            if IN_LINE.search(line):
                yield Placeholder(shown, f"line {number}", line.strip())
        return
    yield from _walk(data, shown, "")


def _walk(node: Any, shown: str, at: str) -> Iterator[Placeholder]:
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{at}.{key}" if at else str(key)
            if is_placeholder(key):
                yield Placeholder(shown, f"key {here}", str(key).strip())
            yield from _walk(value, shown, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, shown, f"{at}[{i}]")
    elif is_placeholder(node):
        yield Placeholder(shown, at, str(node).strip())


def _in_seed(path: Path, shown: str, year: int | None) -> Iterator[Placeholder]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        for number, row in enumerate(reader, start=2):  # row 1 is the header
            if year is not None and (row.get("wave_year") or "").strip() != str(year):
                continue
            for column, value in row.items():
                if is_placeholder(value):
                    yield Placeholder(shown, f"row {number}, column {column}", str(value).strip())


# ---------------------------------------------------------------------------------------- taking the proposals

# the seed columns that decide how a delivered answer or city is read: a placeholder there without a proposal the
# column can hold (a number, a code) leaves its row out, so the answers it would read stay unknown
_NUMBER_COLUMNS = ("answer_value", "scale_min", "scale_max")
_CODE_COLUMNS = ("answer_code", "municipality_code")


@dataclass
class Taken:
    """What taking a draft's proposals left undecided: the answers and city spellings whose code no proposal gives
    (the field, `city` for a spelling, and the match key of the label), and the columns left unmapped because their
    question has no answer label at all (its answers' codes are left to a person); and the answers and city
    spellings whose code is an open proposal, taken (`proposed`, keyed alike)."""

    undecided: list[tuple[str, str]]
    unread: list[str]
    proposed: list[tuple[str, str]]


def proposal_of(value: Any) -> str:
    """A placeholder's proposal: what follows `TODO` (and its colon and one space); empty when it has none. A
    proposal that is only white space (a tab delimiter) is that white space, any other is trimmed."""
    text = str(value).lstrip().removeprefix("TODO").removeprefix(":").removeprefix(" ")
    return text if text.isspace() else text.strip()


def take_proposals(project_root: Path, year: int, waves_config: Path | None = None) -> Taken:
    """Rewrite the wave's spec and seed rows in `project_root` (a scratch copy of the project, never the project
    itself) with every placeholder taken at its proposal, as a person deleting each `TODO: ` would. A placeholder in a
    list (the draft's note on the cities surveyed) is dropped; one in the spec without a proposal drops its key. In the
    seeds, a text takes whatever follows the mark (an English wording changes no count); an answer's code or point, a
    spelling's municipality code or a scale's end without a proposal the column can hold leaves its row out."""
    undecided: list[tuple[str, str]] = []
    proposed: list[tuple[str, str]] = []
    for name, by_wave in SEED_FILES.items():

        def keep(row: dict[str, str], by_wave: bool = by_wave) -> bool:
            if by_wave and not _of(row, year):
                return True
            open_code = any(is_placeholder(row.get(column)) for column in _CODE_COLUMNS)
            kept = _take_row(row)
            if kept and open_code:
                proposed.append(_coded(row))
            return kept

        undecided += [_coded(row) for row in _rewrite(project_root / SEEDS / name, keep)]
    spec_path = (waves_config or project_root / "config" / "waves") / f"{year}.yml"
    spec = _taken(yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {})
    unread = _without_labels(project_root, year, spec)
    spec_path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return Taken(undecided, unread, proposed)


def _coded(row: dict[str, str]) -> tuple[str, str]:
    """What a seed row codes: (its question, or `city` for a city spelling; the match key of its label)."""
    from survey_warehouse.intake.matching import match_key

    label = row.get("source_label", row.get("city_alias", ""))
    return row.get("question_id") or "city", match_key(label) or ""


def _of(row: dict[str, str], year: int) -> bool:
    return (row.get("wave_year") or "").strip() == str(year)


def _rewrite(path: Path, keep: Callable[[dict[str, str]], bool]) -> list[dict[str, str]]:
    """The seed rewritten with the rows `keep` keeps (it may change them); the rows it left out."""
    if not path.is_file():
        return []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = list(reader.fieldnames or []), list(reader)
    kept: list[dict[str, str]] = []
    left: list[dict[str, str]] = []
    for row in rows:
        (kept if keep(row) else left).append(row)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    return left


def _take_row(row: dict[str, Any]) -> bool:
    """The seed row with its placeholders taken at their proposals; False when one that decides how an answer or a
    city is read has no proposal the column can hold."""
    for column, value in row.items():
        if not is_placeholder(value):
            continue
        proposal = proposal_of(value)
        if column in _NUMBER_COLUMNS:
            try:
                float(proposal)
            except ValueError:
                return False
        elif column in _CODE_COLUMNS and (not proposal or len(proposal.split()) > 1):
            return False
        row[column] = proposal
    return True


def _taken(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if is_placeholder(key) or (is_placeholder(value) and not proposal_of(value)):
                continue
            out[key] = _taken(value)
        return out
    if isinstance(node, list):
        return [_taken(v) for v in node if not is_placeholder(v)]
    if is_placeholder(node):  # the text deleting the mark leaves ("3" for "TODO: 3"): the spec's reader reads it
        return proposal_of(node)
    return node


def _without_labels(project_root: Path, year: int, spec: dict[str, Any]) -> list[str]:
    """The spec's columns mapped to a category question of the wave without any answer label (the draft writes none
    for a new question whose answers may be names until a person decides it): unmapped, and the question left out of
    the wave's codebook rows; their headers returned."""
    with open(project_root / SEEDS / "codebook_answers.csv", encoding="utf-8-sig", newline="") as f:
        labelled = {r.get("question_id") for r in csv.DictReader(f) if _of(r, year)}
    bare = [
        row["question_id"]
        for row in _rewrite(
            project_root / SEEDS / "codebook_questions.csv",
            lambda r: (
                not _of(r, year)
                or r.get("answer_type") != "category"
                or r.get("question_id") in labelled
                or r.get("question_id") == "respondent_role"
            ),
        )
    ]
    columns = spec.get("columns") or {}
    unread = [str(header) for header, field_id in columns.items() if field_id in bare]
    spec["columns"] = {h: f for h, f in columns.items() if str(h) not in unread}
    return unread
