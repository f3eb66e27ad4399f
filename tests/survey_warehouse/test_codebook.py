"""The codebook read from the seeds: questions, labels and city names, and the mistakes it refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ROOT

from survey_warehouse.errors import CodebookError
from survey_warehouse.intake.codebook import Codebook

SEEDS = ROOT / "dbt_project" / "seeds"


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    copy = tmp_path / "seeds"
    shutil.copytree(SEEDS, copy)
    return copy


def _append(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def test_the_codebook_of_the_bundled_waves() -> None:
    codebook = Codebook.from_seeds(SEEDS)
    assert {q for (w, q) in codebook.questions if w == 2019} == {
        "respondent_role",
        "lead",
        "cooperation",
        "it_involvement_stage",
        "business_digital_skills",
    }
    cooperation = codebook.questions[(2019, "cooperation")]
    assert (cooperation.answer_type, cooperation.scale_min, cooperation.scale_max) == ("scale", 0, 10)
    assert codebook.questions[(2016, "lead")].is_required
    labels = codebook.labels_for(2019, "lead")
    assert labels["digijohtaja (cdo)"].answer_code == "chief_digital_officer"
    assert codebook.city_aliases["hämeenlinnan kaupunki"] == "109"
    assert codebook.key_roles == frozenset({"cio"})


def test_a_new_question_is_only_rows(seeds: Path) -> None:
    _append(
        seeds / "codebook_questions.csv",
        "2020,has_digital_strategy,Onko kaupungillanne digistrategia?,"
        "Does your city have a digital strategy?,category,,,false",
    )
    _append(seeds / "codebook_answers.csv", "2020,has_digital_strategy,Kyllä,yes,,Yes,1")
    _append(seeds / "codebook_answers.csv", "2020,has_digital_strategy,Ei,no,,No,2")
    codebook = Codebook.from_seeds(seeds)
    assert codebook.questions[(2020, "has_digital_strategy")].answer_type == "category"
    assert set(codebook.labels_for(2020, "has_digital_strategy")) == {"kyllä", "ei"}


def test_the_fingerprint_follows_the_waves_own_codebook(seeds: Path) -> None:
    before = Codebook.from_seeds(seeds)
    _append(seeds / "codebook_answers.csv", "2019,lead,Pormestari,city_leadership,,City leadership,3")
    after = Codebook.from_seeds(seeds)
    assert before.fingerprint(2019) != after.fingerprint(2019)
    assert before.fingerprint(2016) == after.fingerprint(2016), "another wave's labels do not concern 2016"


@pytest.mark.parametrize(
    ("seed", "line", "message"),
    [
        ("codebook_answers.csv", "2019,lead,TIETOHALLINTO ,city_leadership,,x,1", "reads the same as row"),
        ("codebook_answers.csv", "2019,no_such_question,x,y,,x,1", "is not declared for 2019"),
        ("codebook_answers.csv", "2019,respondent_role,Pormestari,mayor,,Mayor,9", "not in respondent_roles.csv"),
        ("codebook_questions.csv", "2020,Bad Id,x,x,category,,,false", "must be lower-case letters"),
        ("codebook_questions.csv", "2020,q,x,x,scale,5,1,false", "scale_min < scale_max"),
        ("codebook_questions.csv", "2020,q,x,x,free text,,,false", "answer_type must be one of"),
        ("codebook_questions.csv", "2019,lead,x,x,category,,,true", "declared twice"),
        ("city_aliases.csv", "HELSINKI\u00a0,049,typo", "reads the same as row"),
        ("city_aliases.csv", "Atlantis,999,myth", "not in cities.csv"),
        # the same spelling twice, even of the same city: dbt's unique test on city_alias fails every run
        ("city_aliases.csv", "HELSINKI ,091,spelling", "listed twice"),
        # a scale's worded label without the point it stands for: a missing score in the marts
        ("codebook_answers.csv", "2019,business_digital_skills,Kohtalainen,moderate,,Moderate,5", "no answer_value"),
    ],
)
def test_contradictions_in_the_seeds_are_refused_with_the_row(seeds: Path, seed: str, line: str, message: str) -> None:
    _append(seeds / seed, line)
    with pytest.raises(CodebookError, match=message) as error:
        Codebook.from_seeds(seeds)
    assert str(error.value).startswith(f"{seed}, row ")
