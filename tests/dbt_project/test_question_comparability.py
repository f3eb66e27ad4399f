"""dim_question says whether a question's answers can be trended across waves as they are, and where not why.

A plain-Python reading of the rule (the model's description in _marts__models.yml) is compared with what the
model's own SQL returns, for the project's codebook and for codebooks Hypothesis makes up (questions asked in one
or several waves, options added, dropped or recoded, scales with other ends or other labels, a category turned into
a scale), on DuckDB, on PostgreSQL and on PostgreSQL with an en-US collation (test_rollup_rule's helpers).

The rule: each wave is compared with the previous wave that asked the question. A category question is asked alike
when its options (canonical codes) are the same; a scale when its ends and its labelled points (value and English
label) are the same; an answer type that changed is a change of its own. A question is comparable across waves
when more than one wave asked it and every wave asked it alike.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

import pytest
from conftest import ROOT
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_rollup_rule import DATABASES, ModelRun, open_warehouse, render_model

MODEL = "models/marts/dim_question.sql"
SEEDS = ROOT / "dbt_project" / "seeds"
QUESTIONS = (
    "wave_year integer, question_id varchar, question_text_fi varchar, question_text_en varchar, "
    "answer_type varchar, scale_min double precision, scale_max double precision, is_required boolean"
)
ANSWERS = (
    "wave_year integer, question_id varchar, source_label varchar, answer_code varchar, "
    "answer_value double precision, answer_label_en varchar, sort_order integer"
)
# the most fundamental change first
REASONS = ("answer_type_changed", "scale_changed", "anchors_changed", "options_changed")


@dataclass
class Codebook:
    questions: list[tuple]  # as the table codebook_questions
    answers: list[tuple]  # as the table codebook_answers


def _number(text: str) -> float | None:
    return float(text) if text else None


def project_codebook() -> Codebook:
    with open(SEEDS / "codebook_questions.csv", encoding="utf-8", newline="") as f:
        questions = [
            (
                int(r["wave_year"]),
                r["question_id"],
                r["question_text_fi"],
                r["question_text_en"],
                r["answer_type"],
                _number(r["scale_min"]),
                _number(r["scale_max"]),
                r["is_required"] == "true",
            )
            for r in csv.DictReader(f)
        ]
    with open(SEEDS / "codebook_answers.csv", encoding="utf-8", newline="") as f:
        answers = [
            (
                int(r["wave_year"]),
                r["question_id"],
                r["source_label"],
                r["answer_code"],
                _number(r["answer_value"]),
                r["answer_label_en"],
                int(r["sort_order"]) if r["sort_order"] else None,
            )
            for r in csv.DictReader(f)
        ]
    return Codebook(questions, answers)


# ------------------------------------------------------------------------------ the rule, in Python


def comparability(codebook: Codebook) -> dict[tuple[int, str], tuple]:
    """Per wave and question (the job title aside): is_comparable_across_waves, not_comparable_reason,
    change_from_previous_wave, comparable_from_wave_year."""
    asked: dict[str, list[tuple]] = {}
    for wave, question, _fi, _en, kind, low, high, _required in codebook.questions:
        if question != "respondent_role":
            asked.setdefault(question, []).append((wave, kind, low, high))

    def points(wave: int, question: str, kind: str) -> set:
        return {
            (value, label or "") if kind == "scale" else code
            for w, q, _label, code, value, label, _order in codebook.answers
            if (w, q) == (wave, question)
        }

    out = {}
    for question, waves in asked.items():
        waves.sort()
        changes: list[str | None] = [None]
        for (w0, kind0, low0, high0), (w1, kind1, low1, high1) in pairwise(waves):
            if kind0 != kind1:
                changes.append("answer_type_changed")
            elif kind1 == "scale" and (low0, high0) != (low1, high1):
                changes.append("scale_changed")
            elif points(w0, question, kind0) != points(w1, question, kind1):
                changes.append("anchors_changed" if kind1 == "scale" else "options_changed")
            else:
                changes.append(None)
        found = [c for c in changes if c]
        comparable = len(waves) > 1 and not found
        reason = min(found, key=REASONS.index) if found else None
        if len(waves) == 1:
            reason = "asked_in_one_wave"
        start = waves[0][0]
        for (wave, *_), change in zip(waves, changes, strict=True):
            if change:
                start = wave
            out[(wave, question)] = (comparable, reason, change, start)
    return out


def test_the_python_rule_reads_the_project_codebook_as_its_waves_asked() -> None:
    """The reference itself on the project's codebook: the questions that changed between 2018 and 2019."""
    found = comparability(project_codebook())
    assert {q: found[(2019, q)][1:] for _, q in found} == {
        "lead": ("options_changed", "options_changed", 2019),  # the chief digital officer, new in 2019
        "it_involvement_stage": ("options_changed", "options_changed", 2019),  # ideation, new in 2019
        "cooperation": ("scale_changed", "scale_changed", 2019),  # agreement 1-5, then a 0-10 rating
        "business_digital_skills": ("scale_changed", "scale_changed", 2019),  # unlabelled 1-5, labelled 1-4
    }
    assert {found[(2018, q)] for _, q in found} == {(False, found[(2019, q)][1], None, 2016) for _, q in found}


