"""A new year's wave, added by data and configuration only: a file in a shape the project has not seen (UTF-16,
tab-separated: Excel's "Unicode text"), a question no earlier wave asked, an option renamed, a scale recoded.

The project is copied (no Python or SQL changes): the 2020 file, config/waves/2020.yml and the 2020 rows of the
codebook seeds are added, and the DAG runs for 2020 on top of the warehouse the main job built. The new question
reaches the published marts with its labels, the headline of 2020 is computed, and 2016-2019 stay as they were."""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from conftest import ROOT, PipelineRun, copy_state, task_states
from survey_warehouse import cli
from survey_warehouse.settings import Paths

NEW_QUESTION = "has_digital_strategy"
HEADER = ["Vastaajan nimi", "Sähköpostiosoite", "Kaupunki", "Tehtävä", "Lähetetty", "Kesto",
          "1. Kuka johtaa digitalisaatiota kaupungissanne?", "2. Yhteistyö tietohallinnon ja toimialojen välillä (1-7)",
          "3. Onko kaupungillanne hyväksytty digitalisaatiostrategia?", "Kommentit"]
LEAD_2020 = {"it_management": "ICT-yksikkö", "sector_directors": "Toimialajohtajat",
             "city_leadership": "Kaupunginjohto", "chief_digital_officer": "Digijohtaja (CDO)"}
# city -> 2020 lead: 6 of the 20 IT-led, one city silent
PLAN_2020 = {"091": "chief_digital_officer", "049": "city_leadership", "837": "sector_directors",
             "092": "sector_directors", "564": "sector_directors", "853": "chief_digital_officer",
             "179": "sector_directors", "398": "it_management", "297": "sector_directors", "609": "city_leadership",
             "286": "it_management", "167": "it_management", "405": "it_management", "109": "sector_directors",
             "905": "chief_digital_officer", "743": "sector_directors", "698": "it_management",
             "491": "it_management", "285": "sector_directors", "734": None}
STRATEGY = {"Kyllä": "yes", "Ei": "no", "Valmisteilla": "in_preparation"}

CODEBOOK_QUESTIONS_2020 = [
    ["2020", "respondent_role", "Tehtävä", "Role", "category", "", "", "true"],
    ["2020", "lead", "1. Kuka johtaa digitalisaatiota kaupungissanne?", "1. Who leads digitalisation in your city?",
     "category", "", "", "true"],
    ["2020", "cooperation", "2. Yhteistyö tietohallinnon ja toimialojen välillä (1-7)",
     "2. Cooperation between IT management and the business lines (1-7)", "scale", "1", "7", "false"],
    ["2020", NEW_QUESTION, "3. Onko kaupungillanne hyväksytty digitalisaatiostrategia?",
     "3. Has your city adopted a digitalisation strategy?", "category", "", "", "false"],
]
CODEBOOK_ANSWERS_2020 = [
    *[["2020", "respondent_role", label, code, "", en, str(i)] for i, (label, code, en) in enumerate([
        ("Tietohallintojohtaja", "cio", "CIO or ICT director"), ("Kaupunginjohtaja", "city_manager", "City manager"),
        ("Toimialajohtaja", "sector_director", "Sector director")], start=1)],
    *[["2020", "lead", label, code, "", code.replace("_", " ").capitalize(), str(i)]
      for i, (code, label) in enumerate(LEAD_2020.items(), start=1)],
    # the 1-7 scale: numbers need no rows; its ends are labelled
    ["2020", "cooperation", "1 = erittäin huonosti", "score_1", "1", "1 = very poorly", "1"],
    ["2020", "cooperation", "7 = erittäin hyvin", "score_7", "7", "7 = very well", "7"],
    *[["2020", NEW_QUESTION, label, code, "", {"yes": "Yes", "no": "No", "in_preparation": "In preparation"}[code],
       str(i)] for i, (label, code) in enumerate(STRATEGY.items(), start=1)],
]


