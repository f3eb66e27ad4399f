"""The reference data a wave is checked against: city-name aliases and the cross-wave codebook (dbt seeds)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


def normalise(value: object) -> str | None:
    """How labels and city names are matched everywhere (staging does the same): case- and space-insensitive."""
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


@dataclass(frozen=True)
class Codebook:
    city_aliases: dict[str, str]                        # normalised alias -> municipality code
    labels: dict[tuple[int, str], frozenset[str]]       # (wave, question) -> normalised answer labels
    scales: dict[tuple[int, str], tuple[float, float]]  # (wave, question) -> (min, max) of scale questions
    role_labels: dict[tuple[int, str], frozenset[str]]  # (wave, role code) -> normalised job-title labels
    key_roles: frozenset[str]                           # role codes of key respondents

    @classmethod
    def from_seeds(cls, seeds: Path) -> Codebook:
        with open(seeds / "city_aliases.csv", encoding="utf-8") as f:
            aliases = {normalise(r["city_alias"]): r["municipality_code"] for r in csv.DictReader(f)}
        labels: dict[tuple[int, str], set[str]] = {}
        roles: dict[tuple[int, str], set[str]] = {}
        with open(seeds / "codebook_answers.csv", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                labels.setdefault((int(r["wave_year"]), r["question_id"]), set()).add(normalise(r["source_label"]))
                if r["question_id"] == "respondent_role":
                    roles.setdefault((int(r["wave_year"]), r["answer_code"]), set()).add(normalise(r["source_label"]))
        with open(seeds / "respondent_roles.csv", encoding="utf-8") as f:
            key_roles = frozenset(r["role_code"] for r in csv.DictReader(f) if r["is_key_respondent"] == "true")
        scales = {}
        with open(seeds / "codebook_questions.csv", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                if r["answer_type"] == "scale":
                    scales[(int(r["wave_year"]), r["question_id"])] = (float(r["scale_min"]), float(r["scale_max"]))
        return cls(aliases, {k: frozenset(v) for k, v in labels.items()}, scales,
                   {k: frozenset(v) for k, v in roles.items()}, key_roles)

    def key_role_labels(self, wave_year: int) -> frozenset[str]:
        """Job titles that make a respondent the key respondent of their city in a wave."""
        return frozenset().union(*(v for (w, code), v in self.role_labels.items()
                                   if w == wave_year and code in self.key_roles))

    def labels_for(self, wave_year: int, question: str) -> frozenset[str] | None:
        """The labels a wave's question may take; None when the codebook does not cover the question that wave."""
        return self.labels.get((wave_year, question))
