"""A new year's wave, added by data and configuration only: a file in a shape the project has not seen (UTF-16,
tab-separated: Excel's "Unicode text"), a question no earlier wave asked, an option renamed, a scale recoded.

The project is copied (no Python or SQL changes): the 2020 file, config/waves/2020.yml and the 2020 rows of the
codebook seeds are added, and the DAG runs for 2020 on top of the warehouse the main job built. The new question
reaches the published marts with its labels, the headline of 2020 is computed, and 2016-2019 stay as they were."""

from __future__ import annotations

import importlib.util
import shutil

import duckdb
import pytest
from conftest import ROOT, PipelineRun, copy_state, task_states

from survey_warehouse.orchestration import runner, runtime
from survey_warehouse.settings import Paths


def _example():
    spec = importlib.util.spec_from_file_location("example_wave_2020", ROOT / "scripts" / "example_wave_2020.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _example()
NEW_QUESTION, PLAN_2020 = EXAMPLE.NEW_QUESTION, EXAMPLE.PLAN_2020


@pytest.fixture(scope="module")
def run_2020(pipeline_run: PipelineRun, tmp_path_factory) -> tuple[Paths, dict]:
    state = copy_state(pipeline_run, "new_wave")
    root = state.var / "project"
    shutil.copytree(
        ROOT,
        root,
        ignore=shutil.ignore_patterns(".git", ".venv", ".tools", "var", "target", "logs", "__pycache__", "bi"),
    )
    # the manifest as setup left it, as in a user's checkout: a new wave's codebook rows need no dbt parse
    shutil.copytree(ROOT / "dbt_project" / "target", root / "dbt_project" / "target")
    EXAMPLE.write_wave_2020(root)
    paths = Paths(
        root=root,
        var=state.var,
        waves_config=root / "config" / "waves",
        warehouse=state.warehouse,
        published=state.published,
        data_docs=state.data_docs,
        dbt_project=root / "dbt_project",
    )
    with duckdb.connect(str(paths.published), read_only=True) as con:
        before = {
            t: sorted(con.execute(f"select * from marts.{t} where wave_year < 2020").fetchall(), key=repr)
            for t in ("fct_city_responsibility", "fct_responsibility_shares", "fct_survey_answers")
        }
    runtime.setup(paths)
    code, _seconds, log = runner.run_wave(paths, 2020)
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
        after = {
            t: sorted(con.execute(f"select * from marts.{t} where wave_year < 2020").fetchall(), key=repr)
            for t in before
        }
    assert after == before


def test_the_new_question_reaches_the_marts_with_its_labels(run_2020) -> None:
    paths, _before = run_2020
    with duckdb.connect(str(paths.published), read_only=True) as con:
        question = con.execute(
            "select question_text_en, answer_type, waves_asked, is_comparable_across_waves "
            f"from marts.dim_question where question_id = '{NEW_QUESTION}'"
        ).fetchall()
        answers = dict(
            con.execute(
                "select answer_label_en, count(*) from marts.fct_survey_answers "
                f"where question_id = '{NEW_QUESTION}' group by 1"
            ).fetchall()
        )
        scale = con.execute(
            "select min(answer_value), max(answer_value), min(answer_score), max(answer_score) "
            "from marts.fct_survey_answers where wave_year = 2020 and question_id = 'cooperation'"
        ).fetchone()
    assert question == [("3. Has your city adopted a digitalisation strategy?", "category", 1, False)]
    assert set(answers) <= {"Yes", "No", "In preparation"} and sum(answers.values()) == 19 * 3
    assert scale[0] >= 1 and scale[1] <= 7 and 0 <= scale[2] <= scale[3] <= 1, "the 1-7 scale lands on 0-1"


def test_the_headline_of_the_new_wave(run_2020) -> None:
    paths, _before = run_2020
    with duckdb.connect(str(paths.published), read_only=True) as con:
        row = con.execute(
            "select cities, cities_responded, cities_surveyed, share_of_surveyed_min, "
            "share_of_surveyed_max from marts.fct_responsibility_shares where wave_year = 2020 and "
            "is_it_management"
        ).fetchone()
        renamed = con.execute(
            "select count(*) from marts.fct_survey_answers where wave_year = 2020 and "
            "question_id = 'lead' and answer_code = 'it_management'"
        ).fetchone()[0]
    expected_it = sum(1 for lead in PLAN_2020.values() if lead == "it_management")
    assert row == (expected_it, 19, 20, expected_it / 20, (expected_it + 1) / 20)
    assert renamed >= 2 * expected_it, "the renamed option ('ICT-yksikkö') maps to IT management"
