"""A re-delivery in which one respondent's e-mail address was corrected (same person, same answers) goes through
the DAG: the old address's removal is accepted in the wave spec, the marts gate passes, and the correction is one
`key_changed` row of fct_answer_corrections, not a removal and an addition."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import yaml
from conftest import ROOT, PipelineRun, copy_state, task_states, with_waves_dir

from survey_warehouse.intake.matching import match_key
from survey_warehouse.orchestration import runner, runtime
from survey_warehouse.settings import pseudonym_key


def _address_corrected(tmp: Path) -> Path:
    spec = yaml.safe_load((ROOT / "config/waves/2019.yml").read_text(encoding="utf-8"))
    lines = (ROOT / spec["file"]).read_text(encoding="utf-8-sig").splitlines()
    email = lines[0].split(",").index("Email")
    row = lines[5].split(",")
    old = row[email]
    row[email] = "corrected." + old
    lines[5] = ",".join(row)
    corrected = tmp / "city_survey_2019_export.csv"
    corrected.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    waves = tmp / "waves"
    waves.mkdir()
    for year in (2016, 2018, 2019):
        data = yaml.safe_load((ROOT / f"config/waves/{year}.yml").read_text(encoding="utf-8"))
        data["file"] = str(corrected if year == 2019 else ROOT / data["file"])
        if year == 2019:
            digest = hashlib.sha256(f"{pseudonym_key()}|{match_key(old)}".encode()).hexdigest()
            data["accept_removals"] = [f"r-{digest[:8]}"]
        (waves / f"{year}.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return waves


def test_a_corrected_address_is_one_key_change_and_passes_the_marts_gate(pipeline_run: PipelineRun) -> None:
    paths = copy_state(pipeline_run, "key_change")
    paths = with_waves_dir(paths, _address_corrected(paths.var))
    runtime.setup(paths)

    code, _seconds, log = runner.run_wave(paths, 2019)

    assert code == 0, log.read_text(encoding="utf-8")[-3000:]
    assert task_states(paths, 2019)["validate_marts"] == "success"
    with duckdb.connect(str(paths.published), read_only=True) as con:
        kinds = con.execute(
            "select change_type, count(*) from marts.fct_answer_corrections where wave_year = 2019 group by 1"
        ).fetchall()
    assert kinds == [("key_changed", 1)], kinds
