"""A re-delivery may not lose what the wave's current load has: a partial file is stopped at the raw gate with
the list of what would disappear; a genuine withdrawal passes when the wave spec accepts it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
from conftest import (
    ROOT,
    PipelineRun,
    copy_state,
    current_loads,
    file_sha256_of,
    latest_load,
    lines_2019,
    waves_with_file,
    with_waves_dir,
)

from survey_warehouse import cli
from survey_warehouse.codebook import Codebook
from survey_warehouse.matching import match_key
from survey_warehouse.settings import pseudonym_key


def _without_rows(tmp: Path, keep: int, name: str) -> Path:
    lines = lines_2019()
    partial = tmp / name
    partial.write_text("\n".join(lines[:keep]) + "\n", encoding="utf-8-sig")
    return partial


def test_a_partial_re_delivery_never_replaces_a_good_wave(pipeline_run: PipelineRun) -> None:
    """A copy of the 2019 export that lost its last third loads cleanly row by row; the raw gate sees that it
    would drop respondents and cities the current load has, and says which."""
    paths = copy_state(pipeline_run, "partial")
    lines = lines_2019()
    partial = _without_rows(paths.var, 40, "city_survey_2019_export_partial.csv")
    paths = with_waves_dir(paths, waves_with_file(paths.var, 2019, partial))
    cli.setup(paths)
    published_sha, current_before = file_sha256_of(paths.published), current_loads(paths)

    code, _seconds, log = cli.run_wave(paths, 2019)

    assert code != 0, log.read_text()[-3000:]
    assert file_sha256_of(paths.published) == published_sha and current_loads(paths) == current_before
    status, message = latest_load(paths, 2019)
    assert status == "failed"
    assert "raw_load: expect_column_values_to_be_between on column 'respondents_removed'" in message
    assert f"this load would drop {len(lines) - 40} of the {len(lines) - 1} respondents" in message
    assert "respondent r-" in message and "accept_removals" in message


def test_a_genuine_withdrawal_is_accepted_when_the_spec_says_so(pipeline_run: PipelineRun) -> None:
    """The removal guard's override: the withdrawn respondent is listed in accept_removals; the load passes, and
    fct_answer_corrections marks the removal as accepted."""
    paths = copy_state(pipeline_run, "withdrawal")
    lines = lines_2019()
    header = lines[0].split(",")
    codebook = Codebook.from_seeds(ROOT / "dbt_project" / "seeds")
    key_roles = {
        match_key(a.source_label)
        for a in codebook.answers
        if a.wave_year == 2019 and a.question_id == "respondent_role" and a.answer_code in codebook.key_roles
    }
    withdrawn = next(
        i
        for i, line in enumerate(lines[1:], start=1)
        if match_key(line.split(",")[header.index("Asema")]) not in key_roles
    )
    email = lines[withdrawn].split(",")[header.index("Email")]
    kept = lines[:withdrawn] + lines[withdrawn + 1 :]
    corrected = paths.var / "city_survey_2019_export_withdrawn.csv"
    corrected.write_text("\n".join(kept) + "\n", encoding="utf-8-sig")
    reference = "r-" + hashlib.sha256(f"{pseudonym_key()}|{match_key(email)}".encode()).hexdigest()[:8]
    paths = with_waves_dir(paths, waves_with_file(paths.var, 2019, corrected, accept_removals=[reference]))
    cli.setup(paths)

    code, _seconds, log = cli.run_wave(paths, 2019)

    assert code == 0, log.read_text()[-3000:]
    with duckdb.connect(str(paths.published), read_only=True) as con:
        removed = con.execute(
            "select distinct change_type, is_accepted_removal from marts.fct_answer_corrections"
        ).fetchall()
    assert removed == [("removed", True)]
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        accepted = con.execute(
            "select accepted_removals from raw.load_registry where wave_year = 2019 and is_current"
        ).fetchone()[0]
    assert accepted == reference
