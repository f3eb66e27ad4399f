"""dbt: the build with its data tests and unit tests passes, and the marts' contracts are enforced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import ROOT, PipelineRun, copy_state

from survey_warehouse.orchestration import runtime


def _dbt(paths, args: list[str], project: Path, name: str) -> tuple[int, str]:
    log = paths.var / f"{name}.log"
    code = runtime._run(
        [
            runtime._bin("dbt"),
            *args,
            "--profiles-dir",
            str(project),
            "--project-dir",
            str(project),
            "--target-path",
            str(paths.var / "target"),
        ],
        runtime.runtime_env(paths),
        log,
        project,
    )
    return code, log.read_text()


def test_dbt_build_passes_with_data_tests_and_unit_tests(pipeline_run: PipelineRun) -> None:
    paths = copy_state(pipeline_run, "dbt_build")
    code, output = _dbt(paths, ["build"], paths.dbt_project, "dbt_build")
    assert code == 0, output[-3000:]
    results = json.loads((paths.var / "target" / "run_results.json").read_text())["results"]
    kinds = {}
    for r in results:
        kind = r["unique_id"].split(".")[0]
        kinds.setdefault(kind, []).append(r["status"])
    assert len(kinds["unit_test"]) >= 4 and set(kinds["unit_test"]) == {"pass"}
    assert len(kinds["test"]) >= 40 and set(kinds["test"]) == {"pass"}
    assert set(kinds["model"]) == {"success"}


def test_every_mart_has_an_enforced_contract_and_described_columns(manifest: Path) -> None:
    nodes = json.loads(manifest.read_text())["nodes"].values()
    marts = [n for n in nodes if n["resource_type"] == "model" and n["fqn"][1] == "marts"]
    assert {n["name"] for n in marts} >= {
        "dim_city",
        "dim_year",
        "dim_responsibility",
        "fct_city_responsibility",
        "fct_survey_answers",
        "fct_responsibility_shares",
    }
    for node in marts:
        assert node["config"]["contract"]["enforced"], node["name"]
        assert node["description"], node["name"]
        for column in node["columns"].values():
            assert column["data_type"] and column["description"], f"{node['name']}.{column['name']}"


def test_a_mart_that_breaks_its_contract_fails_the_build(pipeline_run: PipelineRun) -> None:
    paths = copy_state(pipeline_run, "dbt_contract")
    project = paths.var / "dbt_project"
    shutil.copytree(ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "marts" / "fct_responsibility_shares.sql"
    sql = model.read_text()
    assert "cast(shares.cities as integer) as cities" in sql
    model.write_text(
        sql.replace("cast(shares.cities as integer) as cities", "cast(shares.cities as varchar) as cities")
    )
    code, output = _dbt(paths, ["run", "--select", "fct_responsibility_shares"], project, "dbt_contract")
    assert code != 0
    assert "contract" in output.lower() and "cities" in output


def test_dbt_docs_generate_builds_the_catalogue(pipeline_run: PipelineRun) -> None:
    paths = copy_state(pipeline_run, "dbt_docs")
    code, output = _dbt(paths, ["docs", "generate"], paths.dbt_project, "dbt_docs")
    assert code == 0, output[-3000:]
    catalog = json.loads((paths.var / "target" / "catalog.json").read_text())
    marts = {n["metadata"]["name"] for n in catalog["nodes"].values() if n["metadata"]["schema"] == "marts"}
    assert {"dim_city", "fct_city_responsibility", "fct_responsibility_shares"} <= marts
    assert (paths.var / "target" / "index.html").exists()
