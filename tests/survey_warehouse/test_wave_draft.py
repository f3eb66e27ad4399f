"""`wave draft` on waves it was not tuned on (generated: reordered and renamed columns, options renamed, a question
dropped, a new question, a title block, other formats): every proposal is right or left to a person; drafting again
keeps what a person decided; a spec that is not a draft is not drafted over; the command's JSON and exit codes."""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from unittest.mock import ANY

import pytest
from conftest import ROOT
from wave_maker import ROLES, STAGES, VARIANTS, YEAR, Variant, Wave, copy_project, like_2019, make_wave, spec_and_rows

from survey_warehouse import cli
from survey_warehouse.drafting.delivery import Column
from survey_warehouse.drafting.draft import EXIT_OPEN, Draft, DraftRefused, draft_wave
from survey_warehouse.drafting.history import EarlierQuestion, History
from survey_warehouse.drafting.propose import (
    ColumnMatch,
    could_be_private,
    english_wording,
    is_number,
    looks_like_name,
    option_core,
    point_of,
    propose_answers,
    says_personal,
    slug,
)
from survey_warehouse.intake.codebook import STRUCTURAL_FIELDS, is_placeholder
from survey_warehouse.intake.matching import match_key
from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.settings import get_paths

EARLIER = {"lead", "cooperation", "it_involvement_stage", "business_digital_skills"}


def plain(value: object) -> str:
    text = str(value or "").strip()
    return text.split(":", 1)[1].strip() if is_placeholder(text) else text


@pytest.fixture(params=VARIANTS, ids=lambda v: v.name)
def wave(request: pytest.FixtureRequest, tmp_path: Path) -> Wave:
    variant: Variant = request.param
    root = copy_project(tmp_path / "project")
    return make_wave(variant, root)


def test_every_column_is_right_or_left_to_a_person(wave: Wave) -> None:
    draft = draft_wave(wave.file, YEAR, wave.root)
    spec, _questions, _answers = spec_and_rows(wave.root)
    drafted = {match_key(h): v for h, v in spec["columns"].items()}
    right = 0
    for header, truth in wave.truth.items():
        value = drafted.get(match_key(header))
        proposed = plain(value) if value is not None else None
        if truth == "new":  # right when proposed as a question no earlier wave asked
            ok = proposed is not None and proposed not in EARLIER and proposed not in STRUCTURAL_FIELDS
        else:
            ok = proposed == truth
        assert ok or is_placeholder(value), f"{header!r}: proposed {proposed!r} without a flag, truly {truth!r}"
        right += ok and not is_placeholder(value)
    assert right >= len(wave.truth) - 3, "most columns are proposed right without a flag"
    assert draft.open, "a new wave always leaves the field period and the cities surveyed to confirm"


def test_every_answer_is_coded_right_or_left_to_a_person(wave: Wave) -> None:
    draft_wave(wave.file, YEAR, wave.root)
    spec, questions, answers = spec_and_rows(wave.root)
    by_header = {match_key(h): v for h, v in spec["columns"].items()}
    checked = 0
    for (field_id, label), truth in wave.codes.items():
        header = next((h for h, f in wave.truth.items() if f == field_id), None)
        if header is None or field_id == "new":
            continue
        mapped = by_header.get(match_key(header))
        if mapped is None or is_placeholder(mapped):
            continue  # the column itself is left to a person, and its answers with it
        rows = {match_key(r["source_label"]): r for r in answers if r["question_id"] == plain(mapped)}
        row = rows.get(match_key(label))
        question = next(r for r in questions if r["question_id"] == plain(mapped))
        if row is not None:
            assert plain(row["answer_code"]) == truth or is_placeholder(row["answer_code"]), (
                f"{field_id} {label!r}: coded {row['answer_code']!r} without a flag, truly {truth!r}"
            )
        elif label in _delivered(wave, header):
            # no row: a plain number on the scale the draft declared
            assert question["answer_type"] == "scale" and is_number(match_key(label)), f"{label!r} not coded"
            low, high = float(plain(question["scale_min"])), float(plain(question["scale_max"]))
            point = point_of(match_key(label))
            on_scale = point is not None and low <= point <= high and truth == f"score_{point}"
            off_scale = f"{field_id} {label!r} is not on the scale {low}-{high}"
            assert on_scale or is_placeholder(question["scale_min"]), off_scale
        checked += 1
    assert checked >= 10


def _delivered(wave: Wave, header: str) -> set[str]:
    from survey_warehouse.drafting.delivery import detect_shape, read_delivery

    delivery = read_delivery(wave.file, YEAR, detect_shape(wave.file))
    column = next(c for c in delivery.columns if match_key(c.header) == match_key(header))
    return set(column.values)


def test_a_wrong_guess_is_never_silent_when_the_history_misleads(tmp_path: Path) -> None:
    """A column whose header reads like an earlier question's but whose answers are another's: the draft does not
    take the header's word for it."""
    variant = VARIANTS[0]
    swapped = Variant(
        "swapped",
        seed=7,
        headers={**variant.headers, "lead": "K1. Missä vaiheessa digitalisaatiota johdetaan?"},
        lead_labels=variant.lead_labels,
        dropped=("it_involvement_stage",),
    )
    wave = make_wave(swapped, copy_project(tmp_path / "project"))
    draft_wave(wave.file, YEAR, wave.root)
    spec, _q, _a = spec_and_rows(wave.root)
    value = spec["columns"][swapped.headers["lead"]]
    assert plain(value) == "lead" or is_placeholder(value)


