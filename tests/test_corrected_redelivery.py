"""A corrected file for a wave that is already loaded supersedes the old load; both stay; marts follow."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import yaml
from conftest import ROOT, PipelineRun, copy_state, with_waves_dir

from survey_warehouse import cli
from survey_warehouse.codebook import Codebook
from survey_warehouse.matching import match_key
from survey_warehouse.settings import pseudonym_key

LEAD = "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?"


def _corrected_2019(tmp: Path) -> tuple[Path, str]:
    """Helsinki's key respondent corrects their answer; one other respondent's answers are withdrawn."""
    spec = yaml.safe_load((ROOT / "config/waves/2019.yml").read_text(encoding="utf-8"))
    lines = (ROOT / spec["file"]).read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split(",")
    col = {name: header.index(name) for name in ("Organisaatio", "Asema", LEAD, "Email")}
    rows = [line.split(",") for line in lines[1:]]
    codebook = Codebook.from_seeds(ROOT / "dbt_project" / "seeds")
    key_roles = {
        a.label_key
        for a in codebook.answers
        if a.wave_year == 2019 and a.question_id == "respondent_role" and a.answer_code in codebook.key_roles
    }

    def city(row: list[str]) -> str | None:
        return codebook.city_aliases.get(match_key(row[col["Organisaatio"]]))

    helsinki_cio = next(r for r in rows if city(r) == "091" and match_key(r[col["Asema"]]) in key_roles)
    assert helsinki_cio[col[LEAD]] == "Digijohtaja (CDO)"
    helsinki_cio[col[LEAD]] = "Tietohallinto"
    withdrawn = next(r for r in rows if match_key(r[col["Asema"]]) not in key_roles)
    rows.remove(withdrawn)
    # a withdrawal is accepted explicitly, by the respondent's reference (the removal guard prints it)
    reference = (
        "r-" + hashlib.sha256(f"{pseudonym_key()}|{match_key(withdrawn[col['Email']])}".encode()).hexdigest()[:8]
    )
    corrected = tmp / "city_survey_2019_export_corrected.csv"
    corrected.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n", encoding="utf-8-sig")
    waves = tmp / "waves"
    waves.mkdir()
    for year in (2016, 2018, 2019):
        data = yaml.safe_load((ROOT / f"config/waves/{year}.yml").read_text(encoding="utf-8"))
        data["file"] = str(corrected if year == 2019 else ROOT / data["file"])
        if year == 2019:
            data["accept_removals"] = [reference]
        (waves / f"{year}.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return waves, withdrawn[col["Organisaatio"]]


def test_a_corrected_file_supersedes_the_load_and_the_change_can_be_queried(pipeline_run: PipelineRun) -> None:
    paths = copy_state(pipeline_run, "corrected")
    waves, _withdrawn_city = _corrected_2019(paths.var)
    paths = with_waves_dir(paths, waves)
    cli.setup(paths)

    code, _seconds, log = cli.run_wave(paths, 2019)

    assert code == 0, log.read_text()[-3000:]
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        loads = con.execute(
            "select status, is_current, row_count from raw.load_registry where wave_year = 2019 order by loaded_at"
        ).fetchall()
        kept = con.execute(
            "select count(distinct k.load_id) from raw.survey_cells c join raw.survey_columns k using (column_id) "
            "where k.wave_year = 2019"
        ).fetchone()
    assert [(s, c) for s, c, _n in loads] == [("superseded", False), ("passed", True)]
    assert loads[0][2] - loads[1][2] == 1 and kept == (2,), "both loads stay in raw"
    with duckdb.connect(str(paths.published), read_only=True) as con:
        helsinki = con.execute(
            "select responsibility_code from marts.fct_city_responsibility "
            "where wave_year = 2019 and municipality_code = '091'"
        ).fetchone()[0]
        changes = con.execute(
            "select municipality_code, question_id, change_type, previous_answer_code, "
            "current_answer_code, is_accepted_removal from marts.fct_answer_corrections "
            "order by 3, 1, 2"
        ).fetchall()
        it_led = con.execute(
            "select cities from marts.fct_responsibility_shares where wave_year = 2019 and is_it_management"
        ).fetchone()[0]
    assert helsinki == "it_management", "the marts follow the correction"
    assert it_led == 8
    changed = [c for c in changes if c[2] == "changed"]
    assert all(c[2] != "removed" or c[5] for c in changes), "the withdrawal is marked as accepted"
    removed = [c for c in changes if c[2] == "removed"]
    assert changed == [("091", "lead", "changed", "chief_digital_officer", "it_management", False)]
    assert len(removed) == 4 and len({c[0] for c in removed}) == 1, "all answers of the withdrawn respondent"
    assert not [c for c in changes if c[2] == "added"]
