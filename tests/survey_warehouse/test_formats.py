"""Every export a survey tool makes lands the same raw: the 2018 workbook, saved here as a legacy .xls (xlwt), an
OpenDocument .ods (pandas with odfpy), an SPSS .sav with its value labels (pyreadstat) and an Excel binary workbook
.xlsb (its records written here), is loaded by the project's own loader into a scratch warehouse of its own, and its
cells, what its values resolved to and its quarantine are those of the shipped .xlsx."""

from __future__ import annotations

import dataclasses
import datetime as dt
import unicodedata
from pathlib import Path

import duckdb
import pytest
from conftest import make_paths
from delivered_formats import ErrorValue, as_ods, as_ods_xml, as_sav, as_xls, as_xlsb, sheet_rows

from survey_warehouse.errors import WaveFileError
from survey_warehouse.intake.spss import CODE_SUFFIX, read_sav_metadata
from survey_warehouse.intake.waves import WaveSpec, find_wave_spec
from survey_warehouse.raw.load import load_wave


@pytest.fixture(scope="module")
def wave_2018() -> WaveSpec:
    spec = find_wave_spec(2018, make_paths("formats_spec", fresh=False))
    assert spec is not None and spec.format == "xlsx"
    return spec


def raw_of(
    warehouse: Path, load_id: str, headers: dict[str, str] | None = None, trailing_blanks: bool = True
) -> dict[str, list[tuple]]:
    """A load's raw: its cells by nth data row and header, what its values resolved to, its quarantine by nth row.
    `headers`: a header -> the shipped file's header; without `trailing_blanks`, the cells' trailing blanks are
    removed (SPSS keeps none: a text value and a value label are stored padded with blanks)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        cells = con.execute(
            "select dense_rank() over (order by c.source_row_number) as nth_row, k.source_column, c.cell_value "
            "from raw.survey_cells c join raw.survey_columns k using (column_id) where k.load_id = ? "
            "and k.source_column not like '%' || ? order by 1, 2",
            [load_id, CODE_SUFFIX],
        ).fetchall()
        resolutions = con.execute(
            "select field_id, cell_value, match_key, resolved_value, resolved_number from raw.cell_resolutions "
            "where load_id = ? order by all",
            [load_id],
        ).fetchall()
        quarantine = con.execute(
            "select source_column, reason_code from raw.quarantine where load_id = ? order by all", [load_id]
        ).fetchall()
    headers = headers or {}

    def text(value: str | None) -> str | None:
        return value if trailing_blanks or value is None else value.rstrip(" ")

    return {
        "cells": sorted((row, headers.get(column, column), text(value)) for row, column, value in cells),
        "resolutions": sorted((f, text(v), *rest) for f, v, *rest in resolutions),
        "quarantine": sorted((headers.get(column, column), reason) for column, reason in quarantine),
    }


@pytest.fixture(scope="module")
def shipped_load(wave_2018) -> tuple[Path, str]:
    paths = make_paths("formats_xlsx")
    result = load_wave(wave_2018, paths.warehouse)
    assert result.row_count > 0 and result.reader == "calamine (xlsx)"
    return paths.warehouse, result.load_id


@pytest.fixture(scope="module")
def shipped(shipped_load) -> dict[str, list[tuple]]:
    return raw_of(*shipped_load)


@pytest.fixture(scope="module")
def shipped_in_spss(shipped_load) -> dict[str, list[tuple]]:
    """The shipped workbook's raw as SPSS can hold it: no trailing blanks."""
    return raw_of(*shipped_load, trailing_blanks=False)


@pytest.mark.parametrize("fmt", ["xls", "ods", "xlsb"])
def test_the_workbook_saved_as_xls_ods_or_xlsb_lands_the_same_raw(wave_2018, shipped, tmp_path, fmt: str) -> None:
    path = {"xls": as_xls, "ods": as_ods, "xlsb": as_xlsb}[fmt](wave_2018, tmp_path / f"kaupunkikysely_2018.{fmt}")
    paths = make_paths(f"formats_{fmt}")
    result = load_wave(dataclasses.replace(wave_2018, file=path, format=fmt), paths.warehouse)
    assert result.reader == f"calamine ({fmt})"
    assert raw_of(paths.warehouse, result.load_id) == shipped


