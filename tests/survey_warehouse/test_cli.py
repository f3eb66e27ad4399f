"""The command line: its commands and arguments, its one-line errors, and the setup steps it skips when nothing
changed. (Running the DAG is tested end to end in tests/test_end_to_end.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import make_paths, use_paths

from survey_warehouse import cli
from survey_warehouse.orchestration import runtime


def test_an_unknown_command_or_year_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as unknown:
        cli.main(["publish-everything"])
    assert unknown.value.code == 2
    assert "invalid choice: 'publish-everything'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as not_a_year:
        cli.main(["run", "twenty-twenty"])
    assert not_a_year.value.code == 2
    assert "invalid int value: 'twenty-twenty'" in capsys.readouterr().err


def test_a_warehouse_error_is_one_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_paths("cli_no_waves")
    use_paths(monkeypatch, paths)
    monkeypatch.setenv("SURVEY_WAVES_DIR", str(tmp_path / "no_waves_here"))
    assert cli.main(["run"]) == 2
    err = capsys.readouterr().err
    assert err == f"survey-warehouse: no wave specs in {tmp_path / 'no_waves_here'}\n"


def test_summary_on_a_fresh_folder_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_paths("cli_summary")
    use_paths(monkeypatch, paths)
    assert cli.main(["summary"]) == 0
    out = capsys.readouterr().out
    assert f"Warehouse: DuckDB {paths.shown(paths.warehouse)}" in out
    assert "No warehouse there yet: run `make run`." in out


def test_a_setup_step_runs_again_only_when_its_inputs_change() -> None:
    paths = make_paths("cli_steps")
    stamp, product = paths.var / "step.stamp", paths.var / "product"
    runs: list[str] = []

    def step() -> None:
        runs.append("ran")
        product.write_text("made")

    runtime._step(paths, "example", step, None, stamp, "inputs v1", product)
    runtime._step(paths, "example", step, None, stamp, "inputs v1", product)
    assert runs == ["ran"]
    runtime._step(paths, "example", step, None, stamp, "inputs v2", product)
    assert len(runs) == 2
    product.unlink()
    runtime._step(paths, "example", step, None, stamp, "inputs v2", product)  # its product went missing
    assert len(runs) == 3


def test_a_failed_setup_step_names_its_log(tmp_path: Path) -> None:
    paths = make_paths("cli_failed_step")

    def broken() -> None:
        os.write(1, b"migration 42 failed: disk full\n")  # what the step writes to its standard output
        raise OSError("disk full")

    with pytest.raises(
        runtime.SurveyWarehouseError, match=r"setup failed at 'example' \(disk full\); see .*example.log"
    ):
        runtime._step(paths, "example", broken, None, tmp_path / "stamp", "inputs", tmp_path / "product")
    assert "migration 42 failed: disk full" in (paths.var / "logs" / "setup_example.log").read_text()
    assert not (tmp_path / "stamp").exists()  # so the next run tries again
    with pytest.raises(runtime.SurveyWarehouseError, match="setup failed at 'a command'"):
        runtime._step(paths, "a command", ["false"], None, tmp_path / "stamp", "inputs", tmp_path / "product")


def test_the_runtime_environment_keeps_everything_in_the_var_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = make_paths("cli_env", fresh=False)
    monkeypatch.delenv("SURVEY_DBT_TARGET", raising=False)
    env = runtime.runtime_env(paths)
    assert env["AIRFLOW_HOME"] == str(paths.var / "airflow")
    assert env["TMPDIR"] == str(paths.var / "tmp")
    assert env["SURVEY_WAREHOUSE_PATH"] == str(paths.warehouse)
    assert env["DBT_SEND_ANONYMOUS_USAGE_STATS"] == "False"
    assert "DBT_PG_PASSWORD" not in env
    monkeypatch.setenv("SURVEY_DBT_TARGET", "postgres")
    monkeypatch.setenv("AIRFLOW_CONN_SURVEY_WAREHOUSE", "postgresql://loader:s3cret@db:5432/survey")
    env = runtime.runtime_env(paths)
    assert (env["DBT_PG_HOST"], env["DBT_PG_USER"], env["DBT_PG_PASSWORD"], env["DBT_PG_DBNAME"]) == (
        "db",
        "loader",
        "s3cret",
        "survey",
    )


def test_the_manifest_is_parsed_again_for_a_project_change_not_for_a_seed_row(tmp_path: Path) -> None:
    """A new row in a seed (a new wave's codebook rows) keeps the manifest; a model, a seed's header, a new seed or a
    macro changes it."""
    import shutil
    from dataclasses import replace

    project = tmp_path / "dbt_project"
    shutil.copytree(make_paths("manifest_inputs").dbt_project, project, ignore=shutil.ignore_patterns("target", "logs"))
    paths = replace(make_paths("manifest_inputs"), dbt_project=project)
    before = runtime.manifest_inputs(paths)
    seed = project / "seeds" / "codebook_answers.csv"
    header, *rows = seed.read_text(encoding="utf-8").splitlines()
    seed.write_text("\n".join([header, *rows, rows[0]]) + "\n", encoding="utf-8")
    assert runtime.manifest_inputs(paths) == before, "a seed row is not a project change"

    changes = [
        (seed, "\n".join([header + ",note", *rows]) + "\n"),
        (project / "seeds" / "new_lookup.csv", "code,label\na,A\n"),
        (project / "models" / "marts" / "dim_year.sql", "-- a comment\n"),
        (project / "macros" / "usable_survey_cells.sql", "\n"),
    ]
    seen = {before}
    for path, text in changes:
        appended = path.read_text(encoding="utf-8") + text if path.suffix == ".sql" else text
        path.write_text(appended, encoding="utf-8")
        now = runtime.manifest_inputs(paths)
        assert now not in seen, path
        seen.add(now)


@pytest.mark.slow  # two dbt parses
def test_the_build_keeps_the_parse_that_setup_made(tmp_path: Path) -> None:
    """Cosmos runs `dbt build` with `--profile` and `--target`, on a copy of the project with setup's
    target/partial_parse.msgpack: dbt keeps that parse only when it was made with the same arguments, and else
    parses the whole project again in every build, saying "Unable to do partial parsing because config vars,
    config profile, or config target have changed"."""
    import shutil
    import subprocess
    from dataclasses import replace

    from survey_warehouse.settings import DBT_PROFILE

    project = tmp_path / "dbt_project"
    shutil.copytree(make_paths("manifest_reuse").dbt_project, project, ignore=shutil.ignore_patterns("target", "logs"))
    paths = replace(make_paths("manifest_reuse"), dbt_project=project)
    runtime.ensure_manifest(paths)

    def parse(*arguments: str) -> str:
        done = subprocess.run(
            [runtime._bin("dbt"), "parse", "--project-dir", str(project), "--profiles-dir", str(project), *arguments],
            env=runtime.runtime_env(paths),
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout + done.stderr

    as_cosmos = parse("--profile", DBT_PROFILE, "--target", "duckdb")
    assert "Unable to do partial parsing" not in as_cosmos, as_cosmos