def _write_wave_2020(root: Path) -> None:
    """The 2020 export, its wave spec and its codebook rows, written into a copy of the project."""
    rng = random.Random(2020)
    rows = []
    for code, lead in PLAN_2020.items():
        if lead is None:
            continue
        city = {"091": "Helsingin kaupunki", "179": "Jyva\u0308skyla\u0308"}.get(code)  # typed on a Mac
        for i, (title, answer) in enumerate([("Tietohallintojohtaja", lead), ("Toimialajohtaja", lead),
                                             ("Kaupunginjohtaja", rng.choice(list(LEAD_2020)))]):
            rows.append([f"Vastaaja {code}-{i}", f"vastaaja{i}.{code}@kunta{code}.example.fi",
                         city or _spelling(code), title, f"2020-03-{rng.randint(10, 28)} {rng.randint(8, 17)}:05",
                         f"{rng.randint(5, 30)},5", LEAD_2020[answer],
                         rng.choice(["1 = erittäin huonosti", "2", "3", "4", "5", "6", "7 = erittäin hyvin"]),
                         rng.choice(list(STRATEGY)), ""])
    folder = root / "data" / "waves" / "2020"
    folder.mkdir(parents=True)
    with open(folder / "kaupunkikysely_2020.txt", "w", encoding="utf-16", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\r\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
    spec = yaml.safe_load((root / "config" / "waves" / "2019.yml").read_text(encoding="utf-8"))
    spec.update({
        "wave_year": 2020, "file": "data/waves/2020/kaupunkikysely_2020.txt", "format": "csv", "encoding": "utf-16",
        "delimiter": "\t", "header_row": 1, "questionnaire_version": "2020-fi-4",
        "field_period": {"start": "2020-03-09", "end": "2020-04-03"},
        "columns": {"Vastaajan nimi": "respondent_name", "Sähköpostiosoite": "respondent_email", "Kaupunki": "city",
                    "Tehtävä": "respondent_role", "Lähetetty": "submitted_at", "Kesto": "response_minutes",
                    HEADER[6]: "lead", HEADER[7]: "cooperation", HEADER[8]: NEW_QUESTION},
    })
    (root / "config" / "waves" / "2020.yml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    seeds = root / "dbt_project" / "seeds"
    for name, new_rows in (("codebook_questions.csv", CODEBOOK_QUESTIONS_2020),
                           ("codebook_answers.csv", CODEBOOK_ANSWERS_2020)):
        with open(seeds / name, "a", encoding="utf-8", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(new_rows)
    with open(seeds / "published_figures.csv", encoding="utf-8") as f:
        assert "2020" not in f.read(), "2020 has no published statement: the marts show none"


def _spelling(code: str) -> str:
    with open(ROOT / "dbt_project" / "seeds" / "city_aliases.csv", encoding="utf-8") as f:
        return next(r["city_alias"].title() for r in csv.DictReader(f) if r["municipality_code"] == code)


@pytest.fixture(scope="module")
def run_2020(pipeline_run: PipelineRun, tmp_path_factory) -> tuple[Paths, dict]:
    state = copy_state(pipeline_run, "new_wave")
    root = state.var / "project"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(".git", ".venv", ".tools", "var", "target", "logs",
                                                              "__pycache__", "bi"))
    _write_wave_2020(root)
    paths = Paths(root=root, var=state.var, waves_config=root / "config" / "waves", warehouse=state.warehouse,
                  published=state.published, data_docs=state.data_docs, dbt_project=root / "dbt_project")
    with duckdb.connect(str(paths.published), read_only=True) as con:
        before = {t: sorted(con.execute(f"select * from marts.{t} where wave_year < 2020").fetchall(), key=repr)
                  for t in ("fct_city_responsibility", "fct_responsibility_shares", "fct_survey_answers")}
    cli.setup(paths)
    code, _seconds, log = cli.run_wave(paths, 2020)
    assert code == 0, log.read_text()[-4000:]
    return paths, before


def test_only_the_new_wave_is_loaded_and_the_others_stay(run_2020) -> None:
    paths, before = run_2020
    states = task_states(paths, 2020)
    assert states["publish_marts"] == "success" and states["record_failure"] == "skipped"
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        loads = con.execute("select wave_year, count(*) from raw.load_registry group by 1 order by 1").fetchall()
    assert loads == [(2016, 1), (2018, 1), (2019, 1), (2020, 1)], "earlier waves are not read again"
    with duckdb.connect(str(paths.published), read_only=True) as con:
        after = {t: sorted(con.execute(f"select * from marts.{t} where wave_year < 2020").fetchall(), key=repr)
                 for t in before}
    assert after == before


def test_the_new_question_reaches_the_marts_with_its_labels(run_2020) -> None:
    paths, _before = run_2020
    with duckdb.connect(str(paths.published), read_only=True) as con:
        question = con.execute("select question_text_en, answer_type, waves_asked, is_comparable_across_waves "
                               f"from marts.dim_question where question_id = '{NEW_QUESTION}'").fetchall()
        answers = dict(con.execute("select answer_label_en, count(*) from marts.fct_survey_answers "
                                   f"where question_id = '{NEW_QUESTION}' group by 1").fetchall())
        scale = con.execute("select min(answer_value), max(answer_value), min(answer_score), max(answer_score) "
                            "from marts.fct_survey_answers where wave_year = 2020 and question_id = 'cooperation'"
                            ).fetchone()
    assert question == [("3. Has your city adopted a digitalisation strategy?", "category", 1, False)]
    assert set(answers) <= {"Yes", "No", "In preparation"} and sum(answers.values()) == 19 * 3
    assert scale[0] >= 1 and scale[1] <= 7 and 0 <= scale[2] <= scale[3] <= 1, "the 1-7 scale lands on 0-1"


def test_the_headline_of_the_new_wave(run_2020) -> None:
    paths, _before = run_2020
    with duckdb.connect(str(paths.published), read_only=True) as con:
        row = con.execute("select cities, cities_responded, cities_surveyed, share_of_surveyed_min, "
                          "share_of_surveyed_max from marts.fct_responsibility_shares where wave_year = 2020 and "
                          "is_it_management").fetchone()
        renamed = con.execute("select count(*) from marts.fct_survey_answers where wave_year = 2020 and "
                              "question_id = 'lead' and answer_code = 'it_management'").fetchone()[0]
    expected_it = sum(1 for lead in PLAN_2020.values() if lead == "it_management")
    assert row == (expected_it, 19, 20, expected_it / 20, (expected_it + 1) / 20)
    assert renamed >= 2 * expected_it, "the renamed option ('ICT-yksikkö') maps to IT management"
