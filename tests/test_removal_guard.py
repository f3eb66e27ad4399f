"""A re-delivery may not lose what the wave's current load has: a partial file is stopped at the raw gate with
the list of what would disappear. (A genuine withdrawal passes when the wave spec accepts it:
test_corrected_redelivery.py.)"""

from __future__ import annotations

from pathlib import Path

from conftest import (
    PipelineRun,
    copy_state,
    current_loads,
    file_sha256_of,
    latest_load,
    lines_2019,
    waves_with_file,
    with_waves_dir,
)

from survey_warehouse.orchestration import runner, runtime


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
    runtime.setup(paths)
    published_sha, current_before = file_sha256_of(paths.published), current_loads(paths)

    code, _seconds, log = runner.run_wave(paths, 2019)

    assert code != 0, log.read_text()[-3000:]
    assert file_sha256_of(paths.published) == published_sha and current_loads(paths) == current_before
    status, message = latest_load(paths, 2019)
    assert status == "failed"
    assert "raw_load: expect_column_values_to_be_between on column 'respondents_removed'" in message
    assert f"this load would drop {len(lines) - 40} of the {len(lines) - 1} respondents" in message
    assert "respondent r-" in message and "accept_removals" in message
