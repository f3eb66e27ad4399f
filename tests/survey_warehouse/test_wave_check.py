"""`wave check YEAR`: a wave loaded and gated on a scratch copy of the warehouse, its headline previewed by dbt's own
models, what differs from the previous wave; placeholders and spec errors refused with their own exit codes; the
warehouse, the published marts and Airflow's metadata left as they were.

Each test works on a small copy of the project (the wave specs, the dbt project, the suites, the 2019 file) with the
example 2020 wave of scripts/example_wave_2020.py written into it."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT, TEST_VAR

from survey_warehouse import cli
from survey_warehouse.drafting import check
from survey_warehouse.drafting.placeholders import find_placeholders
from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.raw.load import load_wave
from survey_warehouse.raw.registry import mark_load
from survey_warehouse.settings import Paths


def _example():
    spec = importlib.util.spec_from_file_location("example_wave_2020", ROOT / "scripts" / "example_wave_2020.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _example()
EXAMPLE_2019 = ROOT / "data" / "waves" / "2019" / "city_survey_2019_export.csv"
LEAD_HEADER, CITY_HEADER = EXAMPLE.HEADER[6], EXAMPLE.HEADER[2]


def _project(name: str) -> Paths:
    """A copy of what a wave check reads, with the 2020 example wave, and its own var/."""
    base = TEST_VAR / "wave_check" / name
    if base.exists():
        shutil.rmtree(base)
    root = base / "project"
    for folder in ("config", "expectations", "data/waves/2019"):
        shutil.copytree(ROOT / folder, root / folder)
    shutil.copytree(ROOT / "dbt_project", root / "dbt_project", ignore=shutil.ignore_patterns("target", "logs"))
    EXAMPLE.write_wave_2020(root)
    var = base / "var"
    return Paths(
        root=root,
        var=var,
        waves_config=root / "config" / "waves",
        warehouse=var / "warehouse" / "survey.duckdb",
        published=var / "published" / "survey_marts.duckdb",
        data_docs=var / "data_docs",
        dbt_project=root / "dbt_project",
    )


def _env(monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    """The command line's paths (settings.Paths.from_env) at the copy."""
    for key, value in {
        "SURVEY_PROJECT_ROOT": paths.root,
        "SURVEY_VAR_DIR": paths.var,
        "SURVEY_WAVES_DIR": paths.waves_config,
        "SURVEY_WAREHOUSE_PATH": paths.warehouse,
        "SURVEY_PUBLISHED_PATH": paths.published,
        "SURVEY_DATA_DOCS_DIR": paths.data_docs,
    }.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.delenv("SURVEY_DBT_TARGET", raising=False)


def _run(monkeypatch: pytest.MonkeyPatch, paths: Paths, *args: str) -> tuple[int, str]:
    _env(monkeypatch, paths)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["wave", "check", *args])
    return code, out.getvalue()


