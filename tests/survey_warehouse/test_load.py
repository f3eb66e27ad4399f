"""The raw loader: each wave's file shape, the load registry, idempotency, and clear errors for bad files."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import duckdb
import openpyxl
import pytest

from conftest import make_paths
from survey_warehouse.load import WaveFileError, load_wave, mark_load, read_rows
from survey_warehouse.waves import REQUIRED_FIELDS, find_wave_spec, list_wave_years


@pytest.fixture()
def paths():
    return make_paths("load")


def _data_rows(spec) -> int:
    """Rows below the header, counted without the loader."""
    if spec.format == "xlsx":
        ws = openpyxl.load_workbook(spec.file, read_only=True)[spec.sheet]
        return sum(1 for row in ws.iter_rows(min_row=spec.header_row + 1, values_only=True) if any(row))
    with open(spec.file, encoding=spec.encoding, newline="") as f:
        return sum(1 for _ in csv.reader(f, delimiter=spec.delimiter)) - spec.header_row


def test_configured_waves(paths) -> None:
    assert list_wave_years(paths) == [2016, 2018, 2019]
    assert find_wave_spec(2017, paths) is None
    formats = {y: (find_wave_spec(y, paths).format, find_wave_spec(y, paths).encoding) for y in (2016, 2018, 2019)}
    assert formats == {2016: ("csv", "cp1252"), 2018: ("xlsx", "utf-8"), 2019: ("csv", "utf-8-sig")}


@pytest.mark.parametrize("year", [2016, 2018, 2019])
def test_each_wave_is_read_as_its_spec_says(paths, year: int) -> None:
    spec = find_wave_spec(year, paths)
    header, rows = read_rows(spec)
    rows = list(rows)
    assert set(spec.columns) <= set(header)
    assert len(rows) == _data_rows(spec)
    assert rows[0][0] == spec.header_row + 1
    city = header.index(next(h for h, f in spec.columns.items() if f == "city"))
    assert all(cells[city] for _n, cells in rows)
    assert not any(h.startswith("\ufeff") for h in header), "the BOM must not stick to the first header"


def test_load_registry_and_unchanged_file_is_a_noop(paths) -> None:
    spec = find_wave_spec(2016, paths)
    first = load_wave(spec, paths.warehouse)
    mark_load(paths.warehouse, first.load_id, passed=True, message="ok")
    again = load_wave(spec, paths.warehouse)
    assert not first.unchanged and again.unchanged and again.load_id == first.load_id
    assert "unchanged" in again.describe()
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        registry = con.execute("select wave_year, file_name, length(file_sha256), row_count, status, is_current "
                               "from raw.load_registry").fetchall()
        cells = con.execute("select count(*), count(distinct source_row_number) from raw.survey_cells").fetchone()
    assert registry == [(2016, spec.file.name, 64, _data_rows(spec), "passed", True)]
    header, _ = read_rows(spec)
    assert cells == (_data_rows(spec) * len(header), _data_rows(spec))


def test_a_corrected_file_supersedes_only_its_own_wave_and_both_stay(paths, tmp_path: Path) -> None:
    w16, w19 = find_wave_spec(2016, paths), find_wave_spec(2019, paths)
    for spec in (w16, w19):
        mark_load(paths.warehouse, load_wave(spec, paths.warehouse).load_id, passed=True, message="ok")
    lines = w19.file.read_text(encoding="utf-8-sig").splitlines()
    shorter = tmp_path / "corrected.csv"
    shorter.write_text("\n".join(lines[:-3]) + "\n", encoding="utf-8-sig")
    corrected = load_wave(dataclasses.replace(w19, file=shorter), paths.warehouse)
    assert corrected.row_count == len(lines) - 4
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        pending = con.execute("select status, is_current from raw.load_registry where load_id = ?",
                              [corrected.load_id]).fetchone()
    assert pending == ("pending", False), "a new load is not used before it passes its gate"
    mark_load(paths.warehouse, corrected.load_id, passed=True, message="ok")
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        rows = con.execute("select r.wave_year, r.status, r.is_current, count(distinct c.source_row_number) "
                           "from raw.load_registry r join raw.survey_cells c using (load_id) "
                           "group by 1, 2, 3, r.loaded_at order by r.wave_year, r.loaded_at").fetchall()
    assert rows == [(2016, "passed", True, _data_rows(w16)), (2019, "superseded", False, len(lines) - 1),
                    (2019, "passed", True, len(lines) - 4)]


def test_missing_mapped_column_names_file_row_and_column(paths, tmp_path: Path) -> None:
    spec = find_wave_spec(2019, paths)
    text = spec.file.read_text(encoding="utf-8-sig").replace("Organisaatio", "Kunta", 1)
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(text, encoding="utf-8-sig")
    with pytest.raises(WaveFileError) as error:
        load_wave(dataclasses.replace(spec, file=renamed), paths.warehouse)
    message = str(error.value)
    assert "renamed.csv" in message and "row 1" in message and "'Organisaatio'" in message
    assert not paths.warehouse.exists() or duckdb.connect(str(paths.warehouse), read_only=True).execute(
        "select count(*) from raw.load_registry").fetchone()[0] == 0


def test_wrong_encoding_is_a_clear_error(paths) -> None:
    spec = dataclasses.replace(find_wave_spec(2016, paths), encoding="utf-8")
    with pytest.raises(WaveFileError) as error:
        load_wave(spec, paths.warehouse)
    assert spec.file.name in str(error.value) and "utf-8" in str(error.value)


def test_every_wave_maps_the_required_fields(paths) -> None:
    for year in list_wave_years(paths):
        assert set(REQUIRED_FIELDS) <= set(find_wave_spec(year, paths).columns.values())
