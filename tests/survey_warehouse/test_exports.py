"""Exports of the published marts (Parquet, CSV, manifest), on a small published file made here: no pipeline run."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import duckdb
import pytest
from conftest import make_paths

from survey_warehouse import exports
from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.settings import Paths
from survey_warehouse.warehouse import Warehouse

CITIES = [("091", 'Helsinki, "pääkaupunki"\nUusimaa', 1), ("049", "Espoo", None), ("837", "Tampere", 3)]


def _utc(*when: int) -> dt.datetime:
    """A time as the publication record holds it: UTC, without a time zone."""
    return dt.datetime(*when, tzinfo=dt.UTC).replace(tzinfo=None)


def _publish(paths: Paths, published_at: dt.datetime, share: float = 0.35) -> None:
    """A published file shaped as publish.publish_marts writes it: marts, publication record, source loads."""
    paths.published.parent.mkdir(parents=True, exist_ok=True)
    tmp = paths.published.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with duckdb.connect(str(tmp)) as con:
        con.execute("create schema marts")
        con.execute("create table marts.dim_city (municipality_code varchar, city_name varchar, rank integer)")
        con.executemany("insert into marts.dim_city values (?, ?, ?)", CITIES)
        con.execute(
            "create table marts.fct_responsibility_shares as select 2019 as wave_year, "
            f"'it_management' as responsibility_code, true as is_it_management, {share}::double as share"
        )
        con.execute(
            "create table marts.publication (published_at timestamp, run_id varchar, load_ids varchar[], "
            "tables json, build_fingerprint varchar)"
        )
        con.execute(
            "insert into marts.publication values (?, 'run-1', ['2019-a'], ?, 'f')",
            [published_at, json.dumps({"dim_city": 3, "fct_responsibility_shares": 1})],
        )
        con.execute(
            "create table marts.source_loads as select '2019-a' as load_id, 2019 as wave_year, "
            "'city_survey_2019_export.csv' as file_name, 'ab' as file_sha256, "
            "timestamp '2019-05-01 10:00:00' as loaded_at"
        )
    os.replace(tmp, paths.published)


def _listing(paths: Paths) -> dict[str, float]:
    root = exports.exports_dir(paths)
    return {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in root.rglob("*")} if root.exists() else {}


@pytest.fixture
def paths() -> Paths:
    return make_paths("exports_unit")


def test_every_mart_as_parquet_and_csv_with_a_manifest(paths: Paths) -> None:
    published_at = _utc(2019, 6, 1, 6, 15, 12, 345678)
    _publish(paths, published_at)

    export = exports.export_marts(paths, Warehouse.duckdb(paths.warehouse))

    assert export.created and export.folder.name == "2019-06-01T061512Z"
    latest = exports.exports_dir(paths) / "latest"
    assert latest.is_symlink() and os.readlink(latest) == "2019-06-01T061512Z", "a relative link: copies keep it"
    names = {p.name for p in export.folder.iterdir()}
    assert names == {
        "dim_city.parquet",
        "dim_city.csv",
        "fct_responsibility_shares.parquet",
        "fct_responsibility_shares.csv",
        "manifest.json",
    }, "the marts only: no publication record or loads table as data files"
    with duckdb.connect() as con:
        parquet = con.execute(f"select * from '{export.folder / 'dim_city.parquet'}' order by 1").fetchall()
        csv = con.execute(
            f"select * from read_csv('{export.folder / 'dim_city.csv'}', header = true, "
            "columns = {'municipality_code': 'varchar', 'city_name': 'varchar', 'rank': 'integer'}) order by 1"
        ).fetchall()
        share = con.execute(f"select share from '{export.folder / 'fct_responsibility_shares.csv'}'").fetchall()
    assert parquet == csv == sorted(CITIES), "commas, quotes, line breaks, ä and nulls survive both formats"
    assert share == [(0.35,)]
    manifest = json.loads((export.folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["publication"]["published_at"] == published_at.isoformat()
    assert manifest["publication"]["run_id"] == "run-1"
    assert [load["load_id"] for load in manifest["loads"]] == ["2019-a"]
    assert manifest["loads"][0]["file_name"] == "city_survey_2019_export.csv"
    city = next(t for t in manifest["tables"] if t["table"] == "dim_city")
    assert city["rows"] == 3
    assert city["columns"] == [
        {"name": "municipality_code", "type": "VARCHAR"},
        {"name": "city_name", "type": "VARCHAR"},
        {"name": "rank", "type": "INTEGER"},
    ]
    assert exports.is_exported(paths, published_at)
    assert not exports.is_exported(paths, published_at + dt.timedelta(seconds=1))


def test_a_publication_is_exported_once_and_latest_follows_the_newest(paths: Paths) -> None:
    first = _utc(2019, 6, 1, 6, 0, 0)
    _publish(paths, first)
    exports.export_marts(paths, Warehouse.duckdb(paths.warehouse))
    before = _listing(paths)

    again = exports.export_marts(paths, Warehouse.duckdb(paths.warehouse))

    assert not again.created and again.tables == {"dim_city": 3, "fct_responsibility_shares": 1}
    assert {k: v for k, v in _listing(paths).items() if k != "latest"} == {
        k: v for k, v in before.items() if k != "latest"
    }, "nothing rewritten"

    _publish(paths, first + dt.timedelta(days=1), share=0.5)
    newer = exports.export_marts(paths, Warehouse.duckdb(paths.warehouse))

    assert newer.created and newer.folder.name == "2019-06-02T060000Z"
    assert os.readlink(exports.exports_dir(paths) / "latest") == newer.folder.name
    assert (exports.exports_dir(paths) / "2019-06-01T060000Z" / "manifest.json").exists(), "older exports stay"
    with duckdb.connect() as con:
        assert con.execute(f"select share from '{newer.folder / 'fct_responsibility_shares.parquet'}'").fetchall() == [
            (0.5,)
        ]


def test_a_failed_export_leaves_nothing(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    _publish(paths, _utc(2019, 6, 1, 6, 0, 0))
    exports.export_marts(paths, Warehouse.duckdb(paths.warehouse))
    before = _listing(paths)
    _publish(paths, _utc(2019, 6, 2, 6, 0, 0))
    write = exports._write

    def fail_midway(snapshot, folder: Path) -> dict[str, int]:
        write(snapshot, folder)  # every file written, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exports, "_write", fail_midway)

    with pytest.raises(OSError, match="No space left"):
        exports.export_marts(paths, Warehouse.duckdb(paths.warehouse))

    assert _listing(paths) == before, "no partial folder, and latest still points at the complete export"


def test_nothing_published_is_a_clear_error(paths: Paths) -> None:
    with pytest.raises(SurveyWarehouseError, match=r"nothing to export: the published marts .* do not exist yet"):
        exports.export_marts(paths, Warehouse.duckdb(paths.warehouse))
    assert exports.latest_export(paths) is None


def test_an_exports_folder_copied_with_its_links_followed_still_exports(paths: Paths, tmp_path: Path) -> None:
    import shutil

    _publish(paths, _utc(2019, 6, 1, 6, 0, 0))
    exports.export_marts(paths, Warehouse.duckdb(paths.warehouse))
    root = exports.exports_dir(paths)
    copy = tmp_path / "exports"
    shutil.copytree(root, copy)  # follows the `latest` link: a folder now, not a link
    shutil.rmtree(root)
    shutil.copytree(copy, root)
    assert (root / "latest").is_dir() and not (root / "latest").is_symlink()

    _publish(paths, _utc(2019, 6, 2, 6, 0, 0), share=0.5)
    newer = exports.export_marts(paths, Warehouse.duckdb(paths.warehouse))

    assert os.readlink(root / "latest") == newer.folder.name
    assert sorted(p.name for p in root.iterdir()) == ["2019-06-01T060000Z", "2019-06-02T060000Z", "latest"]