# ------------------------------------------------------------------------------ generated codebooks

WAVES = (2016, 2018, 2019, 2020)
OPTIONS = ("it_management", "sector_directors", "city_leadership", "zz_2", "zz2")
LABELS = ("Strongly agree", "strongly agree", "Weak", None)


@st.composite
def codebooks(draw: st.DrawFn) -> Codebook:
    questions, answers = [], []
    for n in range(draw(st.integers(1, 3))):
        question = f"q{n}"
        for wave in draw(st.lists(st.sampled_from(WAVES), min_size=1, max_size=4, unique=True)):
            if draw(st.booleans()):
                codes = draw(st.lists(st.sampled_from(OPTIONS), min_size=1, max_size=4, unique=True))
                questions.append((wave, question, "k", "q", "category", None, None, False))
                for i, code in enumerate(codes):
                    # a code may have several spellings, one row each
                    for spelling in range(draw(st.integers(1, 2))):
                        answers.append((wave, question, f"{code} {spelling}", code, None, code.title(), i))
            else:
                low = draw(st.sampled_from([0.0, 1.0]))
                high = draw(st.sampled_from([4.0, 5.0]))
                questions.append((wave, question, "k", "q", "scale", low, high, False))
                for value in draw(st.lists(st.sampled_from([low, 2.0, high]), max_size=3, unique=True)):
                    label = draw(st.sampled_from(LABELS))
                    answers.append((wave, question, str(value), f"score_{value:g}", value, label, int(value)))
    return Codebook(questions, answers)


@pytest.fixture(scope="module", params=list(DATABASES))
def question_model(request: pytest.FixtureRequest) -> Iterator[ModelRun]:
    with open_warehouse(request.param, "questions") as warehouse:
        warehouse.create({"codebook_questions": QUESTIONS, "codebook_answers": ANSWERS})
        yield ModelRun(warehouse, render_model(MODEL, warehouse.engine), f"dim_question on {request.param}")


@settings(derandomize=True, max_examples=120, deadline=None)
@example(codebook=project_codebook())
@given(codebook=codebooks())
def test_the_model_says_which_questions_can_be_trended_and_why_not(
    question_model: ModelRun, codebook: Codebook
) -> None:
    warehouse = question_model.warehouse
    warehouse.replace("codebook_questions", codebook.questions)
    warehouse.replace("codebook_answers", codebook.answers)
    found = {
        (r["wave_year"], r["question_id"]): (
            r["is_comparable_across_waves"],
            r["not_comparable_reason"],
            r["change_from_previous_wave"],
            r["comparable_from_wave_year"],
        )
        for r in question_model.run()
    }
    assert found == comparability(codebook)
