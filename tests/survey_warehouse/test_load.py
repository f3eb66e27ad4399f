"""The raw loader: each wave's file shape, the load registry, idempotency, and what each value resolved to."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import duckdb
import openpyxl
import pytest
from conftest import ROOT, make_paths

from survey_warehouse.errors import WaveFileError
from survey_warehouse.intake import grid
from survey_warehouse.intake.codebook import REQUIRED_STRUCTURAL_FIELDS, Codebook
from survey_warehouse.intake.matching import match_key
from survey_warehouse.intake.waves import find_wave_spec, list_wave_years
from survey_warehouse.raw.load import load_wave
from survey_warehouse.raw.registry import mark_load

SEEDS = ROOT / "dbt_project" / "seeds"


@pytest.fixture
def paths():
    return make_paths("load")


def _rows_and_header(spec) -> tuple[list[str], list[list]]:
    """The header and the non-blank data rows, read without the loader."""
    if spec.format == "xlsx":
        ws = openpyxl.load_workbook(spec.file, read_only=True)[spec.sheet]
        rows = [list(r) for r in ws.iter_rows(values_only=True)]
    else:
        with open(spec.file, encoding=spec.encoding, newline="") as f:
            rows = list(csv.reader(f, delimiter=spec.delimiter))
    header = [str(h or "").strip() for h in rows[spec.header_row - 1]]
    data = [r for r in rows[spec.header_row :] if any(c not in (None, "") for c in r)]
    return header, data


def _registry(warehouse: Path) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select wave_year, file_name, length(file_sha256), row_count, status, is_current "
            "from raw.load_registry order by loaded_at"
        ).fetchall()


def test_configured_waves(paths) -> None:
    assert list_wave_years(paths) == [2016, 2018, 2019]
    assert find_wave_spec(2017, paths) is None
    formats = {y: (find_wave_spec(y, paths).format, find_wave_spec(y, paths).encoding) for y in (2016, 2018, 2019)}
    assert formats == {2016: ("csv", "cp1252"), 2018: ("xlsx", "utf-8"), 2019: ("csv", "utf-8-sig")}


@pytest.mark.parametrize("year", [2016, 2018, 2019])
def test_every_cell_of_each_wave_is_kept_with_its_row(paths, year: int) -> None:
    spec = find_wave_spec(year, paths)
    header, rows = _rows_and_header(spec)
    result = load_wave(spec, paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        cells = con.execute(
            "select count(*), count(distinct source_row_number), min(source_row_number), "
            "count(distinct source_column) from raw.survey_cells join raw.survey_columns using (column_id) "
            "where load_id = ?",
            [result.load_id],
        ).fetchone()
        first_header = con.execute(
            "select source_column from raw.survey_columns where load_id = ? and column_position = 1",
            [result.load_id],
        ).fetchone()[0]
        unresolved = con.execute(
            "select count(*) from raw.cell_resolutions where load_id = ? and "
            "resolved_value is null and match_key is not null",
            [result.load_id],
        ).fetchone()[0]
    assert result.row_count == len(rows) and result.quarantined == 0
    assert cells == (len(rows) * len(header), len(rows), spec.header_row + 1, len(set(header)))
    assert first_header == header[0] and not first_header.startswith("\ufeff"), "the BOM is not part of a header"
    assert unresolved == 0, "every value of a mapped column resolves through the codebook"


def test_load_registry_and_an_unchanged_file_is_a_noop(paths) -> None:
    spec = find_wave_spec(2016, paths)
    first = load_wave(spec, paths.warehouse)
    mark_load(paths.warehouse, first.load_id, passed=True, message="ok")
    again = load_wave(spec, paths.warehouse)
    assert not first.unchanged and again.unchanged and again.load_id == first.load_id
    assert "unchanged" in again.describe()
    assert _registry(paths.warehouse) == [(2016, spec.file.name, 64, first.row_count, "passed", True)]


def test_a_codebook_change_reads_the_file_again(paths, tmp_path: Path) -> None:
    """A seed row added for a label or a city name takes effect without a new delivery."""
    spec = find_wave_spec(2019, paths)
    first = load_wave(spec, paths.warehouse)
    mark_load(paths.warehouse, first.load_id, passed=True, message="ok")
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    with open(seeds / "city_aliases.csv", "a", encoding="utf-8") as f:
        f.write("stadi,091,slang_fi\n")
    again = load_wave(spec, paths.warehouse, codebook=Codebook.from_seeds(seeds))
    assert not again.unchanged and again.load_id != first.load_id
    unchanged = load_wave(spec, paths.warehouse)  # the current load was read with the original seeds
    assert unchanged.unchanged


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
        pending = con.execute(
            "select status, is_current from raw.load_registry where load_id = ?", [corrected.load_id]
        ).fetchone()
    assert pending == ("pending", False), "a new load is not used before it passes its gates"
    mark_load(paths.warehouse, corrected.load_id, passed=True, message="ok")
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        rows = con.execute(
            "select r.wave_year, r.status, r.is_current, count(distinct c.source_row_number) "
            "from raw.load_registry r join raw.survey_columns k using (load_id) join raw.survey_cells c "
            "using (column_id) "
            "group by 1, 2, 3, r.loaded_at order by r.wave_year, r.loaded_at"
        ).fetchall()
    assert rows == [
        (2016, "passed", True, len(_rows_and_header(w16)[1])),
        (2019, "superseded", False, len(lines) - 1),
        (2019, "passed", True, len(lines) - 4),
    ]


def test_a_rejected_file_leaves_only_its_reason_in_the_registry(paths, tmp_path: Path) -> None:
    spec = find_wave_spec(2019, paths)
    good = load_wave(spec, paths.warehouse)
    mark_load(paths.warehouse, good.load_id, passed=True, message="ok")
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(
        spec.file.read_text(encoding="utf-8-sig").replace("Organisaatio", "Kunta", 1), encoding="utf-8-sig"
    )
    with pytest.raises(WaveFileError) as error:
        load_wave(dataclasses.replace(spec, file=renamed), paths.warehouse)
    assert (error.value.row, error.value.column) == (1, "'Organisaatio'")
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        registry = con.execute(
            "select status, is_current, row_count, status_message from raw.load_registry order by loaded_at"
        ).fetchall()
        loads_with_cells = con.execute(
            "select count(distinct load_id) from raw.survey_cells join raw.survey_columns using (column_id)"
        ).fetchone()[0]
    assert [r[:3] for r in registry] == [
        ("passed", True, len(renamed.read_text().splitlines()) - 1),
        ("failed", False, 0),
    ]
    assert registry[1][3].startswith("rejected: ") and "'Organisaatio' is not in the header" in registry[1][3]
    assert loads_with_cells == 1, "a rejected file writes no cells"


def test_every_wave_maps_the_required_fields(paths) -> None:
    codebook = Codebook.from_seeds(SEEDS)
    for year in list_wave_years(paths):
        spec = find_wave_spec(year, paths)
        spec.check(codebook)
        required = [
            *REQUIRED_STRUCTURAL_FIELDS,
            *(q for q, question in codebook.questions_for(year).items() if question.is_required),
        ]
        assert set(required) <= set(spec.columns.values())


def test_both_readers_land_the_same_raw(paths, monkeypatch) -> None:
    """DuckDB's parallel reader (regular files) and the row-by-row reader (any other) agree cell for cell."""
    spec = find_wave_spec(2019, paths)
    fast = load_wave(spec, paths.warehouse)
    careful_paths = make_paths("load_careful")
    monkeypatch.setattr(grid, "_duckdb_grid", lambda *args, **kwargs: None)
    careful = load_wave(spec, careful_paths.warehouse)
    assert fast.reader.startswith("DuckDB") and careful.reader.startswith("Python")

    def raw(path: Path, load_id: str) -> dict[str, list[tuple]]:
        with duckdb.connect(str(path), read_only=True) as con:
            tables = {
                "survey_cells": "select * exclude (load_id, column_id) from raw.survey_cells "
                "join raw.survey_columns using (column_id) where load_id = ?",
                **{
                    t: f"select * exclude (load_id) from raw.{t} where load_id = ?"
                    for t in ("cell_resolutions", "quarantine")
                },
            }
            return {t: sorted(con.execute(query, [load_id]).fetchall(), key=repr) for t, query in tables.items()}

    assert raw(paths.warehouse, fast.load_id) == raw(careful_paths.warehouse, careful.load_id)


def test_the_warehouse_holds_the_matching_rules_keys_for_the_corpus(paths, tmp_path: Path) -> None:
    """Every awkward string of the shared corpus, delivered in a mapped column, is stored with the key the rule
    gives it: what staging joins on is exactly `match_key`."""
    from conftest import matching_corpus as corpus

    from survey_warehouse.intake.matching import match_key as rule

    spec = find_wave_spec(2019, paths)
    header, rows = _rows_and_header(spec)
    email = header.index(next(c for c, f in spec.columns.items() if f == "respondent_email"))
    values = [value for _case, value, _key in corpus()]
    path = tmp_path / "corpus.csv"
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, value in enumerate(values):
            row = list(rows[i % len(rows)])
            row[email] = value
            writer.writerow(row)
    result = load_wave(dataclasses.replace(spec, file=path), paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        stored = dict(
            con.execute(
                "select cell_value, match_key from raw.cell_resolutions where load_id = ? and "
                "field_id = 'respondent_email'",
                [result.load_id],
            ).fetchall()
        )
    for value in values:
        if value.strip("\r\n") == "":
            continue  # an empty cell is no value
        assert stored.get(value, "missing") == rule(value) == match_key(value), repr(value)
