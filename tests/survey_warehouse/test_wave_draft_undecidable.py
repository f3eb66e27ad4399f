"""What `wave draft` must leave to a person rather than write wrong without a flag: an 'other' label when an earlier
wave had two, an English wording whose numbering or range says something else, a column of option numbers once its
mapping or type is decided; and what `wave check` must still list: a scale's number labels coded otherwise."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT
from test_wave_draft import _answers_to, _coded
from wave_maker import VARIANTS, YEAR, spec_and_rows

from survey_warehouse.drafting.check import WaveDiff, wave_diff
from survey_warehouse.drafting.draft import draft_wave
from survey_warehouse.drafting.history import EarlierQuestion
from survey_warehouse.drafting.propose import english_wording
from survey_warehouse.intake.codebook import Codebook


# 1. the 'other' option ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("labels", "earlier_labels"),
    [
        # two earlier options for 'other': other public bodies, and other bodies that are not public
        (
            ["Kaupunki itse", "Muu"],
            {
                "Kaupunki itse": "own",
                "Muu julkinen toimija": "other_public",
                "Muu kuin julkinen toimija": "other_private",
            },
        ),
        # ... other managers, and others not in management
        (
            ["Tietohallintojohtaja", "Muu"],
            {"Tietohallintojohtaja": "cio", "Muu johto": "other_manager", "Muu, ei johtotehtävissä": "other_staff"},
        ),
    ],
    ids=["second-other-says-kuin", "second-other-says-ei"],
)
def test_a_plain_other_is_no_earlier_other_when_an_earlier_wave_had_two(labels, earlier_labels) -> None:
    """'Muu' now covers both earlier 'other' options: coding it as one of them is for a person."""
    coded = _answers_to("Kuka?", labels, "Kuka?", earlier_labels)
    assert "Muu" not in coded, f"'Muu' coded {coded['Muu']!r} without a flag"


# 2. a mapped question's English wording -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("earlier_fi", "earlier_en", "header"),
    [
        ("Arvioi osaaminen asteikolla 1-5", "Rate the skills on a scale of 1-5", "Arvioi osaaminen asteikolla 1-7"),
        ("Osaaminen asteikolla 1-5", "Skills on a scale of 1-5", "Osaaminen asteikolla (1-7)"),
        ("Montako tiimiä (2-5 henkeä)?", "How many teams (2-5 people)?", "Montako tiimiä (6-10 henkeä)?"),
        ("Osaaminen", "Q4 Skills", "5. Osaaminen"),
        ("Q4 Osaaminen", "Q4: Skills", "5. Osaaminen"),
        ("Osaaminen", "Skills (1-5)", "Osaaminen (1-7)"),
    ],
    ids=[
        "range-without-brackets",
        "range-without-brackets-then-with",
        "range-of-something-else",
        "english-numbered-finnish-not",
        "english-numbering-with-a-colon",
        "english-range-finnish-none",
    ],
)
def test_no_english_wording_that_says_another_range_or_numbering_is_written_as_sure(
    earlier_fi: str, earlier_en: str, header: str
) -> None:
    question = EarlierQuestion("q", texts={2019: earlier_fi}, texts_en={2019: earlier_en})
    found = english_wording(header, question)
    assert found is None or not found[1], f"{header!r}: English {found[0]!r} written without a flag"


# 3. a column of option numbers, drafted again ----------------------------------------------------------------------
NUMBERED = {"it_management": "1", "sector_directors": "2", "city_leadership": "3", "chief_digital_officer": "4"}


def _confirm_lead_column(wave) -> None:
    """The person confirms the column's question in the spec (deletes 'TODO: ' on its line only)."""
    spec_path = wave.root / "config" / "waves" / f"{YEAR}.yml"
    key = json.dumps(VARIANTS[0].headers["lead"], ensure_ascii=False)
    text = spec_path.read_text(encoding="utf-8")
    assert f'{key}: "TODO: lead"' in text
    spec_path.write_text(text.replace(f'{key}: "TODO: lead"', f"{key}: lead"), encoding="utf-8")


def test_a_column_of_option_numbers_stays_a_question_of_options_once_its_column_is_confirmed(tmp_path: Path) -> None:
    wave, _coded_rows, _draft = _coded(tmp_path, NUMBERED, {"Ei lainkaan": "not_involved"})
    assert {r["question_id"]: r for r in spec_and_rows(wave.root)[1]}["lead"]["answer_type"] == "category"
    _confirm_lead_column(wave)  # its English wording is still open, so the question's row is drafted again
    draft_wave(wave.file, YEAR, wave.root)
    lead = {r["question_id"]: r for r in spec_and_rows(wave.root)[1]}["lead"]
    assert lead["answer_type"] == "category", lead


