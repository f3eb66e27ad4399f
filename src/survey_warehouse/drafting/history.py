"""The earlier waves a draft proposes from: their questions, answer labels, specs and the city names.

Read from the same seeds and specs the loader reads, as plain rows: rows a draft left open (a `TODO:` placeholder)
are not evidence, and a seed the codebook would refuse while a draft is under review does not stop the next one.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from survey_warehouse.intake.codebook import STRUCTURAL_FIELDS, is_placeholder
from survey_warehouse.intake.matching import match_key

SEEDS = Path("dbt_project") / "seeds"
WAVES = Path("config") / "waves"
# a question's numbering at the start of its wording: "Q1", "K1", "Q4A", "Q1:" (Q or K and a number), "1.", "1)",
# "4a." (a number and a stop or bracket), "a)"; never a word and a number ("Is 5G ...", "On 3 ...")
NUMBERING = re.compile(r"^\s*(?:[qk]\s?\d+[a-z]?[.):]?|\d+[a-z]?[.):]|[a-z][.)])\s+", re.IGNORECASE)
# a scale's range written into the wording: "(1-5)", "(0-10)", "1-7"
RANGE_IN_WORDING = re.compile(r"\(?\b(\d{1,2})\s*[-\u2013\u2014]\s*(\d{1,2})\b\)?")


def wording_key(text: str) -> str:
    """A question's wording for comparison: its match key with the numbering and a scale's range left out."""
    key = match_key(text) or ""
    key = NUMBERING.sub("", key)
    key = RANGE_IN_WORDING.sub(" ", key)
    return " ".join(re.sub(r"[^\w]+", " ", key).split())


def label_words(text: str) -> str:
    """A label's words only (punctuation between them dropped): 'Tietohallinto / ICT-johto' reads as
    'tietohallinto ict johto', as does 'Tietohallinto (ICT-johto)'."""
    return " ".join(re.sub(r"[^\w]+", " ", match_key(text) or "").split())


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return [{k: (v or "") for k, v in row.items()} for row in csv.DictReader(f)]


@dataclass
class EarlierQuestion:
    question_id: str
    texts: dict[int, str] = field(default_factory=dict)  # wave -> wording (fi)
    texts_en: dict[int, str] = field(default_factory=dict)
    types: dict[int, tuple[str, float | None, float | None]] = field(default_factory=dict)  # wave -> type, ends
    positions: dict[int, float] = field(default_factory=dict)  # wave -> place among the questions (0-1)
    headers: dict[int, str] = field(default_factory=dict)  # wave -> header as delivered
    labels: list[dict[str, str]] = field(default_factory=list)  # answer rows of every earlier wave, with `key`

    @property
    def latest(self) -> int:
        return max(self.texts or self.headers)

    def codes(self) -> dict[str, dict[str, str]]:
        """Code -> its latest row (English label, value, place)."""
        found: dict[str, dict[str, str]] = {}
        for row in sorted(self.labels, key=lambda r: int(r["wave_year"])):
            found[row["answer_code"]] = row
        return found


@dataclass
class History:
    year: int
    waves: list[int]
    questions: dict[str, EarlierQuestion]  # respondent_role included
    field_headers: dict[str, dict[int, str]]  # structural field -> wave -> header
    specs: dict[int, dict[str, Any]]
    aliases: dict[str, str]  # match key -> municipality code
    municipalities: dict[str, str]  # code -> Finnish name
    role_codes: dict[str, str]  # role code -> Finnish label
    role_labels_en: dict[str, str] = field(default_factory=dict)  # role code -> English label

    @property
    def previous(self) -> int | None:
        return max(self.waves) if self.waves else None


def read_history(root: Path, year: int) -> History:
    """Every wave before `year` that has a spec or codebook rows in the project at `root`."""
    seeds = root / SEEDS
    specs: dict[int, dict[str, Any]] = {}
    for path in sorted((root / WAVES).glob("*.yml")):
        if path.stem.isdigit() and int(path.stem) < year:
            try:
                raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError:
                continue
            if isinstance(raw, dict) and not raw.get("withdrawn"):
                specs[int(path.stem)] = raw
    questions: dict[str, EarlierQuestion] = {}
    for row in read_rows(seeds / "codebook_questions.csv"):
        if not row["wave_year"].isdigit() or int(row["wave_year"]) >= year or any(map(is_placeholder, row.values())):
            continue
        wave, qid = int(row["wave_year"]), row["question_id"]
        q = questions.setdefault(qid, EarlierQuestion(qid))
        q.texts[wave], q.texts_en[wave] = row["question_text_fi"], row["question_text_en"]
        ends = [float(row[k]) if row.get(k) else None for k in ("scale_min", "scale_max")]
        q.types[wave] = (row["answer_type"], ends[0], ends[1])
    for row in read_rows(seeds / "codebook_answers.csv"):
        if not row["wave_year"].isdigit() or int(row["wave_year"]) >= year or any(map(is_placeholder, row.values())):
            continue
        if row["question_id"] in questions:
            questions[row["question_id"]].labels.append({**row, "key": match_key(row["source_label"]) or ""})
    field_headers: dict[str, dict[int, str]] = {f: {} for f in STRUCTURAL_FIELDS}
    for wave, spec in specs.items():
        columns = spec.get("columns") or {}
        mapped = [(str(h), str(f)) for h, f in columns.items() if not is_placeholder(f)]
        asked = [f for _h, f in mapped if f not in STRUCTURAL_FIELDS]
        for header, field_id in mapped:
            if field_id in STRUCTURAL_FIELDS:
                field_headers[field_id][wave] = header
            if field_id in questions:
                questions[field_id].headers[wave] = header
            if field_id in asked:
                questions[field_id].positions[wave] = asked.index(field_id) / max(len(asked) - 1, 1)
    aliases = {
        match_key(r["city_alias"]) or "": r["municipality_code"]
        for r in read_rows(seeds / "city_aliases.csv")
        if not any(map(is_placeholder, r.values()))
    }
    municipalities = {r["municipality_code"]: r["name_fi"] for r in read_rows(seeds / "cities.csv")}
    roles = {r["role_code"]: r["label_fi"] for r in read_rows(seeds / "respondent_roles.csv")}
    role_rows = read_rows(seeds / "respondent_roles.csv")
    waves = sorted({w for q in questions.values() for w in q.texts} | set(specs))
    history = History(year, waves, questions, field_headers, specs, aliases, municipalities, roles)
    history.role_labels_en = {r["role_code"]: r["label_en"] for r in role_rows}
    return history
