"""The questionnaire as data: questions, answer labels and city names of every wave, read from the dbt seeds.

The same CSV files are loaded by dbt (`dbt seed`), so the loader's checks, the raw gate's expectations and the
marts all follow one codebook. Adding a question to a wave is adding its rows here; no code lists questions.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from survey_warehouse.errors import CodebookError
from survey_warehouse.intake.matching import RULE_VERSION, match_keys, shown

if TYPE_CHECKING:
    import pyarrow as pa

# A respondent's own particulars: the wave spec maps columns to these or to questions declared in the codebook.
STRUCTURAL_FIELDS = (
    "respondent_name",
    "respondent_email",
    "city",
    "respondent_role",
    "submitted_at",
    "response_minutes",
)
# Without these a respondent cannot be identified, placed in a city or weighed in the roll-up.
REQUIRED_STRUCTURAL_FIELDS = ("respondent_email", "city", "respondent_role")
# Structural fields matched against the codebook (job titles are worded differently in each wave).
LABELLED_STRUCTURAL_FIELDS = ("respondent_role",)
ANSWER_TYPES = ("category", "scale")
SEED_FILES = (
    "codebook_questions.csv",
    "codebook_answers.csv",
    "city_aliases.csv",
    "cities.csv",
    "respondent_roles.csv",
)
# how `wave draft` marks a value only a person can decide ('TODO: <proposal>'); `is_placeholder` is the one rule
# the loader, `wave draft` and `wave check` tell one by
PLACEHOLDER = "TODO:"


def is_placeholder(value: object) -> bool:
    """A value left to a person: text starting with TODO (as `wave draft` writes it, or typed by hand)."""
    return isinstance(value, str) and value.strip().startswith("TODO")


QUESTION_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Question:
    wave_year: int
    question_id: str
    text_fi: str
    text_en: str
    answer_type: str  # category | scale
    scale_min: float | None
    scale_max: float | None
    is_required: bool

    @property
    def is_scale(self) -> bool:
        return self.answer_type == "scale"


@dataclass(frozen=True)
class Answer:
    wave_year: int
    question_id: str
    source_label: str
    label_key: str
    answer_code: str
    answer_value: float | None


@dataclass(frozen=True)
class Codebook:
    questions: dict[tuple[int, str], Question]
    answers: tuple[Answer, ...]
    city_aliases: dict[str, str]  # match key of a way of writing a city -> municipality code
    municipality_codes: frozenset[str]
    role_codes: frozenset[str]
    key_roles: frozenset[str]  # role codes of key respondents
    seeds: Path = field(compare=False)

    @classmethod
    def from_seeds(cls, seeds: Path) -> Codebook:
        questions = _read_questions(seeds / "codebook_questions.csv")
        municipality_codes = frozenset(r["municipality_code"] for r in _rows(seeds / "cities.csv"))
        roles = list(_rows(seeds / "respondent_roles.csv"))
        role_codes = frozenset(r["role_code"] for r in roles)
        key_roles = frozenset(r["role_code"] for r in roles if r["is_key_respondent"].strip().lower() == "true")
        answers = _read_answers(seeds / "codebook_answers.csv", questions, role_codes)
        aliases = _read_aliases(seeds / "city_aliases.csv", municipality_codes)
        return cls(questions, answers, aliases, municipality_codes, role_codes, key_roles, seeds)

    def questions_for(self, wave_year: int) -> dict[str, Question]:
        """The questions the wave's questionnaire asked (job title included), by question id."""
        return {q: question for (w, q), question in self.questions.items() if w == wave_year}

    def labels_for(self, wave_year: int, question_id: str) -> dict[str, Answer]:
        """The answer labels of one question in one wave, by match key."""
        return {a.label_key: a for a in self.answers if a.wave_year == wave_year and a.question_id == question_id}

    def answer_table(self, wave_year: int) -> pa.Table:
        """The wave's answer labels as (field_id, label_key, answer_code, answer_value), for the loader's SQL."""
        import pyarrow as pa

        rows = [a for a in self.answers if a.wave_year == wave_year]
        return pa.table(
            {
                "field_id": [a.question_id for a in rows],
                "label_key": [a.label_key for a in rows],
                "answer_code": [a.answer_code for a in rows],
                "answer_value": pa.array([a.answer_value for a in rows], pa.float64()),
            }
        )

    def alias_table(self) -> pa.Table:
        import pyarrow as pa

        return pa.table({"alias_key": list(self.city_aliases), "municipality_code": list(self.city_aliases.values())})

    def open_decisions(self, wave_year: int) -> list[str]:
        """Where the wave's codebook rows (and the city names) still hold a decision a draft left to a person: a
        value starting with PLACEHOLDER ('TODO:'), as `wave draft` writes it. A wave is not loaded with one."""
        found = []
        for name in ("codebook_questions.csv", "codebook_answers.csv", "city_aliases.csv"):
            for line, row in enumerate(_rows(self.seeds / name), start=2):
                ours = "wave_year" not in row or row["wave_year"] == str(wave_year)
                if ours and any(is_placeholder(v) for v in row.values()):
                    found.append(f"{name} line {line}")
        return found

    def fingerprint(self, wave_year: int) -> str:
        """What a load of this wave was read with: its questions and labels, the cities, the matching rule.

        A load made under another fingerprint is read again, so a seed row added for a label or a city name
        takes effect without a new delivery."""
        digest = hashlib.sha256(f"rule {RULE_VERSION}\n".encode())
        for question in sorted(self.questions_for(wave_year).values(), key=lambda q: q.question_id):
            digest.update(repr(question).encode())
        for answer in sorted(
            (a for a in self.answers if a.wave_year == wave_year), key=lambda a: (a.question_id, a.label_key)
        ):
            digest.update(repr(answer).encode())
        for key, code in sorted(self.city_aliases.items()):
            digest.update(f"{key}\t{code}\n".encode())
        digest.update(repr(sorted(self.key_roles)).encode())
        return digest.hexdigest()


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        raise CodebookError(f"{path}: the seed is missing")
    with open(path, encoding="utf-8-sig", newline="") as f:  # a seed saved by Excel starts with a BOM
        return [{k: (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str, where: str) -> float | None:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise CodebookError(f"{where}: {shown(text)} is not a number") from None


def _read_questions(path: Path) -> dict[tuple[int, str], Question]:
    questions: dict[tuple[int, str], Question] = {}
    for line, r in enumerate(_rows(path), start=2):
        where = f"{path.name}, row {line}"
        if not r["wave_year"].isdigit():
            raise CodebookError(f"{where}: wave_year {shown(r['wave_year'])} is not a year")
        wave, qid = int(r["wave_year"]), r["question_id"]
        if not QUESTION_ID.match(qid):
            raise CodebookError(f"{where}: question_id {shown(qid)} must be lower-case letters, digits and _")
        if qid in STRUCTURAL_FIELDS and qid not in LABELLED_STRUCTURAL_FIELDS:
            raise CodebookError(f"{where}: {qid!r} is a respondent's particular, not a question")
        if r["answer_type"] not in ANSWER_TYPES:
            raise CodebookError(f"{where}: answer_type must be one of {ANSWER_TYPES}, not {shown(r['answer_type'])}")
        low, high = _number(r.get("scale_min", ""), where), _number(r.get("scale_max", ""), where)
        if r["answer_type"] == "scale" and (low is None or high is None or not low < high):
            raise CodebookError(f"{where}: a scale question needs scale_min < scale_max")
        if (wave, qid) in questions:
            raise CodebookError(f"{where}: question {qid!r} is declared twice for {wave}")
        questions[(wave, qid)] = Question(
            wave,
            qid,
            r["question_text_fi"],
            r["question_text_en"],
            r["answer_type"],
            low,
            high,
            r.get("is_required", "").lower() == "true",
        )
    return questions


def _read_answers(
    path: Path, questions: dict[tuple[int, str], Question], role_codes: frozenset[str]
) -> tuple[Answer, ...]:
    import pyarrow as pa

    rows = _rows(path)
    keys = match_keys(pa.array([r["source_label"] for r in rows], pa.string())).to_pylist()
    answers: list[Answer] = []
    seen: dict[tuple[int, str, str], tuple[int, str, float | None]] = {}
    for line, (r, key) in enumerate(zip(rows, keys, strict=True), start=2):
        where = f"{path.name}, row {line}"
        wave, qid = int(r["wave_year"]), r["question_id"]
        if (wave, qid) not in questions:
            raise CodebookError(f"{where}: question {qid!r} is not declared for {wave} in codebook_questions.csv")
        if key is None:
            raise CodebookError(f"{where}: source_label is empty")
        if not r["answer_code"]:
            raise CodebookError(f"{where}: answer_code is empty")
        if qid == "respondent_role" and r["answer_code"] not in role_codes:
            raise CodebookError(f"{where}: role {r['answer_code']!r} is not in respondent_roles.csv")
        value = _number(r.get("answer_value", ""), where)
        if value is None and questions[(wave, qid)].answer_type == "scale":
            raise CodebookError(
                f"{where}: {shown(r['source_label'])} is a label of the scale question {qid!r} but has no "
                "answer_value: write the point of the scale it stands for"
            )
        earlier = seen.setdefault((wave, qid, key), (line, r["answer_code"], value))
        if earlier[1:] != (r["answer_code"], value):
            raise CodebookError(
                f"{where}: {shown(r['source_label'])} reads the same as row {earlier[0]} but maps "
                f"to {r['answer_code']!r} instead of {earlier[1]!r}"
            )
        if earlier[0] == line:
            answers.append(Answer(wave, qid, r["source_label"], key, r["answer_code"], value))
    return tuple(answers)


def _read_aliases(path: Path, municipality_codes: frozenset[str]) -> dict[str, str]:
    import pyarrow as pa

    rows = _rows(path)
    keys = match_keys(pa.array([r["city_alias"] for r in rows], pa.string())).to_pylist()
    aliases: dict[str, str] = {}
    lines: dict[str, int] = {}
    for line, (r, key) in enumerate(zip(rows, keys, strict=True), start=2):
        where = f"{path.name}, row {line}"
        if key is None:
            raise CodebookError(f"{where}: city_alias is empty")
        if r["municipality_code"] not in municipality_codes:
            raise CodebookError(f"{where}: municipality code {shown(r['municipality_code'])} is not in cities.csv")
        lines.setdefault(key, line)
        if aliases.setdefault(key, r["municipality_code"]) != r["municipality_code"]:
            raise CodebookError(
                f"{where}: {shown(r['city_alias'])} reads the same as row {lines[key]} but names another city"
            )
        if lines[key] != line:
            raise CodebookError(
                f"{where}: {shown(r['city_alias'])} reads the same as row {lines[key]}: a spelling is listed twice "
                "(dbt's unique test on city_alias fails on a repeated one); delete this row"
            )
    return aliases
