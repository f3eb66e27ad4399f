"""A wave the draft has not seen, published with only the decisions the draft lists answered: `wave draft`, the
person's answers written into the spec and seeds it names, `wave draft` again (nothing left), then the DAG run for
the wave on top of the warehouse the main job built. The published headline (the share of cities led by IT
management) is the generated wave's true one."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT, PipelineRun, copy_state, task_states

from survey_warehouse.drafting.draft import draft_wave
from survey_warehouse.orchestration import runner, runtime
from survey_warehouse.settings import Paths

sys.path.insert(0, str(Path(__file__).parent / "survey_warehouse"))
from test_wave_draft import settle
from wave_maker import VARIANTS, YEAR, make_wave

# the variant whose headline depends on a person's answer: IT management's option is renamed past recognition
# ('ICT-palvelut'), a city is misspelled, the file has a title block, a question is dropped
VARIANT = VARIANTS[1]


@pytest.fixture(scope="module")
def published(pipeline_run: PipelineRun) -> tuple[Paths, object]:
    state = copy_state(pipeline_run, "drafted_wave")
    root = state.var / "project"
    shutil.copytree(
        ROOT,
        root,
        ignore=shutil.ignore_patterns(".git", ".venv", ".tools", "var", "target", "logs", "__pycache__", "bi"),
    )
    shutil.copytree(ROOT / "dbt_project" / "target", root / "dbt_project" / "target")
    wave = make_wave(VARIANT, root)
    first = draft_wave(wave.file, YEAR, root)
    assert any(d.kind == "answer" and d.values == ["ICT-palvelut"] for d in first.decisions)
    settle(wave)
    assert not draft_wave(wave.file, YEAR, root).open
    paths = Paths(
        root=root,
        var=state.var,
        waves_config=root / "config" / "waves",
        warehouse=state.warehouse,
        published=state.published,
        data_docs=state.data_docs,
        dbt_project=root / "dbt_project",
    )
    runtime.setup(paths)
    code, _seconds, log = runner.run_wave(paths, YEAR)
    assert code == 0, log.read_text()[-4000:]
    return paths, wave


def test_the_drafted_wave_publishes_its_true_headline(published) -> None:
    paths, wave = published
    assert task_states(paths, YEAR)["publish_marts"] == "success"
    with duckdb.connect(str(paths.published), read_only=True) as con:
        row = con.execute(
            "select cities, cities_responded, cities_surveyed, share_of_surveyed_min from "
            f"marts.fct_responsibility_shares where wave_year = {YEAR} and is_it_management"
        ).fetchone()
    assert row == (wave.it_led, wave.cities, 20, wave.it_led / 20)
