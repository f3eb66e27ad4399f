"""A scale question's answer is one of the scale's points, by one rule in the loader and in the raw gate.

The codebook gives a scale its ends (scale_min, scale_max) and no step: its points are the whole numbers between
the ends, and a label the codebook declares for the question is an answer too. A number is a decimal number, with
a decimal point or a comma (and an exponent, as spreadsheets write). The rule is written out below as the
expected verdict of each value; a corpus of ways of writing a number is delivered in the 2019 wave's 0-10 question
(and under codebooks whose scale has other ends, or a label for a half point), and what the loader did with each
value, what the raw gate admits, and the gate itself are compared with it."""

from __future__ import annotations

import csv
import dataclasses
import re
import shutil
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT, make_paths

from survey_warehouse.intake.codebook import Codebook, Question
from survey_warehouse.intake.matching import match_key
from survey_warehouse.intake.waves import WaveSpec, find_wave_spec
from survey_warehouse.quality.batches import question_parameters
from survey_warehouse.raw.load import load_wave

SEEDS = ROOT / "dbt_project" / "seeds"
QUESTION = "cooperation"
COLUMN = "Q2 Tietohallinnon ja toimialojen yhteistyön sujuvuus (0-10)"
# ways of writing a number, or something like one
CORPUS = (
    "7.5", "7,5", "7.50", "7,50", "0.5", "9.99", "9,999999", "10.5", "-0.5", "1e-1",  # between the points
    "7.0", "7,0", "7.00", "10.0", "1e1", "1E1", "70e-1", "0.7e1", "007", "+7", "-0", "-0.0", "7.",  # points
    " 7 ", "7 ", "\t7", "\uff10\uff17", "\uff17,\uff15", ",5", "+.5",  # spaces, full-width digits, no leading 0
    "11", "-1", "1e2", "1e400", "-1e400", "12,0",  # beyond the ends
    "nan", "NaN", "inf", "-Infinity", "1_0", "0x7", "7 1/2", "7-8", "1 000", "seitsemän", "7\u00bd", "\u0667",
    "1,000", "1.000", "7,500", "0.007", ",500", "7.5000", "7,0000",  # three decimals: a thousands separator?
)  # fmt: skip
REASONS = ("unknown_answer", "out_of_scale", "not_on_scale", "unreadable_number")
DECIMAL_NUMBER = re.compile(r"[+-]?([0-9]+([.,][0-9]*)?|[.,][0-9]+)([eE][+-]?[0-9]+)?")


@pytest.fixture
def paths():
    return make_paths("scale_points")


def expected(value: str, question: Question, codebook: Codebook, separator: str | None = None) -> str:
    """The rule: a label of the question, else a number on the scale's points (`score_N`), else why not. A number
    is written with the wave spec's decimal separator; without one, with a point or a comma, unless its decimals
    are three digits after a whole part (1,000: a thousands separator or not, the number cannot tell)."""
    key = match_key(value)
    labels = codebook.labels_for(question.wave_year, question.question_id)
    if key in labels:
        return labels[key].answer_code
    if key is None or not DECIMAL_NUMBER.fullmatch(key):
        return "unknown_answer"
    written = re.fullmatch(r"[+-]?([0-9]*)(?:([.,])([0-9]*))?(?:e[+-]?[0-9]+)?", key)
    assert written is not None
    whole, mark, decimals = written.groups()
    if mark and (mark != separator if separator else whole and len(decimals or "") == 3):
        return "unreadable_number"
    number = float(key.replace(",", "."))
    assert question.scale_min is not None and question.scale_max is not None
    if not question.scale_min <= number <= question.scale_max:
        return "out_of_scale"
    if not number.is_integer():
        return "not_on_scale"
    return f"score_{int(number)}"