def _answer_everything(wave: Wave) -> None:
    """What the person does: every TODO in the spec and the seeds replaced with the true answer (a new question's
    id and codes, the dates, the cities and the versions as proposed; English texts written)."""
    spec_path = wave.root / "config" / "waves" / f"{YEAR}.yml"
    lines = []
    for line in spec_path.read_text(encoding="utf-8").splitlines():
        if re.match(r'\s*- "TODO:', line):
            continue  # the cities surveyed: confirmed as listed
        column = re.match(r'\s*("(?:[^"\\]|\\.)*"): "TODO: (.*)"$', line)
        if column:
            header = json.loads(column.group(1))
            truth = next((t for h, t in wave.truth.items() if match_key(h) == match_key(header)), None)
            if truth is None:
                continue  # not a question: the person leaves it unmapped
            proposal = column.group(2)
            if truth == "new":
                new = proposal not in EARLIER and proposal not in STRUCTURAL_FIELDS
                answer = proposal if new else "new_question"
            else:
                answer = truth
            lines.append(f"  {column.group(1)}: {answer}")
            continue
        lines.append(line.replace('"TODO: ', '"'))
    spec_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seeds = wave.root / "dbt_project" / "seeds"
    import csv

    for name in ("codebook_questions.csv", "codebook_answers.csv", "city_aliases.csv"):
        with open(seeds / name, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], list(reader)
        for row in rows:
            for key, value in row.items():
                if not is_placeholder(value):
                    continue
                if key == "answer_code":
                    truth = wave.codes.get((row["question_id"], row["source_label"]))
                    row[key] = truth if truth and row["question_id"] != _new_id(wave) else plain(value)
                elif key in ("question_text_en", "answer_label_en"):
                    row[key] = "English text"
                else:
                    row[key] = plain(value)
        with open(seeds / name, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


def settle(wave: Wave) -> None:
    """The person answers, drafts again to see what is left, and answers that too."""
    for _round in range(3):
        _answer_everything(wave)
        if not draft_wave(wave.file, YEAR, wave.root).open:
            return


def _new_id(wave: Wave) -> str | None:
    if wave.new_question is None:
        return None
    spec, _q, _a = spec_and_rows(wave.root)
    return plain(spec["columns"].get(wave.new_question))


def test_drafting_again_keeps_what_a_person_decided(tmp_path: Path) -> None:
    wave = make_wave(VARIANTS[1], copy_project(tmp_path / "project"))
    first = draft_wave(wave.file, YEAR, wave.root)
    assert first.open
    spec_path = wave.root / "config" / "waves" / f"{YEAR}.yml"
    # the person decides the field period only, and renames a sure question's English wording in the seeds
    text = spec_path.read_text(encoding="utf-8")
    text = re.sub(r"field_period: .*", "field_period: {start: 2021-03-01, end: 2021-04-30}", text)
    spec_path.write_text(text, encoding="utf-8")
    second = draft_wave(wave.file, YEAR, wave.root)
    assert "2021-03-01" in spec_path.read_text(encoding="utf-8")
    assert not [d for d in second.decisions if d.kind == "field_period"]
    assert len([d for d in second.decisions if d.needs_person]) == len(first.decisions) - 1
    settle(wave)
    third = draft_wave(wave.file, YEAR, wave.root)
    assert not third.open, [d.as_dict() for d in third.decisions if d.needs_person]
    before = spec_and_rows(wave.root)
    draft_wave(wave.file, YEAR, wave.root)
    assert spec_and_rows(wave.root) == before, "a decided draft is written again unchanged"


def test_a_spec_that_is_not_a_draft_is_not_drafted_over(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    file = Path(__file__).resolve().parents[2] / "data" / "waves" / "2019" / "city_survey_2019_export.csv"
    before = (root / "config" / "waves" / "2019.yml").read_text(encoding="utf-8")
    with pytest.raises(DraftRefused, match="not a draft"):
        draft_wave(file, 2019, root)
    assert (root / "config" / "waves" / "2019.yml").read_text(encoding="utf-8") == before
    forced = draft_wave(file, 2019, root, force=True)
    assert (root / "config" / "waves" / "2019.yml").read_text(encoding="utf-8").startswith("# Drafted")
    assert forced.open


def test_the_command_prints_the_open_decisions_as_json_and_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wave = make_wave(VARIANTS[0], copy_project(tmp_path / "project"))
    monkeypatch.setenv("SURVEY_PROJECT_ROOT", str(wave.root))
    assert cli.main(["wave", "draft", str(wave.file), "--year", str(YEAR), "--json"]) == EXIT_OPEN
    out = json.loads(capsys.readouterr().out)
    assert out["wave_year"] == YEAR and out["open"] == len(out["decisions"]) > 0
    assert {"kind", "column", "values", "proposal", "evidence", "where"} <= set(out["decisions"][0])
    kinds = {d["kind"] for d in out["decisions"]}
    assert {"field_period", "cities_surveyed", "question"} <= kinds
    assert not any("@" in json.dumps(d) for d in out["decisions"]), "no respondent's e-mail in the decisions"
    settle(wave)
    assert cli.main(["wave", "draft", str(wave.file), "--year", str(YEAR)]) == 0
    assert "Nothing left to decide" in capsys.readouterr().out
    monkeypatch.setenv("SURVEY_PROJECT_ROOT", str(wave.root))
    assert cli.main(["wave", "draft", str(wave.root / "nowhere.csv"), "--year", str(YEAR)]) == 2


def test_the_loader_refuses_a_wave_with_open_decisions(tmp_path: Path) -> None:
    from survey_warehouse.errors import WaveSpecError
    from survey_warehouse.intake.codebook import Codebook
    from survey_warehouse.intake.waves import WaveSpec

    wave = make_wave(VARIANTS[0], copy_project(tmp_path / "project"))
    draft_wave(wave.file, YEAR, wave.root)
    text = (wave.root / "config" / "waves" / f"{YEAR}.yml").read_text(encoding="utf-8")
    text = re.sub(r'"TODO: (\d{4}-\d\d-\d\d)"', r"\1", text)  # dates decided; the rest left open
    (wave.root / "config" / "waves" / f"{YEAR}.yml").write_text(text, encoding="utf-8")
    spec = WaveSpec.from_file(wave.root / "config" / "waves" / f"{YEAR}.yml", wave.root)
    with pytest.raises(WaveSpecError, match="decision"):
        spec.check(Codebook.from_seeds(wave.root / "dbt_project" / "seeds"))


def test_no_contact_details_reach_the_spec_the_seeds_or_the_decisions(tmp_path: Path) -> None:
    import csv

    wave = make_wave(VARIANTS[0], copy_project(tmp_path / "project"))
    with open(wave.file, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    lead = rows[0].index(VARIANTS[0].headers["lead"])
    rows[1][lead] = "soita minulle: matti.meikalainen@example.fi"
    rows[2][lead] = "040 123 4567"
    with open(wave.file, "w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)
    draft = draft_wave(wave.file, YEAR, wave.root)
    written = (wave.root / "config" / "waves" / f"{YEAR}.yml").read_text(encoding="utf-8")
    written += (wave.root / "dbt_project" / "seeds" / "codebook_answers.csv").read_text(encoding="utf-8")
    written += draft.as_json()
    assert "@" not in written and "4567" not in written and "meikalainen" not in written


@pytest.mark.parametrize(
    ("prefix", "encoding", "delimiter", "header_row"),
    [
        ("sep=;\r\n", "utf-8-sig", ";", 2),  # Excel's delimiter hint above the header
        ("Kaupunkikysely\r\n\r\nVastaukset 2021\r\n", "cp1252", "\t", 4),  # a title block in a tab-separated file
        ("", "utf-16", "|", 1),
    ],
)
def test_the_shape_is_read_off_the_file(
    tmp_path: Path, prefix: str, encoding: str, delimiter: str, header_row: int
) -> None:
    from survey_warehouse.drafting.delivery import detect_shape, read_delivery

    header = ["Nimi", "Sähköposti", "Kaupunki", "Kuka johtaa digitalisaatiota?"]
    rows = [[f"Vastaaja {i}", f"v{i}@example.fi", "Turku", "Tietohallinto, ICT"] for i in range(6)]
    text = prefix + "\r\n".join(delimiter.join(r) for r in [header, *rows]) + "\r\n"
    file = tmp_path / "wave.csv"
    file.write_text(text, encoding=encoding)
    shape = detect_shape(file)
    assert (shape.delimiter, shape.header_row) == (delimiter, header_row)
    assert shape.encoding.replace("-sig", "") in (encoding.replace("-sig", ""), "utf-8")
    delivery = read_delivery(file, YEAR, shape)
    assert [c.header for c in delivery.columns] == header and delivery.rows == len(rows)


def test_a_column_the_person_removed_stays_unmapped_until_another_file_comes(tmp_path: Path) -> None:
    import shutil

    wave = make_wave(VARIANTS[0], copy_project(tmp_path / "project"))
    draft_wave(wave.file, YEAR, wave.root)
    spec_path = wave.root / "config" / "waves" / f"{YEAR}.yml"
    header = VARIANTS[0].headers["business_digital_skills"]
    kept = [
        line
        for line in spec_path.read_text(encoding="utf-8").splitlines()
        if json.dumps(header, ensure_ascii=False) not in line
    ]
    spec_path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    draft_wave(wave.file, YEAR, wave.root)
    assert header not in spec_and_rows(wave.root)[0]["columns"]
    redelivered = wave.file.with_name("kysely_2021_korjattu.csv")
    shutil.copy2(wave.file, redelivered)
    draft_wave(redelivered, YEAR, wave.root)
    assert plain(spec_and_rows(wave.root)[0]["columns"][header]) == "business_digital_skills"


@pytest.mark.parametrize(
    ("earlier", "header"),
    [
        # another question's wording over the headline question's answer options
        (
            "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?",
            "Q1 Kuka päättää tietojärjestelmähankinnoista?",
        ),
        # another scale question that words its points as an earlier one did
        ("Q4 Toimialojen digitaalinen osaaminen", "Q5 Asukkaiden tyytyväisyys sähköisiin palveluihin"),
    ],
    ids=["headline-options-under-another-wording", "scale-words-under-another-wording"],
)
def test_a_question_matched_by_its_answers_alone_is_left_to_a_person(tmp_path: Path, earlier: str, header: str) -> None:
    root = copy_project(tmp_path / "project")
    file = like_2019(root, {earlier: header}, dropped=("Q5 Vapaa palaute",))
    draft = draft_wave(file, YEAR, root)
    value = spec_and_rows(root)[0]["columns"][header]
    assert is_placeholder(value) or plain(value) not in EARLIER, f"{header!r} mapped to {value!r} by its answers alone"
    if plain(value) in EARLIER:
        asked = [d for d in draft.decisions if d.column == header and d.kind == "column"]
        assert asked and any("wording" in e for e in asked[0].evidence), "the decision shows its evidence"


def test_a_file_exported_in_the_surveys_english_is_matched_by_the_earlier_english_wordings(tmp_path: Path) -> None:
    """The 2019 answers with the survey's English headers (as the codebook words them, one reworded): each question
    is matched to its earlier one, and its English wording is the header itself when it is the earlier English."""
    english = {
        "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?": (
            "Q1 Who is primarily responsible for leading digitalisation?",
            "lead",
        ),
        "Q2 Tietohallinnon ja toimialojen yhteistyön sujuvuus (0-10)": (
            "Q2 How smoothly do IT management and the business lines cooperate? (0-10)",
            "cooperation",
        ),
        "Q3 Missä vaiheessa tietohallinto otetaan mukaan?": (
            "Q3 At which stage is IT management brought in?",
            "it_involvement_stage",
        ),
        "Q4 Toimialojen digitaalinen osaaminen": ("Q4 Digital skills of the business lines", "business_digital_skills"),
    }
    root = copy_project(tmp_path / "project")
    file = like_2019(root, {fi: en for fi, (en, _q) in english.items()}, dropped=("Q5 Vapaa palaute",))
    draft = draft_wave(file, YEAR, root)
    spec, questions, _answers = spec_and_rows(root)
    for header, question in english.values():
        assert spec["columns"][header] == question, (header, spec["columns"][header])
    texts = {r["question_id"]: r["question_text_en"] for r in questions}
    for header, question in list(english.values())[:1] + list(english.values())[2:]:
        assert texts[question] == header, texts[question]
    asked = [d.column for d in draft.decisions if d.kind in {"column", "question"}]
    assert not set(asked) & {h for h, _q in english.values()}, asked


def test_a_label_that_drops_or_adds_a_negation_is_never_coded_as_the_earlier_one(tmp_path: Path) -> None:
    """'Nimetty vastuu' is not 'Ei nimettyä vastuuta', 'Osallistuu' not 'Ei osallistu': the words alike, the meaning
    the opposite; and a label coded only as a shortened earlier one is for a person to confirm."""
    variant = VARIANTS[0]
    negated = Variant(
        "negation-dropped",
        seed=5,
        headers=variant.headers,
        lead_labels={**variant.lead_labels, "designated_lead": "Nimetty vastuu"},
        stages={"Strategia": "strategy", "Osallistuu": "involved", "Ei lainkaan": "not_involved"},
    )
    wave = make_wave(negated, copy_project(tmp_path / "project"))
    draft_wave(wave.file, YEAR, wave.root)
    _spec, _questions, answers = spec_and_rows(wave.root)
    coded = {(r["question_id"], r["source_label"]): r["answer_code"] for r in answers}
    for key in [("lead", "Nimetty vastuu"), ("it_involvement_stage", "Osallistuu")]:
        assert key in coded, f"{key} has a row"
        assert is_placeholder(coded[key]) or plain(coded[key]) == wave.codes[key], f"{key} coded {coded[key]!r}"


@pytest.mark.parametrize(
    ("words", "flagged"),
    [
        (("Täysin samaa mieltä", "Täysin eri mieltä"), True),  # the earlier waves' scale the other way round
        (("Täysin eri mieltä", "Täysin samaa mieltä"), False),  # the same way round: the number and words agree
    ],
    ids=["reversed", "same-direction"],
)
def test_a_worded_point_is_coded_by_its_number_only_when_its_words_agree(
    tmp_path: Path, words: tuple[str, str], flagged: bool
) -> None:
    variant = VARIANTS[0]
    worded = Variant(
        "worded-scale", seed=1, headers=variant.headers, lead_labels=variant.lead_labels, scale_words=words
    )
    wave = make_wave(worded, copy_project(tmp_path / "project"))
    draft = draft_wave(wave.file, YEAR, wave.root)
    _spec, _questions, answers = spec_and_rows(wave.root)
    rows = {r["source_label"]: r for r in answers if r["question_id"] == "cooperation"}
    for point, label in zip((1, 5), words, strict=True):
        row = rows[f"{point} = {label}"]
        assert is_placeholder(row["answer_code"]) == flagged, row
        if not flagged:
            assert (row["answer_code"], row["answer_value"]) == (f"score_{point}", str(point))
    if flagged:
        asked = [d for d in draft.decisions if d.kind == "answer" and d.values == [f"1 = {words[0]}"]]
        assert asked and any("5" in e for e in asked[0].evidence), "the decision says what earlier waves gave it"


def test_a_header_changed_in_the_same_file_is_proposed_again(tmp_path: Path) -> None:
    """The file at the same path delivered again with a header written differently: the new header is proposed,
    not left unmapped as if a person had removed it."""
    wave = make_wave(VARIANTS[0], copy_project(tmp_path / "project"))
    draft_wave(wave.file, YEAR, wave.root)
    header = VARIANTS[0].headers["cooperation"]
    changed = header.replace("(1-5)", "(1\u20135)")
    text = wave.file.read_text(encoding="utf-8-sig")
    wave.file.write_text(text.replace(header, changed), encoding="utf-8-sig")
    draft = draft_wave(wave.file, YEAR, wave.root)
    columns = spec_and_rows(wave.root)[0]["columns"]
    assert changed in columns, "the changed header is proposed"
    assert plain(columns[changed]) == "cooperation" or is_placeholder(columns[changed])
    assert draft.open


def test_a_question_re_mapped_to_another_id_leaves_no_rows_of_its_old_id(tmp_path: Path) -> None:
    from survey_warehouse.intake.codebook import Codebook

    wave = make_wave(VARIANTS[0], copy_project(tmp_path / "project"))
    draft_wave(wave.file, YEAR, wave.root)
    settle(wave)
    old = _new_id(wave)
    assert old
    spec_path = wave.root / "config" / "waves" / f"{YEAR}.yml"
    spec_path.write_text(spec_path.read_text(encoding="utf-8").replace(f": {old}\n", ": digital_programme\n"))
    draft_wave(wave.file, YEAR, wave.root)
    _spec, questions, answers = spec_and_rows(wave.root)
    assert old not in {r["question_id"] for r in [*questions, *answers]}, f"rows of {old} are kept"
    assert "digital_programme" in {r["question_id"] for r in questions}
    Codebook.from_seeds(wave.root / "dbt_project" / "seeds")


NAMES = ["Matti Virtanen", "Liisa Korhonen", "Anna-Maija Mäkinen"]
FEEDBACK = ["Kysely oli liian pitkä.", "Soittakaa Liisa Korhoselle!", "Kiitos", "Hyvä kysely."]


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


# the shapes a person's name takes in an export (invented names): first name or surname first, a comma after the
# surname, capitals, small letters, initials, hyphens, particles, letters with combining marks
NAME_SHAPES = [
    "Matti Virtanen",
    "Virtanen Matti",
    "VIRTANEN Matti",
    "Matti VIRTANEN",
    "VIRTANEN MATTI",
    "Virtanen, Matti",
    "VIRTANEN, Matti",
    "virtanen, matti",
    "matti virtanen",
    "M. Virtanen",
    "Virtanen M.",
    "A.-L. Virtanen",
    "Anna Liisa Virtanen",
    "Anna-Liisa Virtanen-Korhonen",
    "Virtanen-Korhonen, Anna-Liisa",
    "Carl af Forselles",
    "Ursula von der Leyen",
    "von Wright, Georg",
    "Sean O'Brien",
    "Zoë Ahlroos",
    "MÄKINEN Anna",
    _nfd("Anna Mäkinen"),
    _nfd("Åsa Öberg-Grönroos"),
    _nfd("jyrki könönen"),
]


def _bundled_labels() -> list[str]:
    seeds = ROOT / "dbt_project" / "seeds"
    with open(seeds / "codebook_answers.csv", encoding="utf-8", newline="") as f:
        labels = {r["source_label"] for r in csv.DictReader(f)}
    with open(seeds / "cities.csv", encoding="utf-8", newline="") as f:
        labels |= {r[k] for r in csv.DictReader(f) for k in ("name_fi", "name_sv")}
    for variant in VARIANTS:
        labels |= set(variant.lead_labels.values()) | set((variant.new_question or ("", {}))[1])
    return sorted(labels | set(STAGES) | set(ROLES))


# answer labels as the codebook and the generated waves have them, the cities' names, and labels of other shapes
ANSWER_LABELS = [
    *_bundled_labels(),
    "Muu johto",
    "Tietohallinto (ICT-johto)",
    "Ei osallistu",
    "Täysin samaa mieltä",
    "Helsinki",
    "1 = täysin eri mieltä",
    "1. Kyllä",
    "Vaihe A",
    "Kyllä, osittain",
]


def test_a_name_in_any_of_its_shapes_may_be_private_and_no_answer_label_is_a_name() -> None:
    assert len(ANSWER_LABELS) > 60
    assert [s for s in NAME_SHAPES if not (looks_like_name(s) and could_be_private(s))] == []
    assert [s for s in ANSWER_LABELS if looks_like_name(s)] == []


def test_a_header_that_says_names_or_contact_details_is_told_from_the_other_headers() -> None:
    import yaml

    naming = ["Vastaajan nimi", "Nimi", "Sukunimi", "Yhteyshenkilö", "Yhteyshenkilön nimi", "Vastaaja", "Namn"]
    naming += ["Name", "Full name", "Contact person", "Yhteystiedot", "Puhelinnumero"]
    personal = ("respondent_name", "respondent_email")
    others = {h for v in VARIANTS for f, h in v.headers.items() if f not in personal}
    for spec in (ROOT / "config" / "waves").glob("*.yml"):
        columns = yaml.safe_load(spec.read_text(encoding="utf-8"))["columns"]
        others |= {str(h) for h, f in columns.items() if f not in personal}
    assert len(others) > 20
    assert [h for h in naming if not says_personal(h)] == []
    assert sorted(h for h in others if says_personal(h)) == []


@pytest.mark.parametrize(
    ("changes", "private"),
    [
        # the respondents' names under a header no earlier wave used, each name on several rows
        ({"headers": {**VARIANTS[0].headers, "respondent_name": "Vastaaja"}, "names": NAMES}, NAMES),
        # the same, the names in other shapes an export gives them, under an earlier wave's header
        *(({"names": names}, names) for names in (NAME_SHAPES[i : i + 3] for i in range(0, len(NAME_SHAPES), 3))),
        # surnames alone under a header that says names (their shape would not tell)
        *[
            (
                {"headers": {**VARIANTS[0].headers, "respondent_name": h}, "names": ["Virtanen", "Korhonen", "Laine"]},
                ["Virtanen", "Korhonen", "Laine"],
            )
            for h in ("Yhteyshenkilö", "Contact name")
        ],
        # a small file's free-text feedback: too few answers to tell from their number that they are free text
        ({"cities": 2, "comments": FEEDBACK}, FEEDBACK),
    ],
    ids=[
        "repeated-names-under-a-new-header",
        *(f"names-in-other-shapes-{i // 3 + 1}" for i in range(0, len(NAME_SHAPES), 3)),
        "surnames-under-yhteyshenkilo",
        "surnames-under-contact-name",
        "feedback-in-a-small-file",
    ],
)
def test_names_and_free_text_are_never_written_or_quoted(
    tmp_path: Path, changes: dict[str, object], private: list[str]
) -> None:
    from survey_warehouse.drafting.command import report

    variant = VARIANTS[0]
    settings: dict = {"headers": variant.headers, "lead_labels": variant.lead_labels, **changes}
    wave = make_wave(Variant("private", seed=3, **settings), copy_project(tmp_path / "project"))
    draft = draft_wave(wave.file, YEAR, wave.root)
    seeds = wave.root / "dbt_project" / "seeds"
    written = (wave.root / "config" / "waves" / f"{YEAR}.yml").read_text(encoding="utf-8")
    written += (seeds / "codebook_answers.csv").read_text(encoding="utf-8")
    written += draft.as_json() + report(draft)
    for text in private:  # in any Unicode form or case, nor as a code made of it
        for form in {unicodedata.normalize(f, text) for f in ("NFC", "NFD")}:
            assert form.casefold() not in written.casefold(), f"{text!r} is written or quoted"
        assert slug(text) not in re.findall(r"\w+", written), f"a code made of {text!r} is written"
    assert draft.open


def test_spellings_that_read_the_same_are_proposed_as_one_alias(tmp_path: Path) -> None:
    import csv

    variant = VARIANTS[0]
    spellings = ["Lappeenrana", "LAPPEENRANA ", "lappeenrana"]
    respelled = Variant(
        "respelled", seed=1, headers=variant.headers, lead_labels=variant.lead_labels, respelled={"405": spellings}
    )
    wave = make_wave(respelled, copy_project(tmp_path / "project"))
    draft = draft_wave(wave.file, YEAR, wave.root)
    with open(wave.root / "dbt_project" / "seeds" / "city_aliases.csv", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if match_key(r["city_alias"]) == match_key(spellings[0])]
    assert len(rows) == 1, rows
    assert plain(rows[0]["municipality_code"]) == "405" or rows[0]["municipality_code"] == ""
    asked = [d for d in draft.decisions if d.kind == "city"]
    assert len(asked) == 1 and "3 row(s)" in asked[0].evidence


def test_a_scale_label_without_its_point_is_left_to_a_person(tmp_path: Path) -> None:
    """A new question the person declares a scale: its worded answers need the point each stands for."""
    import csv

    wave = make_wave(VARIANTS[0], copy_project(tmp_path / "project"))
    draft_wave(wave.file, YEAR, wave.root)
    new_id = _new_id(wave)
    spec_path = wave.root / "config" / "waves" / f"{YEAR}.yml"
    spec_path.write_text(spec_path.read_text(encoding="utf-8").replace(f'"TODO: {new_id}"', str(new_id)))
    path = wave.root / "dbt_project" / "seeds" / "codebook_questions.csv"
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], list(reader)
    for row in rows:
        if row["wave_year"] == str(YEAR) and row["question_id"] == new_id:
            row.update(answer_type="scale", scale_min="1", scale_max="3", question_text_en="Programme")
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    draft = draft_wave(wave.file, YEAR, wave.root)
    answers = [r for r in spec_and_rows(wave.root)[2] if r["question_id"] == new_id]
    assert answers
    for row in answers:
        assert is_number(row["answer_value"]) or is_placeholder(row["answer_value"]), row
    assert any(d.where.endswith("answer_value") for d in draft.decisions if d.needs_person)


def test_a_city_is_proposed_by_its_name_not_by_the_word_kaupunki(tmp_path: Path) -> None:
    variant = VARIANTS[0]
    spellings = {
        "905": "Keravan kaupunki",  # no municipality of the survey: nothing to propose
        "609": "Pori stad",
        "167": "Joensuu kaupunki",
        "837": "Tampreen kaupunki",  # a typing error in the genitive
    }
    truth = {"Keravan kaupunki": None, "Pori stad": "609", "Joensuu kaupunki": "167", "Tampreen kaupunki": "837"}
    respelled = Variant(
        "organisations",
        seed=1,
        headers=variant.headers,
        lead_labels=variant.lead_labels,
        respelled={code: [name] for code, name in spellings.items()},
    )
    wave = make_wave(respelled, copy_project(tmp_path / "project"))
    draft = draft_wave(wave.file, YEAR, wave.root)
    proposed = {d.values[0].strip("'"): d.proposal for d in draft.decisions if d.kind == "city"}
    assert set(proposed) == set(truth)
    for name, code in truth.items():
        assert proposed[name] == code, f"{name!r}: proposed {proposed[name]!r}, truly {code!r}"


def test_headers_that_read_the_same_are_a_decision_naming_both(tmp_path: Path) -> None:
    wave = make_wave(VARIANTS[0], copy_project(tmp_path / "project"))
    text = wave.file.read_text(encoding="utf-8-sig")
    first, rest = text.split("\n", 1)
    wave.file.write_text(first.replace("Vapaa palaute", "KUNTA ") + "\n" + rest, encoding="utf-8-sig")
    draft = draft_wave(wave.file, YEAR, wave.root)
    shape = [d for d in draft.decisions if d.kind == "shape" and d.needs_person]
    assert shape, "the repeated header is a decision"
    assert {"Kunta", "KUNTA"} <= {v.strip() for v in shape[0].values}


def test_a_placeholder_typed_by_hand_is_still_open(tmp_path: Path) -> None:
    """'TODO later' (no colon) is a placeholder to the loader: the draft does not take it as decided either."""
    wave = make_wave(VARIANTS[0], copy_project(tmp_path / "project"))
    draft_wave(wave.file, YEAR, wave.root)
    spec_path = wave.root / "config" / "waves" / f"{YEAR}.yml"
    text = re.sub(r"questionnaire_version: .*", 'questionnaire_version: "TODO later"', spec_path.read_text())
    spec_path.write_text(text, encoding="utf-8")
    again = draft_wave(wave.file, YEAR, wave.root)
    assert [d for d in again.decisions if d.kind == "version" and d.needs_person]


def test_us_style_submission_times_give_the_field_period(tmp_path: Path) -> None:
    """'3/19/2021 05:20 PM': read as the loader reads a submission time, and the field period proposed from them."""
    import csv
    import datetime as dt

    root = copy_project(tmp_path / "project")
    file = like_2019(root, {})
    with open(file, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    at = rows[0].index("Aikaleima")
    moments = []
    for row in rows[1:]:
        moment = dt.datetime.fromisoformat(row[at]).replace(year=YEAR)
        moments.append(moment)
        row[at] = f"{moment.month}/{moment.day}/{moment.year} {moment.strftime('%I:%M %p')}"
    with open(file, "w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)
    draft = draft_wave(file, YEAR, root)
    assert plain(spec_and_rows(root)[0]["columns"]["Aikaleima"]) == "submitted_at"
    period = next(d for d in draft.decisions if d.kind == "field_period")
    assert period.proposal == {"start": min(moments).date().isoformat(), "end": max(moments).date().isoformat()}


def _response_times_as(file: Path, header: str, form: Callable[[float], str]) -> list[float]:
    """The file's response times (minutes) rewritten in another form, under another header; the minutes as they were."""
    with open(file, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    at = rows[0].index("Vastausaika (min)")
    rows[0][at] = header
    minutes = []
    for row in rows[1:]:
        if row[at]:
            minutes.append(float(row[at]))
            row[at] = form(float(row[at]))
    with open(file, "w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)
    return minutes


@pytest.mark.parametrize(
    ("header", "form", "clock"),
    [
        ("Vastausaika (min)", lambda m: f"{int(m)}:{round(60 * (m % 1)):02d}", "m:ss"),
        ("Kesto", lambda m: f"{int(m)}:{round(60 * (m % 1)):02d}", "m:ss"),
        ("Vastausaika", lambda m: f"0:{round(m):02d}", "h:mm"),
    ],
    ids=["m:ss", "m:ss-another-header", "h:mm"],
)
def test_response_times_of_two_parts_are_mapped_and_how_to_read_them_is_asked(
    tmp_path: Path, header: str, form: Callable[[float], str], clock: str
) -> None:
    """12:30 or 0:12 in the response-time column: the loader cannot tell minutes and seconds from hours and minutes,
    so the draft proposes duration_clock by which reading gives believable response times, for a person to
    confirm; confirmed, the wave loads every response time as the minutes it was."""
    root = copy_project(tmp_path / "project")
    file = like_2019(root, {})
    minutes = _response_times_as(file, header, form)
    draft = draft_wave(file, YEAR, root)
    spec = spec_and_rows(root)[0]
    assert plain(spec["columns"][header]) == "response_minutes"
    asked = next(d for d in draft.decisions if d.kind == "duration_clock")
    assert asked.proposal == clock and is_placeholder(spec["duration_clock"])
    assert plain(spec["duration_clock"]) == clock

    # the person confirms every decision as proposed: each response time reads as the minutes it was
    from survey_warehouse.intake.values import read_duration

    for value, expected in zip((form(m) for m in minutes), minutes, strict=True):
        read = read_duration(value, clock=plain(spec["duration_clock"]))
        assert read.number is not None and abs(read.number - expected) <= 0.5, (value, expected, read)


def test_a_draft_whose_every_todo_is_deleted_loads_with_the_proposals(tmp_path: Path) -> None:
    """A person taking every proposal deletes each `TODO: ` (and the line of the note on the cities surveyed, as it
    says): the spec loads, every key the draft left to a person read as proposed (a row number, a date, a sheet)."""
    from survey_warehouse.drafting.placeholders import find_placeholders
    from survey_warehouse.intake.waves import WaveSpec

    timed = copy_project(tmp_path / "timed")
    _response_times_as(like_2019(timed, {}), "Vastausaika (min)", lambda m: f"{int(m)}:{round(60 * (m % 1)):02d}")
    waves = [make_wave(v, copy_project(tmp_path / v.name)) for v in VARIANTS]
    marked: set[str] = set()
    for root, file in [
        *((w.root, w.file) for w in waves),
        (timed, timed / "data" / "waves" / str(YEAR) / "kysely_2021.csv"),
    ]:
        draft = draft_wave(file, YEAR, root)
        path = root / "config" / "waves" / f"{YEAR}.yml"
        marked |= {re.split(r"[.\[]", p.where)[0] for p in find_placeholders(root, YEAR) if p.file.endswith(".yml")}
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(ln for ln in lines if "TODO: the cities surveyed" not in ln).replace("TODO: ", ""))
        spec = WaveSpec.from_file(path, root)
        for decision in draft.decisions:
            if decision.kind == "shape" and isinstance(decision.proposal, dict):
                for key, value in decision.proposal.items():
                    assert getattr(spec, key) == value, (file.name, key)
            if decision.kind == "field_period":
                assert (str(spec.field_period_start), str(spec.field_period_end)) == tuple(decision.proposal.values())
            if decision.kind == "duration_clock":
                assert spec.duration_clock == decision.proposal
    keys = {"header_row", "sheet", "field_period", "questionnaire_version", "duration_clock", "columns"}
    assert keys | {"cities_surveyed"} <= marked, f"the drafts left no placeholder in {keys - marked}"


def test_a_confirmed_duration_clock_is_kept_when_drafting_again(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project")
    file = like_2019(root, {})
    _response_times_as(file, "Vastausaika (min)", lambda m: f"{int(m)}:{round(60 * (m % 1)):02d}")
    draft_wave(file, YEAR, root)
    spec_path = root / "config" / "waves" / f"{YEAR}.yml"
    spec_path.write_text(spec_path.read_text(encoding="utf-8").replace('"TODO: m:ss"', '"h:mm"'), encoding="utf-8")
    again = draft_wave(file, YEAR, root)
    assert spec_and_rows(root)[0]["duration_clock"] == "h:mm"
    assert not [d for d in again.decisions if d.kind == "duration_clock"]


@pytest.mark.parametrize("export", ["xls", "ods", "sav"])
def test_the_same_wave_in_another_export_drafts_the_same(export: str, tmp_path: Path) -> None:
    """The 2018 workbook saved as a legacy .xls, an OpenDocument .ods and an SPSS .sav (variables named q1..qN,
    labelled with the questions, answers as value labels): the draft proposes what it proposes from the .xlsx (an
    SPSS variable is matched by its label, its codes column is not a question)."""
    from delivered_formats import as_ods, as_sav, as_xls

    spec = find_wave_spec(2018, get_paths())
    assert spec is not None
    delivered = {
        "xls": lambda: as_xls(spec, tmp_path / "wave.xls"),
        "ods": lambda: as_ods(spec, tmp_path / "wave.ods"),
        "sav": lambda: as_sav(spec, tmp_path / "wave.sav")[0],
    }[export]()
    workbook = draft_wave(spec.file, 2031, ROOT, write=False)
    other = draft_wave(delivered, 2031, ROOT, write=False)
    assert other.settled == workbook.settled
    assert [(d.kind, d.column, d.proposal) for d in other.decisions] == [
        (d.kind, d.column, d.proposal) for d in workbook.decisions
    ]


FIRST_NAMES = ["Matti", "Liisa", "Anna", "Juha", "Pekka", "Sari", "Timo", "Kaisa"]
LAST_NAMES = ["Virtanen", "Korhonen", "Mäkinen", "Nieminen", "Laine", "Heikkinen", "Koskinen", "Järvinen"]


@pytest.mark.parametrize(
    ("names", "sure"),
    [
        (NAMES, False),  # the same three names on every city's rows: a contact person's, not each respondent's own
        (["VIRTANEN Matti", "KORHONEN Liisa", "MÄKINEN Anna"], False),  # the same, in other shapes
        (["Virtanen, Matti", "Korhonen, Liisa", "Mäkinen, Anna"], False),
        (["matti virtanen", "liisa korhonen", "anna mäkinen"], False),
        ([f"{f} {s}" for f in FIRST_NAMES for s in LAST_NAMES], True),  # a different name on every row
        ([f"{s.upper()} {f}" for f in FIRST_NAMES for s in LAST_NAMES], True),
    ],
    ids=[
        "names-that-recur",
        "names-that-recur-in-capitals",
        "names-that-recur-surname-first",
        "names-that-recur-in-small-letters",
        "names-all-different",
        "names-all-different-in-capitals",
    ],
)
def test_names_that_recur_are_not_taken_for_the_respondents_own(tmp_path: Path, names: list[str], sure: bool) -> None:
    variant = VARIANTS[0]  # its name column's header is like the earlier waves' respondent_name headers
    wave = make_wave(
        Variant("names", seed=4, headers=variant.headers, lead_labels=variant.lead_labels, names=names),
        copy_project(tmp_path / "project"),
    )
    draft = draft_wave(wave.file, YEAR, wave.root)
    header = variant.headers["respondent_name"]
    value = spec_and_rows(wave.root)[0]["columns"][header]
    assert plain(value) == "respondent_name"
    assert is_placeholder(value) != sure, f"{header!r}: {value!r}"
    if not sure:
        asked = next(d for d in draft.decisions if d.column == header and d.kind == "column")
        assert any("recur" in e for e in asked.evidence), asked.evidence
        assert not any(name in json.dumps(asked.as_dict(), ensure_ascii=False) for name in names)


def _coded(
    tmp_path: Path, lead_labels: dict[str, str], stages: dict[str, str], roles: dict[str, str] | None = None
) -> tuple[Wave, dict, Draft]:
    """A wave with its options renamed as given, drafted: (the wave, (question, label) -> code as drafted, draft)."""
    variant = VARIANTS[0]
    renamed = Variant(
        "renamed-options", seed=6, headers=variant.headers, lead_labels=lead_labels, stages=stages, roles=roles
    )
    wave = make_wave(renamed, copy_project(tmp_path / "project"))
    draft = draft_wave(wave.file, YEAR, wave.root)
    answers = spec_and_rows(wave.root)[2]
    return wave, {(r["question_id"], r["source_label"]): r["answer_code"] for r in answers}, draft


def test_an_option_renamed_in_the_same_words_is_coded_without_a_flag(tmp_path: Path) -> None:
    """Options renamed in the same words as an earlier label (reordered, or a word in another case or number), each
    the one close match of its earlier option and that option's of it, by a clear margin: coded as the earlier
    option."""
    renamed = {
        ("lead", "Toimialajohtajille"): "sector_directors",  # 'Toimialajohtajat', in the allative
        ("lead", "Ei ole määritelty vastuuta"): "no_designated_lead",  # 'Vastuuta ei ole määritelty', reordered
        ("it_involvement_stage", "Strategiavaihe"): "strategy",  # 'Strategiavaiheessa', in the nominative
        ("it_involvement_stage", "Suunnitteluvaihe"): "planning",
    }
    lead = {"it_management": "Tietohallinto", "city_leadership": "Kaupunginjohto"}
    lead |= {code: label for (q, label), code in renamed.items() if q == "lead"}
    stages = {label: code for (q, label), code in renamed.items() if q == "it_involvement_stage"}
    wave, coded, draft = _coded(tmp_path, lead, {**stages, "Ei lainkaan": "not_involved"})
    for key, code in renamed.items():
        assert coded[key] == code == wave.codes[key], f"{key}: coded {coded[key]!r}"
    settled = [d for d in draft.decisions if d.kind == "answer" and d.values[0] in {k[1] for k in renamed}]
    assert not settled, [d.as_dict() for d in settled]


def test_an_option_named_in_its_questions_frame_is_coded_without_a_flag(tmp_path: Path) -> None:
    """The question asks 'Missä vaiheessa ...' (at which stage): an option is the same with or without the stage
    word, on either side, and with or without a word saying how early or late ('Vasta', 'Jo'): 'Ideointi' is 2019's
    'Ideointivaiheessa', 'Hankintavaiheessa' 2018's 'Hankinta' and 2016's 'Vasta hankintavaiheessa'."""
    stages = {
        "Ideointi": "ideation",
        "Hankintavaiheessa": "procurement",
        "Käyttöönotto": "implementation",
        "Jo suunnitteluvaiheessa": "planning",
        "Ei lainkaan": "not_involved",
    }
    wave, coded, draft = _coded(tmp_path, VARIANTS[0].lead_labels, stages)
    for label, code in stages.items():
        assert coded[("it_involvement_stage", label)] == code == wave.codes[("it_involvement_stage", label)], label
    asked = [
        d.values
        for d in draft.decisions
        if d.kind == "answer" and d.column == VARIANTS[0].headers["it_involvement_stage"]
    ]
    assert not asked, asked


@pytest.mark.parametrize(
    ("roles", "open_titles"),
    [
        ({"Muu johtohenkilö": "other_manager"}, ["Muu johtohenkilö"]),  # a compound of 'johto' may be another kind
        ({"Muut": "other_manager"}, []),
        ({"Muu johtaja": "other_manager"}, ["Muu johtaja"]),  # 'johtaja' is no 'johto' in another case
        ({"Muu asiantuntija": "other_expert"}, ["Muu asiantuntija"]),  # another expert is no manager
        # two labels for 'other': which one is the earlier catch-all is for a person
        (
            {"Muu johtohenkilö": "other_manager", "Muu henkilöstö": "other_staff"},
            ["Muu johtohenkilö", "Muu henkilöstö"],
        ),
    ],
    ids=["compound", "plural", "another-word", "another-kind", "two-others"],
)
def test_the_one_other_option_is_the_earlier_catch_all_only_in_its_words(
    tmp_path: Path, roles: dict[str, str], open_titles: list[str]
) -> None:
    titles = {"Tietohallintojohtaja": "cio", "Toimialajohtaja": "sector_director", **roles}
    wave, coded, draft = _coded(tmp_path, VARIANTS[0].lead_labels, {"Ei lainkaan": "not_involved"}, titles)
    for title in roles:
        code = coded[("respondent_role", title)]
        if title in open_titles:
            assert is_placeholder(code), f"{title!r} coded {code!r} without a flag"
            assert any(d.kind == "answer" and d.values == [title] for d in draft.decisions), title
        else:
            assert code == wave.codes[("respondent_role", title)], f"{title!r} coded {code!r}"
            assert not any(d.kind == "answer" and d.values == [title] for d in draft.decisions), title


def _answers_to(header: str, labels: list[str], earlier: str, earlier_labels: dict[str, str]) -> dict[str, str]:
    """How a question's labels are coded, sure ones only, against one earlier wave asked as `earlier`."""
    rows = [
        {"wave_year": "2016", "source_label": label, "answer_code": code, "key": match_key(label) or ""}
        for label, code in earlier_labels.items()
    ]
    question = EarlierQuestion("lead", texts={2016: earlier}, labels=rows)
    history = History(2018, [2016], {"lead": question}, {}, {}, {}, {}, {})
    column = Column(3, header, dict.fromkeys(labels, 5), {label: match_key(label) for label in labels})
    coded = propose_answers(ColumnMatch(column, "lead", True, []), history)
    return {row.label: row.code for row in coded if row.sure}


def test_a_word_only_one_of_the_questions_asks_by_is_never_left_out_of_an_option() -> None:
    """'Toimialat ja kaupunginjohto' asked about 'kaupunginjohto' is no 'Toimialat ja tietohallinto' asked about
    'tietohallinto', though each is 'Toimialat ja' and its question's word; the word both ask by ('vaiheessa') is."""
    earlier = {"Toimialat ja kaupunginjohto": "joint_city", "Strategiavaiheessa": "strategy", "Ei": "no"}
    earlier |= {"Suunnitteluvaiheessa": "planning"}  # two stages: the question's word frames the list
    coded = _answers_to(
        "Kumpi johtaa, toimialat vai tietohallinto, ja missä vaiheessa?",
        ["Toimialat ja tietohallinto", "Strategia", "Ei"],
        "Kumpi johtaa, toimialat vai kaupunginjohto, ja missä vaiheessa?",
        earlier,
    )
    assert coded == {"Strategia": "strategy", "Ei": "no"}


@pytest.mark.parametrize(
    ("header", "english", "sure"),
    [
        # the same Finnish but for its numbering: the earlier English with this header's numbering
        ("2. Missä vaiheessa tietohallinto tulee mukaan?", "2. At which stage does IT join?", True),
        ("Missä vaiheessa tietohallinto tulee mukaan?", "At which stage does IT join?", True),
        # ... and a scale's range: this header's, or none
        ("K4 Osaaminen (1-7)", "K4 Skills (1-7)", True),
        ("K4 Osaaminen", "K4 Skills", True),
        ("Q4A Osaaminen", "Q4A Skills", True),  # numbered with a capital letter too
        # a header in the survey's English: the earlier English itself, numbered as the header
        ("5. At which stage does IT join?", "5. At which stage does IT join?", True),
        # reworded: the most alike earlier wording's English, for a person to confirm
        ("3) Missä vaiheessa tietohallinto otetaan mukaan?", "3) At which stage does IT join?", False),
    ],
)
def test_a_mapped_questions_english_wording_is_carried_from_the_earlier_waves(
    header: str, english: str, sure: bool
) -> None:
    question = EarlierQuestion(
        "q",
        texts={2018: "Missä vaiheessa tietohallinto tulee mukaan?", 2019: "Q4 Osaaminen (1-5)"},
        texts_en={2018: "At which stage does IT join?", 2019: "Q4 Skills (1-5)"},
    )
    found = english_wording(header, question)
    assert found is not None
    assert found[:2] == (english, sure)
    assert found[2], "the proposal says where it comes from"


def test_an_english_wording_that_does_not_carry_the_finnish_numbering_is_only_proposed() -> None:
    question = EarlierQuestion("q", texts={2019: "Q4 Osaaminen"}, texts_en={2019: "Digital skills"})
    assert english_wording("5. Osaaminen", question) == ("Digital skills", False, ANY)


def test_a_column_of_option_numbers_is_coded_by_the_options_places_for_a_person_to_confirm(tmp_path: Path) -> None:
    """A survey tool that exports its options' numbers (1 for the first) instead of their labels: the lead question
    stays a question of options (not a 1-4 scale), each number proposed as the option in that place of the latest
    wave's list, every one for a person to confirm, and the column says why."""
    numbered = {"it_management": "1", "sector_directors": "2", "city_leadership": "3", "chief_digital_officer": "4"}
    wave, coded, draft = _coded(tmp_path, numbered, {"Ei lainkaan": "not_involved"})
    for code, number in numbered.items():
        assert coded[("lead", number)] == f"TODO: {code}", number
    header = VARIANTS[0].headers["lead"]
    column = next(d for d in draft.decisions if d.kind == "column" and d.column == header)
    assert any("numbers for the options" in e for e in column.evidence), column.evidence
    questions = {r["question_id"]: r for r in spec_and_rows(wave.root)[1]}
    assert questions["lead"]["answer_type"] == "category"
    assert not any(d.kind == "scale" and d.column == header for d in draft.decisions)


def test_nothing_else_is_no_other_option() -> None:
    coded = _answers_to("Mitä muuta?", ["Muu", "Kyllä"], "Mitä muuta?", {"Ei muuta": "nothing_else", "Kyllä": "yes"})
    assert coded == {"Kyllä": "yes"}


@pytest.mark.parametrize(
    ("label", "frame", "core"),
    [
        ("Strategiavaiheessa", {"vaiheessa"}, ("strategia", "vaiheessa")),
        ("Strategiavaihe", {"vaiheessa"}, ("strategia", "vaihe")),  # the same word in another case
        ("Ei missään vaiheessa", {"vaiheessa"}, ("ei missään", "vaiheessa")),
        ("Vasta hankintavaiheessa", {"vaiheessa"}, ("hankinta", "vaiheessa")),
        ("Strategy stage", {"stage"}, ("strategy", "stage")),
        ("Vaiheessa", {"vaiheessa"}, ("vaiheessa", None)),  # nothing left but the frame: kept whole
        ("Valmistelussa", {"valmis"}, ("valmistelussa", None)),  # the question's word begins it, not ends it
        ("Toteutusvaiheessa", set(), ("toteutusvaiheessa", None)),  # a question that names no frame
        ("Ideavaiheessa", {"vaiheessa"}, ("ideavaiheessa", None)),  # too little left of the word to be an option
        ("Vasta-ehdotusvaiheessa", {"vaiheessa"}, ("vasta ehdotus", "vaiheessa")),  # a hyphen joins its "vasta"
        (
            "Jo toteutusvaiheessa",
            set(),
            ("jo toteutusvaiheessa", None),
        ),  # no frame: every word kept
    ],
)
def test_an_options_core_is_what_is_left_of_it_without_its_questions_word(
    label: str, frame: set[str], core: tuple[str, str | None]
) -> None:
    assert option_core(label, frame) == core


@pytest.mark.parametrize(
    ("lead_labels", "stages", "open_labels"),
    [
        # close in words to two earlier options at once ('Toteutus' and 'Suunnittelu'): a new stage
        (
            VARIANTS[0].lead_labels,
            {"Strategiavaiheessa": "strategy", "Toteutussuunnittelu": "implementation_planning"},
            ["Toteutussuunnittelu"],
        ),
        # an option split into two, each in the words of the earlier 'Hankinta'
        (
            VARIANTS[0].lead_labels,
            {"Hankintavalmistelu": "procurement_preparation", "Hankintapäätös": "procurement_decision"},
            ["Hankintavalmistelu", "Hankintapäätös"],
        ),
        # a new option in the words of an option this wave still offers ('Tietohallinto'): never its code
        (
            {**VARIANTS[0].lead_labels, "it_management": "Tietohallinto", "joint_lead": "Tietohallintoyhteistyö"},
            {"Ei lainkaan": "not_involved"},
            ["Tietohallintoyhteistyö"],
        ),
        # a word lengthened into a compound: 'Tietohallintoyksikkö' (the IT unit) may be an option of its own
        (
            {**VARIANTS[0].lead_labels, "it_management": "Tietohallintoyksikkö"},
            {"Ei lainkaan": "not_involved"},
            ["Tietohallintoyksikkö"],
        ),
        # a derivation turns the meaning round: 'Strategiaton' (without a strategy) is no 'Strategia'
        (VARIANTS[0].lead_labels, {"Strategiaton": "no_strategy", "Ei lainkaan": "not_involved"}, ["Strategiaton"]),
        # a word dropped: 'ICT' may be the IT unit, not 'Tietohallinto (ICT-johto)'
        ({**VARIANTS[0].lead_labels, "it_management": "ICT"}, {"Ei lainkaan": "not_involved"}, ["ICT"]),
        # the question's own word ('Missä vaiheessa ...') frames no compound: 'Hankintasopimus' is no 'Hankinta'
        (
            VARIANTS[0].lead_labels,
            {"Hankintasopimusvaiheessa": "procurement_contract", "Ei lainkaan": "not_involved"},
            ["Hankintasopimusvaiheessa"],
        ),
    ],
    ids=[
        "close-to-two-options",
        "option-split-in-two",
        "new-option-in-an-offered-options-words",
        "compound-lengthened",
        "derivation",
        "word-dropped",
        "compound-in-the-questions-frame",
    ],
)
def test_a_label_in_earlier_words_is_left_to_a_person_when_another_reading_is_as_close(
    tmp_path: Path, lead_labels: dict[str, str], stages: dict[str, str], open_labels: list[str]
) -> None:
    wave, coded, draft = _coded(tmp_path, lead_labels, stages)
    for (question, label), code in coded.items():
        truth = wave.codes.get((question, label))
        assert is_placeholder(code) or plain(code) == truth, f"{question} {label!r}: coded {code!r}, truly {truth!r}"
    for label in open_labels:
        key = next(k for k in coded if k[1] == label)
        assert is_placeholder(coded[key]), f"{label!r} coded {coded[key]!r} without a flag"
        asked = next(d for d in draft.decisions if d.kind == "answer" and d.values == [label])
        assert asked.evidence, "the decision shows its evidence"


@pytest.mark.parametrize(
    ("ends", "words", "flagged"),
    [
        # words no earlier wave used, on the 1-5 scale of earlier waves: the scale may still run the other way
        ((1, 5), ("erittäin huonosti", "erittäin hyvin"), [True, True]),
        ((1, 5), ("erittäin hyvin", "erittäin huonosti"), [True, True]),  # ... as here, turned round in new words
        ((1, 5), ("helt av samma åsikt", "helt av annan åsikt"), [True, True]),  # ... or in another language
        ((1, 7), ("erittäin huonosti", "erittäin hyvin"), [True, True]),  # rescaled: no earlier wave asked on 1-7
        # the scale turned round: '1 = täysin samaa mieltä' was 5 before, so no end is taken by its number
        ((1, 5), ("Täysin samaa mieltä", "erittäin huonosti"), [True, True]),
    ],
    ids=["same-scale-new-words", "turned-round-in-new-words", "another-language", "rescaled", "reversed"],
)
def test_a_worded_point_in_words_no_earlier_wave_valued_so_is_left_to_a_person(
    tmp_path: Path, ends: tuple[int, int], words: tuple[str, str], flagged: list[bool]
) -> None:
    """'1 = erittäin huonosti' on a 1-5 scale: nothing in the file says the scale runs as before (its ends could be
    worded the other way round, in any language), so its number is only proposed; the same words earlier waves gave
    the same value are sure (test_a_worded_point_is_coded_by_its_number_only_when_its_words_agree)."""
    variant = VARIANTS[0]
    header = f"K2. Tietohallinnon ja toimialojen yhteistyö ({ends[0]}-{ends[1]})"
    worded = Variant(
        "worded-ends",
        seed=1,
        headers={**variant.headers, "cooperation": header},
        lead_labels=variant.lead_labels,
        cooperation=(*ends, True),
        scale_words=words,
    )
    wave = make_wave(worded, copy_project(tmp_path / "project"))
    draft_wave(wave.file, YEAR, wave.root)
    _spec, questions, answers = spec_and_rows(wave.root)
    question = next(r for r in questions if r["question_id"] == "cooperation")
    assert (question["scale_min"], question["scale_max"]) == tuple(str(e) for e in ends)
    rows = {r["source_label"]: r for r in answers if r["question_id"] == "cooperation"}
    for point, label, open_ in zip(ends, words, flagged, strict=True):
        row = rows[f"{point} = {label}"]
        assert is_placeholder(row["answer_code"]) == open_, row
        if not open_:
            assert (row["answer_code"], row["answer_value"]) == (f"score_{point}", str(point))


def test_a_worded_number_outside_the_scale_is_left_to_a_person(tmp_path: Path) -> None:
    """'6 = En osaa sanoa' and '0 = Ei kantaa' on a 1-5 scale (its ends in the header): a number that is no point of
    the scale (a 'cannot say') is never coded by its number without a person, even in words earlier waves valued."""
    variant = VARIANTS[0]
    worded = Variant(
        "cannot-say",
        seed=1,
        headers=variant.headers,
        lead_labels=variant.lead_labels,
        cooperation=(1, 5, True),
        scale_words=("erittäin huonosti", "erittäin hyvin"),
    )
    wave = make_wave(worded, copy_project(tmp_path / "project"))
    with open(wave.file, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    at = rows[0].index(variant.headers["cooperation"])
    for number, row in enumerate(rows[1:], start=1):
        row[at] = "6 = En osaa sanoa" if number % 5 == 0 else "0 = Ei kantaa" if number % 7 == 0 else row[at]
    with open(wave.file, "w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f, lineterminator="\r\n").writerows(rows)
    draft_wave(wave.file, YEAR, wave.root)
    coded = {r["source_label"]: r for r in spec_and_rows(wave.root)[2] if r["question_id"] == "cooperation"}
    for label in ("6 = En osaa sanoa", "0 = Ei kantaa"):
        assert is_placeholder(coded[label]["answer_code"]), coded[label]


@pytest.mark.parametrize(
    ("header", "labels", "earlier_labels", "label"),
    [
        # the question names both ends: 'hyvin' and 'huonosti' are both frame words, so 'Erittäin huonosti' (very
        # poorly) and 'Erittäin hyvin' (very well) both lose their last word and read as 'erittäin'
        (
            "Kuinka hyvin tai huonosti yhteistyö toimii?",
            ["Hyvin", "Huonosti", "Erittäin huonosti"],
            {"Erittäin hyvin": "very_well", "Hyvin": "well", "Huonosti": "poorly"},
            "Erittäin huonosti",
        ),
        # the question lists its options: a joint option with another partner reads as the earlier joint option
        (
            "Kuka johtaa digitalisaatiota: tietohallinto, toimialat vai kaupunginjohto?",
            ["Tietohallinto", "Toimialat", "Kaupunginjohto", "Toimialat ja tietohallinto"],
            {
                "Tietohallinto": "it",
                "Toimialat": "sectors",
                "Kaupunginjohto": "city",
                "Toimialat ja kaupunginjohto": "joint_sectors_city",
            },
            "Toimialat ja tietohallinto",
        ),
        # 'Kyllä, ohjelma' (yes, a programme) is no 'Kyllä, strategia' (yes, a strategy): only 'kyllä' is compared
        (
            "Onko kaupungillanne strategia tai ohjelma digitalisaatiolle?",
            ["Kyllä, ohjelma", "Ei", "Valmisteilla"],
            {"Kyllä, strategia": "yes_strategy", "Ei": "no", "Valmisteilla": "in_preparation"},
            "Kyllä, ohjelma",
        ),
        # a hyphenated 'vasta-' compound (counter-proposal) loses 'vasta' as if it said when: no frame needed at all
        (
            "Miten valtuusto vastasi esitykseen?",
            ["Vasta-ehdotus", "Hyväksyi"],
            {"Ehdotus": "proposal", "Hyväksyi": "approved", "Hylkäsi": "rejected"},
            "Vasta-ehdotus",
        ),
    ],
    ids=["both-ends-in-the-question", "options-listed-in-the-question", "two-things-asked-about", "vasta-compound"],
)
def test_a_different_frame_word_left_out_on_each_side_is_no_same_option(
    header: str, labels: list[str], earlier_labels: dict[str, str], label: str
) -> None:
    coded = _answers_to(header, labels, header, earlier_labels)
    assert label not in coded, f"{label!r} coded {coded[label]!r} without a flag"


def test_very_poorly_on_a_worded_scale_is_not_coded_very_well() -> None:
    """A worded scale whose question says 'hyvin tai huonosti'; nobody answered 'Erittäin hyvin' this wave."""
    header = "Kuinka hyvin tai huonosti yhteistyö toimii?"
    earlier = {"Erittäin hyvin": "5", "Melko hyvin": "4", "Ei hyvin eikä huonosti": "3"}
    rows = [
        {
            "wave_year": "2016",
            "source_label": label,
            "answer_code": f"score_{v}",
            "answer_value": v,
            "sort_order": v,
            "answer_label_en": "",
            "key": match_key(label) or "",
        }
        for label, v in earlier.items()
    ]
    question = EarlierQuestion("cooperation", texts={2016: header}, types={2016: ("scale", 1.0, 5.0)}, labels=rows)
    history = History(2021, [2016], {"cooperation": question}, {}, {}, {}, {}, {})
    labels = ["Melko hyvin", "Melko huonosti", "Erittäin huonosti"]
    column = Column(3, header, dict.fromkeys(labels, 5), {label: match_key(label) for label in labels})
    match = ColumnMatch(column, "cooperation", True, [], answer_type="scale", scale=(1, 5))
    coded = {row.label: (row.code, row.value) for row in propose_answers(match, history) if row.sure}
    assert "Erittäin huonosti" not in coded, f"'Erittäin huonosti' (very poorly) coded {coded['Erittäin huonosti']}"


@pytest.mark.parametrize(
    ("labels", "earlier_labels", "label"),
    [
        # 'kuin' (than) dropped: other than management is the opposite of other management
        (
            ["Tietohallintojohtaja", "Muu johto"],
            {"Tietohallintojohtaja": "cio", "Muu kuin johto": "non_manager"},
            "Muu johto",
        ),
        (
            ["Tietohallinto", "Muu kaupungin työntekijä"],
            {"Tietohallinto": "it", "Muu kuin kaupungin työntekijä": "external"},
            "Muu kaupungin työntekijä",
        ),
        (
            ["IT management", "Other IT staff"],
            {"IT management": "it", "Other than IT staff": "non_it"},
            "Other IT staff",
        ),
        # the earlier 'muu' is a word inside another option, not a catch-all: a new 'Muu' is a new option
        (
            ["Tietohallinto", "Kaupunginjohto", "Muu"],
            {"Tietohallinto": "it", "Kaupunginjohto tai muu ylin johto": "top_management", "Ei kukaan": "nobody"},
            "Muu",
        ),
        (["Tietohallinto", "Muu"], {"Tietohallinto": "it", "Toimialat ja muut yksiköt": "sectors"}, "Muu"),
        # a word that only begins the earlier one: another municipality is no other joint municipal authority
        (
            ["Kaupunki itse", "Muu kunta"],
            {"Kaupunki itse": "own", "Yritys": "company", "Muu kuntayhtymä": "other_joint_authority"},
            "Muu kunta",
        ),
    ],
    ids=[
        "muu-kuin-johto",
        "muu-kuin-kaupungin",
        "other-than",
        "muu-inside-an-option",
        "muut-inside-an-option",
        "prefix",
    ],
)
def test_an_other_label_is_not_an_earlier_option_that_only_contains_the_word_other(
    labels: list[str], earlier_labels: dict[str, str], label: str
) -> None:
    coded = _answers_to("Kuka?", labels, "Kuka?", earlier_labels)
    assert label not in coded, f"{label!r} coded {coded[label]!r} without a flag"
