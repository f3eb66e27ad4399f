"""A catalogue of bad wave files, each made here from the sample waves: what the user is told, what is kept.

Whole-file problems raise WaveFileError (naming the file, and the row and column where there is one) and leave raw
as it was. Row-level problems keep the row in raw, quarantine it with a reason code and a message naming the file,
row and column, and for every load rows = accepted + quarantined."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import duckdb
import openpyxl
import pytest

from conftest import make_paths
from survey_warehouse.load import WaveFileError, load_wave, mark_load
from survey_warehouse.waves import find_wave_spec

LEAD_2019 = "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?"
COOPERATION_2019 = "Q2 Tietohallinnon ja toimialojen yhteistyön sujuvuus (0-10)"


@pytest.fixture()
def paths():
    return make_paths("bad_inputs")


@pytest.fixture()
def wave_2019(paths):
    spec = find_wave_spec(2019, paths)
    text = spec.file.read_text(encoding="utf-8-sig")
    return spec, text.splitlines()


def _write(tmp_path: Path, lines: list[str], name: str = "wave.csv", encoding: str = "utf-8-sig") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


def _set(lines: list[str], file_row: int, column: str, value: str) -> None:
    header = lines[0].split(",")
    cells = lines[file_row - 1].split(",")
    cells[header.index(column)] = value
    lines[file_row - 1] = ",".join(cells)


def _raw_counts(warehouse: Path) -> tuple[int, int]:
    if not warehouse.exists():
        return (0, 0)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("select (select count(*) from raw.load_registry), "
                           "(select count(*) from raw.survey_cells)").fetchone()


def _quarantine(warehouse: Path, load_id: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("select source_row_number, source_column, reason_code, message from raw.quarantine "
                           "where load_id = ? order by 1, 3", [load_id]).fetchall()


def _accounted(warehouse: Path, load_id: str) -> tuple[int, int, int, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select row_count, accepted_count, quarantined_count, "
            "(select count(distinct source_row_number) from raw.survey_cells c where c.load_id = r.load_id) "
            "from raw.load_registry r where load_id = ?", [load_id]).fetchone()


@pytest.fixture()
def loaded_2016(paths):
    """A warehouse that already holds a good wave, to show that a rejected file leaves raw as it was."""
    result = load_wave(find_wave_spec(2016, paths), paths.warehouse)
    mark_load(paths.warehouse, result.load_id, passed=True, message="ok")
    return _raw_counts(paths.warehouse)


# ------------------------------------------------------------------------------ whole-file problems


def _rejected(spec, paths, before) -> WaveFileError:
    with pytest.raises(WaveFileError) as error:
        load_wave(spec, paths.warehouse)
    assert _raw_counts(paths.warehouse) == before, "a rejected file leaves raw as it was"
    assert spec.file.name in str(error.value)
    return error.value


def test_empty_file(paths, wave_2019, loaded_2016, tmp_path) -> None:
    spec, _ = wave_2019
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    error = _rejected(dataclasses.replace(spec, file=empty), paths, loaded_2016)
    assert "the file is empty" in str(error)


def test_header_only(paths, wave_2019, loaded_2016, tmp_path) -> None:
    spec, lines = wave_2019
    error = _rejected(dataclasses.replace(spec, file=_write(tmp_path, lines[:1])), paths, loaded_2016)
    assert "row 1" in str(error) and "no data rows" in str(error)


@pytest.mark.parametrize("encoding", ["utf-16", "cp1252"])
def test_wrong_encoding(paths, wave_2019, loaded_2016, tmp_path, encoding: str) -> None:
    spec, lines = wave_2019  # the spec says utf-8-sig
    path = _write(tmp_path, lines, encoding=encoding)
    error = _rejected(dataclasses.replace(spec, file=path), paths, loaded_2016)
    assert "not readable as utf-8-sig" in str(error) and "encoding" in str(error)


def test_wrong_delimiter(paths, wave_2019, loaded_2016, tmp_path) -> None:
    spec, lines = wave_2019
    path = _write(tmp_path, [line.replace(",", ";") for line in lines])
    error = _rejected(dataclasses.replace(spec, file=path), paths, loaded_2016)
    assert "row 1" in str(error) and "is the delimiter ';' rather than ','" in str(error)


@pytest.mark.parametrize("old, new", [("Organisaatio", None), ("Organisaatio", "Kunta")])
def test_required_column_missing_or_renamed(paths, wave_2019, loaded_2016, tmp_path, old, new) -> None:
    spec, lines = wave_2019
    header = lines[0].split(",")
    position = header.index(old)
    if new is None:
        lines = [",".join(c for i, c in enumerate(line.split(",")) if i != position) for line in lines]
    else:
        lines[0] = lines[0].replace(old, new)
    error = _rejected(dataclasses.replace(spec, file=_write(tmp_path, lines)), paths, loaded_2016)
    assert error.row == 1 and error.column == "Organisaatio"
    assert "row 1, column 'Organisaatio'" in str(error)


def test_file_of_another_year(paths, wave_2019, loaded_2016, tmp_path) -> None:
    spec, lines = wave_2019
    path = _write(tmp_path, [lines[0]] + [line.replace("2019-", "2018-") for line in lines[1:]])
    error = _rejected(dataclasses.replace(spec, file=path), paths, loaded_2016)
    assert "submitted in 2018, not in 2019" in str(error) and error.column == "Aikaleima"


# ------------------------------------------------------------------------------ row-level problems


def test_row_level_problems_are_quarantined_with_file_row_and_column(paths, wave_2019, tmp_path) -> None:
    spec, lines = wave_2019
    lines = list(lines)
    _set(lines, 3, "Organisaatio", "Atlantis")                       # unknown city
    _set(lines, 4, LEAD_2019, "Pormestari")                           # label missing from the codebook
    _set(lines, 5, COOPERATION_2019, "12")                            # numeric answer outside 0-10
    _set(lines, 6, "Email", lines[1].split(",")[1])                   # the respondent of row 2 again
    _set(lines, 7, "Organisaatio", '=HYPERLINK("http://x")')  # spreadsheet-formula injection
    _set(lines, 8, "Asema", "")                                       # a required field left empty
    lines[8] = ",".join(lines[8].split(",")[:4])                     # row 9 truncated: ragged
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines)), paths.warehouse)

    problems = _quarantine(paths.warehouse, result.load_id)
    reasons = [(row, column, reason) for row, column, reason, _message in problems]
    assert reasons == [
        (3, "Organisaatio", "unknown_city"),
        (4, LEAD_2019, "unknown_answer"),
        (5, COOPERATION_2019, "out_of_scale"),
        (6, "Email", "duplicate_respondent"),
        (7, "Organisaatio", "unknown_city"),
        (8, "Asema", "missing_required"),
        (9, None, "ragged_row"),
    ]
    for row, column, _reason, message in problems:
        assert message.startswith(f"wave.csv, row {row}" + (f", column {column!r}" if column else "") + ": ")
    messages = {reason: message for _row, _column, reason, message in problems}
    assert "add it to dbt_project/seeds/city_aliases.csv" in messages["unknown_city"]
    assert "outside the question's scale 0-10" in messages["out_of_scale"]
    assert "already answered in row 2" in messages["duplicate_respondent"]
    assert "re-export the file" in messages["ragged_row"]
    rows, accepted, quarantined, in_raw = _accounted(paths.warehouse, result.load_id)
    assert (rows, accepted, quarantined) == (len(lines) - 1, len(lines) - 1 - 7, 7)
    assert in_raw == rows, "quarantined rows stay in raw"


def test_key_respondents_who_disagree_give_a_warning(paths, wave_2019, tmp_path) -> None:
    spec, lines = wave_2019
    lines = list(lines)
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    key = next(r for r in rows if r[header.index("Asema")] == "Tietohallintojohtaja")
    other = list(key)
    other[header.index("Email")] = "toinen.cio@example.fi"
    other[header.index(LEAD_2019)] = "Toimialajohtajat" if key[header.index(LEAD_2019)] != "Toimialajohtajat" \
        else "Tietohallinto"
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines + [",".join(other)])),
                       paths.warehouse)
    assert result.quarantined == 0
    assert len(result.warnings) == 1
    assert "key respondents of city" in result.warnings[0] and f"row {len(lines) + 1}" in result.warnings[0]


def test_identifiers_from_files_are_data_not_sql(paths, wave_2019, tmp_path) -> None:
    spec, lines = wave_2019
    evil = '"; drop table raw.load_registry; --'
    lines = [f'{lines[0]},"{evil.replace(chr(34), chr(34) * 2)}"'] + [f"{line},x'); drop table raw.survey_cells; --"
                                                                      for line in lines[1:]]
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines)), paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        headers = {r[0] for r in con.execute("select distinct source_column from raw.survey_cells").fetchall()}
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables "
                                            "where table_schema = 'raw'").fetchall()}
    assert evil in headers
    assert {"load_registry", "survey_cells", "quarantine"} <= tables
    assert result.quarantined == 0


def test_xlsx_with_extra_sheets_and_merged_header_cells(paths, tmp_path) -> None:
    spec = find_wave_spec(2018, paths)
    wb = openpyxl.load_workbook(spec.file)
    wb.create_sheet("Ohjeet", 0)["A1"] = "Täyttöohjeet"
    wb.create_sheet("Pivot")["B2"] = 42
    ws = wb[spec.sheet]
    ws.merge_cells(start_row=1, start_column=1, end_row=2, end_column=4)   # title block merged
    comment_col = ws.max_column
    ws.cell(row=spec.header_row, column=comment_col + 1, value=None)
    ws.merge_cells(start_row=spec.header_row, start_column=comment_col, end_row=spec.header_row,
                   end_column=comment_col + 1)  # a merged header cell over the free-text column
    path = tmp_path / "wave.xlsx"
    wb.save(path)
    result = load_wave(dataclasses.replace(spec, file=path), paths.warehouse)
    original = load_wave(spec, make_paths("bad_inputs_xlsx_original").warehouse)
    assert result.row_count == original.row_count and result.quarantined == 0


def test_production_refuses_the_development_pseudonym_key(monkeypatch) -> None:
    from survey_warehouse import quality

    monkeypatch.setenv("SURVEY_ENV", "production")
    monkeypatch.delenv("SURVEY_PSEUDONYM_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SURVEY_PSEUDONYM_KEY must be set in production"):
        quality.pseudonym_key()
    monkeypatch.setenv("SURVEY_PSEUDONYM_KEY", "a-real-key")
    assert re.fullmatch(r"a-real-key", quality.pseudonym_key())