def _deliver(spec: WaveSpec, values: list[str], folder: Path) -> WaveSpec:
    """The 2019 wave with the question's answer of its first rows replaced by `values`, one a row (more rows, with
    respondents of their own, when there are more values than rows); its response times written with the spec's
    decimal separator."""
    with open(spec.file, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    header, answers = rows[0], rows[1:]
    for i in range(len(values) - len(answers)):
        extra = list(answers[i % len(answers)])
        extra[header.index("Email")] = f"extra.respondent.{i}@example.fi"
        rows.append(extra)
    for row, value in zip(rows[1:], values, strict=False):
        row[header.index(COLUMN)] = value
    for row in rows[1:]:
        row[header.index("Vastausaika (min)")] = row[header.index("Vastausaika (min)")].replace(
            ".", spec.decimal_separator or "."
        )
    path = folder / spec.file.name
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return dataclasses.replace(spec, file=path)


def _verdicts(warehouse: Path, load_id: str, values: list[str]) -> dict[str, tuple[str, float | None]]:
    """What the loader did with each delivered value: the quarantine's reason, or the code and number it
    resolved to."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        quarantined = dict(
            con.execute(
                "select source_row_number, reason_code from raw.quarantine where load_id = ? and source_column = ?",
                [load_id, COLUMN],
            ).fetchall()
        )
        other = con.execute(
            "select count(*) from raw.quarantine where load_id = ? and source_column is distinct from ?",
            [load_id, COLUMN],
        ).fetchone()[0]
        resolved = {
            cell: (code, number)
            for cell, code, number in con.execute(
                "select cell_value, resolved_value, resolved_number from raw.cell_resolutions "
                "where load_id = ? and field_id = ?",
                [load_id, QUESTION],
            ).fetchall()
        }
    assert other == 0, "only the question's answers are wrong in the delivery"
    return {
        value: (quarantined[row], None) if row in quarantined else resolved[value]
        for row, value in enumerate(values, start=2)
    }


def _seeds(tmp_path: Path, scale: tuple[str, str] | None = None, label: tuple[str, str, str] | None = None) -> Path:
    """A copy of the codebook seeds: the 2019 question on another scale without its labels, or with one label
    more (label, code, value)."""
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    if scale is not None:
        questions = (seeds / "codebook_questions.csv").read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(questions):
            cells = line.split(",")
            if cells[:2] == ["2019", QUESTION]:
                cells[5:7] = scale
                questions[i] = ",".join(cells)
        (seeds / "codebook_questions.csv").write_text("\n".join(questions) + "\n", encoding="utf-8")
        answers = (seeds / "codebook_answers.csv").read_text(encoding="utf-8").splitlines()
        kept = [line for line in answers if not line.startswith(f"2019,{QUESTION},")]
        (seeds / "codebook_answers.csv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    if label is not None:
        text, code, value = label
        with open(seeds / "codebook_answers.csv", "a", encoding="utf-8", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow([2019, QUESTION, text, code, value, text, 99])
    return seeds


CODEBOOKS = {
    "the 2019 codebook (0-10, a label for each point)": {},
    "a scale whose ends are not whole numbers (0.5-4.5, no labels)": {"scale": ("0.5", "4.5")},
    "a codebook that allows a half point (a label '7,5')": {"label": ("7,5", "score_7_5", "7.5")},
}


@pytest.mark.parametrize("separator", [None, ".", ","], ids=["no decimal_separator", "decimal point", "decimal comma"])
@pytest.mark.parametrize("variant", list(CODEBOOKS))
def test_the_loader_and_the_raw_gate_admit_the_same_scale_answers(
    paths, tmp_path: Path, variant: str, separator: str | None
) -> None:
    codebook = Codebook.from_seeds(_seeds(tmp_path, **CODEBOOKS[variant]))
    spec = find_wave_spec(2019, paths)
    assert spec is not None
    spec = dataclasses.replace(spec, decimal_separator=separator)
    question = codebook.questions_for(2019)[QUESTION]
    assert question.scale_min is not None and question.scale_max is not None
    # the corpus, and every whole number from two below the scale to two above it
    whole = [str(n) for n in range(int(question.scale_min) - 2, int(question.scale_max) + 3)]
    values = list(dict.fromkeys([*CORPUS, *whole]))
    result = load_wave(_deliver(spec, values, tmp_path), paths.warehouse, codebook=codebook)
    found = _verdicts(paths.warehouse, result.load_id, values)

    # the loader follows the rule
    assert {v: found[v][0] for v in values} == {v: expected(v, question, codebook, separator) for v in values}
    # the raw gate admits exactly the codes the loader gives: every accepted answer, and no point it never gives
    gate = next(q for q in question_parameters(spec, codebook) if q["id"] == QUESTION)
    admitted = set(gate["answer_codes"])
    accepted = {value: verdict for value, verdict in found.items() if verdict[0] not in REASONS}
    for value, (code, number) in accepted.items():
        assert code in admitted, f"{value!r} is accepted as {code}, which the raw gate refuses"
        assert gate["scale_min"] <= number <= gate["scale_max"], value
    points = {code for code, _number in accepted.values() if code.startswith("score_")}
    assert {code for code in admitted if code.startswith("score_")} == points
    assert any(verdict[0] == "not_on_scale" for verdict in found.values()), "the corpus has values between points"


def test_a_half_point_is_quarantined_with_the_scales_points_and_the_raw_gate_passes(paths, tmp_path: Path) -> None:
    """One half-point answer is that row's problem, named with its file, row and column and the scale's points;
    the rest of the wave passes the raw gate."""
    from survey_warehouse import quality

    spec = find_wave_spec(2019, paths)
    assert spec is not None
    delivered = _deliver(spec, ["7,5"], tmp_path)
    result = load_wave(delivered, paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        quarantine = con.execute(
            "select source_row_number, source_column, reason_code, message from raw.quarantine where load_id = ?",
            [result.load_id],
        ).fetchall()
    assert [q[:3] for q in quarantine] == [(2, COLUMN, "not_on_scale")]
    message = quarantine[0][3]
    assert message.startswith(f"{delivered.file.name}, row 2, column '{COLUMN}': '7,5' ")
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10" in message
    report = quality.run_gate(
        quality.raw_wave_checkpoint(quality.file_context(paths), delivered, result.load_id, paths), paths
    )
    assert report.success


@pytest.mark.parametrize(
    ("separator", "value", "says"),
    [
        (None, "1,000", "could be a decimal number or a whole one with a thousands separator; set decimal_separator"),
        (".", "7,0", "is not written with the decimal separator '.' of decimal_separator in"),
    ],
)
def test_a_number_the_decimal_separator_does_not_read_is_named_with_what_to_do(
    paths, tmp_path: Path, separator: str | None, value: str, says: str
) -> None:
    spec = find_wave_spec(2019, paths)
    assert spec is not None
    delivered = _deliver(dataclasses.replace(spec, decimal_separator=separator), [value], tmp_path)
    result = load_wave(delivered, paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        quarantine = con.execute(
            "select source_row_number, source_column, reason_code, message from raw.quarantine where load_id = ?",
            [result.load_id],
        ).fetchall()
    assert [q[:3] for q in quarantine] == [(2, COLUMN, "unreadable_number")]
    assert quarantine[0][3].startswith(f"{delivered.file.name}, row 2, column '{COLUMN}': '{value}' {says}")
