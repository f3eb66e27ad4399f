"""No message about a delivery quotes a respondent: not their name, e-mail address or free-text answer.

Every row of the deliveries below carries a name, an e-mail address and a free-text answer from a corpus, and each
delivery is damaged in one of the ways the loader names, whole-file or row-level. Every message the delivery
produces is scanned: the error (WaveFileError), the load registry's status message, the quarantine's messages, the
load's warnings, the failure message of the run (what the owner's mail and the inbox's rejection note say), the
owner's mail and the rejection note themselves. None may hold a corpus value, nor any run of 6 of its characters,
as written or as it reads after a double conversion. Values of the city and answer columns may be shown (the owner
needs them to add an alias or a label); the deliveries put no corpus value there, except where an e-mail address
is typed into the city column."""

from __future__ import annotations

import csv
import dataclasses
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import openpyxl
import pytest
from conftest import ROOT, make_paths

from survey_warehouse.errors import WaveFileError
from survey_warehouse.intake.matching import shown
from survey_warehouse.intake.waves import WaveSpec, find_wave_spec
from survey_warehouse.operations.inbox import Delivery, reject
from survey_warehouse.orchestration.notify import failure_mail
from survey_warehouse.orchestration.pipeline import failure_message
from survey_warehouse.raw.load import load_wave
from survey_warehouse.raw.registry import fail_load

NAMES = (
    "Kristiina Lindqvist-Mäkinen",
    "Päivi Hämäläinen",
    "Åsa Öberg-Grönroos",
    "Jyrki Könönen",
    "Sirkka-Liisa Väänänen",
    "Zoë Ahlroos",
    "Eero Mäkelä-Öhman",
)
ADDRESSES = (
    "kristiina.lindqvist@kuntaposti.test",
    "päivi.hämäläinen@kuntaposti.test",
    "asa.oberg@kuntaposti.test",
    "jyrki.kononen@kuntaposti.test",
    "sirkka-liisa.vaananen@kuntaposti.test",
)
FREE_TEXTS = (
    "Soittakaa: Päivi Hämäläinen 040 765 4321",
    "Lisätietoja antaa Jyrki Könönen (jyrki.kononen@kuntaposti.test)",
    "Terveisin Åsa Öberg-Grönroos ja kiitos",
    "Kysykää Zoë Ahlroosilta",
)
SECOND_KEY_RESPONDENT = ("Zoë Ahlroos-Lindqvist", "toinen.cio@kuntaposti.test")
WINDOW = 6
NAME, EMAIL, FREE_TEXT = "Nimi", "Email", "Q5 Vapaa palaute"
CITY, ROLE, TIMESTAMP, MINUTES = "Organisaatio", "Asema", "Aikaleima", "Vastausaika (min)"
LEAD = "Q1 Kuka vastaa ensisijaisesti digitalisaation johtamisesta?"
COOPERATION = "Q2 Tietohallinnon ja toimialojen yhteistyön sujuvuus (0-10)"


@pytest.fixture(scope="module")
def paths():
    return make_paths("personal_data")


@dataclasses.dataclass
class Delivered:
    """A delivery under test: the rows (header first) and how the file is written from them."""

    spec: WaveSpec
    rows: list[list[str]]
    folder: Path

    def column(self, name: str) -> int:
        return self.rows[0].index(name)

    def set(self, row: int, column: str, value: str) -> None:
        """A cell by the file's row number (1 = the header) and the column's header."""
        self.rows[row - 1][self.column(column)] = value

    def text(self) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(self.rows)
        return out.getvalue()

    def write(self, data: bytes | str, encoding: str = "utf-8-sig", **changes: object) -> WaveSpec:
        path = self.folder / self.spec.file.name
        path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
        return dataclasses.replace(self.spec, file=path, **changes)


