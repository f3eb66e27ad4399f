"""Withdrawing a published wave: its spec says `withdrawn: <why>`, a run leaves it out of the marts and records why;
a spec deleted while its wave is still published is reported as such, never as "no survey wave that year"."""

from __future__ import annotations

import shutil

import duckdb
import pytest
from conftest import ROOT, PipelineRun, copy_state, with_waves_dir

from survey_warehouse.orchestration import runner
from survey_warehouse.orchestration.pipeline import plan_wave
from survey_warehouse.settings import Paths

REASON = "the survey tool mixed up two cities' answers"


@pytest.fixture(scope="module")
def withdrawn(pipeline_run: PipelineRun) -> dict:
    state = copy_state(pipeline_run, "withdraw")
    waves = state.var / "waves"
    shutil.copytree(ROOT / "config" / "waves", waves)
    paths = with_waves_dir(state, waves)
    spec_2018 = (waves / "2018.yml").read_text(encoding="utf-8")
    out: dict = {"paths": paths, "published_before": _published(paths)}

    (waves / "2018.yml").unlink()  # deleted while 2018 is published
    out["deleted"] = _run(paths)
    out["after_deleted"] = _published(paths)
    out["plan_deleted"] = runner.plan_years(paths, [2018])[2018]

    (waves / "2018.yml").write_text(spec_2018 + f'withdrawn: "{REASON}"\n', encoding="utf-8")
    out["withdrawn"] = _run(paths)
    out["after_withdrawn"] = _published(paths)
    out["plan_withdrawn"] = plan_wave(2018, paths)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        out["registry"] = con.execute(
            "select status, is_current, status_message from raw.load_registry where wave_year = 2018"
        ).fetchall()

    (waves / "2018.yml").write_text(spec_2018, encoding="utf-8")  # published again
    out["restored"] = _run(paths)
    out["after_restored"] = _published(paths)
    return out


def _run(paths: Paths) -> tuple[int, str]:
    """A run of wave 2018 in its own process: its exit code and its log."""
    code, _seconds, log = runner.run_wave(paths, 2018)
    return code, log.read_text(encoding="utf-8")


def _published(paths: Paths) -> dict[str, list]:
    with duckdb.connect(str(paths.published), read_only=True) as con:
        return {
            "waves": [r[0] for r in con.execute("select wave_year from marts.dim_year order by 1").fetchall()],
            "cities_2018": con.execute(
                "select count(*) from marts.fct_city_responsibility where wave_year = 2018"
            ).fetchone()[0],
            "answers_2018": con.execute(
                "select count(*) from marts.fct_survey_answers where wave_year = 2018"
            ).fetchone()[0],
            "loads": sorted(r[0] for r in con.execute("select wave_year from marts.source_loads").fetchall()),
        }


def test_a_deleted_spec_of_a_published_wave_is_reported_and_changes_nothing(withdrawn: dict) -> None:
    code, text = withdrawn["deleted"]
    assert code == 1
    assert "wave 2018 is still published" in text and "withdrawn: <why>" in text
    assert "No survey wave in 2018" not in text
    assert withdrawn["plan_deleted"] is None, "make run runs it (and reports it), never skips it as 'no wave'"
    assert withdrawn["after_deleted"] == withdrawn["published_before"]


def test_a_withdrawn_wave_leaves_the_marts_with_its_reason_recorded(withdrawn: dict) -> None:
    code, text = withdrawn["withdrawn"]
    assert code == 0, text[-3000:]
    before, after = withdrawn["published_before"], withdrawn["after_withdrawn"]
    assert 2018 in before["waves"] and before["cities_2018"] > 0
    assert after["waves"] == [w for w in before["waves"] if w != 2018]
    assert after["cities_2018"] == 0 and after["answers_2018"] == 0 and 2018 not in after["loads"]
    statuses = [(status, current) for status, current, _m in withdrawn["registry"]]
    assert statuses == [("withdrawn", False)]
    assert REASON in withdrawn["registry"][0][2]
    assert withdrawn["plan_withdrawn"].action == "nothing"


def test_a_wave_whose_withdrawal_is_lifted_is_published_again(withdrawn: dict) -> None:
    code, text = withdrawn["restored"]
    assert code == 0, text[-3000:]
    assert withdrawn["after_restored"]["waves"] == withdrawn["published_before"]["waves"]
    assert withdrawn["after_restored"]["cities_2018"] == withdrawn["published_before"]["cities_2018"]
