"""The 2018 wave re-delivered as the other exports a survey tool makes (a legacy .xls, an OpenDocument .ods, an SPSS
.sav with value labels, each made here from the shipped workbook) publishes the same marts as the workbook: a run of
the wave through the DAG on a copy of the published state, and every mart's rows compared, leaving out only what
names the load (its id, file and time). No answer is corrected by the re-delivery."""

from __future__ import annotations

import shutil

import duckdb
import pytest
import yaml
from conftest import ROOT, PipelineRun, copy_state, with_waves_dir
from delivered_formats import as_ods, as_sav, as_xls

from survey_warehouse.intake.waves import WaveSpec
from survey_warehouse.orchestration import runner

# columns that name the load a mart's rows come from (its id, file and time), not the data
LOAD_COLUMNS = (
    "load_id",
    "source_file_name",
    "loaded_at",
    "corrected_by_load_id",
    "previous_load_id",
    "file_name",
    "file_sha256",
)
# the publication's own record: when and by which run, of which loads (its tables' row counts are compared)
PUBLICATION_COLUMNS = ("published_at", "run_id", "load_ids")


def _marts(published) -> dict[str, list[tuple]]:
    with duckdb.connect(str(published), read_only=True) as con:
        tables = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts' order by 1"
            ).fetchall()
        ]
        marts = {}
        for table in tables:
            columns = [
                r[0]
                for r in con.execute(
                    "select column_name from information_schema.columns where table_schema = 'marts' "
                    "and table_name = ? order by ordinal_position",
                    [table],
                ).fetchall()
                if r[0] not in LOAD_COLUMNS and r[0] not in PUBLICATION_COLUMNS
            ]
            select = ", ".join(f'"{c}"' for c in columns)
            marts[table] = sorted(con.execute(f"select {select} from marts.{table}").fetchall(), key=repr)
    return marts


@pytest.fixture(scope="module")
def shipped_marts(pipeline_run: PipelineRun) -> dict[str, list[tuple]]:
    return _marts(pipeline_run.paths.published)


@pytest.mark.parametrize("fmt", ["xls", "ods", "sav"])
def test_the_2018_wave_as_another_export_publishes_the_same_marts(
    pipeline_run: PipelineRun, shipped_marts, fmt: str
) -> None:
    state = copy_state(pipeline_run, f"formats_publish_{fmt}")
    waves = state.var / "waves"
    shutil.copytree(ROOT / "config" / "waves", waves)
    spec = WaveSpec.from_file(waves / "2018.yml", ROOT)
    delivered = state.var / "delivered" / f"kaupunkikysely_2018.{fmt}"
    delivered.parent.mkdir(parents=True)
    if fmt == "sav":
        as_sav(spec, delivered)
    else:
        {"xls": as_xls, "ods": as_ods}[fmt](spec, delivered)
    raw = yaml.safe_load((waves / "2018.yml").read_text(encoding="utf-8"))
    raw.update(file=str(delivered), format=fmt)
    if fmt == "sav":  # the spec names the variables by their labels, the workbook's headers
        del raw["sheet"], raw["header_row"]
    (waves / "2018.yml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    paths = with_waves_dir(state, waves)

    code, _seconds, log = runner.run_wave(paths, 2018)

    assert code == 0, log.read_text(encoding="utf-8")[-4000:]
    with duckdb.connect(str(paths.published), read_only=True) as con:
        source = con.execute("select source_file_name from marts.dim_year where wave_year = 2018").fetchone()[0]
    assert source == delivered.name, "the marts are made from the re-delivered file"
    assert _marts(paths.published) == shipped_marts
