"""A seed edited and then restored between runs: every run succeeds, and nothing a later run reads keeps a path of
an earlier run's temporary copy of the dbt project.

Cosmos runs the build in a temporary copy of the dbt project (under var/tmp) that it deletes afterwards. The parse dbt
makes there names the copy's files; kept in a cache that the next build reads, it sent that build to a folder that
was gone (`var/tmp/tmp.../seeds/city_aliases.csv`) after a seed had changed. The project is copied (as a user's
checkout), the main job's warehouse with it, and the DAG runs for 2019 through Airflow: as it is, with an alias added
to seeds/city_aliases.csv, with the seed restored, and with a new delivery of the wave (a build in which the seed did
not change)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ROOT, PipelineRun, copy_state, task_states

from survey_warehouse.orchestration import runner, runtime
from survey_warehouse.settings import Paths

ALIASES = Path("dbt_project") / "seeds" / "city_aliases.csv"


def _project_copy(run: PipelineRun) -> Paths:
    state = copy_state(run, "cosmos_cache")
    root = state.var / "project"
    shutil.copytree(
        ROOT,
        root,
        ignore=shutil.ignore_patterns(".git", ".venv", ".tools", "var", "target", "logs", "__pycache__", "bi"),
    )
    return Paths(
        root=root,
        var=state.var,
        waves_config=root / "config" / "waves",
        warehouse=state.warehouse,
        published=state.published,
        data_docs=state.data_docs,
        dbt_project=root / "dbt_project",
    )


def _paths_of_temporary_folders(paths: Paths) -> list[str]:
    """Files under the folders that outlive a run (the Cosmos cache, the project's target) that name var/tmp."""
    temporary = str(paths.var / "tmp").encode()
    found = []
    for folder in (paths.var / "cosmos_cache", paths.dbt_project / "target"):
        for file in folder.rglob("*") if folder.exists() else []:
            if file.is_file() and temporary in file.read_bytes():
                found.append(str(file.relative_to(paths.var)))
    return found


def _run_2019(paths: Paths, what: str) -> None:
    code, _seconds, log = runner.run_wave(paths, 2019)
    assert code == 0, f"{what}: the run failed\n" + log.read_text()[-4000:]
    states = task_states(paths, 2019)
    assert not {"failed", "upstream_failed"} & set(states.values()), (what, states)
    assert not _paths_of_temporary_folders(paths), (what, _paths_of_temporary_folders(paths))


@pytest.mark.slow
def test_runs_after_a_seed_is_edited_and_restored_succeed_and_no_cache_names_a_temporary_folder(
    pipeline_run: PipelineRun,
) -> None:
    paths = _project_copy(pipeline_run)
    runtime.setup(paths)
    seed = paths.root / ALIASES
    original = seed.read_bytes()
    _run_2019(paths, "first run")
    seed.write_bytes(original + b"helsingin kaupunginkanslia,091,organisation_fi\n")
    _run_2019(paths, "the seed edited")
    seed.write_bytes(original)
    _run_2019(paths, "the seed restored")
    # a new delivery: a build in which that seed has not changed since the last one
    delivery = paths.root / "data" / "waves" / "2019" / "city_survey_2019_export.csv"
    text = delivery.read_text(encoding="utf-8-sig")
    delivery.write_text(text.replace("Kaikki ovat vastuussa", "Kaikki ovat yhdessä vastuussa", 1), encoding="utf-8-sig")
    _run_2019(paths, "a new delivery after the seed was restored")
