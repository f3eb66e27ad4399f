"""A catalogue of damaged and unusual deliveries, each made here from the sample waves: what the user is told,
what is kept.

Whole-file problems raise WaveFileError (naming the file, and the row and column where there is one, saying what
is wrong and what to do); raw then holds only a failed registry entry with the reason, and no cells. Row-level
problems keep the row in raw, quarantine it with a reason code and a message naming the file, row and column, and
for every load rows = accepted + quarantined. No delivery ends in a library's traceback."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import openpyxl
import pytest
from conftest import make_paths
from openpyxl.utils.cell import column_index_from_string, coordinate_from_string

from survey_warehouse.errors import SurveyWarehouseError, WaveFileError
from survey_warehouse.intake.waves import find_wave_spec
from survey_warehouse.raw.load import load_wave
from survey_warehouse.raw.registry import mark_load

LEAD_2019 = "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?"
COOPERATION_2019 = "Q2 Tietohallinnon ja toimialojen yhteistyön sujuvuus (0-10)"


@pytest.fixture
def paths():
    return make_paths("bad_inputs")


@pytest.fixture
def wave_2019(paths):
    spec = find_wave_spec(2019, paths)
    text = spec.file.read_text(encoding="utf-8-sig")
    return spec, text.splitlines()


def _write(
    tmp_path: Path, lines: list[str], name: str = "wave.csv", encoding: str = "utf-8-sig", end: str = "\n"
) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + end, encoding=encoding)
    return path


def _set(lines: list[str], file_row: int, column: str, value: str) -> None:
    header = lines[0].split(",")
    cells = lines[file_row - 1].split(",")
    cells[header.index(column)] = value
    lines[file_row - 1] = ",".join(cells)


def _raw_state(warehouse: Path) -> tuple[int, list[tuple]]:
    """Cells in raw, and the loads that are current."""
    if not warehouse.exists():
        return (0, [])
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return (
            con.execute("select count(*) from raw.survey_cells").fetchone()[0],
            con.execute("select load_id from raw.load_registry where is_current order by 1").fetchall(),
        )


def _quarantine(warehouse: Path, load_id: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select source_row_number, source_column, reason_code, message from raw.quarantine "
            "where load_id = ? order by 1, 3",
            [load_id],
        ).fetchall()


def _accounted(warehouse: Path, load_id: str) -> tuple[int, int, int, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select row_count, accepted_count, quarantined_count, "
            "(select count(distinct c.source_row_number) from raw.survey_cells c "
            "join raw.survey_columns k using (column_id) where k.load_id = r.load_id) "
            "from raw.load_registry r where load_id = ?",
            [load_id],
        ).fetchone()


@pytest.fixture
def loaded(paths):
    """A warehouse that already holds the good 2016 and 2019 waves: a rejected file must leave them as they were."""
    for year in (2016, 2019):
        result = load_wave(find_wave_spec(year, paths), paths.warehouse)
        mark_load(paths.warehouse, result.load_id, passed=True, message="ok")
    return _raw_state(paths.warehouse)


def _rejected(spec, paths, before, *parts: str, row: int | None = None, column: str | None = None) -> WaveFileError:
    """The load fails with a WaveFileError naming the file (and the row and column when given) and saying each
    part; raw keeps the reason in the registry and nothing else."""
    with pytest.raises(WaveFileError) as caught:
        load_wave(spec, paths.warehouse)
    error = caught.value
    message = str(error)
    assert message.startswith(str(spec.file)), message
    for part in parts:
        assert part in message, f"{part!r} not in: {message}"
    if row is not None:
        assert error.row == row, message
    if column is not None:
        assert error.column == column, message
    assert _raw_state(paths.warehouse) == before, "a rejected file leaves raw and the current loads as they were"
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        status, reason = con.execute(
            "select status, status_message from raw.load_registry order by loaded_at desc limit 1"
        ).fetchone()
    assert status == "failed" and reason == f"rejected: {message}"
    return error


# ------------------------------------------------------------------------------ what the bytes really are


def test_empty_file(paths, wave_2019, loaded, tmp_path) -> None:
    spec, _ = wave_2019
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    _rejected(dataclasses.replace(spec, file=empty), paths, loaded, "the file is empty (0 bytes)")


def test_header_only(paths, wave_2019, loaded, tmp_path) -> None:
    spec, lines = wave_2019
    _rejected(dataclasses.replace(spec, file=_write(tmp_path, lines[:1])), paths, loaded, "no data rows", row=1)


def test_utf16_file_when_the_spec_says_utf8(paths, wave_2019, loaded, tmp_path) -> None:
    spec, lines = wave_2019
    path = _write(tmp_path, lines, encoding="utf-16")
    _rejected(dataclasses.replace(spec, file=path), paths, loaded, "UTF-16 text", "set encoding: utf-16")


def test_utf16_without_a_byte_order_mark(paths, wave_2019, loaded, tmp_path) -> None:
    spec, lines = wave_2019
    path = _write(tmp_path, lines, encoding="utf-16-le")
    _rejected(dataclasses.replace(spec, file=path), paths, loaded, "UTF-16-LE text", "set encoding: utf-16-le")


def _first_non_ascii(lines: list[str], start: int = 1) -> tuple[int, str, int]:
    """The first character outside ASCII from row `start` on: its row, the header of its column, and its offset
    in its line."""
    header = lines[0].split(",")
    row = next(i for i, line in enumerate(lines, start=1) if i >= start and not line.isascii())
    at = next(i for i, ch in enumerate(lines[row - 1]) if not ch.isascii())
    return row, header[lines[row - 1][:at].count(",")], at


def test_windows_1252_file_when_the_spec_says_utf8(paths, wave_2019, loaded, tmp_path) -> None:
    """The message names the row, the column and the byte's offset in the file, not the text around it."""
    spec, lines = wave_2019
    path = _write(tmp_path, lines, encoding="cp1252")
    row, column, at = _first_non_ascii(lines)
    offset = len("".join(f"{line}\n" for line in lines[: row - 1]).encode("cp1252")) + at
    byte = lines[row - 1][at].encode("cp1252").hex()
    _rejected(
        dataclasses.replace(spec, file=path),
        paths,
        loaded,
        f"byte 0x{byte} (byte {offset:,} of the file) cannot be read as utf-8-sig",
        "reads cleanly as cp1252: set encoding: cp1252",
        row=row,
        column=f"'{column}'",
    )


def test_2016_file_re_sent_as_utf8(paths, loaded, tmp_path) -> None:
    """The spec says cp1252; read so, the header would say 'SÃ¤hkÃ¶posti'. The message says what the file is."""
    spec = find_wave_spec(2016, paths)
    text = spec.file.read_text(encoding="cp1252")
    path = tmp_path / "wave_2016_utf8.csv"
    path.write_text(text, encoding="utf-8")
    _rejected(
        dataclasses.replace(spec, file=path),
        paths,
        loaded,
        "the file is UTF-8 text",
        "the wave spec says encoding: cp1252",
        "set encoding: utf-8",
    )


def _garbled(text: str) -> str:
    return text.encode("utf-8").decode("cp1252")


def test_text_garbled_by_a_double_conversion(paths, wave_2019, loaded, tmp_path) -> None:
    spec, lines = wave_2019
    garbled = [lines[0]] + [line.encode("utf-8").decode("cp1252", errors="replace") for line in lines[1:]]
    row, column, at = _first_non_ascii(lines, start=2)
    letter = lines[row - 1][at]
    error = _rejected(
        dataclasses.replace(spec, file=_write(tmp_path, garbled)),
        paths,
        loaded,
        "garbled the way UTF-8 read as Windows-1252 is",
        f"{_garbled(letter)!r} for {letter!r}",
        "ask for a clean export",
        row=row,
        column=f"'{column}'",
    )
    assert lines[row - 1][max(at - 6, 0) : at] not in str(error), "the text around it is not quoted"


def test_nul_bytes_in_the_middle(paths, wave_2019, loaded, tmp_path) -> None:
    spec, lines = wave_2019
    data = ("\n".join(lines) + "\n").encode("utf-8-sig")
    cut = data.index(b"\n", len(data) // 2) + 1
    path = tmp_path / "nul.csv"
    path.write_bytes(data[:cut] + b"\x00" * 4096 + data[cut:])
    row = data[:cut].count(b"\n") + 1
    _rejected(
        dataclasses.replace(spec, file=path),
        paths,
        loaded,
        f"4096 NUL (zero) bytes, the first at byte {cut:,} of the file",
        "damaged",
        row=row,
        column="'Nimi'",  # the zeros begin the row
    )


GARBLED = "Muu johtoteht" + "ä".encode().decode("cp1252") + "vä"
DAMAGED = {  # a cell's text, the damaged byte's offset in it (encoded in UTF-8), and the spec's encoding
    "nul": ("Tieto\x00hallinto", len("Tieto"), "utf-8-sig"),
    "cp1252": ("Muu johtotehtävä", len("Muu johtoteht"), "utf-8-sig"),
    "garbled": (GARBLED, len("Muu johtoteht"), "utf-8-sig"),
    "garbled in a cp1252 file": (GARBLED, len("Muu johtoteht"), "cp1252"),
}


@pytest.mark.parametrize("chunk_bytes", [3, 50, 1 << 20])
@pytest.mark.parametrize("damage", list(DAMAGED))
@pytest.mark.parametrize("place", ["below a multi-line cell", "in a multi-line cell's second line"])
def test_a_damaged_byte_is_placed_whatever_the_chunks_the_file_is_read_in(
    paths, wave_2019, tmp_path, monkeypatch, chunk_bytes: int, damage: str, place: str
) -> None:
    """The file is read a chunk at a time; the row (the file's line), column and byte offset named do not depend
    on where the chunks end. Below a quoted cell with a delimiter and a line break in it, the damaged cell's column
    is named; in the second line of such a cell no column is (the line alone does not tell it)."""
    from survey_warehouse.intake import verdict

    spec, lines = wave_2019
    lines = list(lines)
    text, offset_in_text, encoding = DAMAGED[damage]
    spec = dataclasses.replace(spec, encoding=encoding)
    multi_line = next(i for i, line in enumerate(lines) if i and line.endswith('"'))  # a quoted free-text cell
    if place == "below a multi-line cell":
        lines[multi_line] = lines[multi_line][:-1] + '\nsecond line, of the same cell"'
        target = multi_line + 3  # the row of the file two rows below
        _set(lines, target, "Asema", text)
        damaged_line = lines[target - 1]
        column = "'Asema'"
    else:
        damaged_line = f"second line, {text}, of the same cell"
        lines[multi_line] = lines[multi_line][:-1] + "\n" + damaged_line + '"'
        column = None
    content = "\n".join(lines) + "\n"
    before = content[: content.index(text, content.index(damaged_line))]
    if damage == "cp1252":  # the rows before are UTF-8, the damaged one Windows-1252
        data = before.encode("utf-8-sig") + content[len(before) :].encode("cp1252")
    else:
        data = content.encode(encoding)
    at = len(before.encode(encoding)) + len(text[:offset_in_text].encode(encoding.removesuffix("-sig")))
    path = tmp_path / "wave.csv"
    path.write_bytes(data)
    monkeypatch.setattr(verdict, "CHUNK_BYTES", chunk_bytes)
    with pytest.raises(WaveFileError) as caught:
        load_wave(dataclasses.replace(spec, file=path), paths.warehouse)
    error = caught.value
    assert (error.row, error.column) == (data[:at].count(b"\n") + 1, column), str(error)
    if encoding == "utf-8-sig":  # (a file decoded as it is read tells no byte offset)
        assert f"byte {at:,} of the file" in str(error)


def test_csv_that_is_really_an_excel_workbook(paths, wave_2019, loaded, tmp_path) -> None:
    spec, _ = wave_2019
    path = tmp_path / "wave.csv"
    path.write_bytes(find_wave_spec(2018, paths).file.read_bytes())
    _rejected(dataclasses.replace(spec, file=path), paths, loaded, "is an Excel workbook (.xlsx)", "Set format: xlsx")


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "is a PDF document"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", "is a gzip-compressed file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is an image"),
    ],
)
def test_other_kinds_of_file(paths, wave_2019, loaded, tmp_path, content: bytes, what: str) -> None:
    spec, _ = wave_2019
    path = tmp_path / "wave.csv"
    path.write_bytes(content + b"\x00" * 64)
    _rejected(dataclasses.replace(spec, file=path), paths, loaded, what)


def test_a_folder_or_a_missing_file(paths, wave_2019, loaded, tmp_path) -> None:
    spec, _ = wave_2019
    _rejected(dataclasses.replace(spec, file=tmp_path), paths, loaded, "is a folder")
    _rejected(dataclasses.replace(spec, file=tmp_path / "absent.csv"), paths, loaded, "file not found")


# ------------------------------------------------------------------------------ Excel workbooks


@pytest.fixture
def wave_2018(paths):
    return find_wave_spec(2018, paths)


def test_empty_workbook_file(paths, wave_2018, loaded, tmp_path) -> None:
    path = tmp_path / "wave.xlsx"
    path.write_bytes(b"")
    _rejected(dataclasses.replace(wave_2018, file=path), paths, loaded, "the file is empty (0 bytes)")


def test_workbook_that_is_really_a_csv(paths, wave_2018, loaded, tmp_path) -> None:
    path = tmp_path / "wave.xlsx"
    path.write_bytes(find_wave_spec(2019, paths).file.read_bytes())
    _rejected(
        dataclasses.replace(wave_2018, file=path), paths, loaded, "is a text file (CSV or similar)", "Set format: csv"
    )