def _base(spec: WaveSpec, folder: Path) -> Delivered:
    """The 2019 wave with every respondent's name, e-mail address and free text taken from the corpus."""
    with open(spec.file, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    delivered = Delivered(spec, rows, folder)
    for i, row in enumerate(rows[1:]):
        local, domain = ADDRESSES[i % len(ADDRESSES)].split("@")
        row[delivered.column(NAME)] = NAMES[i % len(NAMES)]
        row[delivered.column(EMAIL)] = f"{local}{i}@{domain}"
        row[delivered.column(FREE_TEXT)] = FREE_TEXTS[i % len(FREE_TEXTS)]
    return delivered


def _garbled(text: str) -> str:
    """UTF-8 read as Windows-1252: 'ä' becomes 'Ã¤'."""
    return text.encode("utf-8").decode("cp1252", errors="replace")


def _lines(delivered: Delivered) -> list[str]:
    return delivered.text().splitlines(keepends=True)


# ------------------------------------------------------------------------------------------ the damaged deliveries


def double_encoded(d: Delivered) -> WaveSpec:
    lines = _lines(d)
    return d.write(lines[0] + _garbled("".join(lines[1:])))


def double_encoded_in_a_cp1252_file(d: Delivered) -> WaveSpec:
    lines = _lines(d)
    garbled = lines[0] + _garbled("".join(lines[1:]))
    return d.write(garbled.encode("cp1252", errors="replace"), encoding="cp1252")


def windows_1252_rows_in_a_utf8_file(d: Delivered) -> WaveSpec:
    lines = _lines(d)
    return d.write(lines[0].encode("utf-8-sig") + "".join(lines[1:]).encode("cp1252", errors="replace"))


def bytes_no_encoding_reads(d: Delivered) -> WaveSpec:
    d.set(3, NAME, "Päivi \x81Hämäläinen")
    return d.write(d.text().encode("utf-8").replace("\x81".encode(), b"\x81\x8d"))


def nul_bytes_in_a_name(d: Delivered) -> WaveSpec:
    data = d.text().encode("utf-8-sig")
    at = data.index(NAMES[2].encode()) + 4
    return d.write(data[:at] + b"\x00" * 64 + data[at:])


def nul_bytes_in_a_cp1252_file(d: Delivered) -> WaveSpec:
    data = d.text().encode("cp1252", errors="replace")
    at = data.index(NAMES[2].encode("cp1252")) + 4
    return d.write(data[:at] + b"\x00" * 64 + data[at:], encoding="cp1252")


def utf8_file_the_spec_calls_cp1252(d: Delivered) -> WaveSpec:
    return d.write(d.text(), encoding="utf-8")  # (the spec below says cp1252)


def utf16_file_the_spec_calls_utf8(d: Delivered) -> WaveSpec:
    return d.write(d.text(), encoding="utf-16")


def stray_quote_closed_rows_later(d: Delivered) -> WaveSpec:
    lines = _lines(d)
    lines[4] = '"' + lines[4]  # the name cell of row 5 opens a quote that row 12's closes
    lines[11] = lines[11].replace(",", '",', 1)
    return d.write("".join(lines))


def stray_quote_never_closed(d: Delivered) -> WaveSpec:
    lines = _lines(d)
    lines[4] = '"' + lines[4]
    return d.write("".join(lines))


def file_ends_inside_a_quoted_cell(d: Delivered) -> WaveSpec:
    lines = _lines(d)[:12]
    lines[-1] = lines[-1].rstrip("\n").rsplit(",", 1)[0] + ',"Terveisin Sirkka-Liisa Väänänen, sirkka'
    return d.write("".join(lines))


def file_cut_off_in_an_address(d: Delivered) -> WaveSpec:
    lines = _lines(d)[:20]
    last = lines[-1]
    lines[-1] = last[: last.index("@") + 5]
    return d.write("".join(lines))


def header_row_pointing_at_an_answer(d: Delivered) -> WaveSpec:
    return d.write(d.text(), header_row=2)


def wrong_delimiter(d: Delivered) -> WaveSpec:
    return d.write(d.text().replace(",", ";"))


def cell_larger_than_the_limit(d: Delivered) -> WaveSpec:
    d.set(4, FREE_TEXT, " ".join(FREE_TEXTS) * 400)
    return d.write(d.text())


def file_of_another_year(d: Delivered) -> WaveSpec:
    for row in d.rows[1:]:
        row[d.column(TIMESTAMP)] = row[d.column(TIMESTAMP)].replace("2019-", "2018-")
    return d.write(d.text())


def ragged_row(d: Delivered) -> WaveSpec:
    d.rows[5] = d.rows[5][:3]
    d.rows[7] = [*d.rows[7], "Terveisin Jyrki Könönen"]
    return d.write(d.text())


def repeated_header(d: Delivered) -> WaveSpec:
    d.rows.insert(10, list(d.rows[0]))
    return d.write(d.text())


def missing_role(d: Delivered) -> WaveSpec:
    d.set(4, ROLE, "")
    return d.write(d.text())


def unknown_city(d: Delivered) -> WaveSpec:
    d.set(3, CITY, "Atlantis")
    return d.write(d.text())


def an_address_typed_as_the_city(d: Delivered) -> WaveSpec:
    d.set(3, CITY, d.rows[2][d.column(EMAIL)])
    return d.write(d.text())


def a_name_typed_as_the_submission_time(d: Delivered) -> WaveSpec:
    d.set(3, TIMESTAMP, d.rows[2][d.column(NAME)])
    return d.write(d.text())


def an_address_typed_as_the_response_time(d: Delivered) -> WaveSpec:
    d.set(3, MINUTES, d.rows[2][d.column(EMAIL)])
    return d.write(d.text())


def city_not_surveyed(d: Delivered) -> WaveSpec:
    d.set(3, CITY, "Hyvinkää")
    return d.write(d.text())


def unknown_answer(d: Delivered) -> WaveSpec:
    d.set(3, LEAD, "Pormestari")
    d.set(5, ROLE, "Kahvinkeittäjä")
    return d.write(d.text())


def answer_outside_the_scale(d: Delivered) -> WaveSpec:
    d.set(3, COOPERATION, "12")
    return d.write(d.text())


def answer_between_the_scales_points(d: Delivered) -> WaveSpec:
    d.set(3, COOPERATION, "7,5")
    return d.write(d.text())


def same_respondent_twice(d: Delivered) -> WaveSpec:
    d.set(6, EMAIL, d.rows[1][d.column(EMAIL)])
    d.set(8, EMAIL, d.rows[2][d.column(EMAIL)].upper())
    return d.write(d.text())


def same_respondent_first_row_unusable(d: Delivered) -> WaveSpec:
    d.set(2, CITY, "Helsinkii")
    d.rows.append(list(d.rows[1]))
    d.rows[-1][d.column(CITY)] = "Helsinki"
    d.set(9, EMAIL, d.rows[1][d.column(EMAIL)])
    return d.write(d.text())


def key_respondents_who_disagree(d: Delivered) -> WaveSpec:
    key = next(r for r in d.rows[1:] if r[d.column(ROLE)] == "Tietohallintojohtaja")
    other = list(key)
    other[d.column(NAME)], other[d.column(EMAIL)] = SECOND_KEY_RESPONDENT
    other[d.column(LEAD)] = "Toimialajohtajat" if key[d.column(LEAD)] != "Toimialajohtajat" else "Tietohallinto"
    d.rows.append(other)
    return d.write(d.text())


def _workbook(d: Delivered, change: Callable[[bytes], bytes] = lambda sheet: sheet, **spec_changes: object) -> WaveSpec:
    """The 2018 workbook with the corpus in its name, e-mail and comment columns, its sheet's XML changed."""
    spec = WaveSpec.from_file(ROOT / "config" / "waves" / "2018.yml", ROOT)
    wb = openpyxl.load_workbook(spec.file)
    ws = wb[spec.sheet]
    header = [c.value for c in ws[spec.header_row]]
    for i, row in enumerate(ws.iter_rows(min_row=spec.header_row + 1)):
        row[header.index("Nimi")].value = NAMES[i % len(NAMES)]
        local, domain = ADDRESSES[i % len(ADDRESSES)].split("@")
        row[header.index("Sähköpostiosoite")].value = f"{local}{i}@{domain}"
        row[header.index("Kommentit")].value = FREE_TEXTS[i % len(FREE_TEXTS)]
    plain = io.BytesIO()
    wb.save(plain)
    out = io.BytesIO()
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            target.writestr(item, change(data) if item.filename.startswith("xl/worksheets/") else data)
    path = d.folder / spec.file.name
    path.write_bytes(out.getvalue())
    return dataclasses.replace(spec, file=path, **spec_changes)


def workbook_with_a_name_in_a_number_cell(d: Delivered) -> WaveSpec:
    """A damaged sheet: a cell typed as a number holds a name (openpyxl's error quotes the cell)."""

    def change(sheet: bytes) -> bytes:
        text = sheet.decode("utf-8")
        cell = text.index('<c r="A7"')
        end = text.index("</c>", cell) + len("</c>")
        return (text[:cell] + f'<c r="A7" t="n"><v>{NAMES[1]}</v></c>' + text[end:]).encode("utf-8")

    return _workbook(d, change)


def workbook_header_row_pointing_at_an_answer(d: Delivered) -> WaveSpec:
    return _workbook(d, header_row=5)


# (delivery, spec changes, what the loader must say: an error's words or a quarantine reason)
CASES: list[tuple[Callable[[Delivered], WaveSpec], dict, str]] = [
    (double_encoded, {}, "garbled"),
    (double_encoded_in_a_cp1252_file, {"encoding": "cp1252"}, "garbled"),
    (windows_1252_rows_in_a_utf8_file, {}, "cannot be read as utf-8-sig"),
    (bytes_no_encoding_reads, {}, "cannot be read as utf-8-sig"),
    (nul_bytes_in_a_name, {}, "NUL (zero) bytes"),
    (nul_bytes_in_a_cp1252_file, {"encoding": "cp1252"}, "NUL (zero) bytes"),
    (utf8_file_the_spec_calls_cp1252, {"encoding": "cp1252"}, "the file is UTF-8 text"),
    (utf16_file_the_spec_calls_utf8, {}, "UTF-16 text"),
    (stray_quote_closed_rows_later, {}, "stray quote mark"),
    (stray_quote_never_closed, {}, "stray"),
    (file_ends_inside_a_quoted_cell, {}, "ends inside a quoted cell"),
    (file_cut_off_in_an_address, {}, "ends in the middle of this row"),
    (header_row_pointing_at_an_answer, {}, "header"),
    (wrong_delimiter, {}, "is the delimiter ';'"),
    (cell_larger_than_the_limit, {}, "SURVEY_MAX_CELL_BYTES"),
    (file_of_another_year, {}, "submitted in 2018"),
    (workbook_with_a_name_in_a_number_cell, {}, "damaged"),
    (workbook_header_row_pointing_at_an_answer, {}, "header"),
    (ragged_row, {}, "ragged_row"),
    (repeated_header, {}, "repeated_header"),
    (missing_role, {}, "missing_required"),
    (unknown_city, {}, "unknown_city"),
    (an_address_typed_as_the_city, {}, "unknown_city"),
    (city_not_surveyed, {}, "city_not_surveyed"),
    (a_name_typed_as_the_submission_time, {}, "unreadable_timestamp"),
    (an_address_typed_as_the_response_time, {}, "unreadable_duration"),
    (unknown_answer, {}, "unknown_answer"),
    (answer_outside_the_scale, {}, "out_of_scale"),
    (answer_between_the_scales_points, {}, "not_on_scale"),
    (same_respondent_twice, {}, "duplicate_respondent"),
    (same_respondent_first_row_unusable, {}, "unknown_city"),
    (key_respondents_who_disagree, {}, "key respondents"),
]


# ------------------------------------------------------------------------------------------ what the loader says


def _personal_values() -> set[str]:
    """Every name, e-mail address and free text the deliveries hold (before any damage)."""
    values = {*NAMES, *ADDRESSES, *FREE_TEXTS, *SECOND_KEY_RESPONDENT}
    for i in range(200):
        local, domain = ADDRESSES[i % len(ADDRESSES)].split("@")
        values.add(f"{local}{i}@{domain}")
    return values


def _windows(values: set[str]) -> set[str]:
    """Every run of WINDOW characters of each value, as written, escaped and after a double conversion,
    case-folded."""
    found = set()
    for value in values:
        for form in (value, shown(value)[1:-1], _garbled(value)):
            text = form.casefold()
            found |= {text[i : i + WINDOW] for i in range(len(text) - WINDOW + 1)}
    return found


def _messages(spec: WaveSpec, paths) -> tuple[str, list[str]]:
    """What the loader said (an error's text or the quarantine's reasons and the warnings), and every message the
    delivery produced."""
    messages: list[str] = []
    try:
        result = load_wave(spec, paths.warehouse)
    except WaveFileError as error:
        said = str(error)
        messages += [said, error.reason, error.column or ""]
        failure = failure_message(
            paths, paths.warehouse, ["load_raw_wave"], None, {"load_raw_wave": f"WaveFileError: {error}"}
        )
        load_id, steps = None, ["load_raw_wave"]
    else:
        messages += [*result.warnings, result.describe()]
        failure = failure_message(paths, paths.warehouse, ["validate_raw_wave"], result.load_id)
        fail_load(paths.warehouse, result.load_id, failure)
        load_id, steps = result.load_id, ["validate_raw_wave"]
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        messages.append(
            con.execute("select status_message from raw.load_registry order by loaded_at desc limit 1").fetchone()[0]
        )
        quarantine = con.execute(
            "select reason_code, message from raw.quarantine where load_id = ?", [load_id or ""]
        ).fetchall()
    if load_id is not None:
        said = " ".join([*(r[0] for r in quarantine), *result.warnings])
    messages += [r[1] for r in quarantine]
    mail = failure_mail(spec.wave_year, steps, failure, ["Log: var/logs/run.log"])
    messages += [failure, mail.subject, mail.body, mail.html()]
    stat = spec.file.stat()
    note = reject(Delivery(spec.wave_year, spec.file, stat.st_size, stat.st_mtime_ns), failure, "manual__test")
    messages.append(note.read_text(encoding="utf-8"))
    return said, messages


@pytest.mark.parametrize(("build", "changes", "expected"), CASES, ids=[c[0].__name__ for c in CASES])
def test_no_message_about_a_delivery_quotes_a_respondent(
    paths, tmp_path: Path, monkeypatch, build, changes: dict, expected: str
) -> None:
    if build is cell_larger_than_the_limit:
        monkeypatch.setenv("SURVEY_MAX_CELL_BYTES", "4000")
    spec = find_wave_spec(2019, paths)
    assert spec is not None
    delivered = _base(dataclasses.replace(spec, **changes), tmp_path)
    built = build(delivered)
    personal = _personal_values()
    delivered_text = built.file.read_bytes()
    assert built.format == "xlsx" or any(
        v.encode(encoding, "replace") in delivered_text
        for v in personal
        for encoding in ("utf-8", "cp1252", "utf-16-le")
    ), "the delivery holds the corpus"
    said, messages = _messages(built, paths)
    assert expected in said, f"{expected!r} not in: {said}"
    windows = _windows(personal)
    for message in messages:
        folded = message.casefold()
        leaked = sorted(w for w in windows if w in folded)
        assert not leaked, f"{leaked[:5]} of a respondent's data in: {message}"