@pytest.mark.parametrize("chunk", [None, 7], ids=["in one chunk", "seven cases at a time"])
def test_the_workbook_saved_as_sav_lands_the_same_raw_with_the_codes_beside(
    wave_2018, shipped_in_spss, tmp_path, monkeypatch, chunk: int | None
) -> None:
    """The spec's columns name the variables by their labels (the questions' wording, as the workbook's header);
    a variable the spec does not map keeps its name as its header."""
    from survey_warehouse.intake import spss

    if chunk:
        monkeypatch.setattr(spss, "SAV_CHUNK_CASES", chunk)
    path, names = as_sav(wave_2018, tmp_path / "kaupunkikysely_2018.sav")
    paths = make_paths("formats_sav")
    result = load_wave(dataclasses.replace(wave_2018, file=path, format="sav", sheet=None), paths.warehouse)
    assert result.reader.startswith("pyreadstat")
    unmapped = {names[h]: h for h in names if h not in wave_2018.columns}
    assert unmapped == {"q11": "Kommentit"}
    assert raw_of(paths.warehouse, result.load_id, unmapped, trailing_blanks=False) == shipped_in_spss
    lead = "Kenelle digitalisaation johtamisvastuu ensisijaisesti kuuluu?"
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        pairs = con.execute(
            "select l.cell_value, c.cell_value from raw.survey_cells l join raw.survey_columns lk using (column_id) "
            "join raw.survey_cells c using (source_row_number) join raw.survey_columns ck "
            "on ck.column_id = c.column_id and ck.load_id = lk.load_id "
            "where lk.load_id = ? and lk.source_column = ? and ck.source_column = ?",
            [result.load_id, lead, lead + CODE_SUFFIX],
        ).fetchall()
    labels = read_sav_metadata(path).variable(names[lead]).value_labels
    assert pairs and all(labels[float(code)] == label for label, code in pairs), pairs


def test_a_sav_spec_may_name_the_variables(wave_2018, shipped_in_spss, tmp_path) -> None:
    path, names = as_sav(wave_2018, tmp_path / "named.sav")
    by_name = {names[header]: field for header, field in wave_2018.columns.items()}
    paths = make_paths("formats_sav_names")
    result = load_wave(dataclasses.replace(wave_2018, file=path, format="sav", columns=by_name), paths.warehouse)
    headers = {name: header for header, name in names.items()}
    assert raw_of(paths.warehouse, result.load_id, headers, trailing_blanks=False) == shipped_in_spss
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        worded = dict(
            con.execute(
                "select source_column, question_text from raw.survey_columns where load_id = ?", [result.load_id]
            ).fetchall()
        )
    lead = names["Kenelle digitalisaation johtamisvastuu ensisijaisesti kuuluu?"]
    assert worded[lead] == worded[lead + CODE_SUFFIX] == "Kenelle digitalisaation johtamisvastuu ensisijaisesti kuuluu?"
    assert {worded[name] for name in names.values()} == set(names), "each variable's label is its question's wording"


def test_a_warehouse_from_before_question_wordings_gets_the_column(shipped_load) -> None:
    from survey_warehouse.raw.schema import ensure_raw_schema
    from survey_warehouse.warehouse import Session, as_warehouse

    warehouse, load_id = shipped_load
    with duckdb.connect(str(warehouse)) as con:
        con.execute("alter table raw.survey_columns drop column question_text")
    with Session(as_warehouse(warehouse)) as session:
        ensure_raw_schema(session)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        kept = con.execute(
            "select count(*), count(question_text) from raw.survey_columns where load_id = ?", [load_id]
        ).fetchone()
    assert kept[0] > 0 and kept[1] == 0


def test_the_sav_metadata_is_read_without_the_cases(wave_2018, tmp_path) -> None:
    path, names = as_sav(wave_2018, tmp_path / "meta.sav")
    metadata = read_sav_metadata(path)
    rows = sheet_rows(wave_2018)
    header = [str(h).strip() for h in rows[wave_2018.header_row - 1]]
    assert [v.name for v in metadata.variables] == [names[h] for h in header]
    assert [v.label for v in metadata.variables] == header
    role = metadata.variable(names["Rooli"])
    assert "Muu" in role.value_labels.values() and role.kind == "number"
    assert metadata.cases == sum(1 for r in rows[wave_2018.header_row :] if any(v is not None for v in r))