def test_workbook_cut_off_in_transfer(paths, wave_2018, loaded, tmp_path) -> None:
    data = wave_2018.file.read_bytes()
    path = tmp_path / "wave.xlsx"
    path.write_bytes(data[: len(data) // 2])
    _rejected(dataclasses.replace(wave_2018, file=path), paths, loaded, "damaged zip archive", "ask for the file")


def test_password_protected_workbook(paths, wave_2018, loaded, tmp_path) -> None:
    """Excel's 'Encrypt with password' saves an OLE2 compound file holding the EncryptedPackage stream."""
    path = tmp_path / "wave.xlsx"
    path.write_bytes(
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + b"\x00" * 1016
        + "EncryptionInfo".encode("utf-16-le")
        + b"\x00" * 64
        + "EncryptedPackage".encode("utf-16-le")
        + b"\x00" * 2048
    )
    _rejected(
        dataclasses.replace(wave_2018, file=path), paths, loaded, "password-protected (encrypted)", "without a password"
    )


def test_legacy_xls_workbook(paths, wave_2018, loaded, tmp_path) -> None:
    path = tmp_path / "wave.xlsx"
    path.write_bytes(
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 1016 + "Workbook".encode("utf-16-le") + b"\x00" * 2048
    )
    _rejected(
        dataclasses.replace(wave_2018, file=path),
        paths,
        loaded,
        "legacy Excel 97-2003 workbook (.xls)",
        "save it as .xlsx",
    )


def test_opendocument_spreadsheet(paths, wave_2018, loaded, tmp_path) -> None:
    path = tmp_path / "wave.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")
    _rejected(dataclasses.replace(wave_2018, file=path), paths, loaded, "an OpenDocument spreadsheet (.ods)")


def test_workbook_with_a_damaged_sheet(paths, wave_2018, loaded, tmp_path) -> None:
    path = tmp_path / "wave.xlsx"
    with zipfile.ZipFile(wave_2018.file) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                data = data[: len(data) // 2]  # the sheet's XML ends halfway
            target.writestr(item, data)
    _rejected(dataclasses.replace(wave_2018, file=path), paths, loaded, "damaged", "save it again")


def test_workbook_without_the_sheet(paths, wave_2018, loaded, tmp_path) -> None:
    wb = openpyxl.load_workbook(wave_2018.file)
    wb[wave_2018.sheet].title = "Taul1"
    path = tmp_path / "wave.xlsx"
    wb.save(path)
    _rejected(dataclasses.replace(wave_2018, file=path), paths, loaded, "sheet 'Vastaukset' not found", "'Taul1'")


# ------------------------------------------------------------------------------ the file's structure


def test_wrong_delimiter(paths, wave_2019, loaded, tmp_path) -> None:
    spec, lines = wave_2019
    path = _write(tmp_path, [line.replace(",", ";") for line in lines])
    _rejected(dataclasses.replace(spec, file=path), paths, loaded, "is the delimiter ';' rather than ','", row=1)


@pytest.mark.parametrize(("old", "new"), [("Organisaatio", None), ("Organisaatio", "Kunta")])
def test_required_column_missing_or_renamed(paths, wave_2019, loaded, tmp_path, old, new) -> None:
    spec, lines = wave_2019
    header = lines[0].split(",")
    position = header.index(old)
    if new is None:
        lines = [",".join(c for i, c in enumerate(line.split(",")) if i != position) for line in lines]
    else:
        lines[0] = lines[0].replace(old, new)
    _rejected(
        dataclasses.replace(spec, file=_write(tmp_path, lines)),
        paths,
        loaded,
        "mapped column 'Organisaatio' is not in the header",
        row=1,
        column="'Organisaatio'",
    )


def test_duplicate_header_names(paths, wave_2019, loaded, tmp_path) -> None:
    spec, lines = wave_2019
    header = lines[0].split(",")
    lines[0] = ",".join("Organisaatio" if h == "Asema" else h for h in header)
    _rejected(
        dataclasses.replace(spec, file=_write(tmp_path, lines)),
        paths,
        loaded,
        "the header has 2 columns named 'Organisaatio' (columns 3, 4)",
        row=1,
        column="'Organisaatio'",
    )


def test_file_cut_off_in_the_middle_of_a_row(paths, wave_2019, loaded, tmp_path) -> None:
    spec, lines = wave_2019
    cut = lines[: len(lines) // 2 + 1]
    cut[-1] = cut[-1][: cut[-1].index(",", cut[-1].index(",") + 1) + 4]  # three characters into the third cell
    _rejected(
        dataclasses.replace(spec, file=_write(tmp_path, cut, end="")),
        paths,
        loaded,
        "the file ends in the middle of this row",
        "cut off",
        row=len(cut),
        column="'Organisaatio'",
    )


def test_file_ending_inside_a_quoted_cell(paths, wave_2019, loaded, tmp_path) -> None:
    spec, lines = wave_2019
    cut = [*lines[:10], lines[10].rsplit(",", 1)[0] + ',"Tietohallinto kutsutaan mukaan vasta']
    _rejected(
        dataclasses.replace(spec, file=_write(tmp_path, cut, end="")),
        paths,
        loaded,
        "ends inside a quoted cell",
        "ask for the complete file",
        row=11,
    )


def test_a_stray_quote_that_swallows_rows(paths, wave_2019, loaded, tmp_path) -> None:
    spec, lines = wave_2019
    lines = list(lines)
    _set(lines, 5, "Asema", '"Tietohallintojohtaja')  # opens a quoted cell that a later quote closes
    _set(lines, 12, "Asema", 'Muu johtotehtävä"')
    _rejected(
        dataclasses.replace(spec, file=_write(tmp_path, lines)),
        paths,
        loaded,
        "whole rows of the file were read as this one cell",
        "stray quote mark",
        row=5,
        column="'Asema'",
    )


def test_a_cell_larger_than_the_limit(paths, wave_2019, loaded, tmp_path, monkeypatch) -> None:
    spec, lines = wave_2019
    lines = list(lines)
    lines[3] = lines[3].rsplit(",", 1)[0] + ',"' + "pitkä palaute " * 20_000 + '"'
    path = _write(tmp_path, lines)
    monkeypatch.setenv("SURVEY_MAX_CELL_BYTES", "100000")
    _rejected(
        dataclasses.replace(spec, file=path), paths, loaded, "larger than 100,000 bytes", "SURVEY_MAX_CELL_BYTES", row=4
    )
    monkeypatch.delenv("SURVEY_MAX_CELL_BYTES")
    result = load_wave(dataclasses.replace(spec, file=path), paths.warehouse)  # the default limit is 16 MiB
    assert result.row_count == len(lines) - 1 and result.quarantined == 0


def test_file_of_another_year(paths, wave_2019, loaded, tmp_path) -> None:
    spec, lines = wave_2019
    path = _write(tmp_path, [lines[0]] + [line.replace("2019-", "2018-") for line in lines[1:]])
    _rejected(
        dataclasses.replace(spec, file=path), paths, loaded, "submitted in 2018, not in 2019", column="'Aikaleima'"
    )


# ------------------------------------------------------------------------------ row-level problems


def test_row_level_problems_are_quarantined_with_file_row_and_column(paths, wave_2019, tmp_path) -> None:
    spec, lines = wave_2019
    lines = list(lines)
    _set(lines, 3, "Organisaatio", "Atlantis")  # unknown city
    _set(lines, 4, LEAD_2019, "Pormestari")  # label missing from the codebook
    _set(lines, 5, COOPERATION_2019, "12")  # numeric answer outside 0-10
    _set(lines, 6, "Email", lines[1].split(",")[1])  # the respondent of row 2 again
    _set(lines, 7, "Organisaatio", '=HYPERLINK("http://x")')  # spreadsheet-formula injection
    _set(lines, 8, "Asema", "")  # a required field left empty
    lines[8] = ",".join(lines[8].split(",")[:4])  # row 9 truncated: ragged
    _set(lines, 10, "Organisaatio", "Hyvinkää")  # a city the wave did not survey
    lines.insert(11, lines[0])  # row 12: the header again
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
        (10, "Organisaatio", "city_not_surveyed"),
        (12, None, "repeated_header"),
    ]
    for row, column, _reason, message in problems:
        assert message.startswith(f"wave.csv, row {row}" + (f", column {column!r}" if column else "") + ": ")
    messages = {reason: message for _row, _column, reason, message in problems}
    assert "add it to dbt_project/seeds/city_aliases.csv" in messages["unknown_city"]
    assert "outside the question's scale 0-10" in messages["out_of_scale"]
    assert "already answered in row 2" in messages["duplicate_respondent"]
    assert "re-export the file" in messages["ragged_row"]
    assert "was not surveyed in 2019" in messages["city_not_surveyed"]
    assert "repeats the header" in messages["repeated_header"]
    rows, accepted, quarantined, in_raw = _accounted(paths.warehouse, result.load_id)
    assert (rows, accepted, quarantined) == (len(lines) - 1, len(lines) - 1 - 9, 9)
    assert in_raw == rows, "quarantined rows stay in raw"


# How a row of the respondent is broken, and the reason it is quarantined for ("ok": a usable row)
BROKEN = {
    "unknown_city": ("Organisaatio", "Helsinkii"),
    "unknown_answer": (LEAD_2019, "Pormestari"),
    "missing_required": ("Asema", ""),
}


@pytest.mark.parametrize(
    "rows",
    [
        ["unknown_city", "ok"],  # a corrected resubmission after a row with a typo
        ["ok", "unknown_answer"],
        ["ok", "unknown_city", "ok"],
        ["unknown_city", "ok", "ok"],
        ["unknown_city", "ok_in_capitals", "ok"],  # the same address written otherwise: the same respondent
        ["unknown_city", "unknown_answer", "ok"],
        ["unknown_city", "unknown_answer", "missing_required"],
        ["ragged_row", "ok"],
        ["ok", "ragged_row", "ok"],
    ],
    ids="-".join,
)
def test_of_one_respondents_rows_the_first_usable_one_is_kept(paths, wave_2019, tmp_path, rows: list[str]) -> None:
    """Only usable rows compete as a respondent's answer: a row that cannot be used is quarantined for its own
    reason only, the first usable row is kept, and each later usable row is a duplicate naming the kept row. When
    no row is usable, none is kept and there is no duplicate."""
    spec, lines = wave_2019
    lines = list(lines)
    original = lines[1]
    email = original.split(",")[1]
    # the respondent's rows: row 2, row 30 (in the middle of the file), then rows appended at the end
    numbers = [2, 30, *range(len(lines) + 1, len(lines) + len(rows) - 1)][: len(rows)]
    for number, state in zip(numbers, rows, strict=True):
        line = original.replace(email, email.upper()) if state == "ok_in_capitals" else original
        if number > len(lines):
            lines.append(line)
        else:
            lines[number - 1] = line
        if state in BROKEN:
            _set(lines, number, *BROKEN[state])
        elif state == "ragged_row":
            lines[number - 1] = ",".join(line.split(",")[:4])
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines)), paths.warehouse)

    found: dict[int, list[tuple[str, str]]] = {}
    for row, _column, reason, message in _quarantine(paths.warehouse, result.load_id):
        found.setdefault(row, []).append((reason, message))
    usable = [n for n, state in zip(numbers, rows, strict=True) if state.startswith("ok")]
    kept = usable[0] if usable else None
    assert set(found) == set(numbers) - {kept}, "the kept row is accepted, every other row of the respondent not"
    for number, state in zip(numbers, rows, strict=True):
        if number == kept:
            continue
        assert len(found[number]) == 1, f"row {number} is quarantined for one reason: {found[number]}"
        [(reason, message)] = found[number]
        if state.startswith("ok"):
            assert reason == "duplicate_respondent"
            assert f"already answered in row {kept}" in message and "kept" in message, message
            unusable_before = [n for n, s in zip(numbers, rows, strict=True) if n < kept and s in BROKEN]
            for row in unusable_before:
                assert f"row {row} " in message or f"rows {row}" in message, message
        else:
            assert reason == state, f"row {number}: {message}"
    assert result.quarantined == len(numbers) - (1 if usable else 0)


@pytest.mark.parametrize(
    "typed",
    [
        "Jyva\u0308skyla\u0308",  # typed on a Mac: decomposed letters (NFD)
        "Jyväskylä\t",  # a trailing tab
        "Jyväskylän\u00a0kaupunki",  # a no-break space
        "\u200bJYVÄSKYLÄ",  # a zero-width space and capitals
        "ＪＹＶÄＳＫＹＬÄ",  # full-width letters
    ],
)
def test_city_names_resolve_whatever_their_unicode_form(paths, wave_2019, tmp_path, typed: str) -> None:
    spec, lines = wave_2019
    lines = list(lines)
    header = lines[0].split(",")
    row = next(
        i for i, line in enumerate(lines[1:], start=2) if "jyv" in line.split(",")[header.index("Organisaatio")].lower()
    )
    _set(lines, row, "Organisaatio", typed)
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines)), paths.warehouse)
    assert result.quarantined == 0
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        code = con.execute(
            "select resolved_value from raw.cell_resolutions where load_id = ? and "
            "field_id = 'city' and cell_value = ?",
            [result.load_id, typed],
        ).fetchone()[0]
    assert code == "179"


def test_an_unknown_value_is_shown_escaped_when_it_is_not_plain(paths, wave_2019, tmp_path) -> None:
    spec, lines = wave_2019
    lines = list(lines)
    _set(lines, 3, "Organisaatio", "Tamperee\u0308\u00a0")  # a misspelt city, with a combining mark
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines)), paths.warehouse)
    message = _quarantine(paths.warehouse, result.load_id)[0][3]
    assert "unknown city 'Tamperee\\u0308\\u00a0'" in message


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("Organisaatio", "Päivi Hämäläinen"),  # a name in the city column
        ("Organisaatio", "jyrki.kononen at kuntaposti.test"),
        ("Organisaatio", "asa.oberg\uff20kuntaposti.test"),  # a full-width at sign
        ("Organisaatio", "kristiina.lindqvist@kuntaposti"),  # no dot in the domain
        ("Organisaatio", "Mikko Kotka"),  # a surname that is a city's name
        (LEAD_2019, "Soittakaa: Päivi Hämäläinen 040 765 4321"),
        (LEAD_2019, "Eero Mäkinen"),
        (COOPERATION_2019, "0407654321"),  # a phone number where a score goes
    ],
)
def test_a_value_that_is_no_misspelling_of_the_codebook_is_not_quoted(
    paths, wave_2019, tmp_path, column, value
) -> None:
    """A city or answer column's value is quoted only when it resembles what the codebook knows for the column (a
    misspelling to add); a person's name, contact details or free text typed there never is."""
    spec, lines = wave_2019
    lines = list(lines)
    _set(lines, 3, column, value)
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines)), paths.warehouse)
    (message,) = [m for row, _c, _r, m in _quarantine(paths.warehouse, result.load_id) if row == 3]
    words = [w for w in re.split(r"[\s:@\uff20.]+", value) if len(w) >= 4]
    assert words and not [w for w in words if w in message], message
    assert "row 3" in message and "not quoted" in message


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("Organisaatio", "Helsinkii", "'Helsinkii'"),
        ("Organisaatio", "Tampereen kaupungi", "'Tampereen kaupungi'"),
        (LEAD_2019, "Tietohallinto (ICT)", "'Tietohallinto (ICT)'"),
        (COOPERATION_2019, "12", "'12'"),
    ],
)
def test_a_misspelling_of_the_codebook_is_quoted_for_the_owner_to_add(paths, wave_2019, tmp_path, column, value, shown):
    spec, lines = wave_2019
    lines = list(lines)
    _set(lines, 3, column, value)
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines)), paths.warehouse)
    (message,) = [m for row, _c, _r, m in _quarantine(paths.warehouse, result.load_id) if row == 3]
    assert shown in message


