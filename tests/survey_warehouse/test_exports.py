"""Exports of the published marts (Parquet, CSV, manifest), on a small published file made here: no pipeline run."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import duckdb
import pytest
from conftest import make_paths

from survey_warehouse.errors import SurveyWarehouseError
from survey_warehouse.publishing import exports
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


# ---- retention and durability ----------------------------------------------------------------------------------


def _export_days(paths: Paths, days: range) -> list[exports.Export]:
    done = []
    for day in days:
        _publish(paths, _utc(2019, 6, day, 6, 0, 0), share=day / 100)
        done.append(exports.export_marts(paths, Warehouse.duckdb(paths.warehouse)))
    return done


def test_only_the_newest_exports_are_kept(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """SURVEY_EXPORTS_KEEP=2: after five publications, the exports of the last two stay, latest at the newest; what
    else the folder holds (a note of the user's, a folder that is no export) is left alone."""
    monkeypatch.setenv("SURVEY_EXPORTS_KEEP", "2")
    root = exports.exports_dir(paths)
    root.mkdir(parents=True)
    (root / "README.txt").write_text("ours")
    (root / "2018-01-01T000000Z-copy").mkdir()  # not an export: no manifest

    done = _export_days(paths, range(1, 6))

    assert sorted(p.name for p in root.iterdir()) == [
        "2018-01-01T000000Z-copy",
        "2019-06-04T060000Z",
        "2019-06-05T060000Z",
        "README.txt",
        "latest",
    ]
    assert os.readlink(root / "latest") == done[-1].folder.name
    assert exports.latest_export(paths)["publication"]["published_at"] == done[-1].published_at.isoformat()


def test_the_default_keeps_ten_exports_and_a_bad_setting_is_named(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SURVEY_EXPORTS_KEEP", raising=False)
    _export_days(paths, range(1, 13))
    kept = sorted(p.name for p in exports.exports_dir(paths).iterdir() if p.name != "latest")
    assert kept == [f"2019-06-{day:02d}T060000Z" for day in range(3, 13)]

    for bad in ("0", "ten", "-1"):
        monkeypatch.setenv("SURVEY_EXPORTS_KEEP", bad)
        with pytest.raises(SurveyWarehouseError, match="SURVEY_EXPORTS_KEEP must be a whole number of at least 1"):
            exports.exports_to_keep()


def _dead_pid() -> int:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(done.stdout)


def test_temporaries_left_by_killed_exports_are_removed(paths: Paths) -> None:
    """An export killed while writing leaves `.<folder>.<pid>@<host>.tmp` (and perhaps `.latest.<pid>@<host>.tmp`);
    the next export removes those of processes that are gone, never one that is still writing."""
    import socket
    import subprocess
    import sys

    root = exports.exports_dir(paths)
    root.mkdir(parents=True)
    host = socket.gethostname()
    dead = _dead_pid()
    left = [
        root / f".2019-05-01T060000Z.{dead}@{host}.tmp",
        root / f".2019-05-02T060000Z.{dead}.tmp",  # as earlier versions named them
    ]
    for folder in left:
        folder.mkdir()
        (folder / "dim_city.parquet").write_bytes(b"half")
    link = root / f".latest.{dead}@{host}.tmp"
    link.symlink_to("2019-05-01T060000Z")
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = root / f".2019-05-03T060000Z.{writer.pid}@{host}.tmp"
        busy.mkdir()

        _export_days(paths, range(1, 2))

        assert not [p for p in [*left, link] if p.exists() or p.is_symlink()], "a dead export's temporaries stay"
        assert busy.is_dir(), "the temporary folder of an export still running was removed"
    finally:
        writer.kill()
        writer.wait()


def test_an_export_is_on_disk_before_latest_points_at_it(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file of the export, its folder and the exports folder are fsynced before `latest` is switched (and the
    exports folder after), so a power loss never leaves `latest` pointing at empty or missing files."""
    _export_days(paths, range(1, 2))
    root = exports.exports_dir(paths)
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst, **kwargs) -> None:
        real_replace(src, dst, **kwargs)
        events.append(("replace", str(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)

    [export] = _export_days(paths, range(2, 3))

    switched = events.index(("replace", str(root / "latest")))
    before = [path for kind, path in events[:switched] if kind == "fsync"]
    written = {p.name for p in export.folder.iterdir()}
    assert written == {
        "dim_city.parquet",
        "dim_city.csv",
        "fct_responsibility_shares.parquet",
        "fct_responsibility_shares.csv",
        "manifest.json",
    }
    temporary = f".{export.folder.name}."
    files = [i for i, p in enumerate(before) if Path(p).parent.name.startswith(temporary)]
    assert {Path(before[i]).name for i in files} == written, "a file of the export was not fsynced before the switch"
    folder = [i for i, p in enumerate(before) if Path(p).name.startswith(temporary)]
    assert folder and folder[-1] > max(files), "the export's folder was not fsynced after its files"
    assert str(root) in before[folder[-1] :], "the exports folder was not fsynced after the export was renamed in"
    assert str(root) in [path for kind, path in events[switched:] if kind == "fsync"], "nor after latest was switched"