def test_user_missing_codes_are_missing_answers_and_their_codes_are_kept(wave_2018, tmp_path) -> None:
    """A code declared user-missing (in the file, or in the spec) is no answer: the label cell is empty, the code
    stays in its [code] column; a required question left so is quarantined as missing, never dropped."""
    import pyreadstat

    path, names = as_sav(wave_2018, tmp_path / "plain.sav")
    frame, meta = pyreadstat.read_sav(str(path), user_missing=True)
    role, stage = names["Rooli"], names["Missä vaiheessa tietohallinto tulee mukaan hankkeisiin?"]
    frame.loc[0, role] = 99.0
    frame.loc[1, stage] = 98.0
    labels = dict(meta.variable_value_labels)
    labels[role] = {**labels[role], 99.0: "Ei vastausta"}
    missing = tmp_path / "missing.sav"
    pyreadstat.write_sav(
        frame,
        str(missing),
        column_labels=meta.column_labels,
        variable_value_labels=labels,
        missing_ranges={role: [99.0]},  # declared in the file
    )
    spec = dataclasses.replace(
        wave_2018,
        file=missing,
        format="sav",
        user_missing={"Missä vaiheessa tietohallinto tulee mukaan hankkeisiin?": (98.0,)},  # declared in the spec
    )
    paths = make_paths("formats_sav_missing")
    result = load_wave(spec, paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        cells = dict(
            con.execute(
                "select k.source_column, c.cell_value from raw.survey_cells c join raw.survey_columns k "
                "using (column_id) where k.load_id = ? and c.source_row_number in (1, 2) and k.source_column in "
                "('Rooli', 'Rooli [code]', 'Missä vaiheessa tietohallinto tulee mukaan hankkeisiin?', "
                "'Missä vaiheessa tietohallinto tulee mukaan hankkeisiin? [code]') "
                "and (c.source_row_number = 1) = (k.source_column like 'Rooli%')",
                [result.load_id],
            ).fetchall()
        )
        quarantined = con.execute(
            "select source_row_number, source_column, reason_code from raw.quarantine where load_id = ?",
            [result.load_id],
        ).fetchall()
    assert cells == {
        "Rooli": None,
        "Rooli [code]": "99",
        "Missä vaiheessa tietohallinto tulee mukaan hankkeisiin?": None,
        "Missä vaiheessa tietohallinto tulee mukaan hankkeisiin? [code]": "98",
    }, cells
    assert (1, "Rooli", "missing_required") in quarantined, quarantined
    assert result.row_count == len(frame)


@pytest.mark.parametrize(
    ("mapped", "hint"),
    [
        ("Palautekanava", "map a variable by its name or its label"),
        ("Kestoo (min)", "the closest is variable {q} labelled 'Kesto (min)'"),
    ],
)
def test_a_sav_without_the_mapped_variable_names_it(wave_2018, tmp_path, mapped: str, hint: str) -> None:
    path, names = as_sav(wave_2018, tmp_path / "other.sav")
    columns = {**wave_2018.columns, mapped: wave_2018.columns["Kesto (min)"]}
    del columns["Kesto (min)"]
    with pytest.raises(WaveFileError) as refused:
        load_wave(
            dataclasses.replace(wave_2018, file=path, format="sav", columns=columns),
            make_paths("formats_sav_missing_column").warehouse,
        )
    message = str(refused.value)
    assert f"mapped column '{mapped}' is neither a variable's name nor its label" in message, message
    assert hint.format(q=names["Kesto (min)"]) in message, message
    assert refused.value.column == f"'{mapped}'"


COMPOSED, DECOMPOSED = "Kysely \u00e4", "Kysely a\u0308"  # 'Kysely ä' typed as one letter, and as a + a diaeresis


@pytest.mark.parametrize("fmt", ["xlsx", "ods", "xls"])
@pytest.mark.parametrize(("in_file", "in_spec"), [(DECOMPOSED, COMPOSED), (COMPOSED, DECOMPOSED)])
def test_a_sheet_is_found_whatever_the_unicode_form_of_its_name(
    wave_2018, shipped_load, tmp_path, fmt: str, in_file: str, in_spec: str
) -> None:
    """A sheet name typed with decomposed letters (a Mac, a web form) is the name the spec writes composed, and the
    other way round: the sheet is found by the match key headers and answers are matched by."""
    import openpyxl

    path = tmp_path / f"named.{fmt}"
    if fmt == "xlsx":
        book = openpyxl.load_workbook(wave_2018.file)
        book[wave_2018.sheet].title = in_file
        book.save(path)
    else:
        {"ods": as_ods, "xls": as_xls}[fmt](wave_2018, path, sheet_name=in_file)
    result = load_wave(
        dataclasses.replace(wave_2018, file=path, format=fmt, sheet=in_spec),
        make_paths(f"formats_named_{fmt}").warehouse,
    )
    assert result.row_count == load_wave(wave_2018, make_paths("formats_named").warehouse).row_count


def test_a_sheet_name_that_could_be_two_sheets_is_refused_naming_both(wave_2018, tmp_path) -> None:
    """Two sheets whose names differ only in how their letters are typed: the spec's name, in another case, could
    be either, and is not guessed; a name written exactly as one of them is that one."""
    import openpyxl

    book = openpyxl.load_workbook(wave_2018.file)
    book[wave_2018.sheet].title = COMPOSED
    book.create_sheet(DECOMPOSED)
    path = tmp_path / "two.xlsx"
    book.save(path)
    with pytest.raises(WaveFileError) as refused:
        load_wave(dataclasses.replace(wave_2018, file=path, sheet="KYSELY Ä"), make_paths("formats_two").warehouse)
    assert "sheet 'KYSELY Ä' could be 'Kysely ä' or 'Kysely a\\u0308'" in str(refused.value), str(refused.value)
    assert load_wave(dataclasses.replace(wave_2018, file=path, sheet=COMPOSED), make_paths("formats_two").warehouse)


@pytest.mark.parametrize(("key", "closest"), [("q99", None), ("Roolii", "Rooli"), ("q1 ", None)])
def test_a_user_missing_key_naming_no_variable_is_refused_before_loading(
    wave_2018, tmp_path, key: str, closest: str | None
) -> None:
    """A key of the spec's user_missing that is neither a variable's name nor its header would declare nothing:
    refused, naming the spec, the key and the variables, with the closest name; a key that is one, however it is
    spaced, is used."""
    path, names = as_sav(wave_2018, tmp_path / "wave.sav")
    spec = dataclasses.replace(wave_2018, file=path, format="sav", user_missing={key: (9.0,)})
    paths = make_paths("formats_sav_user_missing")
    if key.strip() in names.values():
        assert load_wave(spec, paths.warehouse).row_count > 0
        return
    with pytest.raises(WaveFileError) as refused:
        load_wave(spec, paths.warehouse)
    message = str(refused.value)
    assert f"user_missing in {spec.name} names {key!r}, which is neither a variable's name nor its header" in message
    assert "its variables are q1, q2, q3" in message, message
    assert (f"the closest is {closest!r}" in message) is (closest is not None), message
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from raw.survey_cells").fetchone()[0] == 0


def test_a_sheet_whose_cells_begin_right_and_below_a1_keeps_their_rows_and_columns(
    wave_2018, shipped_load, tmp_path
) -> None:
    """Calamine hands on a sheet's rows from its first column that holds a cell: the columns left of it are put
    back, so every cell lands under its own header, on its own row."""
    import openpyxl

    book = openpyxl.load_workbook(wave_2018.file)
    sheet = book[wave_2018.sheet]
    sheet.insert_cols(1, 2)
    sheet.insert_rows(1, 3)
    path = tmp_path / "shifted.xlsx"
    book.save(path)
    paths = make_paths("formats_shifted")
    result = load_wave(dataclasses.replace(wave_2018, file=path, header_row=wave_2018.header_row + 3), paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        positions = con.execute(
            "select source_column, column_position from raw.survey_columns where load_id = ? order by 2",
            [result.load_id],
        ).fetchall()
        first_row = con.execute(
            "select min(source_row_number) from raw.survey_cells join raw.survey_columns using (column_id) "
            "where load_id = ?",
            [result.load_id],
        ).fetchone()[0]
    assert positions[:3] == [("", 1), ("", 2), ("Nimi", 3)], positions[:3]
    assert first_row == wave_2018.header_row + 3 + 1
    loaded = raw_of(paths.warehouse, result.load_id)
    loaded["cells"] = [cell for cell in loaded["cells"] if cell[1] != ""]
    assert loaded == raw_of(*shipped_load)


def test_spss_durations_dates_and_user_missing_land_as_stored(wave_2018, tmp_path) -> None:
    """Durations (TIME, DTIME) in total hours, never wrapped at 24 hours or made positive; a date-time with its
    fraction of a second; a user-missing code of a variable without value labels kept in its [code] column; the
    spec's numeric codes match a string variable's "99"."""
    import pyreadstat

    path, _names = as_sav(wave_2018, tmp_path / "plain.sav")
    frame, meta = pyreadstat.read_sav(str(path), user_missing=True)
    rows = len(frame)
    sent = dt.datetime(2018, 5, 1, 12, 30, 15, 750000)  # noqa: DTZ001 (SPSS's times carry no zone)
    epoch_seconds = (sent - dt.datetime(1582, 10, 14)).total_seconds()  # noqa: DTZ001
    extra = {
        "kesto": [108000.0, 172800.25, -60.0] + [0.0] * (rows - 3),  # 30 h, 2 days and a quarter second, -1 min
        "lahetetty": [epoch_seconds] * rows,
        "arvio": [4.0, 2.0, 3.0] + [1.0] * (rows - 3),  # 4 declared missing in the file, no value labels
        "koodi": ["99", "-1", "12"] + ["1"] * (rows - 3),  # a string variable; the spec declares 99 and -1
    }
    for name, values in extra.items():
        frame[name] = values
    with_extra = tmp_path / "extra.sav"
    pyreadstat.write_sav(
        frame,
        str(with_extra),
        column_labels=[*meta.column_labels, "Kesto", "Lähetetty", "Arvio", "Koodi"],
        variable_value_labels=meta.variable_value_labels,
        variable_format={"kesto": "TIME11.2", "lahetetty": "DATETIME23.2"},
        missing_ranges={"arvio": [4.0]},
    )
    spec = dataclasses.replace(wave_2018, file=with_extra, format="sav", user_missing={"Koodi": (99.0, -1.0)})
    paths = make_paths("formats_sav_times")
    result = load_wave(spec, paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        found = con.execute(
            "select k.source_column, c.source_row_number, c.cell_value from raw.survey_cells c "
            "join raw.survey_columns k using (column_id) where k.load_id = ? and c.source_row_number <= 3 "
            "and k.source_column in ('kesto', 'lahetetty', 'arvio', 'arvio [code]', 'koodi', 'koodi [code]')",
            [result.load_id],
        ).fetchall()
    cells = {(column, row): value for column, row, value in found}
    assert [cells.get(("kesto", r)) for r in (1, 2, 3)] == ["30:00:00", "48:00:00.250000", "-0:01:00"], cells
    assert cells.get(("lahetetty", 1)) == "2018-05-01T12:30:15.750000", cells
    assert (cells.get(("arvio", 1)), cells.get(("arvio [code]", 1))) == (None, "4"), cells
    assert [cells.get(("koodi", r)) for r in (1, 2, 3)] == [None, None, "12"], cells
    assert [cells.get(("koodi [code]", r)) for r in (1, 2)] == ["99", "-1"], cells


COMMENTS_2018 = "Kommentit"


def _string(*paragraphs: str) -> str:
    return (
        '<table:table-cell office:value-type="string">'
        + "".join(f"<text:p>{p}</text:p>" for p in paragraphs)
        + "</table:table-cell>"
    )


ODS_CELLS = [  # a cell as LibreOffice stores it, and what raw keeps of it: what the sheet shows
    (_string("Rivi 1<text:tab/>sarake 2"), "Rivi 1\tsarake 2"),
    (_string("Rivi 1<text:line-break/>Rivi 2"), "Rivi 1\nRivi 2"),
    (_string("<text:span>a<text:line-break/>b</text:span>"), "a\nb"),
    (_string("kolme<text:s text:c='3'/>välilyöntiä"), "kolme   välilyöntiä"),
    (_string("<text:s/>reunoilla<text:s/>"), " reunoilla "),
    (_string("Kappale 1", "Kappale 2"), "Kappale 1\nKappale 2"),
    (
        '<table:table-cell table:formula="of:=NA()" office:value-type="string" office:string-value="" '
        'calcext:value-type="error"><text:p>#N/A</text:p></table:table-cell>',
        "#N/A",
    ),
    (
        '<table:table-cell table:formula="of:=1/0" office:value-type="float" office:value="0" '
        'calcext:value-type="error"><text:p>#DIV/0!</text:p></table:table-cell>',
        "#DIV/0!",
    ),
    ('<table:table-cell office:value-type="time" office:time-value="PT51H00M00S"/>', "51:00:00"),
    ('<table:table-cell office:value-type="time" office:time-value="-PT00H01M30.5S"/>', "-0:01:30.500000"),
    ('<table:table-cell office:value-type="time" office:time-value="PT00H12M30S"/>', "0:12:30"),
    ('<table:table-cell table:formula="of:=2+2" office:value-type="float" office:value="4"/>', "4"),
    (
        '<table:table-cell table:formula="of:=&quot;&quot;" office:value-type="string" office:string-value="" '
        'calcext:value-type="string"><text:p/></table:table-cell>',
        None,
    ),
]


def test_an_ods_cell_lands_as_the_sheet_shows_it(wave_2018, tmp_path) -> None:
    """What calamine drops or reads otherwise in an .ods (a tab, a line break, an error value, a time value of a day
    or more) is read from the sheet's XML; spaces and paragraphs as stored. A sheet ahead of it, with an error and a
    formula without its result, is not the spec's sheet and changes nothing."""
    from delivered_formats import as_ods_xml

    cells = {(wave_2018.header_row + n, COMMENTS_2018): xml for n, (xml, _raw) in enumerate(ODS_CELLS, start=1)}
    other = (
        "<table:table-row>"
        '<table:table-cell table:formula="of:=1+1"/>'
        '<table:table-cell calcext:value-type="error"><text:p>#REF!</text:p></table:table-cell>'
        "</table:table-row>"
    ) * (wave_2018.header_row + len(ODS_CELLS))
    path = as_ods_xml(wave_2018, tmp_path / "cells.ods", cells, before=other)
    paths = make_paths("formats_ods_cells")
    result = load_wave(dataclasses.replace(wave_2018, file=path, format="ods"), paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        found = dict(
            con.execute(
                "select c.source_row_number, c.cell_value from raw.survey_cells c join raw.survey_columns k "
                "using (column_id) where k.load_id = ? and k.source_column = ?",
                [result.load_id, COMMENTS_2018],
            ).fetchall()
        )
    landed = [found.get(wave_2018.header_row + n) for n in range(1, len(ODS_CELLS) + 1)]
    assert landed == [raw for _xml, raw in ODS_CELLS]


def test_an_ods_sheet_found_by_its_match_key_has_its_cells_as_the_sheet_shows_them(wave_2018, tmp_path) -> None:
    """The spec names the sheet in another form (case, composed letters) than the file: the cells calamine reads
    otherwise are put back from that same sheet, not left as calamine reads them."""
    from delivered_formats import as_ods_xml

    xml, raw = ODS_CELLS[0]
    row = wave_2018.header_row + 1
    named = unicodedata.normalize("NFD", f"{wave_2018.sheet} Ä").upper()
    path = as_ods_xml(wave_2018, tmp_path / "named.ods", {(row, COMMENTS_2018): xml}, sheet_name=named)
    spec = dataclasses.replace(wave_2018, file=path, format="ods", sheet=f"{wave_2018.sheet} ä")
    paths = make_paths("formats_ods_sheet_key")
    result = load_wave(spec, paths.warehouse)
    assert _cell_and_quarantine(paths.warehouse, result.load_id, row, COMMENTS_2018)[0] == raw


def test_an_ods_without_formulas_errors_times_or_tabs_is_not_parsed_twice(wave_2018, tmp_path, monkeypatch) -> None:
    """The sheet's XML is read again only when a look at its bytes finds what calamine reads otherwise."""
    import openpyxl.xml.functions
    from delivered_formats import as_ods_xml

    parsed = []
    parse = openpyxl.xml.functions.iterparse

    def counted(*args, **kwargs):
        parsed.append(args)
        return parse(*args, **kwargs)

    monkeypatch.setattr(openpyxl.xml.functions, "iterparse", counted)
    paths = make_paths("formats_ods_plain")
    plain = as_ods_xml(wave_2018, tmp_path / "plain.ods")
    assert load_wave(dataclasses.replace(wave_2018, file=plain, format="ods"), paths.warehouse).row_count > 0
    assert parsed == []
    with_tab = as_ods_xml(wave_2018, tmp_path / "tab.ods", {(wave_2018.header_row + 1, COMMENTS_2018): ODS_CELLS[0][0]})
    load_wave(dataclasses.replace(wave_2018, file=with_tab, format="ods"), paths.warehouse)
    assert len(parsed) == 1


def _cell_and_quarantine(warehouse: Path, load_id: str, row: int, column: str) -> tuple[object, list[str]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        cell = con.execute(
            "select c.cell_value from raw.survey_cells c join raw.survey_columns k using (column_id) "
            "where k.load_id = ? and k.source_column = ? and c.source_row_number = ?",
            [load_id, column, row],
        ).fetchone()
        reasons = con.execute(
            "select reason_code from raw.quarantine where load_id = ? and source_row_number = ? and source_column = ?",
            [load_id, row, column],
        ).fetchall()
    return (cell[0] if cell else None), [r[0] for r in reasons]


@pytest.mark.parametrize("number_format", ["h:mm:ss", "[h]:mm:ss", "mm:ss"])
def test_a_negative_duration_in_a_time_cell_is_never_wrapped_into_a_time_of_day(
    wave_2018, tmp_path, number_format: str
) -> None:
    """-1 minute (an end before its start) in a cell formatted as a time: the reader alone wraps it into 23:59:00,
    1,439 minutes accepted. It lands as the negative duration it is and is quarantined."""
    import openpyxl

    book = openpyxl.load_workbook(wave_2018.file)
    sheet = book[wave_2018.sheet]
    header = [c.value for c in sheet[wave_2018.header_row]]
    column = header.index("Kesto (min)") + 1
    row = wave_2018.header_row + 2
    sheet.cell(row, column, dt.timedelta(minutes=-1)).number_format = number_format
    path = tmp_path / "negative.xlsx"
    book.save(path)
    paths = make_paths("formats_negative_time")
    result = load_wave(dataclasses.replace(wave_2018, file=path), paths.warehouse)
    cell, reasons = _cell_and_quarantine(paths.warehouse, result.load_id, row, "Kesto (min)")
    assert cell == "-0:01:00" and reasons == ["unreadable_duration"], (cell, reasons)


def test_a_sheet_whose_xml_the_scan_cannot_parse_gets_a_verdict(wave_2018, tmp_path) -> None:
    """XML the reader takes but the defused parser refuses (a DOCTYPE with an entity), in a sheet holding an error
    value: a verdict naming the sheet, never the parser's exception."""
    import zipfile

    import openpyxl

    book = openpyxl.load_workbook(wave_2018.file)
    book[wave_2018.sheet].cell(wave_2018.header_row + 1, 3).value = "#N/A"
    plain = tmp_path / "plain.xlsx"
    book.save(plain)
    path = tmp_path / "entity.xlsx"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b'<c r="C4" t="s">', b'<c r="C4" t="e"><f>NA()</f>', 1)
                text = data.decode("utf-8")
                head, _, rest = text.partition("?>")
                data = (head + '?><!DOCTYPE x [<!ENTITY e "x">]>' + rest).encode("utf-8")
            target.writestr(item, data)
    with pytest.raises(WaveFileError) as refused:
        load_wave(dataclasses.replace(wave_2018, file=path), make_paths("formats_scan_entity").warehouse)
    assert "is damaged and cannot be read" in str(refused.value) and wave_2018.sheet in str(refused.value)


@pytest.mark.parametrize("inside", ["<text:line-break/>", "<text:tab/>"])
def test_an_ods_header_is_read_as_the_sheet_shows_it(wave_2018, tmp_path, inside: str) -> None:
    """A header cell with a line break or a tab in an .ods: the header is what LibreOffice shows, as the cells
    below it are (the reader alone drops the break), so the spec names it as shown."""
    from delivered_formats import as_ods_xml

    mapped = next(h for h, f in wave_2018.columns.items() if f == "response_minutes")
    shown = {"<text:line-break/>": "\n", "<text:tab/>": "\t"}[inside]
    cell = f'<table:table-cell office:value-type="string"><text:p>Kesto{inside}(min)</text:p></table:table-cell>'
    path = as_ods_xml(wave_2018, tmp_path / "header.ods", {(wave_2018.header_row, mapped): cell})
    columns = {(f"Kesto{shown}(min)" if h == mapped else h): f for h, f in wave_2018.columns.items()}
    spec = dataclasses.replace(wave_2018, file=path, format="ods", columns=columns)
    paths = make_paths("formats_ods_header")
    result = load_wave(spec, paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        headers = [
            r[0]
            for r in con.execute(
                "select source_column from raw.survey_columns where load_id = ?", [result.load_id]
            ).fetchall()
        ]
    assert f"Kesto{shown}(min)" in headers, headers


@pytest.mark.parametrize("written", ["Vastaukset &amp; muut", "Vastaukset &#38; muut", "Vastaukset &#x26; muut"])
def test_an_ods_sheet_name_written_with_character_references_is_found_by_the_scan(
    wave_2018, tmp_path, written: str
) -> None:
    """A sheet name with `&` written as a named or numeric reference: the scan finds the sheet the reader read, and
    a tab in a cell is kept."""
    from delivered_formats import as_ods_xml

    xml, raw = ODS_CELLS[0]
    row = wave_2018.header_row + 1
    path = as_ods_xml(wave_2018, tmp_path / "named.ods", {(row, COMMENTS_2018): xml}, sheet_name=written)
    spec = dataclasses.replace(wave_2018, file=path, format="ods", sheet="Vastaukset & muut")
    paths = make_paths("formats_ods_sheet_reference")
    result = load_wave(spec, paths.warehouse)
    assert _cell_and_quarantine(paths.warehouse, result.load_id, row, COMMENTS_2018)[0] == raw


MINUTES_2018, SKILLS_2018 = "Kesto (min)", "Toimialojen digiosaaminen (1-5)"


def _with_errors(spec: WaveSpec, path: Path, fmt: str, errors: dict[tuple[int, str], ErrorValue]) -> Path:
    """The 2018 sheet in the format with the error values in place of the sheet's cells (an .ods error is a
    formula's, as LibreOffice stores one); an .xls and an .xlsb have a sheet "Ohje" ahead, whose own error values
    lie where the answers' sheet has a name."""
    from xml.sax.saxutils import escape

    import openpyxl

    ahead = [[ErrorValue("#REF!")] * 3 for _ in range(spec.header_row + 3)]
    if fmt == "xlsx":
        book = openpyxl.load_workbook(spec.file)
        sheet = book[spec.sheet]
        header = [c.value for c in sheet[spec.header_row]]
        for (row, column), error in errors.items():
            sheet.cell(row=row, column=header.index(column) + 1, value=error.text).data_type = "e"
        book.save(path)
        return path
    if fmt == "ods":
        cells = {
            where: '<table:table-cell table:formula="of:=NA()" office:value-type="string" office:string-value="" '
            f'calcext:value-type="error"><text:p>{escape(error.text)}</text:p></table:table-cell>'
            for where, error in errors.items()
        }
        return as_ods_xml(spec, path, cells)
    return {"xls": as_xls, "xlsb": as_xlsb}[fmt](spec, path, cells=dict(errors), before=ahead)


@pytest.mark.parametrize(
    ("fmt", "formula"),
    [("xlsx", False), ("ods", True), ("xls", False), ("xls", True), ("xlsb", False), ("xlsb", True)],
    ids=["xlsx", "ods", "xls", "xls formula", "xlsb", "xlsb formula"],
)
def test_an_error_value_lands_as_shown_and_is_quarantined_in_every_workbook_format(
    wave_2018, shipped, tmp_path, fmt: str, formula: bool
) -> None:
    """An error value in an optional scale question and in the response time (a cell's own, or a formula's cached
    result) lands in raw as the sheet shows it, never as an empty answer, and its row is quarantined as
    spreadsheet_error, naming its row and column; every other cell lands as in the shipped workbook, and the
    error values of a sheet ahead of the answers' are not theirs."""
    first, second = wave_2018.header_row + 1, wave_2018.header_row + 2
    errors = {(first, SKILLS_2018): ErrorValue("#N/A", formula), (second, MINUTES_2018): ErrorValue("#DIV/0!", formula)}
    path = _with_errors(wave_2018, tmp_path / f"errors.{fmt}", fmt, errors)
    paths = make_paths(f"formats_errors_{fmt}")
    result = load_wave(dataclasses.replace(wave_2018, file=path, format=fmt), paths.warehouse)
    loaded = raw_of(paths.warehouse, result.load_id)
    changed = {(1, SKILLS_2018): "#N/A", (2, MINUTES_2018): "#DIV/0!"}
    expected = sorted((r, c, changed.get((r, c), v)) for r, c, v in shipped["cells"])
    assert loaded["cells"] == expected
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        quarantined = con.execute(
            "select source_row_number, source_column, reason_code, message from raw.quarantine "
            "where load_id = ? and reason_code = 'spreadsheet_error' order by 1",
            [result.load_id],
        ).fetchall()
    assert [(row, column, reason) for row, column, reason, _ in quarantined] == [
        (first, SKILLS_2018, "spreadsheet_error"),
        (second, MINUTES_2018, "spreadsheet_error"),
    ]
    for row, column, _reason, message in quarantined:
        assert message.startswith(f"{path.name}, row {row}, column '{column}': "), message


@pytest.mark.parametrize("fmt", ["xls", "xlsb"])
def test_a_binary_sheet_without_error_values_is_not_walked(wave_2018, tmp_path, monkeypatch, fmt: str) -> None:
    """The records of an .xls or .xlsb sheet are walked only when a look at its bytes finds an error value there; a
    sheet ahead holding errors does not make the answers' sheet walked."""
    from survey_warehouse.intake import binary

    walk = {"xls": "_xls_error_cells", "xlsb": "_xlsb_error_cells"}[fmt]
    walked = []
    original = getattr(binary, walk)
    monkeypatch.setattr(binary, walk, lambda *args: walked.append(args) or original(*args))
    write = {"xls": as_xls, "xlsb": as_xlsb}[fmt]
    paths = make_paths(f"formats_{fmt}_plain")
    plain = write(wave_2018, tmp_path / f"plain.{fmt}", before=[[ErrorValue("#REF!")] * 3] * 3)
    assert load_wave(dataclasses.replace(wave_2018, file=plain, format=fmt), paths.warehouse).row_count > 0
    assert walked == []
    errors = {(wave_2018.header_row + 1, COMMENTS_2018): ErrorValue("#N/A")}
    load_wave(
        dataclasses.replace(wave_2018, file=write(wave_2018, tmp_path / f"error.{fmt}", cells=errors), format=fmt),
        paths.warehouse,
    )
    assert len(walked) == 1


@pytest.mark.parametrize("fmt", ["xls", "xlsb"])
def test_an_error_value_alone_in_the_last_row_is_kept(wave_2018, tmp_path, fmt: str) -> None:
    """A row below the answers holding nothing but a formula's error (which the .xlsb reader skips, so that its
    rows end before it) lands in raw as the sheet shows it, in its row and column."""
    last = len(sheet_rows(wave_2018))
    errors = {(last + 2, COMMENTS_2018): ErrorValue("#N/A", formula=True)}
    path = {"xls": as_xls, "xlsb": as_xlsb}[fmt](wave_2018, tmp_path / f"last.{fmt}", cells=errors)
    paths = make_paths(f"formats_last_{fmt}")
    result = load_wave(dataclasses.replace(wave_2018, file=path, format=fmt), paths.warehouse)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        found = con.execute(
            "select c.source_row_number, c.cell_value from raw.survey_cells c join raw.survey_columns k "
            "using (column_id) where k.load_id = ? and k.source_column = ? and c.cell_value is not null "
            "and c.source_row_number > ?",
            [result.load_id, COMMENTS_2018, last],
        ).fetchall()
    assert found == [(last + 2, "#N/A")]


@pytest.mark.parametrize(
    ("duration", "landed", "reasons"),
    [
        (dt.timedelta(minutes=-1), "-0:01:00", ["unreadable_duration"]),
        (dt.timedelta(minutes=-90, seconds=-30), "-1:30:30", ["unreadable_duration"]),
        (dt.timedelta(days=-2), "-48:00:00", ["unreadable_duration"]),  # a whole number: stored as an RK number
        (dt.timedelta(minutes=12, seconds=30), "0:12:30", []),
    ],
    ids=["minus-a-minute", "minus-an-hour-and-a-half", "minus-two-days", "positive"],
)
def test_a_negative_duration_in_an_xls_time_cell_is_never_wrapped(
    wave_2018, tmp_path, duration: dt.timedelta, landed: str, reasons: list[str]
) -> None:
    """A legacy .xls cell formatted h:mm:ss holding a negative duration: the reader alone wraps it into a time of
    day (23:59:00, accepted as 1,439 minutes); its stored number is read from the sheet's records instead."""
    from delivered_formats import as_xls

    row = wave_2018.header_row + 2
    path = as_xls(wave_2018, tmp_path / "negative.xls", cells={(row, "Kesto (min)"): duration})
    paths = make_paths("formats_xls_negative_time")
    result = load_wave(dataclasses.replace(wave_2018, file=path, format="xls"), paths.warehouse)
    assert _cell_and_quarantine(paths.warehouse, result.load_id, row, "Kesto (min)") == (landed, reasons)