def test_key_respondents_who_disagree_give_a_warning(paths, wave_2019, tmp_path) -> None:
    spec, lines = wave_2019
    lines = list(lines)
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    key = next(r for r in rows if r[header.index("Asema")] == "Tietohallintojohtaja")
    other = list(key)
    other[header.index("Email")] = "toinen.cio@example.fi"
    other[header.index(LEAD_2019)] = (
        "Toimialajohtajat" if key[header.index(LEAD_2019)] != "Toimialajohtajat" else "Tietohallinto"
    )
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, [*lines, ",".join(other)])), paths.warehouse)
    assert result.quarantined == 0
    assert len(result.warnings) == 1
    assert "key respondents of city" in result.warnings[0] and f"row {len(lines) + 1}" in result.warnings[0]


def test_identifiers_from_files_are_data_not_sql(paths, wave_2019, tmp_path) -> None:
    spec, lines = wave_2019
    evil = '"; drop table raw.load_registry; --'
    lines = [f'{lines[0]},"{evil.replace(chr(34), chr(34) * 2)}"'] + [
        f"{line},x'); drop table raw.survey_cells; --" for line in lines[1:]
    ]
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines)), paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        headers = {r[0] for r in con.execute("select distinct source_column from raw.survey_columns").fetchall()}
        tables = {
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'raw'"
            ).fetchall()
        }
    assert evil in headers
    assert {"load_registry", "survey_columns", "survey_cells", "quarantine"} <= tables
    assert result.quarantined == 0


def test_blank_lines_and_multi_line_cells_keep_the_file_rows(paths, wave_2019, tmp_path) -> None:
    """Rows are counted as a spreadsheet counts them: a blank row is a row, a multi-line cell is one row."""
    spec, lines = wave_2019
    lines = list(lines)
    lines[2] = lines[2].rsplit(",", 1)[0] + ',"Ensimmäinen rivi\n\ntoinen rivi"'
    lines.insert(5, "")
    _set(lines, 9, "Organisaatio", "Atlantis")
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines)), paths.warehouse)
    assert result.reader.startswith("Python")
    problems = _quarantine(paths.warehouse, result.load_id)
    assert [(row, reason) for row, _c, reason, _m in problems] == [(9, "unknown_city")]
    assert result.row_count == len(lines) - 2  # the header and the blank row are not data


def test_xlsx_with_extra_sheets_and_merged_header_cells(paths, tmp_path) -> None:
    spec = find_wave_spec(2018, paths)
    wb = openpyxl.load_workbook(spec.file)
    wb.create_sheet("Ohjeet", 0)["A1"] = "Täyttöohjeet"
    wb.create_sheet("Pivot")["B2"] = 42
    ws = wb[spec.sheet]
    ws.merge_cells(start_row=1, start_column=1, end_row=2, end_column=4)  # title block merged
    comment_col = ws.max_column
    ws.cell(row=spec.header_row, column=comment_col + 1, value=None)
    ws.merge_cells(
        start_row=spec.header_row, start_column=comment_col, end_row=spec.header_row, end_column=comment_col + 1
    )  # a merged header cell over the free-text column
    path = tmp_path / "wave.xlsx"
    wb.save(path)
    result = load_wave(dataclasses.replace(spec, file=path), paths.warehouse)
    original = load_wave(spec, make_paths("bad_inputs_xlsx_original").warehouse)
    assert result.row_count == original.row_count and result.quarantined == 0


def test_every_delivery_gets_a_verdict_never_a_traceback(paths, wave_2019, tmp_path) -> None:
    """Random damage to a good file: the load either succeeds (rows = accepted + quarantined) or is refused with
    the warehouse's own error; nothing else escapes."""
    import random

    spec, lines = wave_2019
    data = ("\n".join(lines) + "\n").encode("utf-8-sig")
    rng = random.Random(20260601)
    for attempt in range(40):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            kind = rng.choice(["flip", "cut", "insert", "delete"])
            at = rng.randrange(len(damaged))
            if kind == "flip":
                damaged[at] = rng.randrange(256)
            elif kind == "cut":
                del damaged[at:]
            elif kind == "insert":
                damaged[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
            else:
                del damaged[at : at + rng.randint(1, 200)]
        path = tmp_path / f"damaged_{attempt}.csv"
        path.write_bytes(bytes(damaged))
        refusal = None
        try:
            result = load_wave(dataclasses.replace(spec, file=path), paths.warehouse)
        except SurveyWarehouseError as error:
            refusal = str(error)
        if refusal is not None:
            assert refusal.startswith(str(path)) and re.search(r": \S", refusal)
            continue
        rows, accepted, quarantined, _in_raw = _accounted(paths.warehouse, result.load_id)
        assert rows == accepted + quarantined


def test_cells_right_of_the_header_are_kept_in_raw(paths, wave_2019, tmp_path) -> None:
    """A row longer than the header is quarantined, and its extra cells stay in raw under columns of their own
    (no header, no field), each position once per load."""
    spec, lines = wave_2019
    lines[3] += ",extra one,extra two"  # row 4: two cells right of the header
    lines[5] += ",extra three"  # row 6: one
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines)), paths.warehouse)
    width = len(lines[0].split(","))
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        extra = con.execute(
            "select source_row_number, column_position, source_column, field_id, cell_value from raw.survey_cells "
            "join raw.survey_columns using (column_id) where load_id = ? and column_position > ? order by 1, 2",
            [result.load_id, width],
        ).fetchall()
        columns = con.execute(
            "select count(*), count(distinct column_position) from raw.survey_columns where load_id = ?",
            [result.load_id],
        ).fetchone()
    assert extra == [
        (4, width + 1, "", None, "extra one"),
        (4, width + 2, "", None, "extra two"),
        (6, width + 1, "", None, "extra three"),
    ]
    assert columns == (width + 2, width + 2)
    assert [r[:3] for r in _quarantine(paths.warehouse, result.load_id)] == [
        (4, None, "ragged_row"),
        (6, None, "ragged_row"),
    ]


# ------------------------------------------------------------------------------ lines above a CSV's header


def _cells(warehouse: Path, load_id: str) -> list[tuple]:
    """Every cell of a load by source row and column header: what the file held, wherever its header was."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select c.source_row_number - (select min(source_row_number) from raw.survey_cells c2 "
            "  join raw.survey_columns k2 using (column_id) where k2.load_id = ?) as nth_row, "
            "k.source_column, c.cell_value from raw.survey_cells c join raw.survey_columns k using (column_id) "
            "where k.load_id = ? order by 1, 2",
            [load_id, load_id],
        ).fetchall()


@pytest.mark.parametrize(
    ("hint", "delimiter", "spec_header_row"),
    [
        ("sep=,", ",", 1),  # the spec does not count the hint
        ("sep=;", ";", 1),  # the hint names the file's delimiter, the spec says ','
        ('"sep=,"', ",", 1),  # quoted, as some tools write it
        ("SEP=,", ",", 2),  # the spec already counts the hint as row 1
    ],
)
def test_excels_delimiter_hint_is_honoured_and_said(
    paths, wave_2019, tmp_path, hint: str, delimiter: str, spec_header_row: int
) -> None:
    spec, lines = wave_2019
    plain = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines, "plain.csv")), paths.warehouse)
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter, lineterminator="\n").writerows(csv.reader(io.StringIO("\n".join(lines))))
    hinted_lines = [hint, *text.getvalue().splitlines()]
    hinted_spec = dataclasses.replace(spec, file=_write(tmp_path, hinted_lines), header_row=spec_header_row)
    hinted = load_wave(hinted_spec, paths.warehouse)
    assert (hinted.row_count, hinted.quarantined) == (plain.row_count, plain.quarantined)
    assert _cells(paths.warehouse, hinted.load_id) == _cells(paths.warehouse, plain.load_id)
    said = " ".join(hinted.warnings)
    if delimiter != spec.delimiter:
        assert f"read with {delimiter!r}, not the {spec.delimiter!r}" in said, said
        assert f"set delimiter: {delimiter!r}" in said
    if spec_header_row == 1:
        assert "the header is row 2 of the file" in said, said
    else:
        assert "the header is row" not in said, said


def test_a_title_block_above_a_csv_header_is_named_with_the_row_to_set(paths, wave_2019, tmp_path) -> None:
    spec, lines = wave_2019
    titled = ["Kaupunkikysely 2019,,", "Raportti luotu 1.6.2019,,", "", *lines]
    with pytest.raises(WaveFileError) as refused:
        load_wave(dataclasses.replace(spec, file=_write(tmp_path, titled)), paths.warehouse)
    message = str(refused.value)
    assert "Row 4 of the file holds every mapped column: set header_row: 4" in message, message
    assert "row 1: 'Kaupunkikysely 2019'" in message and "row 3: (empty)" in message, message
    # with header_row set as the message says, the file loads as the plain one does
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, titled), header_row=4), paths.warehouse)
    plain = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines, "plain.csv")), paths.warehouse)
    assert _cells(paths.warehouse, result.load_id) == _cells(paths.warehouse, plain.load_id)


def test_a_header_below_the_spec_row_never_quotes_a_respondents_row(paths, wave_2019, tmp_path) -> None:
    """header_row points past the header (at an answer): the message says where the header is, and quotes no
    answer row (only lines above the header are shown)."""
    spec, lines = wave_2019
    with pytest.raises(WaveFileError) as refused:
        load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines), header_row=3), paths.warehouse)
    message = str(refused.value)
    assert "Row 1 of the file holds every mapped column: set header_row: 1" in message, message
    email = lines[0].split(",").index("Email")
    assert not any(line.split(",")[email] in message for line in lines[1:6])


def test_a_header_repeated_below_answers_is_never_advised_and_no_answer_is_quoted(paths, wave_2019, tmp_path) -> None:
    """Two exports joined (or the first header renamed): the header found below answer rows is not advised as
    header_row (it would leave those answers out), and none of them is quoted."""
    spec, lines = wave_2019
    joined = [lines[0].replace("Email", "Sähköposti"), *lines[1:4], lines[0], *lines[4:]]
    with pytest.raises(WaveFileError) as refused:
        load_wave(dataclasses.replace(spec, file=_write(tmp_path, joined)), paths.warehouse)
    message = str(refused.value)
    assert "Row 5 of the file holds every mapped column, but rows 2-4 above it look like answers" in message, message
    assert "set header_row" not in message
    header = lines[0].split(",")
    for line in lines[1:4]:
        cells = line.split(",")
        assert cells[header.index("Email")] not in message and cells[header.index("Nimi")] not in message


def test_answers_above_a_header_row_set_too_far_down_are_said(paths, wave_2019, tmp_path) -> None:
    spec, lines = wave_2019
    joined = [lines[0], *lines[1:4], *lines]  # three answers, then the file as exported
    result = load_wave(dataclasses.replace(spec, file=_write(tmp_path, joined), header_row=5), paths.warehouse)
    said = " ".join(result.warnings)
    assert "rows 2-4 above the header (header_row: 5" in said and "look like answers and are not loaded" in said, said


@pytest.mark.parametrize("spec_delimiter", [",", ";"])
def test_a_delimiter_hint_the_file_contradicts_is_not_followed(paths, wave_2019, tmp_path, spec_delimiter: str) -> None:
    """`sep=,` above a file written with ';': read with the spec's delimiter when that gives the header (and said),
    else refused in the spec's terms."""
    spec, lines = wave_2019
    text = io.StringIO()
    csv.writer(text, delimiter=";", lineterminator="\n").writerows(csv.reader(io.StringIO("\n".join(lines))))
    contradicted = ["sep=,", *text.getvalue().splitlines()]
    file = _write(tmp_path, contradicted)
    if spec_delimiter == ";":
        plain = load_wave(dataclasses.replace(spec, file=_write(tmp_path, lines, "plain.csv")), paths.warehouse)
        result = load_wave(dataclasses.replace(spec, file=file, delimiter=";"), paths.warehouse)
        assert _cells(paths.warehouse, result.load_id) == _cells(paths.warehouse, plain.load_id)
        assert "the file is not written with ',': read with the ';' of" in " ".join(result.warnings)
    else:
        with pytest.raises(WaveFileError) as refused:
            load_wave(dataclasses.replace(spec, file=file), paths.warehouse)
        assert "is the delimiter ';' rather than ','?" in str(refused.value), str(refused.value)