def test_a_column_of_numbers_the_person_made_a_scale_gets_no_option_codes_proposed_again(tmp_path: Path) -> None:
    """The draft's own advice: 'if the question became a scale, make it one in codebook_questions.csv'. The person
    does (column confirmed, the question a 1-5 scale, the rows of its plain numbers deleted): drafting again must not
    propose each number as an option again."""
    header = VARIANTS[0].headers["lead"]
    wave, _coded_rows, _draft = _coded(tmp_path, NUMBERED, {"Ei lainkaan": "not_involved"})
    _confirm_lead_column(wave)
    seeds = wave.root / "dbt_project" / "seeds"
    for name in ("codebook_questions.csv", "codebook_answers.csv"):
        with open(seeds / name, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames, list(reader)
        mine = [r for r in rows if (r["wave_year"], r["question_id"]) == (str(YEAR), "lead")]
        if name == "codebook_answers.csv":
            rows = [r for r in rows if r not in mine]
        else:
            mine[0].update(answer_type="scale", scale_min="1", scale_max="5", question_text_en="K1. Who leads?")
        with open(seeds / name, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    again = draft_wave(wave.file, YEAR, wave.root)
    asked = [(d.kind, d.values, d.proposal) for d in again.decisions if d.column == header]
    assert not asked, asked


# 4. wave check's diff ---------------------------------------------------------------------------------------------
def _cooperation_diff(tmp_path: Path, rows: list[tuple[str, str, float]]) -> WaveDiff:
    """wave_diff of a 2021 wave whose 0-10 cooperation scale has these rows (label, code, value) against 2019."""
    seeds = tmp_path / "seeds"
    shutil.copytree(ROOT / "dbt_project" / "seeds", seeds)
    with open(seeds / "codebook_questions.csv", "a", encoding="utf-8") as f:
        f.write("2021,cooperation,Q2 Yhteistyön sujuvuus (0-10),Q2 Cooperation (0-10),scale,0,10,false\n")
    with open(seeds / "codebook_answers.csv", "a", encoding="utf-8") as f:
        for order, (label, code, value) in enumerate(rows, start=1):
            f.write(f'2021,cooperation,"{label}",{code},{value},"{label}",{order}\n')
    spec = SimpleNamespace(wave_year=2021, cities_surveyed=[])
    return wave_diff(
        Codebook.from_seeds(seeds), spec, SimpleNamespace(waves_config=ROOT / "config" / "waves", root=ROOT)
    )


@pytest.mark.parametrize(
    ("rows", "change"),
    [
        # the same 0-10 scale as 2019, its plain numbers coded the other way round this year
        ([(str(n), f"score_{10 - n}", 10 - n) for n in range(11)], "renamed"),
        # 99, a 'cannot say', labelled for the first time
        ([*((str(n), f"score_{n}", n) for n in range(11)), ("99", "cannot_say", 0)], "added"),
        # a half point labelled as a point of its own
        ([*((str(n), f"score_{n}", n) for n in range(11)), ("7,5", "score_7_5", 7.5)], "added"),
    ],
    ids=["numbers-coded-the-other-way-round", "cannot-say-99", "half-point"],
)
def test_a_scales_number_labels_that_change_their_code_are_still_listed(tmp_path: Path, rows, change) -> None:
    diff = _cooperation_diff(tmp_path, rows)
    assert diff.previous == 2019
    listed = [o for o in diff.options if o.question_id == "cooperation"]
    assert any(o.change == change for o in listed), [o.describe() for o in listed]


def test_a_scale_number_whose_point_value_changes_is_listed(tmp_path: Path) -> None:
    """'7' coded score_7 but worth 3 this year: the marts read 3 (the codebook's value wins), a real change."""
    diff = _cooperation_diff(tmp_path, [(str(n), f"score_{n}", 3 if n == 7 else n) for n in range(11)])
    listed = [o.describe() for o in diff.options if o.question_id == "cooperation"]
    assert listed == ["cooperation: option score_7 stands for another point: 7 -> 3"], listed


def test_the_english_of_an_unchanged_wording_beginning_with_a_word_and_a_number_stays_sure() -> None:
    question = EarlierQuestion(
        "q", texts={2019: "Onko kaupungissanne 5G-verkko?"}, texts_en={2019: "Is 5G available in your city?"}
    )
    found = english_wording("Onko kaupungissanne 5G-verkko?", question)
    assert found is not None and found[1] and found[0] == "Is 5G available in your city?", found
