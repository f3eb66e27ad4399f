"""Publishing: a reader holding the published file keeps a consistent view while a new one is swapped in."""

from __future__ import annotations

import duckdb
from conftest import PipelineRun, copy_state

from survey_warehouse.publishing.publish import publish_marts, read_publication
from survey_warehouse.raw.builds import begin_build
from survey_warehouse.warehouse import Warehouse


def test_readers_keep_their_view_and_new_readers_see_the_new_marts(pipeline_run: PipelineRun) -> None:
    paths = copy_state(pipeline_run, "publish")
    reader = duckdb.connect(str(paths.published), read_only=True)
    before = reader.execute(
        "select responsibility_label_en from marts.dim_responsibility where responsibility_code = 'it_management'"
    ).fetchone()[0]
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute(
            "update marts.dim_responsibility set responsibility_label_en = 'IT management (ICT)' "
            "where responsibility_code = 'it_management'"
        )

    build = begin_build(paths.warehouse, "test", 2019, None, "f" * 64)
    publication = publish_marts(Warehouse.duckdb(paths.warehouse), paths.published, build, run_id="test")

    still = reader.execute(
        "select responsibility_label_en from marts.dim_responsibility where responsibility_code = 'it_management'"
    ).fetchone()[0]
    reader.close()
    with duckdb.connect(str(paths.published), read_only=True) as fresh:
        after = fresh.execute(
            "select responsibility_label_en from marts.dim_responsibility where responsibility_code = 'it_management'"
        ).fetchone()[0]
        run_id = fresh.execute("select run_id from marts.publication").fetchone()[0]
    assert (before, still, after) == ("IT management", "IT management", "IT management (ICT)")
    assert run_id == "test" and publication.tables["fct_city_responsibility"] == 60
    assert [p.name for p in paths.published.parent.iterdir()] == [paths.published.name], "no temporary files left"
    read = read_publication(Warehouse.duckdb(paths.warehouse), paths.published)
    assert (read.run_id, read.build_fingerprint, read.load_ids) == ("test", "f" * 64, publication.load_ids)
    assert set(read.tables) >= {"dim_question", "fct_city_population", "fct_survey_answers"}, (
        "every mart dbt builds is published, new ones included"
    )