def _rewrite_2020(paths: Paths, change) -> list[list[str]]:
    """Change the rows of the 2020 file (UTF-16, tab-separated) in place; the rows as written, header first."""
    path = paths.root / "data" / "waves" / "2020" / "kaupunkikysely_2020.txt"
    with open(path, encoding="utf-16", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    change(rows)
    with open(path, "w", encoding="utf-16", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\r\n").writerows(rows)
    return rows


def _personal(rows: list[list[str]]) -> list[str]:
    """The names and e-mail addresses the file holds."""
    return [value for row in rows[1:] for value in row[:2] if value]


@pytest.fixture(scope="module")
def good_2020() -> tuple[Paths, int, dict]:
    paths = _project("good")
    with pytest.MonkeyPatch.context() as monkeypatch:
        code, out = _run(monkeypatch, paths, "2020", "--json")
    return paths, code, json.loads(out)


def test_a_good_wave_passes_and_previews_its_headline_by_the_marts_rule(good_2020) -> None:
    _paths, code, result = good_2020
    plan = EXAMPLE.PLAN_2020
    it_led = sum(1 for lead in plan.values() if lead == "it_management")
    answering = sum(1 for lead in plan.values() if lead is not None)
    assert code == check.EXIT_OK == 0, result
    assert result["status"] == "ok" and result["quarantined_rows"] == 0
    assert result["rows"] == 3 * answering
    assert "passed" in result["gate"]
    headline = result["headline"]
    assert (headline["cities"], headline["cities_responded"], headline["cities_surveyed"]) == (it_led, answering, 20)
    assert headline["share"] == pytest.approx(it_led / answering)
    # the census bounds: the silent cities all not IT-led, or all IT-led
    assert headline["share_of_surveyed_min"] == pytest.approx(it_led / 20)
    assert headline["share_of_surveyed_max"] == pytest.approx((it_led + 20 - answering) / 20)
    assert result["diff"]["cities_not_answering"] == sorted(c for c, lead in plan.items() if lead is None)


def test_the_text_gives_k_of_n_with_the_bounds_the_silent_cities_leave() -> None:
    headline = check.Headline(6, 19, 20, 6 / 19, 6 / 20, 7 / 20)
    assert headline.describe().startswith("IT-led 6/19 answering cities (31.6%); of all 20 surveyed 30% - 35%")
    everyone = check.Headline(8, 20, 20, 0.4, 0.4, 0.4)
    assert everyone.describe() == "IT-led 8/20 answering cities (40.0%); all 20 surveyed cities answered"


def test_the_diff_shows_questions_added_and_dropped_and_options_renamed(good_2020) -> None:
    paths, _code, result = good_2020
    diff = result["diff"]
    asked_2019 = set(find_wave_spec(2019, paths).columns.values()) - {
        "respondent_name",
        "respondent_email",
        "city",
        "submitted_at",
        "response_minutes",
    }
    asked_2020 = {row[1] for row in EXAMPLE.CODEBOOK_QUESTIONS_2020}
    assert diff["previous"] == 2019
    assert diff["questions_added"] == sorted(asked_2020 - asked_2019) == [EXAMPLE.NEW_QUESTION]
    assert diff["questions_dropped"] == sorted(asked_2019 - asked_2020)
    assert diff["questions_dropped"], "the 2020 example drops questions 2019 asked"
    changes = {(o["question_id"], o["answer_code"]): o for o in diff["options"]}
    renamed = changes[("lead", "it_management")]
    assert renamed["change"] == "renamed" and renamed["labels_now"] == [EXAMPLE.LEAD_2020["it_management"]]
    assert changes[("cooperation", "")]["labels_now"] == ["scale 1-7"], "a recoded scale is one change"
    assert ("lead", "chief_digital_officer") not in changes, "an option kept under its label is no change"


def test_a_bad_row_is_shown_by_reason_row_and_column_without_personal_data(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _project("bad_row")
    lead, city = EXAMPLE.HEADER.index(LEAD_HEADER), EXAMPLE.HEADER.index(CITY_HEADER)

    def spoil(rows: list[list[str]]) -> None:
        rows[3][city] = "Atlantis"  # file row 4
        rows[7][lead] = "Pormestari"  # file row 8

    rows = _rewrite_2020(paths, spoil)
    code, out = _run(monkeypatch, paths, "2020")
    assert code == check.EXIT_OK, out  # 2 of 57 rows: within the gate's 5 %
    assert "2 would be quarantined" in out
    assert re.search(rf"unknown_city, row 4, column '{CITY_HEADER}'", out), out
    assert re.search(rf"unknown_answer, row 8, column '{re.escape(LEAD_HEADER)}'", out), out
    assert "Headline preview: IT-led" in out
    assert "raw_wave gate: passed" in out, "the scratch copy's load id names nothing a reader can look up"
    leaked = [value for value in _personal(rows) if value in out]
    assert not leaked, f"personal data in the output: {leaked[:3]}"
    assert "@" not in out


def test_a_wave_that_fails_its_raw_gate_says_why_and_previews_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _project("gate_fails")
    city = EXAMPLE.HEADER.index(CITY_HEADER)

    def spoil(rows: list[list[str]]) -> None:
        for row in rows[1:5]:  # 4 of 57 rows: more than 5 %
            row[city] = "Atlantis"

    rows = _rewrite_2020(paths, spoil)
    code, out = _run(monkeypatch, paths, "2020")
    assert code == check.EXIT_GATE_FAILED == 5, out
    assert "FAILED" in out and "quarantined_share" in out
    assert [f"row {n}" in out for n in (2, 3, 4, 5)] == [True] * 4
    assert "Headline preview: none" in out
    assert not [value for value in _personal(rows) if value in out]


def test_placeholders_refuse_the_check_naming_each(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _project("placeholders")
    spec = paths.waves_config / "2020.yml"
    spec.write_text(
        spec.read_text(encoding="utf-8").replace("lead\n", "TODO which question is this?\n", 1), encoding="utf-8"
    )
    answers = paths.dbt_project / "seeds" / "codebook_answers.csv"
    with open(answers, "a", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["2020", "lead", "Pormestari", "TODO code", "", "TODO", "9"])
        writer.writerow(["2019", "lead", "Johtoryhmä", "TODO another wave's", "", "x", "9"])
    row = len(answers.read_text(encoding="utf-8").splitlines()) - 1
    code, out = _run(monkeypatch, paths, "2020")
    assert code == check.EXIT_PLACEHOLDERS == 3, out
    assert f"config/waves/2020.yml, columns.{LEAD_HEADER}: TODO which question is this?" in out
    assert f"dbt_project/seeds/codebook_answers.csv, row {row}, column answer_code: TODO code" in out
    assert f"row {row}, column answer_label_en: TODO" in out
    assert "another wave's" not in out, "only the wave's own rows"
    assert "3 placeholder(s)" in out
    assert not paths.warehouse.exists() and not (paths.var / "tmp").exists(), "nothing is loaded"


def test_the_placeholder_rule(tmp_path: Path) -> None:
    (tmp_path / "config" / "waves").mkdir(parents=True)
    seeds = tmp_path / "dbt_project" / "seeds"
    seeds.mkdir(parents=True)
    (tmp_path / "config" / "waves" / "2021.yml").write_text(
        "wave_year: 2021\nfile: TODO where is the file\ncities_surveyed: ['091', 'TODO']\n"
        "columns:\n  TODO header: lead\n  Kaupunki: city\nnote: no TODO here\n",
        encoding="utf-8",
    )
    (seeds / "city_aliases.csv").write_text(
        "city_alias,municipality_code,alias_kind\nhelsinki,091,official_fi\nhelsingin kaupunki,TODO,typed\n",
        encoding="utf-8",
    )
    found = [p.describe() for p in find_placeholders(tmp_path, 2021)]
    assert found == [
        "config/waves/2021.yml, file: TODO where is the file",
        "config/waves/2021.yml, cities_surveyed[1]: TODO",
        "config/waves/2021.yml, key columns.TODO header: TODO header",
        "dbt_project/seeds/city_aliases.csv, row 3, column municipality_code: TODO",
    ]
    (tmp_path / "config" / "waves" / "2021.yml").write_text("columns: [unclosed\n  a: TODO x\n", encoding="utf-8")
    assert [p.where for p in find_placeholders(tmp_path, 2021)] == [
        "line 2",
        "row 3, column municipality_code",
    ], "a spec that is not YAML too"


def test_a_spec_error_is_the_loaders_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _project("spec_error")
    spec = paths.waves_config / "2020.yml"
    text = spec.read_text(encoding="utf-8")
    spec.write_text(text.replace(f": {EXAMPLE.NEW_QUESTION}", ": has_digital_vision"), encoding="utf-8")
    code, out = _run(monkeypatch, paths, "2020")
    assert code == check.EXIT_SPEC_ERROR == 4, out
    assert "is mapped to 'has_digital_vision', which is neither a respondent field" in out
    assert "Traceback" not in out
    spec.write_text(text.replace("kaupunkikysely_2020.txt", "kaupunkikysely_2020_final.txt"), encoding="utf-8")
    code, out = _run(monkeypatch, paths, "2020")
    assert code == check.EXIT_SPEC_ERROR, out
    assert "data/waves/2020/kaupunkikysely_2020_final.txt: the file has not arrived" in out
    code, out = _run(monkeypatch, paths, "2031")
    assert code == check.EXIT_SPEC_ERROR and "there is no wave spec config/waves/2031.yml" in out
    spec.write_text(text, encoding="utf-8")
    (paths.root / "data" / "waves" / "2020" / "kaupunkikysely_2020.txt").write_bytes(b"")
    code, out = _run(monkeypatch, paths, "2020", "--json")
    result = json.loads(out)
    assert code == check.EXIT_SPEC_ERROR and result["status"] == "spec_error", out
    assert "kaupunkikysely_2020.txt" in result["error"], "the file the loader could not read is named"
    assert not paths.warehouse.exists() and not list((paths.var / "tmp").iterdir())


def test_a_wave_dbt_cannot_build_is_told_with_dbts_log_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _project("preview_fails")
    model = paths.dbt_project / "models" / "intermediate" / "int_city_responsibilities_rolled_up.sql"
    model.write_text(model.read_text(encoding="utf-8").replace("surveyed.wave_year,", "surveyed.wave_yaer,", 1))
    code, out = _run(monkeypatch, paths, "2020")
    assert code == check.EXIT_PREVIEW_FAILED == 6, out
    assert "raw_wave gate: passed" in out
    assert "dbt could not build it" in out and "int_city_responsibilities_rolled_up" in out
    assert "wave_yaer" in out, "dbt's own words"
    kept = paths.var / "logs" / "wave_check_2020_dbt.log"
    assert "wave_yaer" in kept.read_text(encoding="utf-8")


def _fingerprints(*places: Path) -> dict[str, str]:
    """Every file under the places, by its bytes."""
    found = {}
    for place in places:
        for path in sorted([place] if place.is_file() else place.rglob("*")):
            if path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_the_warehouse_marts_and_airflow_metadata_are_left_as_they_were(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _project("untouched")
    loaded = load_wave(find_wave_spec(2019, paths), paths.warehouse, paths=paths)
    mark_load(paths.warehouse, loaded.load_id, True, "passed")  # 2019 is current, as after a run
    paths.published.parent.mkdir(parents=True)
    with duckdb.connect(str(paths.published)) as con:
        con.execute("create schema marts; create table marts.fct_responsibility_shares as select 2019 as wave_year")
    airflow = paths.var / "airflow"
    airflow.mkdir()
    (airflow / "airflow.db").write_bytes(b"SQLite format 3\x00 metadata as Airflow left it")
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        loads_before = con.execute("select load_id, status, is_current from raw.load_registry").fetchall()
    watched = (paths.warehouse.parent, paths.published.parent, airflow, paths.data_docs, paths.dbt_project)
    before = _fingerprints(*watched)
    for year in (2019, 2020):  # a wave the warehouse holds (loaded again on the copy), and a new one
        code, out = _run(monkeypatch, paths, str(year))
        assert code == check.EXIT_OK, out
    assert _fingerprints(*watched) == before
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        assert con.execute("select load_id, status, is_current from raw.load_registry").fetchall() == loads_before
    assert not list((paths.var / "tmp").iterdir()), "the scratch copy is removed"


def test_a_wave_the_warehouse_holds_is_checked_against_its_current_load(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _project("current")
    loaded = load_wave(find_wave_spec(2019, paths), paths.warehouse, paths=paths)
    mark_load(paths.warehouse, loaded.load_id, True, "passed")
    _env(monkeypatch, paths)
    result = check.check_wave(2019, paths)
    assert result.exit_code == check.EXIT_OK, result.text()
    assert result.compared_with_current_load and result.rows == loaded.row_count
    assert "nothing to compare a re-delivery with" not in result.text()


def test_a_warehouse_a_run_keeps_writing_while_it_is_copied_refuses_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = _project("busy")
    load_wave(find_wave_spec(2019, paths), paths.warehouse, paths=paths)
    states = iter(range(1000))
    monkeypatch.setattr(check, "_state", lambda _path: next(states))  # the file changes under every copy
    monkeypatch.setattr(check, "COPY_ATTEMPTS", 1)
    code, out = _run(monkeypatch, paths, "2020")
    assert code == check.EXIT_NOT_RUN == 2, out
    assert "kept changing while it was copied: a run of the waves is writing it" in out
    assert not list((paths.var / "tmp").iterdir())


def test_the_command_line_and_make_need_a_year(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["wave"], ["wave", "check"], ["wave", "check", "next-year"]):
        with pytest.raises(SystemExit) as refused:
            cli.main(args)
        assert refused.value.code == 2
    assert "invalid int value: 'next-year'" in capsys.readouterr().err
    made = subprocess.run(["make", "-s", "wave-check"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert made.returncode == 2 and "usage: make wave-check YEAR=<wave year>" in made.stdout


def test_a_withdrawn_wave_is_not_checked_as_if_a_run_would_load_it(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _project("withdrawn")
    spec = paths.waves_config / "2020.yml"
    spec.write_text(spec.read_text(encoding="utf-8") + 'withdrawn: "the file was sent by mistake"\n', encoding="utf-8")
    code, out = _run(monkeypatch, paths, "2020")
    assert code == check.EXIT_WITHDRAWN == 7, out
    assert "withdrawn in config/waves/2020.yml (the file was sent by mistake)" in out
    assert "would load" not in out and "Headline preview" not in out
    assert not paths.warehouse.exists(), "nothing is loaded"


def test_a_seed_saved_with_a_byte_order_mark_keeps_its_placeholders_and_its_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Excel saves CSV with a BOM: the wave's rows are still the wave's (a placeholder in them is found), and the
    codebook reads them (no KeyError on '\\ufeffwave_year')."""
    paths = _project("bom")
    answers = paths.dbt_project / "seeds" / "codebook_answers.csv"
    with open(answers, "a", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerow(["2020", "lead", "Pormestari", "TODO code", "", "Mayor", "9"])
    answers.write_bytes(b"\xef\xbb\xbf" + answers.read_bytes())
    code, out = _run(monkeypatch, paths, "2020")
    assert code == check.EXIT_PLACEHOLDERS, out
    assert "column answer_code: TODO code" in out
    lines = answers.read_text(encoding="utf-8-sig").splitlines()
    answers.write_text("\ufeff" + "\n".join(lines[:-1]) + "\n", encoding="utf-8")  # the placeholder row answered away
    code, out = _run(monkeypatch, paths, "2020")
    assert code == check.EXIT_OK, out


def test_json_output_stays_json_when_a_message_quotes_an_address() -> None:
    data = {"error": 'write to "info@example.fi" now', "rows": [{"message": 'a "quoted" name@example.fi'}]}
    text = json.dumps(check._scrubbed(data))
    assert json.loads(text)["error"] == 'write to "<e-mail address>" now'
    assert "@" not in text


def test_a_killed_checks_scratch_folder_is_removed_by_the_next_check(tmp_path: Path) -> None:
    dead = tmp_path / "wave_check_999999999_abc"  # no process has that pid
    alive = tmp_path / f"wave_check_{os.getpid()}_def"
    for folder in (dead, alive):
        (folder / "warehouse").mkdir(parents=True)
    assert check._remove_stopped_checks(tmp_path) == [dead]
    assert not dead.exists() and alive.exists(), "a running check's folder stays"


@pytest.mark.parametrize("proposal", ["\t", " ", ";", "|", "2", "Tietohallinto (ICT-johto)", " x ", ""])
def test_a_proposal_written_as_a_placeholder_is_read_back_as_it_was(proposal: str) -> None:
    """Whatever `wave draft` proposes (a tab or a space as the delimiter too) is what deleting the mark gives and
    what the preview takes; only a proposal's surrounding spaces around other text are not kept."""
    import yaml

    from survey_warehouse.drafting.draft import _q, todo
    from survey_warehouse.drafting.placeholders import proposal_of
    from survey_warehouse.intake.codebook import is_placeholder

    written = yaml.safe_load(f"delimiter: {_q(todo(proposal))}")["delimiter"]
    assert is_placeholder(written)
    assert proposal_of(written) == (proposal if proposal.isspace() else proposal.strip())
    by_hand = yaml.safe_load(f"delimiter: {_q(todo(proposal)).replace('TODO: ', '', 1)}")["delimiter"]
    if proposal:  # a person deleting `TODO: ` gets the proposal
        assert by_hand == proposal


def test_taking_a_drafts_proposals_leaves_out_what_has_none(tmp_path: Path) -> None:
    """Every placeholder taken as a person deleting `TODO: ` would; a code or a point without a proposal leaves its
    row out (its answers stay unknown), a question without any answer label leaves its column unread."""
    import yaml

    from survey_warehouse.drafting.placeholders import take_proposals
    from survey_warehouse.intake.matching import match_key

    waves, seeds = tmp_path / "config" / "waves", tmp_path / "dbt_project" / "seeds"
    waves.mkdir(parents=True)
    seeds.mkdir(parents=True)
    (waves / "2021.yml").write_text(
        'wave_year: 2021\nfile: "x.csv"\nheader_row: "TODO: 2"\nquestionnaire_version: "TODO: 2021-fi-4"\n'
        'cities_surveyed:\n  - "TODO: the cities surveyed in 2021: confirm this list (delete this line)"\n'
        '  - "091"\nfield_period: {start: "TODO: 2021-03-12", end: "TODO: 2021-04-11"}\n'
        'sheet: "TODO:"\ncolumns:\n  "Q1": "TODO: lead"\n  "Q9 Vapaa": "TODO: palaute"\n  "Q2": cooperation\n'
        "  Kaupunki: city\n",
        encoding="utf-8",
    )
    (seeds / "codebook_questions.csv").write_text(
        "wave_year,question_id,question_text_fi,question_text_en,answer_type,scale_min,scale_max,is_required\n"
        "2019,lead,Q1,TODO: untouched,category,,,true\n"
        "2021,lead,Q1,TODO: the English wording of Q1,category,,,true\n"
        "2021,palaute,Q9 Vapaa,TODO: the English wording of Q9 Vapaa,category,,,false\n"
        "2021,cooperation,Q2,Co-operation,scale,TODO: 0,TODO: 10,false\n",
        encoding="utf-8",
    )
    (seeds / "codebook_answers.csv").write_text(
        "wave_year,question_id,source_label,answer_code,answer_value,answer_label_en,sort_order\n"
        "2021,lead,Tietohallinto,TODO: it_management,,TODO: the English label of Tietohallinto,1\n"
        "2021,lead,Pormestari,TODO:,,Mayor,2\n"
        "2021,cooperation,Hyvä,good,TODO: the point of the scale it stands for,Good,3\n",
        encoding="utf-8",
    )
    (seeds / "city_aliases.csv").write_text(
        "city_alias,municipality_code,alias_kind\nhki,TODO: 091,spelling\natlantis,TODO:,spelling\n", encoding="utf-8"
    )

    taken = take_proposals(tmp_path, 2021)

    assert taken.undecided == [
        ("lead", match_key("Pormestari")),
        ("cooperation", match_key("Hyvä")),
        ("city", match_key("atlantis")),
    ]
    assert taken.unread == ["Q9 Vapaa"]
    assert taken.proposed == [("lead", match_key("Tietohallinto")), ("city", match_key("hki"))]
    spec = yaml.safe_load((waves / "2021.yml").read_text(encoding="utf-8"))
    assert spec["header_row"] == "2" and spec["questionnaire_version"] == "2021-fi-4"  # as deleting the mark leaves
    assert spec["cities_surveyed"] == ["091"] and "sheet" not in spec
    assert str(spec["field_period"]["start"]) == "2021-03-12"
    assert spec["columns"] == {"Q1": "lead", "Q2": "cooperation", "Kaupunki": "city"}
    assert find_placeholders(tmp_path, 2021) == []
    with open(seeds / "codebook_questions.csv", encoding="utf-8") as f:
        questions = list(csv.DictReader(f))
    assert [(r["wave_year"], r["question_id"]) for r in questions] == [
        ("2019", "lead"),
        ("2021", "lead"),
        ("2021", "cooperation"),
    ]
    assert questions[0]["question_text_en"] == "TODO: untouched", "another wave's rows are left as they are"
    assert (questions[2]["scale_min"], questions[2]["scale_max"]) == ("0", "10")
    with open(seeds / "codebook_answers.csv", encoding="utf-8") as f:
        assert [(r["source_label"], r["answer_code"]) for r in csv.DictReader(f)] == [
            ("Tietohallinto", "it_management")
        ]
    assert (seeds / "city_aliases.csv").read_text(encoding="utf-8").splitlines()[1:] == ["hki,091,spelling"]


def test_a_draft_is_checked_in_the_scratch_copy_only_and_its_undecided_answers_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """check_draft: the draft is written and its proposals taken in the scratch copy (the project's specs and seeds
    stay as they were); the rows whose answer a decision leaves without a code are quarantined and counted as such."""
    from survey_warehouse.drafting import draft as drafting

    paths = _project("draft")
    rows = list(csv.reader(io.StringIO(EXAMPLE_2019.read_text(encoding="utf-8-sig"))))
    delivered = paths.var / "inbox" / "2021" / "kysely.csv"
    delivered.parent.mkdir(parents=True)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(
        [rows[0], *[[c.replace("2019-", "2021-") for c in r] for r in rows[1:]]]
    )
    delivered.write_text(out.getvalue(), encoding="utf-8")
    lead = next(i for i, h in enumerate(rows[0]) if h.startswith("Q1 "))
    label = "Digijohtaja (CDO)"
    answering = sum(1 for r in rows[1:] if r[lead] == label)
    real = drafting.draft_wave

    def leaving_a_code_open(file: Path, year: int, root: Path, **kwargs: object) -> object:
        made = real(file, year, root, **kwargs)
        answers = root / "dbt_project" / "seeds" / "codebook_answers.csv"
        with open(answers, encoding="utf-8", newline="") as f:
            found = list(csv.reader(f))
        for row in found:
            if row[0] == str(year) and row[1] == "lead" and row[2] == label:
                row[3] = "TODO:"
        with open(answers, "w", encoding="utf-8", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(found)
        return made

    monkeypatch.setattr(drafting, "draft_wave", leaving_a_code_open)

    def state() -> dict[Path, str]:
        folders = (paths.root / "config", paths.dbt_project / "seeds")
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in f.rglob("*") if p.is_file()}

    project = state()

    result = check.check_draft(delivered, 2021, paths)

    assert answering > 0 and result.undecided_rows == answering, result.text()
    assert result.quarantined_rows is not None and result.quarantined_rows >= answering
    lines = result.draft_lines(3)
    assert f"({answering} for an answer or city whose code is left to a person)" in "\n".join(lines), lines
    assert lines[0].startswith("Preview if the 3 open proposal(s) are accepted as drafted")
    assert not (paths.waves_config / "2021.yml").exists()
    assert state() == project, "the project's specs and seeds were written"
    assert not list((paths.var / "tmp").glob("wave_check_*")), "the scratch copy is removed"


def test_a_preview_build_that_does_not_end_is_stopped_and_said(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import make_paths

    monkeypatch.setattr(check, "DBT_TIMEOUT_SECONDS", 0.01)
    scratch = make_paths("check_dbt_timeout")
    started = time.monotonic()
    said = check.run_dbt(scratch, scratch.var / "logs" / "preview.log")
    assert said == "dbt build did not end within 0.01 s and was stopped"
    assert time.monotonic() - started < 30


@pytest.fixture(scope="module")
def open_lead_preview() -> tuple[object, object, check.WaveCheck]:
    """A generated wave of 2021 whose lead question offers a label in an earlier option's words, 'Tietohallinto ja
    toimialat yhdessä', coded by an open proposal, and whose contact persons' surnames are under 'Yhteyshenkilö';
    drafted in a copy of the project (for its decisions) and previewed as the inbox does (check_draft)."""
    import dataclasses

    from wave_maker import VARIANTS, copy_project, make_wave

    from survey_warehouse.drafting.draft import draft_wave

    base = VARIANTS[2]
    variant = dataclasses.replace(
        base,
        name="open-lead",
        format="csv",
        title_rows=[],
        headers={**base.headers, "respondent_name": "Yhteyshenkilö"},
        dropped=tuple(d for d in base.dropped if d != "respondent_name"),
        names=["Virtanen", "Korhonen", "Laine"],
    )
    paths = _project("open_lead")
    wave = make_wave(variant, paths.root)
    drafted = draft_wave(wave.file, 2021, make_wave(variant, copy_project(paths.var / "drafted")).root)
    return wave, drafted, check.check_draft(wave.file, 2021, paths)


def test_a_drafts_headline_says_how_many_cities_rest_on_open_proposals(open_lead_preview) -> None:
    """The IT-led cities whose lead answer (or a respondent's job title or city spelling) is coded by an open
    proposal are counted, of the k IT-led and of the n answering, from the wave's own rows."""
    from survey_warehouse.intake.matching import match_key

    wave, drafted, result = open_lead_preview
    header = {field_id: h for h, field_id in wave.truth.items()}
    open_codes = {
        (d.column, d.values[0]): d.proposal
        for d in drafted.decisions
        if (d.kind == "answer" and d.where.endswith("answer_code")) or (d.kind == "city" and d.proposal)
    }
    it_label = dict(wave.codes)
    it_label |= {("lead", label): code for (column, label), code in open_codes.items() if column == header["lead"]}
    assert "it_management" in {code for (q, _label), code in it_label.items() if q == "lead"}
    with open(ROOT / "dbt_project" / "seeds" / "city_aliases.csv", encoding="utf-8") as f:
        aliases = {r["city_alias"]: r["municipality_code"] for r in csv.DictReader(f)}
    with open(wave.file, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    answering, it_led, resting = set(), set(), set()
    for row in rows:
        spelling = row[header["city"]]
        city = open_codes.get((header["city"], spelling)) or aliases[match_key(spelling)]
        answering.add(city)
        if it_label[("lead", row[header["lead"]])] == "it_management":
            it_led.add(city)
        if any((header[f], row[header[f]]) in open_codes for f in ("lead", "respondent_role", "city")):
            resting.add(city)
    assert resting & it_led, "the wave has no IT-led city resting on an open proposal"

    headline = result.headline
    assert headline is not None, result.text()
    assert (headline.cities, headline.cities_responded) == (len(it_led), len(answering))
    assert headline.resting == (len(resting & it_led), len(resting))
    described = headline.describe()
    assert f"{len(resting & it_led)} of the {len(it_led)} rest on open proposals" in described
    assert f"{len(resting)} of the {len(answering)} in all" in described
    assert headline.describe() in "\n".join(result.draft_lines(len(drafted.decisions)))


def test_a_drafts_preview_names_a_column_of_names_only_by_its_header(open_lead_preview) -> None:
    """A column whose header says it holds names is no question whose answers the preview counts or lists: it is
    left unread, named by its header, and none of its values is quoted."""
    _wave, drafted, result = open_lead_preview
    lines = "\n".join(result.draft_lines(len(drafted.decisions)))
    proposed = next(d.proposal for d in drafted.decisions if d.kind == "question" and d.column == "Yhteyshenkilö")
    assert "'Yhteyshenkilö'" in lines and "not read" in lines, lines
    assert result.diff is not None and proposed not in result.diff.questions_added, result.diff
    assert not any(name in lines + json.dumps(result.as_json()) for name in ("Virtanen", "Korhonen", "Laine"))


def test_a_wave_exported_with_its_options_numbers_previews_as_the_same_wave_with_labels() -> None:
    """The 2019 answers delivered for 2021 twice: with the options' labels, and as a survey tool exports its options'
    numbers (1 for the first option of the latest wave's list). The draft proposes each number as the option in
    its place; taken as drafted, both previews give the same headline and quarantine nothing. A scale's plain
    numbers are its points with or without a codebook row: the diff names no scale point as a removed option."""
    paths = _project("numbered")
    (paths.waves_config / "2020.yml").unlink()  # 2019 the previous wave: the same 0-10 scale of cooperation
    for seed in (paths.dbt_project / "seeds").glob("*.csv"):
        lines = seed.read_text(encoding="utf-8").splitlines(keepends=True)
        seed.write_text("".join(line for line in lines if not line.startswith("2020,")), encoding="utf-8")
    rows = list(csv.reader(io.StringIO(EXAMPLE_2019.read_text(encoding="utf-8-sig"))))
    rows = [rows[0], *[[c.replace("2019-", "2021-") for c in r] for r in rows[1:]]]
    with open(paths.dbt_project / "seeds" / "codebook_answers.csv", encoding="utf-8") as f:
        answers = list(csv.DictReader(f))
    numbered = [list(r) for r in rows]
    for prefix, question in (("Q1 ", "lead"), ("Q3 ", "it_involvement_stage")):
        column = next(i for i, h in enumerate(rows[0]) if h.startswith(prefix))
        code_2019 = {
            r["source_label"]: r["answer_code"]
            for r in answers
            if (r["wave_year"], r["question_id"]) == ("2019", question)
        }
        latest = max(r["wave_year"] for r in answers if r["question_id"] == question)
        listed = sorted(
            (r for r in answers if (r["wave_year"], r["question_id"]) == (latest, question)),
            key=lambda r: int(r["sort_order"]),
        )
        order = list(dict.fromkeys(r["answer_code"] for r in listed))
        for row in numbered[1:]:
            row[column] = str(order.index(code_2019[row[column]]) + 1)
    results = []
    for name, content in (("labelled.csv", rows), ("numbered.csv", numbered)):
        delivered = paths.var / "inbox" / "2021" / name
        delivered.parent.mkdir(parents=True, exist_ok=True)
        with open(delivered, "w", encoding="utf-8", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(content)
        results.append(check.check_draft(delivered, 2021, paths))
    labelled, by_number = results
    assert labelled.headline is not None and by_number.headline is not None, by_number.text()
    assert (by_number.headline.cities, by_number.headline.cities_responded) == (
        labelled.headline.cities,
        labelled.headline.cities_responded,
    )
    assert labelled.quarantined_rows == by_number.quarantined_rows == 0, by_number.text()
    assert labelled.diff is not None
    points = [o for o in labelled.diff.options if o.question_id == "cooperation"]
    assert not points, [o.describe() for o in points]