def _with_parts(source: Path, target: Path, change: Callable[[str, bytes], bytes]) -> Path:
    """A copy of a workbook (a zip package) with each part's bytes as `change(name, data)` makes them."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for item in original.infolist():
            copy.writestr(item, change(item.filename, original.read(item.filename)))
    return target


def _with_dimension(source: Path, target: Path, dimension: str) -> Path:
    """A copy of a workbook whose sheets record another size (`<dimension ref=...>`), the data unchanged."""

    def change(name: str, data: bytes) -> bytes:
        if not name.startswith("xl/worksheets/sheet"):
            return data
        data, count = re.subn(rb'<dimension ref="[^"]*"', f'<dimension ref="{dimension}"'.encode(), data)
        assert count == 1, name
        return data

    return _with_parts(source, target, change)


def test_a_workbook_recording_a_wrong_size_is_read_whole(paths, tmp_path) -> None:
    """Tools other than Excel write a sheet's <dimension> wrong: every row and column the sheet holds is loaded."""
    spec = find_wave_spec(2018, paths)
    assert spec is not None and spec.format == "xlsx"
    whole = load_wave(spec, paths.warehouse)
    small = _with_dimension(spec.file, tmp_path / "small.xlsx", "A1:C5")
    cut = load_wave(dataclasses.replace(spec, file=small), paths.warehouse)
    assert (cut.row_count, cut.quarantined) == (whole.row_count, whole.quarantined)
    assert _cells(paths.warehouse, cut.load_id) == _cells(paths.warehouse, whole.load_id)


def _with_cell(source: Path, target: Path, reference: str, xml: bytes = b"<v>7</v>") -> Path:
    """A copy of a workbook with one more cell, at `reference`, below the sheet's rows (as a stray keystroke
    stores it)."""
    row = re.fullmatch(r"[A-Z]+(\d+)", reference)
    assert row is not None

    def change(name: str, data: bytes) -> bytes:
        if not name.startswith("xl/worksheets/sheet"):
            return data
        cell = b'<row r="%s"><c r="%s">%s</c></row>' % (row.group(1).encode(), reference.encode(), xml)
        return data.replace(b"</sheetData>", cell + b"</sheetData>")

    return _with_parts(source, target, change)


@pytest.mark.parametrize("reference", ["XFD1048576", "K1000000", "ZZ200000"])
def test_a_cell_far_from_the_answers_is_named_not_read_into_memory(
    paths, wave_2018, loaded, tmp_path, reference: str
) -> None:
    """The reader holds a sheet as a dense rectangle from A1 to its last cell: one cell typed far away (the last
    cell of the sheet, XFD1048576, makes 17 billion cells, and the process abort) would take the memory of a sheet
    that full. Such a sheet is refused before it is read, naming the cell and the row."""
    path = _with_cell(wave_2018.file, tmp_path / "far.xlsx", reference)
    row = int(re.sub("[A-Z]", "", reference))
    error = _rejected(
        dataclasses.replace(wave_2018, file=path), paths, loaded, f"they reach {reference}", "clear that cell", row=row
    )
    assert "nearly all empty" in str(error), str(error)


