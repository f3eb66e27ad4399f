"""What a wave's configuration still leaves to be filled in: placeholders, values that start with `TODO`.

A draft of a wave writes `TODO ...` where a person has to decide (a header it could not map, a label's code, a city
spelling); `wave check` refuses while any is left. The rule is here once: a value starting with `TODO` in the wave
spec (config/waves/YEAR.yml: any key or value, at any depth), in the wave's rows of
dbt_project/seeds/codebook_questions.csv and codebook_answers.csv, or in any row of dbt_project/seeds/city_aliases.csv
(its rows belong to no wave).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
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
