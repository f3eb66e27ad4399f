"""Wave specs: what a spec may say, and the one clear error when it names what the codebook does not declare."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from survey_warehouse.errors import WaveSpecError
from survey_warehouse.intake.codebook import Codebook
from survey_warehouse.intake.waves import WaveSpec

SEEDS = ROOT / "dbt_project" / "seeds"


def _spec(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((ROOT / "config" / "waves" / "2019.yml").read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "2019.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_the_bundled_specs_are_consistent_with_the_codebook() -> None:
    codebook = Codebook.from_seeds(SEEDS)
    for path in sorted((ROOT / "config" / "waves").glob("*.yml")):
        WaveSpec.from_file(path, ROOT).check(codebook)


def test_a_column_mapped_to_an_undeclared_question_names_the_spec_the_column_and_the_seed(tmp_path: Path) -> None:
    base = yaml.safe_load((ROOT / "config" / "waves" / "2019.yml").read_text(encoding="utf-8"))
    path = _spec(tmp_path, columns={**base["columns"], "Q6 Onko kaupungillanne digistrategia?": "has_strategy"})
    spec = WaveSpec.from_file(path, ROOT)
    with pytest.raises(WaveSpecError) as error:
        spec.check(Codebook.from_seeds(SEEDS))
    message = str(error.value)
    assert message.startswith(str(path))
    assert "column 'Q6 Onko kaupungillanne digistrategia?' is mapped to 'has_strategy'" in message
    assert "add a row for (2019, has_strategy) to dbt_project/seeds/codebook_questions.csv" in message


def test_a_question_of_another_wave_is_named_as_such(tmp_path: Path) -> None:
    base = yaml.safe_load((ROOT / "config" / "waves" / "2019.yml").read_text(encoding="utf-8"))
    columns = dict(base["columns"].items())
    spec = WaveSpec.from_file(_spec(tmp_path, wave_year=2020, columns=columns), ROOT)
    with pytest.raises(WaveSpecError, match=r"it is declared for \[2016, 2018, 2019\], not for 2020"):
        spec.check(Codebook.from_seeds(SEEDS))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"columns": None}, "missing keys \\['columns'\\]"),
        ({"format": "numbers"}, "format must be one of"),
        ({"format": "ods"}, "an ods wave needs 'sheet'"),
        ({"user_missing": "99"}, "user_missing lists the codes that mean no answer"),
        ({"user_missing": {"q1": [True]}}, "user_missing of 'q1' must be codes"),
        ({"encoding": "klingon-8"}, "unknown encoding"),
        ({"delimiter": ";;"}, "delimiter must be one character"),
        ({"header_row": 0}, "header_row must be a row number"),
        ({"cities_surveyed": ["091", "91", "049"]}, "lists \\['091'\\] more than once"),
        ({"cities_surveyed": []}, "lists no city"),
        ({"field_period": {"start": "1.3.2019", "end": "2019-04-30"}}, "is not a date"),
        ({"colums": {"a": "b"}}, "unknown keys \\['colums'\\]"),
        ({"wave_year": "2O19"}, "wave_year must be a year such as 2019, not '2O19'"),
        ({"wave_year": True}, "wave_year must be a year"),
        ({"accept_removals": 5}, "accept_removals must be a list"),
        ({"cities_surveyed": "091"}, "cities_surveyed must be a list"),
        ({"withdrawn": ""}, "'withdrawn' says why"),
        ({"time_zone": "Europe/Helsingfors"}, "time_zone: 'Europe/Helsingfors' is not a time zone name"),
        ({"time_zone": "+03:00"}, "time_zone: '\\+03:00' is not a time zone name"),
        ({"time_zone": "localtime"}, "time_zone: 'localtime' is the zone of the machine that reads it"),
        ({"date_order": "DM"}, "date_order is the order of a date's day, month and year, one of DMY, MDY, YMD"),
        ({"decimal_separator": " "}, 'decimal_separator is "." or ","'),
        ({"duration_clock": "mm:ss"}, "duration_clock says how a response time of two parts such as 12:30 is read"),
        ({"keep_unreadable": ["lead"]}, "keep_unreadable lists .* of submitted_at, response_minutes; not 'lead'"),
        ({"keep_unreadable": "response_minutes"}, "keep_unreadable must be a list"),
    ],
)
def test_mistakes_in_a_spec(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(WaveSpecError, match=message):
        WaveSpec.from_file(_spec(tmp_path, **changes), ROOT)


@pytest.mark.parametrize(
    ("changes", "attribute", "value"),
    [
        ({"header_row": "3"}, "header_row", 3),
        ({"header_row": " 3 "}, "header_row", 3),
        ({"wave_year": "2019"}, "wave_year", 2019),
        ({"field_period": {"start": "2019-03-01", "end": "2019-04-30"}}, "field_period_start", dt.date(2019, 3, 1)),
        ({"field_period": {"start": "2019-03-01", "end": "2019-04-30"}}, "field_period_end", dt.date(2019, 4, 30)),
    ],
)
def test_a_whole_number_or_a_date_in_quotes_reads_as_one(tmp_path: Path, changes: dict, attribute: str, value) -> None:
    """What deleting `TODO: ` from a draft's `"TODO: 3"` or `"TODO: 2019-03-01"` leaves: read as the number or date."""
    assert getattr(WaveSpec.from_file(_spec(tmp_path, **changes), ROOT), attribute) == value