@pytest.mark.parametrize("reference", ["K5000", "AB60"])
def test_a_cell_a_little_beyond_the_answers_is_read_and_kept(paths, wave_2018, tmp_path, reference: str) -> None:
    """A sheet is read as far as its cells go: a stray value whose rectangle is no burden is loaded, in its row
    and column, and a styled empty cell at the sheet's end (nothing to read) makes no difference."""
    path = _with_cell(wave_2018.file, tmp_path / "stray.xlsx", reference, xml=b"<v>0.125</v>")
    path = _with_cell(path, tmp_path / "styled.xlsx", "XFD1048576", xml=b"")
    result = load_wave(dataclasses.replace(wave_2018, file=path), paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        found = con.execute(
            "select c.source_row_number, k.column_position, c.cell_value from raw.survey_cells c "
            "join raw.survey_columns k using (column_id) where k.load_id = ? and c.cell_value = '0.125'",
            [result.load_id],
        ).fetchall()
    letters, row = coordinate_from_string(reference)
    assert found == [(row, column_index_from_string(letters), "0.125")], found


@pytest.mark.parametrize("fmt", ["xlsx", "ods"])
def test_a_value_in_a_sheets_last_column_is_kept_right_of_the_header(paths, wave_2018, tmp_path, fmt: str) -> None:
    """A value typed in the sheet's last column (XFD60), or an .ods value repeated across a whole row in a few bytes:
    the sheet is a few rows of 16,384 columns, read whole, and the grid holds the header's columns only (16,384 of
    them took DuckDB's whole memory for 60 rows). The values land in raw in their row and column, right of the
    header; the row is not called ragged."""
    if fmt == "xlsx":
        path = _with_cell(wave_2018.file, tmp_path / "last.xlsx", "XFD60", xml=b"<v>0.125</v>")
        spec, value, columns = dataclasses.replace(wave_2018, file=path), "0.125", [16384]
    else:
        across = ODS_TEXT.replace("<table:table-cell ", '<table:table-cell table:number-columns-repeated="16384" ')
        path = _ods_with(wave_2018, tmp_path / "across.ods", f"<table:table-row>{across}</table:table-row>")
        spec, value, columns = dataclasses.replace(wave_2018, file=path, format="ods"), "x", list(range(1, 16385))
    result = load_wave(spec, paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        found = con.execute(
            "select c.source_row_number, k.column_position, k.source_column from raw.survey_cells c "
            "join raw.survey_columns k using (column_id) where k.load_id = ? and c.cell_value = ? order by 2",
            [result.load_id, value],
        ).fetchall()
    assert [(row, column) for row, column, _ in found] == [(60, c) for c in columns], found[:3]
    assert {header for _, column, header in found if column > 11} == {""}, found[-1]  # the 2018 header: 11 columns
    assert result.row_count == 56, result.row_count
    assert "ragged_row" not in {reason for _, _, reason, _ in _quarantine(paths.warehouse, result.load_id)}


def test_a_draft_leaves_out_a_sheet_whose_cells_reach_far(wave_2018, tmp_path, caplog) -> None:
    from survey_warehouse.intake.workbook import first_rows

    path = _with_cell(wave_2018.file, tmp_path / "far.xlsx", "K1000000")
    assert first_rows(path, 5) == {}
    assert "they reach K1000000" in caplog.text, caplog.text


# A load that could take all the memory runs in a process of its own, limited in memory and time: a guard that
# lets such a sheet through fails the test instead of killing the test run.
APART = """
import json, pickle, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from survey_warehouse.errors import WaveFileError
job, spec, warehouse = pickle.loads(sys.stdin.buffer.read())
try:
    if job == "draft":
        from survey_warehouse.intake.workbook import first_rows
        print(json.dumps({"sheets": sorted(first_rows(spec.file, 5))}))
    else:
        from survey_warehouse.raw.load import load_wave
        print(json.dumps({"rows": load_wave(spec, warehouse).row_count}))
except WaveFileError as error:
    print(json.dumps({"verdict": str(error), "row": error.row}))
"""
MEMORY_APART = 3 << 30
SECONDS_APART = 120


def _apart(spec, warehouse: Path, job: str = "load") -> dict:
    """What a load (or a draft's first look, `job="draft"`) of the spec's file says, in a process of its own."""
    import json
    import pickle
    import subprocess
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-c", APART, str(MEMORY_APART)],
            input=pickle.dumps((job, spec, warehouse)),
            check=False,
            capture_output=True,
            timeout=SECONDS_APART,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {job} of {spec.file.name} took over {SECONDS_APART} s")
    stderr = done.stderr.decode(errors="replace")[-3000:]
    assert done.returncode == 0, f"the {job} of {spec.file.name} died ({done.returncode}): {stderr}"
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


FAR_ROW = b'<row r="1048576"><c r="XFD1048576"><v>7</v></c></row>'
MAIN_NS = b"http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _far_last(xml: bytes, row: bytes = FAR_ROW) -> bytes:
    return xml.replace(b"</sheetData>", row + b"</sheetData>")


def _padded(xml: bytes) -> bytes:
    """A cell at XFD300 and, before it, as many styled empty cells (nothing to read) as make it look dense."""
    styled = b'<c r="A299" s="0"/>' * 160_000
    return _far_last(xml, b'<row r="299">' + styled + b'</row><row r="300"><c r="XFD300"><v>7</v></c></row>')


FAR_CELLS_WRITTEN = {
    "far row written first": (lambda xml: xml.replace(b"<sheetData>", b"<sheetData>" + FAR_ROW, 1), "XFD1048576"),
    "a line break after <c": (lambda xml: _far_last(xml).replace(b'<c r="', b'<c\n r="'), "XFD1048576"),
    "a tab after <c": (lambda xml: _far_last(xml).replace(b'<c r="', b'<c\tr="'), "XFD1048576"),
    "reference in lower case": (lambda xml: _far_last(xml, FAR_ROW.replace(b"XFD", b"xfd")), "XFD1048576"),
    "elements of a prefix": (
        lambda xml: _far_last(
            xml, b'<x:row xmlns:x="%s" r="1048576"><x:c r="XFD1048576"><x:v>7</x:v></x:c></x:row>' % MAIN_NS
        ),
        "XFD1048576",
    ),
    "a cell of another namespace": (
        lambda xml: _far_last(xml, b'<row r="1048576"><o:c xmlns:o="urn:o" r="XFD1048576"><o:v>7</o:v></o:c></row>'),
        "XFD1048576",
    ),
    "reference after another attribute": (
        lambda xml: _far_last(xml, FAR_ROW.replace(b"<c r", b'<c s="0" r')),
        "XFD1048576",
    ),
    "styled empty cells around it": (_padded, "XFD300"),
}


@pytest.mark.parametrize("written", FAR_CELLS_WRITTEN)
def test_a_far_cell_is_found_however_the_sheet_writes_it(paths, wave_2018, tmp_path, written: str) -> None:
    """Valid XML may write a cell's start tag with any whitespace after its name (a line break, a tab) and its
    elements with a prefix, its reference in lower case or after other attributes, and its rows in any order: the
    reader places the cell all the same, so the look over the sheet's bytes finds the farthest reference whatever
    its place in the file, and counts only cells with a value (a styled empty cell is nothing the reader holds)."""
    change, reference = FAR_CELLS_WRITTEN[written]
    path = _with_parts(
        wave_2018.file, tmp_path / "far.xlsx", lambda name, data: change(data) if "worksheets/" in name else data
    )
    said = _apart(dataclasses.replace(wave_2018, file=path), paths.warehouse)
    assert f"they reach {reference}" in said.get("verdict", ""), said
    assert said["row"] == int(re.sub("[A-Z]", "", reference)), said
    drafted = _apart(dataclasses.replace(wave_2018, file=path), paths.warehouse, job="draft")
    assert drafted == {"sheets": []}, drafted


def test_a_sheet_whose_cells_cannot_be_placed_without_parsing_it_and_that_cannot_be_parsed_is_refused(
    paths, wave_2018, tmp_path
) -> None:
    """Cells stored without their references lie where the cells before them put them (16,383 of them put the last
    at XFD), which only parsing the sheet tells; a sheet that cannot be parsed safely (a DTD, which the reader skips)
    is called damaged, not read."""

    def change(name: str, data: bytes) -> bytes:
        if "worksheets/" not in name:
            return data
        far = b'<row r="1048576">' + b"<c/>" * 16383 + b"<c><v>7</v></c></row>"
        return b'<!DOCTYPE worksheet [<!ENTITY e "x">]>' + data.replace(b"</sheetData>", far + b"</sheetData>")

    path = _with_parts(wave_2018.file, tmp_path / "doctype.xlsx", change)
    said = _apart(dataclasses.replace(wave_2018, file=path), paths.warehouse)
    assert "is damaged and cannot be read" in said.get("verdict", ""), said


ODS_TEXT = '<table:table-cell office:value-type="string"><text:p>x</text:p></table:table-cell>'
ODS_SHEET_ROWS = 59  # the 2018 sheet's rows, from its title block to its last answer


def _ods_rows_below(rows: int, columns: int, cell: str = ODS_TEXT) -> str:
    """Rows of an .ods sheet below the 2018 sheet's: `rows` empty rows stored as one repeated row, then one row of
    `columns` empty cells stored as one repeated cell and `cell` after them."""
    empty = f'<table:table-cell table:number-columns-repeated="{columns}"/>' if columns else ""
    return (
        f'<table:table-row table:number-rows-repeated="{rows}"><table:table-cell/></table:table-row>'
        f"<table:table-row>{empty}{cell}</table:table-row>"
    )


def _ods_with(spec, path: Path, below: str = "", other: str = "") -> Path:
    """The 2018 sheet as an .ods with `below` after its rows, and, when given, a sheet 'Ohje' of the rows `other`
    ahead of it."""
    from delivered_formats import as_ods_xml

    def change(name: str, data: bytes) -> bytes:
        if name != "content.xml":
            return data
        end = data.rindex(b"</table:table>")
        return data[:end] + below.encode() + data[end:]

    return _with_parts(as_ods_xml(spec, path.with_suffix(".plain.ods"), before=other), path, change)


ODS_FAR = {
    "CL1000001": (_ods_rows_below(1_000_000 - ODS_SHEET_ROWS, 89), "", "they reach CL1000001", 1_000_001),
    "beyond the reader's own limit": (
        _ods_rows_below(1_048_575 - ODS_SHEET_ROWS, 16383),
        "",
        "they reach XFD1048576",
        1_048_576,
    ),
    "a value repeated over whole rows": (
        '<table:table-row table:number-rows-repeated="1048000">'
        + ODS_TEXT.replace("<table:table-cell ", '<table:table-cell table:number-columns-repeated="16384" ')
        + "</table:table-row>",
        "",
        "more than the 33,554,432 cells a sheet may have",
        1_048_000 + ODS_SHEET_ROWS,
    ),
    "after a comment quoting a sheet's end": (
        "<!-- </table:table> -->" + _ods_rows_below(1_000_000 - ODS_SHEET_ROWS, 89),
        "",
        "they reach CL1000001",
        1_000_001,
    ),
    "in another sheet": (
        "",
        f"<table:table-row>{ODS_TEXT}</table:table-row>" + _ods_rows_below(999_998, 89),
        "the sheet 'Ohje' holds 2 cells, but they reach CL1000000",
        1_000_000,
    ),
}


@pytest.mark.parametrize("far", ODS_FAR)
def test_an_ods_cell_far_from_the_answers_is_named_not_read_into_memory(paths, wave_2018, tmp_path, far) -> None:
    """As in an .xlsx: the reader holds an .ods sheet as a dense rectangle up to its last cell with a value, every
    sheet of the file when it opens it. A value far below or right of the answers (a few bytes: the rows between
    are one repeated row) is refused before the file is read, naming the cell and its row, and so is a sheet too
    large for memory however full (over the reader's own limit too, not called damaged). A draft is told so."""
    below, other, said, row = ODS_FAR[far]
    spec = dataclasses.replace(wave_2018, file=_ods_with(wave_2018, tmp_path / "far.ods", below, other), format="ods")
    verdict = _apart(spec, paths.warehouse)
    assert said in verdict.get("verdict", ""), verdict
    assert verdict["row"] == row and "damaged" not in verdict["verdict"], verdict
    assert _apart(spec, paths.warehouse, job="draft") == verdict


def _ods_repeated(rows: int, columns: int = 1) -> str:
    """A row holding one value, stored once for `columns` cells across, the row stored once for `rows` rows."""
    across = f' table:number-columns-repeated="{columns}"' if columns > 1 else ""
    return (
        f'<table:table-row table:number-rows-repeated="{rows}">'
        + ODS_TEXT.replace("<table:table-cell ", f"<table:table-cell{across} ")
        + "</table:table-row>"
    )


ODS_REPEATED = {
    "a value repeated down a million rows": (
        _ods_repeated(1_000_000),
        "",
        "the sheet 'Vastaukset' stores 599 cells, but cell A60 is repeated 1,000,000 times down (1,000,000 cells",
        60,
    ),
    "a value repeated across and down": (
        _ods_repeated(1_000, 16_384),
        "",
        "cell A60 is repeated 16,384 times across and 1,000 times down (16,384,000 cells",
        60,
    ),
    "in another sheet": (
        "",
        _ods_repeated(1_000, 16_384),
        "the sheet 'Ohje' stores 1 cells, but cell A1 is repeated 16,384 times across and 1,000 times down",
        1,
    ),
}


@pytest.mark.parametrize("repeated", ODS_REPEATED)
def test_an_ods_value_repeated_into_millions_of_cells_is_named_not_read_into_memory(
    paths, wave_2018, tmp_path, repeated
) -> None:
    """A value stored once for a million rows, or for 16,384 columns of a thousand rows, takes a few bytes of the file
    and holds the sheet's rectangle as full as its repeats make it: the reader would hold millions of cells (and the
    process abort), every sheet of the file when it opens it. The cells the file stores are counted against the
    rectangle, as a far cell's are, and the sheet is refused before it is read, naming the cell repeated and its row;
    a draft is told so."""
    below, other, said, row = ODS_REPEATED[repeated]
    path = _ods_with(wave_2018, tmp_path / "repeated.ods", below, other)
    spec = dataclasses.replace(wave_2018, file=path, format="ods")
    verdict = _apart(spec, paths.warehouse)
    assert said in verdict.get("verdict", "") and "save the file again" in verdict["verdict"], verdict
    assert verdict["row"] == row, verdict
    assert _apart(spec, paths.warehouse, job="draft") == verdict


def test_an_ods_sheet_is_measured_by_the_cells_it_stores(paths, wave_2018, tmp_path, monkeypatch) -> None:
    """The rectangle is set against the cells the file stores: with the size any sheet may reach lowered (to 100
    cells), the 2018 sheet (598 cells stored, 649 in its rectangle) still loads, and a sheet whose rows each store
    one value for their 11 cells (identical neighbouring cells, which LibreOffice stores as one repeated cell)
    passes the look; ten thousand rows stored as one repeated row are refused."""
    from delivered_formats import write_ods

    from survey_warehouse.intake import workbook
    from survey_warehouse.intake.opendocument import refuse_unreadable_tables

    monkeypatch.setattr(workbook, "SPAN_CELLS", 100)
    spec = dataclasses.replace(wave_2018, format="ods")
    plain = load_wave(dataclasses.replace(spec, file=_ods_with(spec, tmp_path / "plain.ods")), paths.warehouse)
    assert plain.row_count == 55, plain
    across = ODS_TEXT.replace("<table:table-cell ", '<table:table-cell table:number-columns-repeated="11" ')
    rows = "".join(f"<table:table-row>{across.replace('>x<', f'>{n}<')}</table:table-row>" for n in range(200))
    write_ods(tmp_path / "identical.ods", {"Vastaukset": rows})
    refuse_unreadable_tables(tmp_path / "identical.ods", "Vastaukset")
    repeated = _ods_with(spec, tmp_path / "repeated.ods", _ods_repeated(10_000))
    with pytest.raises(WaveFileError, match="cell A60 is repeated 10,000 times down"):
        load_wave(dataclasses.replace(spec, file=repeated), paths.warehouse)


def _xlsb_with(spec, path: Path, rows: bytes) -> Path:
    """The 2018 sheet as an .xlsb with the BIFF12 records `rows` (rows and their cells) after its own rows."""
    from delivered_formats import END_SHEET_DATA, _record, as_xlsb

    end = _record(END_SHEET_DATA)
    plain = as_xlsb(spec, path.with_suffix(".plain.xlsb"))
    return _with_parts(plain, path, lambda name, data: data.replace(end, rows + end) if "worksheets/" in name else data)


def _xlsb_row(row: int, *cells: bytes) -> bytes:
    """A BrtRowHdr of the row (0-based) and the cell records after it."""
    import struct

    from delivered_formats import ROW_HEADER, _record

    return _record(ROW_HEADER, struct.pack("<IIH", row, 0, 300) + bytes(3) + struct.pack("<I", 0)) + b"".join(cells)


def _binary_far(spec, path: Path, far: str) -> Path:
    from delivered_formats import _xlsb_cell, as_xls

    if far == "xlsb: XFD1048576":
        return _xlsb_with(spec, path.with_suffix(".xlsb"), _xlsb_row(1_048_575, _xlsb_cell(16383, "x")))
    if far == "xls: IV65536":
        return as_xls(spec, path.with_suffix(".xls"), beyond={(65535, 255): "x"})
    other = [["Ohje"], *[[]] * 65534, [*[None] * 255, "x"]]  # a sheet the spec does not name: read all the same
    return as_xls(spec, path.with_suffix(".xls"), before=other)


BINARY_FAR = {
    "xlsb: XFD1048576": ("the sheet 'Vastaukset' holds", "they reach XFD1048576", 1_048_576),
    "xls: IV65536": ("the sheet 'Vastaukset' holds", "they reach IV65536", 65_536),
    "xls: in another sheet": ("the sheet 'Ohje' holds 2 cells", "they reach IV65536", 65_536),
}


@pytest.mark.parametrize("far", BINARY_FAR)
def test_an_xls_or_xlsb_cell_far_from_the_answers_is_named_not_read_into_memory(
    paths, wave_2018, tmp_path, far
) -> None:
    """As in an .xlsx: the reader holds a sheet of an .xls or an .xlsb as a dense rectangle up to its last cell (one
    cell at an .xlsb's XFD1048576 is 17 billion cells, and the process aborts; at an .xls's IV65536, 16 million of a
    56-row sheet), every sheet of an .xls when it opens it. Such a sheet is refused from its cell records before the
    file is read, naming the cell and its row; a draft leaves out such an .xlsb sheet and is told of such an .xls."""
    path = _binary_far(wave_2018, tmp_path / "far", far)
    spec = dataclasses.replace(wave_2018, file=path, format=path.suffix[1:])
    sheet, said, row = BINARY_FAR[far]
    verdict = _apart(spec, paths.warehouse)
    assert sheet in verdict.get("verdict", "") and said in verdict["verdict"], verdict
    assert "nearly all empty" in verdict["verdict"] and verdict["row"] == row, verdict
    drafted = _apart(spec, paths.warehouse, job="draft")
    assert drafted == ({"sheets": []} if spec.format == "xlsb" else verdict), drafted


def _xls_claiming(spec, path: Path, rows: int, columns: int) -> Path:
    """The 2018 sheet as an .xls whose DIMENSIONS record (the size the sheet records) claims `rows` and `columns`,
    its cells unchanged (the record lies whole in the file's bytes, the workbook stream being stored in order)."""
    import struct

    from delivered_formats import as_xls

    data = bytearray(as_xls(spec, path.with_suffix(".plain.xls")).read_bytes())
    at = data.index(struct.pack("<HHIIHH", 0x0200, 14, 0, 59, 0, 11))
    struct.pack_into("<II", data, at + 4, 0, rows)
    struct.pack_into("<HH", data, at + 12, 0, columns)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("rows", "columns"), [(4_294_967_295, 65_535), (1_048_576, 16_384), (2_147_483_647, 256)])
def test_an_xls_recording_a_size_no_xls_sheet_has_is_refused_not_read(
    paths, wave_2018, tmp_path, rows: int, columns: int
) -> None:
    """The reader takes memory for the size a sheet's DIMENSIONS record claims before it reads a cell (40 bytes a
    cell: a claim of billions of rows aborts the process). A claim beyond any .xls sheet's size (65,536 rows by 256
    columns) is a damaged record: refused before the reader opens the file, naming the sheet, the size claimed and
    the cells the sheet holds; a draft is told so."""
    path = _xls_claiming(wave_2018, tmp_path / "claiming.xls", rows, columns)
    spec = dataclasses.replace(wave_2018, file=path, format="xls")
    verdict = _apart(spec, paths.warehouse)
    said = (
        f"the sheet 'Vastaukset' records its size (its DIMENSIONS record) as {rows:,} rows by {columns:,} columns, "
        "more than an .xls sheet can have (65,536 rows by 256 columns), but holds 598 cells"
    )
    assert said in verdict.get("verdict", "") and "save it again" in verdict["verdict"], verdict
    assert _apart(spec, paths.warehouse, job="draft") == verdict


def test_an_xls_recording_the_largest_size_an_xls_sheet_has_loads(paths, wave_2018, tmp_path) -> None:
    """A sheet recording the whole of an .xls sheet's size (65,536 rows by 256 columns) as its own: the memory the
    reader takes for it is never written to, and the sheet loads as it is."""
    path = _xls_claiming(wave_2018, tmp_path / "whole.xls", 65_536, 256)
    assert _apart(dataclasses.replace(wave_2018, file=path, format="xls"), paths.warehouse) == {"rows": 55}


def test_an_xls_or_xlsb_with_empty_styled_cells_far_away_loads(paths, wave_2018, tmp_path) -> None:
    """The 2018 wave as an .xls and as an .xlsb loads; an empty cell with a style far from the answers (an .xls's
    BLANK and MULBLANK, an .xlsb's BrtCellBlank), which the reader does not place, makes no difference."""
    import struct

    from delivered_formats import _record, as_xls, as_xlsb

    blank = {(65535, 255): None, (65534, 200): None, (65534, 201): None, (65534, 202): None}
    blank_xlsb = _xlsb_row(1_048_575, _record(0x0001, struct.pack("<II", 16383, 0)))
    for plain, styled, format in [
        (as_xls(wave_2018, tmp_path / "plain.xls"), as_xls(wave_2018, tmp_path / "styled.xls", beyond=blank), "xls"),
        (
            as_xlsb(wave_2018, tmp_path / "plain.xlsb"),
            _xlsb_with(wave_2018, tmp_path / "styled.xlsb", blank_xlsb),
            "xlsb",
        ),
    ]:
        assert b"\xbe\x00" in styled.read_bytes() or format == "xlsb", "a MULBLANK among the empty cells"
        spec = dataclasses.replace(wave_2018, format=format)
        loaded = _apart(dataclasses.replace(spec, file=plain), paths.warehouse)
        assert loaded == {"rows": 55}, loaded
        assert _apart(dataclasses.replace(spec, file=styled), paths.warehouse) == loaded
        assert _apart(dataclasses.replace(spec, file=styled), paths.warehouse, job="draft") == {"sheets": [spec.sheet]}


def test_an_xls_mulrk_reaches_its_last_column() -> None:
    """A MULRK record is a row's run of numbers, each placed by the reader, up to the column in its last bytes."""
    import struct

    from survey_warehouse.intake.binary import _xls_reach

    def record(kind: int, data: bytes) -> bytes:
        return struct.pack("<HH", kind, len(data)) + data

    run = struct.pack("<HH", 65535, 0) + struct.pack("<Hi", 0, 2 << 2 | 2) * 256 + struct.pack("<H", 255)
    stream = record(0x0809, bytes(16)) + record(0x00BD, run) + record(0x000A, b"")
    assert _xls_reach(stream, 0, len(stream)) == ((256, (256, 65536), (256, 65536)), (0, 0))


def test_an_ods_with_libreoffices_empty_rows_and_columns_to_the_sheets_end_loads(paths, wave_2018, tmp_path) -> None:
    """LibreOffice writes every sheet's empty rows and columns to its end as repeated empty cells (1,048,000 rows
    by 16,384 columns, and rows without a value over the whole width): they hold nothing the reader keeps, nor does
    a comment on an empty cell far away, and the sheet loads as the same sheet without them."""
    trailing = (
        '<table:table-row table:number-rows-repeated="1048000">'
        '<table:table-cell table:number-columns-repeated="16384"/></table:table-row>'
    )
    width = '<table:table-row><table:table-cell table:number-columns-repeated="16384"/></table:table-row>'
    note = (
        '<table:table-cell><office:annotation office:display="false"><text:p>huom</text:p></office:annotation>'
        "</table:table-cell>"
    )
    other = f"<table:table-row>{ODS_TEXT}</table:table-row>{width}" + _ods_rows_below(999_998, 89, note) + trailing
    spec = dataclasses.replace(wave_2018, format="ods")
    plain = load_wave(dataclasses.replace(spec, file=_ods_with(spec, tmp_path / "plain.ods")), paths.warehouse)
    wide = _ods_with(spec, tmp_path / "libreoffice.ods", width + trailing, other)
    result = load_wave(dataclasses.replace(spec, file=wide), paths.warehouse)
    assert (result.row_count, result.quarantined) == (plain.row_count, plain.quarantined)
    assert _cells(paths.warehouse, result.load_id) == _cells(paths.warehouse, plain.load_id)


ODS_NESTED = (
    '<table:table-cell office:value-type="string"><text:p>Hanna Salminen</text:p>'
    '<table:table table:name="sisä"><table:table-row><table:table-cell office:value-type="string">'
    "<text:p>sisä</text:p></table:table-cell></table:table-row></table:table></table:table-cell>"
)


def test_a_table_nested_in_an_ods_cell_is_named_not_read_as_the_sheets_end(paths, wave_2018, loaded, tmp_path) -> None:
    """ODF lets a cell hold a table; the reader ends the sheet where that table ends, so the rows below would be
    lost without a word. The cell is named instead."""
    from delivered_formats import as_ods_xml

    row = wave_2018.header_row + 1
    path = as_ods_xml(wave_2018, tmp_path / "nested.ods", {(row, "Nimi"): ODS_NESTED})
    spec = dataclasses.replace(wave_2018, file=path, format="ods")
    _rejected(spec, paths, loaded, "holds a table inside cell A5", "remove the table from that cell", row=row)


def test_a_table_nested_in_a_cell_of_another_sheet_leaves_the_answers_whole(paths, wave_2018, tmp_path) -> None:
    spec = dataclasses.replace(wave_2018, format="ods")
    plain = load_wave(dataclasses.replace(spec, file=_ods_with(spec, tmp_path / "plain.ods")), paths.warehouse)
    other = f"<table:table-row>{ODS_NESTED}</table:table-row><table:table-row>{ODS_TEXT}</table:table-row>"
    result = load_wave(
        dataclasses.replace(spec, file=_ods_with(spec, tmp_path / "other.ods", other=other)), paths.warehouse
    )
    assert (result.row_count, result.quarantined) == (plain.row_count, plain.quarantined)
    assert _cells(paths.warehouse, result.load_id) == _cells(paths.warehouse, plain.load_id)


def test_a_sheet_too_large_for_memory_however_full_is_refused(paths, wave_2018, loaded, tmp_path, monkeypatch) -> None:
    """A sheet whose cells fill it may still be too large to hold (values filled down whole columns): over the
    limit of any sheet of answers it is refused, with its size. (The limit is lowered here to the 2018 sheet's.)"""
    from survey_warehouse.intake import workbook

    monkeypatch.setattr(workbook, "SPAN_LIMIT", 600)
    error = _rejected(wave_2018, paths, loaded, "holds 598 cells, reaching", "more than the 600 cells", row=59)
    assert "59 rows by 11 columns (649 cells" in str(error), str(error)


SKILLS_2018 = "Toimialojen digiosaaminen (1-5)"


def _workbook_with_formula(spec, path: Path, row: int, formula: str) -> Path:
    """The 2018 workbook with one answer typed as a formula, saved without its result (openpyxl does not
    calculate, as many tools that write workbooks do not)."""
    wb = openpyxl.load_workbook(spec.file)
    ws = wb[spec.sheet]
    header = [c.value for c in ws[spec.header_row]]
    ws.cell(row=row, column=header.index(SKILLS_2018) + 1, value=formula)
    wb.save(path)
    return path


def test_a_formula_saved_without_its_result_is_named_not_read_as_empty(paths, tmp_path) -> None:
    spec = find_wave_spec(2018, paths)
    path = _workbook_with_formula(spec, tmp_path / "formula.xlsx", spec.header_row + 3, "=2+2")
    with pytest.raises(WaveFileError) as refused:
        load_wave(dataclasses.replace(spec, file=path), paths.warehouse)
    error = refused.value
    assert "1 cell(s) of the sheet hold a formula without its result (J" in str(error), str(error)
    assert error.row == spec.header_row + 3 and error.column == f"'{SKILLS_2018}'", (error.row, error.column)


def test_a_formula_with_its_result_stored_is_read_as_its_result(paths, tmp_path) -> None:
    """As Excel saves it: the formula and its result; the result is the answer."""
    spec = find_wave_spec(2018, paths)
    bare = _workbook_with_formula(spec, tmp_path / "bare.xlsx", spec.header_row + 3, "=2+2")
    calculated = tmp_path / "calculated.xlsx"
    with zipfile.ZipFile(bare) as original, zipfile.ZipFile(calculated, "w", zipfile.ZIP_DEFLATED) as copy:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                data = re.sub(rb"<f>2\+2</f>(<v\s*/>|<v></v>)?", b"<f>2+2</f><v>4</v>", data)
            copy.writestr(item, data)
    result = load_wave(dataclasses.replace(spec, file=calculated), paths.warehouse)
    cells = {(r, c): v for r, c, v in _cells(paths.warehouse, result.load_id)}
    nth = 2  # the third data row (row header_row + 3), counted from 0
    assert cells[(nth, SKILLS_2018)] == "4", cells[(nth, SKILLS_2018)]


def test_a_formula_whose_result_is_empty_text_is_read_as_an_empty_answer(paths, tmp_path) -> None:
    """Excel stores ="" (or IF(...;"";...)) as t="str" with an empty <v/>: a result, the empty text, not a formula
    without its result; the workbook is read, the cell empty."""
    spec = find_wave_spec(2018, paths)
    bare = _workbook_with_formula(spec, tmp_path / "bare.xlsx", spec.header_row + 3, "=2+2")
    as_excel = tmp_path / "empty_text.xlsx"
    with zipfile.ZipFile(bare) as original, zipfile.ZipFile(as_excel, "w", zipfile.ZIP_DEFLATED) as copy:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                data, found = re.subn(
                    rb'<c r="([A-Z]+\d+)"([^>]*)><f>2\+2</f>(<v\s*/>|<v></v>)?</c>',
                    rb'<c r="\1"\2 t="str"><f>IF(1=1,"","x")</f><v></v></c>',
                    data,
                )
                assert found == 1, data[:400]
            copy.writestr(item, data)
    result = load_wave(dataclasses.replace(spec, file=as_excel), paths.warehouse)
    cells = {(r, c): v for r, c, v in _cells(paths.warehouse, result.load_id)}
    assert cells.get((2, SKILLS_2018)) is None


FREE_TEXT_2018 = "Kommentit"


def _references_left_implied(name: str, data: bytes) -> bytes:
    """A sheet's XML without the `r` attributes OOXML's rule implies: a row's number where it is the row after
    the previous one, a cell's reference where it is the column after the previous cell of its row (A for the
    first). The sheet means the same."""
    if not name.startswith("xl/worksheets/sheet"):
        return data
    previous_row = 0

    def row(match: re.Match) -> bytes:
        nonlocal previous_row
        number, previous_column = int(match.group(1)), 0
        implied = number == previous_row + 1
        previous_row = number

        def cell(found: re.Match) -> bytes:
            nonlocal previous_column
            column = column_index_from_string(found.group(1).decode())
            implied_cell, previous_column = column == previous_column + 1, column
            return b"<c" if implied_cell else found.group(0)

        cells = re.sub(rb'<c r="([A-Z]+)\d+"', cell, match.group(3))
        return (b"<row" if implied else b'<row r="%d"' % number) + match.group(2) + cells

    return re.sub(rb'<row r="(\d+)"([^>]*)(.*?(?:</row>|(?<=/)>))', row, data, flags=re.DOTALL)


TRANSITIONAL_TO_STRICT = {
    b"http://schemas.openxmlformats.org/spreadsheetml/2006/main": b"http://purl.oclc.org/ooxml/spreadsheetml/main",
    b"http://schemas.openxmlformats.org/officeDocument/2006/relationships": (
        b"http://purl.oclc.org/ooxml/officeDocument/relationships"
    ),
}


def _as_strict(name: str, data: bytes) -> bytes:
    """A part as Excel's "Strict Open XML Spreadsheet" names its namespaces and relationship types."""
    for transitional, strict in TRANSITIONAL_TO_STRICT.items():
        data = data.replace(transitional, strict)
    return data


@pytest.mark.parametrize("strict", [False, True], ids=["transitional", "strict"])
@pytest.mark.parametrize("implied", [False, True], ids=["every r", "r left implied"])
def test_the_sheet_scan_places_each_cell_as_the_reader_does(paths, tmp_path, strict: bool, implied: bool) -> None:
    """A cell's reference (`r`) is optional in OOXML (a cell without one is the column after the previous cell, a
    row without one the row after the previous row), and a Strict Open XML workbook names its parts in other
    namespaces: calamine reads both, and so does the scan for formulas without results and for error values."""
    spec = find_wave_spec(2018, paths)
    formula_row, error_row = spec.header_row + 3, spec.header_row + 5

    def delivered(name: str, formula: bool) -> Path:
        wb = openpyxl.load_workbook(spec.file)
        ws = wb[spec.sheet]
        header = [c.value for c in ws[spec.header_row]]
        ws.cell(row=error_row, column=header.index(FREE_TEXT_2018) + 1, value="#N/A").data_type = "e"
        if formula:
            ws.cell(row=formula_row, column=header.index(SKILLS_2018) + 1, value="=2+2")
        wb.save(tmp_path / "saved.xlsx")

        def change(part: str, data: bytes) -> bytes:
            data = _references_left_implied(part, data) if implied else data
            return _as_strict(part, data) if strict else data

        path = _with_parts(tmp_path / "saved.xlsx", tmp_path / name, change)
        with zipfile.ZipFile(path) as archive:
            sheet = archive.read("xl/worksheets/sheet1.xml")
        assert (b'r="K%d"' % error_row in sheet) is not implied and (b"purl.oclc.org" in sheet) is strict
        return path

    result = load_wave(dataclasses.replace(spec, file=delivered("errors.xlsx", formula=False)), paths.warehouse)
    cells = {(r, c): v for r, c, v in _cells(paths.warehouse, result.load_id)}
    assert cells[(error_row - spec.header_row - 1, FREE_TEXT_2018)] == "#N/A"
    with pytest.raises(WaveFileError) as refused:
        load_wave(dataclasses.replace(spec, file=delivered("formula.xlsx", formula=True)), paths.warehouse)
    error = refused.value
    assert f"1 cell(s) of the sheet hold a formula without its result (J{formula_row})" in str(error), str(error)
    assert (error.row, error.column) == (formula_row, f"'{SKILLS_2018}'")


@pytest.mark.parametrize(
    ("stored", "raw"),
    [
        ("Rivi 1_x000D_\nRivi 2", "Rivi 1\r\nRivi 2"),  # a web form's CR+LF, as OOXML stores the CR
        ("_x005F_x000D_ kirjoitettuna", "_x000D_ kirjoitettuna"),  # the same letters typed: kept as typed
        ("tab_x0009_here", "tab\there"),
    ],
)
def test_excels_escaped_characters_land_as_the_characters(paths, tmp_path, stored: str, raw: str) -> None:
    spec = find_wave_spec(2018, paths)
    wb = openpyxl.load_workbook(spec.file)
    ws = wb[spec.sheet]
    header = [c.value for c in ws[spec.header_row]]
    ws.cell(row=spec.header_row + 1, column=header.index(FREE_TEXT_2018) + 1, value=stored)
    path = tmp_path / "escaped.xlsx"
    wb.save(path)
    result = load_wave(dataclasses.replace(spec, file=path), paths.warehouse)
    cells = {(r, c): v for r, c, v in _cells(paths.warehouse, result.load_id)}
    assert cells[(0, FREE_TEXT_2018)] == raw


def test_a_large_whole_number_gets_no_digits_the_file_does_not_hold(paths, tmp_path) -> None:
    spec = find_wave_spec(2018, paths)
    wb = openpyxl.load_workbook(spec.file)
    ws = wb[spec.sheet]
    header = [c.value for c in ws[spec.header_row]]
    ws.cell(row=spec.header_row + 1, column=header.index(FREE_TEXT_2018) + 1, value=1.234567890123457e19)
    ws.cell(row=spec.header_row + 2, column=header.index(FREE_TEXT_2018) + 1, value=16.0)
    path = tmp_path / "numbers.xlsx"
    wb.save(path)
    result = load_wave(dataclasses.replace(spec, file=path), paths.warehouse)
    cells = {(r, c): v for r, c, v in _cells(paths.warehouse, result.load_id)}
    assert cells[(0, FREE_TEXT_2018)] == "1.234567890123457e+19"  # not 12345678901234569216
    assert cells[(1, FREE_TEXT_2018)] == "16"


# ------------------------------------------------------------------------------ the survey tools' other exports


@pytest.mark.parametrize("chunk", [None, 7], ids=["in one chunk", "seven cases at a time"])
def test_a_sav_cut_off_in_transfer_names_the_first_case_it_lacks(
    paths, wave_2018, loaded, tmp_path, monkeypatch, chunk: int | None
) -> None:
    import pyreadstat
    from delivered_formats import as_sav

    from survey_warehouse.intake import spss

    if chunk:
        monkeypatch.setattr(spss, "SAV_CHUNK_CASES", chunk)

    whole, _names = as_sav(wave_2018, tmp_path / "whole.sav")
    data = whole.read_bytes()
    path = tmp_path / "cut.sav"
    path.write_bytes(data[: len(data) - len(data) // 5])
    spec = dataclasses.replace(wave_2018, file=path, format="sav", sheet=None)
    error = _rejected(spec, paths, loaded, "cut off in transfer", "ask for the complete file")
    assert error.row is not None and error.row > 1, str(error)
    pyreadstat.read_sav(str(path), row_limit=error.row - 1)  # the cases before it are there
    with pytest.raises(Exception, match="expected number of rows"):
        pyreadstat.read_sav(str(path), row_limit=error.row)


@pytest.mark.parametrize("counted", [0, 10, 54])
def test_a_sav_whose_header_counts_fewer_cases_than_it_holds_is_refused(
    paths, wave_2018, loaded, tmp_path, counted: int
) -> None:
    """The header's case count damaged (its 4 bytes at offset 80): the reader would read that many cases and stop,
    the rest of the answers silently left out. The data goes on after them: refused, saying so."""
    import struct

    import pyreadstat
    from delivered_formats import as_sav

    from survey_warehouse.intake.spss import cases_beyond_header

    whole, _names = as_sav(wave_2018, tmp_path / "whole.sav")
    cases = pyreadstat.read_sav(str(whole), metadataonly=True)[1].number_rows
    assert cases_beyond_header(whole, cases) == 0, "an intact file holds the cases its header counts"
    data = bytearray(whole.read_bytes())
    data[80:84] = struct.pack("<i", counted)
    path = tmp_path / "miscounted.sav"
    path.write_bytes(bytes(data))
    spec = dataclasses.replace(wave_2018, file=path, format="sav", sheet=None)
    if counted == 0:  # no case at all by its header: told as a file without answers or as miscounted, never loaded
        with pytest.raises(WaveFileError):
            load_wave(spec, paths.warehouse)
        return
    error = _rejected(spec, paths, loaded, f"says it holds {counted} case(s)", f"{cases - counted} more")
    assert "header is damaged" in str(error)


def test_a_compressed_sav_is_not_taken_for_one_with_more_cases(tmp_path) -> None:
    """A compressed file's size says nothing of its cases: no verdict from it, whatever its size."""
    import pandas as pd
    import pyreadstat

    from survey_warehouse.intake.spss import cases_beyond_header

    path = tmp_path / "compressed.sav"
    pyreadstat.write_sav(pd.DataFrame({"q1": [1.0] * 500, "q2": ["x" * 40] * 500}), str(path), compress=True)
    assert cases_beyond_header(path, 500) == 0
    plain = tmp_path / "plain.sav"
    pyreadstat.write_sav(pd.DataFrame({"q1": [1.0] * 500, "q2": ["x" * 40] * 500}), str(plain))
    assert cases_beyond_header(plain, 500) == 0 and cases_beyond_header(plain, 400) == 100


def test_a_sav_cut_off_in_its_dictionary(paths, wave_2018, loaded, tmp_path) -> None:
    from delivered_formats import as_sav

    whole, _names = as_sav(wave_2018, tmp_path / "whole.sav")
    path = tmp_path / "cut.sav"
    path.write_bytes(whole.read_bytes()[:300])
    spec = dataclasses.replace(wave_2018, file=path, format="sav", sheet=None)
    error = _rejected(
        spec, paths, loaded, "ends before its dictionary", "cut off in transfer", "ask for the file again"
    )
    assert error.row is None


def _damaged_sav(spec, tmp_path: Path, in_dictionary: bool) -> tuple[Path, int]:
    """The wave as a .sav with bytes damaged in the middle (not cut off: as long as it was): a question's wording
    in the dictionary, or a respondent's address among the cases, overwritten with bytes that are no text. Returns
    the file and the case whose bytes are damaged (0: none, the dictionary is)."""
    import pyreadstat
    from delivered_formats import as_sav

    whole, names = as_sav(spec, tmp_path / "whole.sav")
    data = bytearray(whole.read_bytes())
    if in_dictionary:
        at, case = data.index(b"Kesto (min)"), -1
    else:
        frame, _meta = pyreadstat.read_sav(str(whole))
        address = frame[names["Sähköpostiosoite"]]
        case = len(address) // 2
        at = data.index(address[case].encode(), data.index(b"\xe7\x03\x00\x00"))  # after the dictionary's end
        assert address.tolist().index(address[case]) == case
    data[at : at + 4] = b"\xff\xfe\xff\xfe"
    path = tmp_path / "damaged.sav"
    path.write_bytes(bytes(data))
    assert path.stat().st_size == whole.stat().st_size
    return path, case + 1


def test_a_sav_damaged_in_its_dictionary_is_called_damaged_not_cut_off(paths, wave_2018, loaded, tmp_path) -> None:
    path, _case = _damaged_sav(wave_2018, tmp_path, in_dictionary=True)
    spec = dataclasses.replace(wave_2018, file=path, format="sav", sheet=None)
    error = _rejected(
        spec, paths, loaded, "dictionary (its variables' names and labels) is damaged", "ask for the file"
    )
    assert "cut off" not in str(error), str(error)


def test_a_sav_damaged_among_its_cases_names_the_case_not_a_cut(paths, wave_2018, loaded, tmp_path) -> None:
    path, case = _damaged_sav(wave_2018, tmp_path, in_dictionary=False)
    spec = dataclasses.replace(wave_2018, file=path, format="sav", sheet=None)
    error = _rejected(spec, paths, loaded, f"is damaged at case {case}", "ask for the file again", row=case)
    assert "cut off" not in str(error), str(error)


def test_a_sav_spec_with_another_kind_of_file(paths, wave_2018, loaded, tmp_path) -> None:
    spec = dataclasses.replace(wave_2018, format="sav", sheet=None)
    _rejected(spec, paths, loaded, "is an Excel workbook (.xlsx), not an SPSS .sav file", "format: sav")


def test_a_value_the_sav_gives_no_label_is_kept_as_its_code_and_quarantined(paths, wave_2018, tmp_path) -> None:
    """A value-label set that does not cover a value: the cell holds the code's text, which is no answer the
    codebook knows: the row is kept and quarantined naming the file, row and column, never dropped."""
    from delivered_formats import as_sav

    lead = "Kenelle digitalisaation johtamisvastuu ensisijaisesti kuuluu?"
    path, _names = as_sav(wave_2018, tmp_path / "uncovered.sav", uncovered=lead)
    result = load_wave(dataclasses.replace(wave_2018, file=path, format="sav", sheet=None), paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        coded = [
            r[0]
            for r in con.execute(
                "select source_row_number from raw.survey_cells join raw.survey_columns using (column_id) "
                "where load_id = ? and source_column = ? and cell_value = '1' order by 1",
                [result.load_id, lead],
            ).fetchall()
        ]
    assert coded, "some respondent gave the answer whose label is left out"
    unknown = [q for q in _quarantine(paths.warehouse, result.load_id) if q[2] == "unknown_answer"]
    assert [(row, column) for row, column, _reason, _message in unknown] == [(row, lead) for row in coded]
    assert all(message.startswith(f"{path.name}, row {row}, column '{lead}'") for row, _c, _r, message in unknown), (
        unknown
    )
    rows, accepted, quarantined, in_raw = _accounted(paths.warehouse, result.load_id)
    assert rows == accepted + quarantined == in_raw and quarantined >= len(coded)


def test_a_password_protected_xls(paths, wave_2018, loaded, tmp_path) -> None:
    """Excel 97-2003's 'password to open' keeps the OLE2 container and marks the workbook stream with a FILEPASS
    record (here in place of the INTERFACEHDR record of an .xls written by xlwt, of the same size)."""
    from delivered_formats import as_xls

    data = as_xls(wave_2018, tmp_path / "plain.xls").read_bytes()
    interface_header = b"\xe1\x00\x02\x00"
    assert data.count(interface_header) == 1
    path = tmp_path / "protected.xls"
    path.write_bytes(data.replace(interface_header, b"\x2f\x00\x02\x00"))
    spec = dataclasses.replace(wave_2018, file=path, format="xls")
    _rejected(spec, paths, loaded, "password-protected (encrypted)", "without a password")


def test_an_ods_cut_off_in_transfer(paths, wave_2018, loaded, tmp_path) -> None:
    from delivered_formats import as_ods

    data = as_ods(wave_2018, tmp_path / "whole.ods").read_bytes()
    path = tmp_path / "cut.ods"
    path.write_bytes(data[: len(data) * 2 // 3])
    spec = dataclasses.replace(wave_2018, file=path, format="ods")
    _rejected(spec, paths, loaded, "damaged zip archive", "cut off in transfer", "ask for the file again")


def _ods_entries(spec, tmp_path: Path) -> dict[str, bytes]:
    from delivered_formats import as_ods

    with zipfile.ZipFile(as_ods(spec, tmp_path / "whole.ods")) as whole:
        return {name: whole.read(name) for name in whole.namelist()}


@pytest.mark.parametrize("mimetype", [None, b"application/octet-stream"], ids=["missing", "another"])
def test_an_ods_without_its_mimetype_is_named_for_what_it_is(paths, wave_2018, loaded, tmp_path, mimetype) -> None:
    """An OpenDocument package is known by its content.xml and its manifest too: one whose 'mimetype' entry is
    missing or names another format (which the reader refuses) is called an OpenDocument spreadsheet, not a zip."""
    entries = _ods_entries(wave_2018, tmp_path)
    path = tmp_path / "unlabelled.ods"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in entries.items():
            if name != "mimetype":
                target.writestr(name, data)
            elif mimetype is not None:
                target.writestr(name, mimetype)
    spec = dataclasses.replace(wave_2018, file=path, format="ods")
    _rejected(spec, paths, loaded, "is an OpenDocument spreadsheet (.ods) by its contents", "save it again")


def test_an_ods_whose_mimetype_is_not_its_first_entry_is_read(paths, wave_2018, tmp_path) -> None:
    entries = _ods_entries(wave_2018, tmp_path)
    path = tmp_path / "reordered.ods"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name in sorted(entries, key=lambda n: n == "mimetype"):
            target.writestr(name, entries[name])
    assert zipfile.ZipFile(path).namelist()[-1] == "mimetype"
    result = load_wave(dataclasses.replace(wave_2018, file=path, format="ods"), paths.warehouse)
    assert result.row_count == load_wave(wave_2018, paths.warehouse).row_count


@pytest.mark.parametrize("kept", [0.5, 0.97, 0.99, 0.995])
def test_an_xls_cut_off_anywhere_gets_a_verdict(paths, wave_2018, loaded, tmp_path, kept: float) -> None:
    """Cut near its end, a legacy .xls makes calamine's Rust code panic (a BaseException in Python): still a
    verdict naming the file, never a traceback; the load is recorded as rejected."""
    from delivered_formats import as_xls

    data = as_xls(wave_2018, tmp_path / "whole.xls").read_bytes()
    path = tmp_path / "cut.xls"
    path.write_bytes(data[: int(len(data) * kept)])
    spec = dataclasses.replace(wave_2018, file=path, format="xls")
    with pytest.raises(WaveFileError) as caught:
        load_wave(spec, paths.warehouse, paths=paths)
    assert str(caught.value).startswith(f"{path}: "), caught.value


def test_an_ods_with_a_damaged_sheet(paths, wave_2018, loaded, tmp_path) -> None:
    from delivered_formats import as_ods

    whole = as_ods(wave_2018, tmp_path / "whole.ods")
    path = tmp_path / "damaged.ods"
    with zipfile.ZipFile(whole) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "content.xml":
                data = data[: len(data) // 2]  # the sheet's XML ends halfway
            target.writestr(item, data)
    spec = dataclasses.replace(wave_2018, file=path, format="ods")
    _rejected(spec, paths, loaded, "damaged", "save it again")


@pytest.mark.parametrize(("fmt", "what"), [("xls", "legacy Excel 97-2003"), ("ods", "OpenDocument spreadsheet")])
def test_an_xls_or_ods_the_spec_calls_csv_names_the_format_to_set(
    paths, wave_2019, loaded, tmp_path, fmt: str, what: str
) -> None:
    from delivered_formats import as_ods, as_xls

    spec, _lines = wave_2019
    path = {"xls": as_xls, "ods": as_ods}[fmt](find_wave_spec(2018, paths), tmp_path / f"wave.{fmt}")
    _rejected(dataclasses.replace(spec, file=path), paths, loaded, what, f"Set format: {fmt}")


def test_a_sav_the_spec_calls_csv_or_a_workbook_names_the_format_to_set(
    paths, wave_2019, wave_2018, loaded, tmp_path
) -> None:
    from delivered_formats import as_sav

    path, _names = as_sav(wave_2018, tmp_path / "wave.sav")
    spec, _lines = wave_2019
    _rejected(dataclasses.replace(spec, file=path), paths, loaded, "is an SPSS data file (.sav)", "Set format: sav")
    _rejected(
        dataclasses.replace(wave_2018, file=path), paths, loaded, "is an SPSS data file (.sav)", "set format: sav"
    )


def test_a_sav_without_cases(paths, wave_2018, loaded, tmp_path) -> None:
    import pyreadstat
    from delivered_formats import as_sav

    whole, _names = as_sav(wave_2018, tmp_path / "whole.sav")
    frame, meta = pyreadstat.read_sav(str(whole))
    path = tmp_path / "empty.sav"
    pyreadstat.write_sav(frame.iloc[:0], str(path), column_labels=meta.column_labels)
    spec = dataclasses.replace(wave_2018, file=path, format="sav", sheet=None)
    _rejected(spec, paths, loaded, "has its variables but no answers")


def test_an_error_value_in_a_workbook_cell_is_kept_as_the_sheet_shows_it(paths, tmp_path) -> None:
    """A cell holding an error value (#N/A, #DIV/0!) is that text in raw, not an empty answer."""
    spec = find_wave_spec(2018, paths)
    wb = openpyxl.load_workbook(spec.file)
    ws = wb[spec.sheet]
    header = [c.value for c in ws[spec.header_row]]
    for row, error in ((spec.header_row + 1, "#N/A"), (spec.header_row + 2, "#DIV/0!")):
        cell = ws.cell(row=row, column=header.index(FREE_TEXT_2018) + 1, value=error)
        cell.data_type = "e"
    path = tmp_path / "errors.xlsx"
    wb.save(path)
    result = load_wave(dataclasses.replace(spec, file=path), paths.warehouse)
    cells = {(r, c): v for r, c, v in _cells(paths.warehouse, result.load_id)}
    assert (cells[(0, FREE_TEXT_2018)], cells[(1, FREE_TEXT_2018)]) == ("#N/A", "#DIV/0!")


def test_an_ods_formula_saved_without_its_result_is_named_not_read_as_empty(paths, wave_2018, tmp_path) -> None:
    """As in an .xlsx: a formula stored without a value type (by a program that does not calculate) is refused by
    its cell, row and column, whether its element is empty or closed apart."""
    from delivered_formats import as_ods_xml

    row = wave_2018.header_row + 3
    formula = '<table:table-cell table:formula="of:=2+2"/>'
    cells = {(row, SKILLS_2018): formula, (row + 1, SKILLS_2018): formula.replace("/>", "></table:table-cell>")}
    path = as_ods_xml(wave_2018, tmp_path / "formula.ods", cells)
    with pytest.raises(WaveFileError) as refused:
        load_wave(dataclasses.replace(wave_2018, file=path, format="ods"), paths.warehouse)
    error = refused.value
    assert "2 cell(s) of the sheet hold a formula without its result (J" in str(error), str(error)
    assert error.row == row and error.column == f"'{SKILLS_2018}'", (error.row, error.column)


def test_an_xlsb_error_value_of_an_unknown_kind_is_refused_by_its_cell(paths, wave_2018, loaded, tmp_path) -> None:
    """A formula's cached error whose code no version of the format knows (the reader reads the cell as empty) is
    refused, naming its cell, row and column, rather than read as an empty answer or guessed at."""
    from delivered_formats import ErrorValue, as_xlsb

    row = wave_2018.header_row + 2
    path = as_xlsb(wave_2018, tmp_path / "unknown.xlsb", cells={(row, SKILLS_2018): ErrorValue("", True, 0x2C)})
    _rejected(
        dataclasses.replace(wave_2018, file=path, format="xlsb"),
        paths,
        loaded,
        f"1 cell(s) of the sheet hold an error value of a kind that cannot be read (J{row})",
        "save it as .xlsx",
        row=row,
        column=f"'{SKILLS_2018}'",
    )


def test_an_xls_sheet_whose_records_are_cut_off_is_refused_not_walked_past(tmp_path, monkeypatch) -> None:
    """A workbook stream that ends inside a record (a BoolErr whose data runs past the end) after an error value:
    the walk for error values refuses it in words, never with a traceback, nor loads what it found so far."""
    import struct

    from survey_warehouse.intake import binary

    def record(kind: int, data: bytes) -> bytes:
        return struct.pack("<HH", kind, len(data)) + data

    name = "Vastaukset".encode("latin-1")
    globals_size = len(record(0x0809, bytes(4))) + len(record(0x0085, bytes(8) + name)) + len(record(0x000A, b""))
    stream = (
        record(0x0809, struct.pack("<HH", 0x0600, 0x0005))
        + record(0x0085, struct.pack("<IBBBB", globals_size, 0, 0, len(name), 0) + name)
        + record(0x000A, b"")
        + record(0x0809, struct.pack("<HH", 0x0600, 0x0010))
        + record(0x0205, struct.pack("<HHHBB", 4, 2, 15, 0x2A, 1))  # #N/A at C5
        + struct.pack("<HH", 0x0205, 8)
        + struct.pack("<HH", 5, 2)  # the next BoolErr, cut off after its row and column
    )
    monkeypatch.setattr(binary, "_workbook_stream", lambda path, whole: (stream, 0, len(stream)))
    path = tmp_path / "cut.xls"
    path.write_bytes(b"\0" * 512)
    with pytest.raises(WaveFileError) as refused:
        binary.xls_errors(path, "Vastaukset", 1)
    assert "the workbook's records cannot be read for its error values (#N/A)" in str(refused.value), refused.value
    assert "a record of it is cut off" in str(refused.value), refused.value


def _rezip(path: Path, member: str, change: Callable[[bytes], bytes]) -> Path:
    """The archive with one member's bytes changed (the others as they were)."""
    import zipfile

    with zipfile.ZipFile(path) as source:
        items = [(item, source.read(item.filename)) for item in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item, data in items:
            target.writestr(item, change(data) if item.filename == member else data)
    return path


def _damaged_member(path: Path, member: str, damage: str) -> Path:
    """The archive with one member damaged inside the zip: its compressed data overwritten, or its checksum wrong."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    if damage == "deflate":
        middle = start + info.compress_size // 2
        data[middle : middle + 64] = b"\xff" * 64
    else:
        data = bytearray(bytes(data).replace(struct.pack("<I", info.CRC), struct.pack("<I", (info.CRC + 1) % 2**32)))
    path.write_bytes(bytes(data))
    return path


SHEET_PARTS = {"xlsx": "xl/worksheets/sheet1.xml", "xlsb": "xl/worksheets/sheet1.bin", "ods": "content.xml"}


def _as_format(spec, fmt: str, path: Path) -> Path:
    import shutil

    from delivered_formats import as_ods_xml, as_xlsb

    if fmt == "xlsx":
        return Path(shutil.copy(spec.file, path))
    return as_xlsb(spec, path) if fmt == "xlsb" else as_ods_xml(spec, path)


@pytest.mark.parametrize("damage", ["deflate", "crc"])
@pytest.mark.parametrize("fmt", ["xlsx", "xlsb", "ods"])
def test_a_sheet_part_damaged_inside_its_zip_is_a_verdict_before_the_reader_opens_it(
    paths, wave_2018, loaded, tmp_path, fmt: str, damage: str
) -> None:
    """The looks that read a sheet's part before the reader (far cells, error values, a tab in an .ods) meet the
    damage first: a verdict in words, never zlib's or zipfile's exception."""
    path = _damaged_member(_as_format(wave_2018, fmt, tmp_path / f"damaged.{fmt}"), SHEET_PARTS[fmt], damage)
    spec = dataclasses.replace(wave_2018, file=path, format=fmt)
    _rejected(spec, paths, loaded, "is damaged and cannot be read", "ask for the file again")


@pytest.mark.parametrize("fmt", ["xlsx", "xlsb"])
def test_a_sheet_part_the_package_names_but_lacks_is_a_verdict(paths, wave_2018, loaded, tmp_path, fmt: str) -> None:
    rels = {"xlsx": "xl/_rels/workbook.xml.rels", "xlsb": "xl/_rels/workbook.bin.rels"}[fmt]
    part = SHEET_PARTS[fmt].removeprefix("xl/").encode()
    path = _as_format(wave_2018, fmt, tmp_path / f"missing.{fmt}")
    _rezip(path, rels, lambda data: data.replace(part, part.replace(b"sheet1", b"sheet9")))
    spec = dataclasses.replace(wave_2018, file=path, format=fmt)
    _rejected(spec, paths, loaded, "is damaged and cannot be read", "ask for the file again")


def test_an_ods_sheet_name_that_is_no_text_is_a_verdict(paths, wave_2018, loaded, tmp_path) -> None:
    from delivered_formats import as_ods_xml

    path = as_ods_xml(wave_2018, tmp_path / "name.ods", before="<table:table-row/>")
    _rezip(path, "content.xml", lambda data: data.replace(b'table:name="Ohje"', b'table:name="Oh\xffje"'))
    spec = dataclasses.replace(wave_2018, file=path, format="ods")
    _rejected(spec, paths, loaded, "is damaged and cannot be read")


@pytest.mark.parametrize(
    ("change", "landed"),
    [
        ((b't="e"', b't = "e"'), "#N/A"),  # an error value's type written with spaces, as XML allows
        ((b"<v>", b"<v >"), None),  # a value's tag with a space: a negative duration still read as such
    ],
    ids=["error-type-with-spaces", "value-tag-with-a-space"],
)
def test_the_xlsx_scan_finds_what_it_looks_for_however_the_xml_is_spaced(
    wave_2018, tmp_path, change: tuple[bytes, bytes], landed: str | None
) -> None:
    import datetime as dt

    import openpyxl

    book = openpyxl.load_workbook(wave_2018.file)
    sheet = book[wave_2018.sheet]
    header = [c.value for c in sheet[wave_2018.header_row]]
    column = header.index("Kesto (min)") + 1
    row = wave_2018.header_row + 2
    if landed is None:
        sheet.cell(row, column, dt.timedelta(minutes=-1)).number_format = "h:mm:ss"
    else:
        sheet.cell(row, column, "#N/A")
    path = tmp_path / "spaced.xlsx"
    book.save(path)
    _rezip(path, "xl/worksheets/sheet1.xml", lambda data: data.replace(*change))
    paths = make_paths("bad_inputs_spaced_xml")
    result = load_wave(dataclasses.replace(wave_2018, file=path), paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        cell = con.execute(
            "select c.cell_value from raw.survey_cells c join raw.survey_columns k using (column_id) "
            "where k.load_id = ? and k.source_column = 'Kesto (min)' and c.source_row_number = ?",
            [result.load_id, row],
        ).fetchone()
    assert cell == ((landed or "-0:01:00"),), cell


def test_an_ods_repeat_count_of_billions_is_scanned_as_far_as_a_sheet_goes(wave_2018, tmp_path) -> None:
    """A cell the scan restores (a time value) repeated two billion times across or down: the scan stops where a
    sheet ends (16,384 columns, 1,048,576 rows), in bounded time and memory."""
    from delivered_formats import as_ods_xml

    from survey_warehouse.intake.opendocument import ods_findings

    cell = 'office:value-type="time" office:time-value="PT01H00M00S"><text:p>01:00:00</text:p></table:table-cell>'
    rows = {
        "across": f'<table:table-row><table:table-cell table:number-columns-repeated="2000000000" {cell}'
        "</table:table-row>",
        "down": f'<table:table-row table:number-rows-repeated="2000000000"><table:table-cell {cell}</table:table-row>',
    }
    for way, extra in rows.items():
        path = as_ods_xml(wave_2018, tmp_path / f"{way}.ods")
        _rezip(
            path,
            "content.xml",
            lambda data, extra=extra: data.replace(b"</table:table>", extra.encode() + b"</table:table>"),
        )
        _unresolved, shown = ods_findings(path, wave_2018.sheet or "", wave_2018.header_row)
        assert max(shown) <= 1_048_576 and max(len(cells) for cells in shown.values()) <= 16_384, way


def test_only_positions_right_of_the_header_holding_a_value_are_written(paths, wave_2018, tmp_path) -> None:
    """A value at XFD60: raw.survey_columns gains column 16384 only, and raw.survey_cells its one cell, not 16,373
    columns without a name and 16,372 empty cells of row 60 (with a value at XFD in 200 rows: 3.2 million)."""
    path = _with_cell(wave_2018.file, tmp_path / "last.xlsx", "XFD60", xml=b"<v>0.125</v>")
    result = load_wave(dataclasses.replace(wave_2018, file=path), paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        right = con.execute(
            "select column_position from raw.survey_columns where load_id = ? and column_position > 11 order by 1",
            [result.load_id],
        ).fetchall()
        empty = con.execute(
            "select count(*) from raw.survey_cells c join raw.survey_columns k using (column_id) "
            "where k.load_id = ? and k.column_position > 11 and c.cell_value is null",
            [result.load_id],
        ).fetchone()[0]
    assert right == [(16384,)], (len(right), right[:3])
    assert empty == 0, empty


def _with_header_cell(source, target, reference: str, text: str):
    """A copy of the 2018 workbook with a text cell added to its header row (row 4) at `reference`."""
    cell = b'<c r="%s" t="inlineStr"><is><t>%s</t></is></c>' % (reference.encode(), text.encode())

    def change(name: str, data: bytes) -> bytes:
        if not name.startswith("xl/worksheets/sheet"):
            return data
        data, count = re.subn(
            rb'(<row [^>]*r="4"[^>]*>.*?)(</row>)', lambda m: m[1] + cell + m[2], data, count=1, flags=re.S
        )
        assert count == 1
        return data

    return _with_parts(source, target, change)


def test_a_name_typed_at_the_end_of_the_header_row_gets_a_verdict_not_out_of_memory(paths, wave_2018, tmp_path) -> None:
    """A note typed in the header row's last column (XFD4): the header's last named column is then 16,384, and a
    grid of every row that wide took DuckDB's whole memory: refused naming the cell."""
    path = _with_header_cell(wave_2018.file, tmp_path / "note.xlsx", "XFD4", "huom")
    said = _apart(dataclasses.replace(wave_2018, file=path), paths.warehouse)
    assert "XFD4" in said.get("verdict", "") and "K4" in said["verdict"], said


@pytest.mark.parametrize(("first", "last"), [(60, 59), (65_535, 11)])
def test_an_xls_dimensions_whose_first_row_lies_past_its_last_is_refused_not_an_abort(
    paths, wave_2018, tmp_path, first: int, last: int
) -> None:
    """The reader takes (last - first + 1) rows from DIMENSIONS in u32 arithmetic: a first row past the last wraps
    to 4,294,967,295 rows, and the reservation (1.9 TB for 11 columns) aborts the process. The guard reads only
    the last row (rwMac, within 65,536), so the file reaches the reader."""
    path = _xls_claiming(wave_2018, tmp_path / "inverted.xls", 59, 11)  # the record as xlwt writes it
    data = bytearray(path.read_bytes())
    at = data.index(struct.pack("<HHIIHH", 0x0200, 14, 0, 59, 0, 11))
    struct.pack_into("<II", data, at + 4, first, last)
    path.write_bytes(bytes(data))
    said = _apart(dataclasses.replace(wave_2018, file=path, format="xls"), paths.warehouse)
    assert "DIMENSIONS" in said.get("verdict", ""), said


def test_a_file_that_takes_more_than_the_loads_memory_is_a_verdict_naming_it(
    paths, wave_2018, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever shape of file makes the reading take more than SURVEY_LOAD_MEMORY_LIMIT, the load ends in a verdict
    naming the file and the limit, not DuckDB's out-of-memory traceback."""
    monkeypatch.setenv("SURVEY_LOAD_MEMORY_LIMIT", "1MB")
    with pytest.raises(WaveFileError) as refused:
        load_wave(wave_2018, paths.warehouse)
    assert "the load's memory (1MB, SURVEY_LOAD_MEMORY_LIMIT)" in str(refused.value), refused.value
    assert wave_2018.file.name in str(refused.value)


def test_an_xls_dimensions_with_no_last_row_is_read(paths, wave_2018, tmp_path) -> None:
    """rwMac = 0: the reader takes the size as one cell, not billions: the sheet loads."""
    path = _xls_claiming(wave_2018, tmp_path / "norow.xls", 59, 11)
    data = bytearray(path.read_bytes())
    at = data.index(struct.pack("<HHIIHH", 0x0200, 14, 0, 59, 0, 11))
    struct.pack_into("<II", data, at + 4, 5, 0)
    path.write_bytes(bytes(data))
    said = _apart(dataclasses.replace(wave_2018, file=path, format="xls"), paths.warehouse)
    assert "rows" in said, said