@pytest.mark.parametrize("header_row", ["2.5", "x", "-1", "", True, 2.0])
def test_a_header_row_that_is_no_row_number_is_refused(tmp_path: Path, header_row: object) -> None:
    with pytest.raises(WaveSpecError, match="header_row must be a row number"):
        WaveSpec.from_file(_spec(tmp_path, header_row=header_row), ROOT)


def test_how_times_are_read_is_part_of_the_spec_and_of_its_fingerprint(tmp_path: Path) -> None:
    plain = WaveSpec.from_file(_spec(tmp_path), ROOT)
    assert (plain.time_zone, plain.date_order, plain.decimal_separator) == ("Europe/Helsinki", None, None)
    told = WaveSpec.from_file(
        _spec(
            tmp_path,
            time_zone="UTC",
            date_order="mdy",
            decimal_separator=",",
            duration_clock="H:MM",
            keep_unreadable=["response_minutes"],
        ),
        ROOT,
    )
    assert plain.keep_unreadable == () and told.keep_unreadable == ("response_minutes",)
    assert (told.time_zone, told.date_order, told.decimal_separator, told.duration_clock) == ("UTC", "MDY", ",", "h:mm")
    rules = told.value_rules()
    assert (rules.time_zone, rules.date_order, rules.decimal_separator, rules.duration_clock) == (
        "UTC",
        "MDY",
        ",",
        "h:mm",
    )
    assert plain.duration_clock is None
    assert plain.fingerprint() != told.fingerprint()
    assert '"date_order": "MDY"' in told.as_json() and '"duration_clock": "h:mm"' in told.as_json()


def test_required_fields_and_unknown_cities(tmp_path: Path) -> None:
    base = yaml.safe_load((ROOT / "config" / "waves" / "2019.yml").read_text(encoding="utf-8"))
    codebook = Codebook.from_seeds(SEEDS)
    without_lead = {k: v for k, v in base["columns"].items() if v != "lead"}
    with pytest.raises(WaveSpecError, match=r"required fields not mapped to any column: \['lead'\]"):
        WaveSpec.from_file(_spec(tmp_path, columns=without_lead), ROOT).check(codebook)
    with pytest.raises(WaveSpecError, match=r"not in dbt_project/seeds/cities\.csv: \['999'\]"):
        WaveSpec.from_file(_spec(tmp_path, cities_surveyed=["091", "999"]), ROOT).check(codebook)


def test_owner_email_is_an_address_or_a_list_and_does_not_change_how_the_file_is_read(tmp_path: Path) -> None:
    plain = WaveSpec.from_file(_spec(tmp_path), ROOT)
    one = WaveSpec.from_file(_spec(tmp_path, owner_email="kysely@example.fi"), ROOT)
    two = WaveSpec.from_file(_spec(tmp_path, owner_email=["kysely@example.fi", " it@example.fi "]), ROOT)
    assert plain.owner_email == () and one.owner_email == ("kysely@example.fi",)
    assert two.owner_email == ("kysely@example.fi", "it@example.fi")
    assert plain.fingerprint() == one.fingerprint() == two.fingerprint(), "adding an owner reads no wave again"
    for bad in ("kysely at example.fi", ["kysely@example.fi", "toinen"], [], 42):
        path = _spec(tmp_path, owner_email=bad)
        with pytest.raises(WaveSpecError, match=r"2019\.yml: owner_email must be an e-mail address"):
            WaveSpec.from_file(path, ROOT)
